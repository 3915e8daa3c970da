"""Keep secrets out of everything the sync writes: logs, XComs, the ledger, reports.

Two layers: every secret value a hook knows (credentials and tokens fetched at run
time) is registered with Airflow's secret masker, and any text the project itself
stores or raises (error bodies, messages) goes through :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Token-looking material that may be echoed by a CRM even when we do not know the value.
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(token\s+)[A-Za-z0-9._~+/=-]{16,}"),
    re.compile(
        r"(?i)((?:access_token|refresh_token|client_secret|password|api_key|apikey|security_token)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"
    ),
    re.compile(r"pat-[a-z0-9]{2,4}-[A-Za-z0-9-]{8,}"),
]

REDACTED = "***"
MIN_SECRET_LENGTH = 4


def redact(text: str | None, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every known secret value and token-like pattern replaced."""
    if not text:
        return text or ""
    out = str(text)
    for value in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        out = out.replace(value, REDACTED)
    for pattern in _PATTERNS:
        out = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, out)
    return out


def redact_and_truncate(text: str | None, secrets: Iterable[str] = (), limit: int | None = None) -> str:
    """:func:`redact` first, then cut to ``limit`` characters.

    The order matters: cutting first can split a secret at the boundary, and the part that is
    left no longer matches the full value (or a token pattern's minimum length), so it would
    survive redaction. Redacting the whole text first leaves nothing of it to cut.
    """
    out = redact(text, secrets)
    return out if limit is None else out[:limit]


def register_secrets(values: Iterable[str | None]) -> None:
    """Register each value with Airflow's masker so task logs show ``***`` instead."""
    try:
        from airflow.sdk.log import mask_secret
    except Exception:  # pragma: no cover - Airflow always present in this project
        return
    for value in values:
        if value and isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            mask_secret(value)
