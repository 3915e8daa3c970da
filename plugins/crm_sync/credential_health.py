"""Daily credential health: is each company's CRM connection still usable? (issue 11, section 5)

An incremental run with nothing to send makes no CRM call (:meth:`IntegrationSync.run`), so it cannot notice
that a company's token expired or an admin revoked the app. This check can: per company x CRM it makes the
hook's cheapest authenticated call (:meth:`CrmHook.check_access`, the same call as the connection's Test
button: it fetches a token first where the CRM issues them) and records one row in
``crm_sync.credential_checks`` (migration 0016) with a status of :class:`HealthStatus` and a redacted message.

A problem is a row and a log line, never an exception: one company's revoked credential must not hide the
others' results. Rotated tokens (Jobber's refresh token) go to the company's credentials store, as in a sync
(:func:`crm_sync.integrations.company_destination`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.engine import Engine

from crm_hooks.errors import BadCredentialsError, ConfigurationError, CrmError
from crm_hooks.redaction import redact
from crm_sync.clean import storable_text
from crm_sync.db import sql

log = logging.getLogger(__name__)


class HealthStatus(StrEnum):
    """What one check found (``crm_sync.credential_checks.status``)."""

    HEALTHY = "healthy"
    #: the CRM refused the credentials: expired, revoked, or a secret changed on the CRM's side
    BAD_CREDENTIALS = "bad_credentials"
    #: the integration's settings cannot work (no credentials, a field the hook needs, a refused host)
    CONFIG_ERROR = "config_error"
    #: the CRM did not answer usefully (network, 5xx, rate limits, quota): the credentials are not judged
    UNREACHABLE = "unreachable"


@dataclass
class HealthResult:
    """One company x CRM check; its dict is a safe XCom (no secrets, no customer data)."""

    company_id: int
    crm_type: str
    status: HealthStatus
    message: str
    api_calls: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": str(self.status)}


def classify(exc: BaseException) -> HealthStatus:
    """The status of an error raised by a credential check (pure)."""
    if isinstance(exc, BadCredentialsError):
        return HealthStatus.BAD_CREDENTIALS
    if isinstance(exc, ConfigurationError):
        return HealthStatus.CONFIG_ERROR
    return HealthStatus.UNREACHABLE  # retries exhausted, quota, an unexpected answer: credentials not judged


def check_credentials(
    engine: Engine,
    company_id: int,
    crm_type: str,
    *,
    run_id: str,
    dag_id: str | None = None,
) -> HealthResult:
    """Check one company x CRM's credentials with one cheap authenticated call; record and return the result."""
    from crm_sync.integrations import company_destination, load_integration

    clock = time.monotonic()
    destination = None
    calls = 0
    try:
        integration = load_integration(engine, company_id, crm_type)
        destination = company_destination(engine, company_id, crm_type, integration)
        # A token kept from a run (client-credentials grant) would not prove the client secret still works.
        destination.hook.invalidate_token()
        message = destination.hook.check_access()
        status = HealthStatus.HEALTHY
    except CrmError as exc:
        status, message = classify(exc), str(exc)
    except Exception as exc:  # anything else is reported too, never a traceback with secrets in it
        status, message = HealthStatus.UNREACHABLE, f"{type(exc).__name__}: {exc}"
    finally:
        if destination is not None:
            calls = destination.hook.stats.api_calls
            destination.close()
    if destination is not None:
        message = destination.hook.redact(message)  # every secret the hook knows, tokens included
    message = redact(message)  # token-like text, also when no hook was built
    result = HealthResult(
        company_id,
        crm_type,
        status,
        storable_text(message)[:500] if message else "",
        api_calls=calls,
        seconds=round(time.monotonic() - clock, 3),
    )
    _record(engine, result, run_id=run_id, dag_id=dag_id)
    level = logging.INFO if status == HealthStatus.HEALTHY else logging.WARNING
    log.log(level, "credentials of company %s -> %s: %s (%s)", company_id, crm_type, status, result.message)
    return result


def _record(engine: Engine, result: HealthResult, *, run_id: str, dag_id: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sql("credential_check_insert"),
            {
                "run_id": run_id,
                "dag_id": dag_id,
                "company_id": result.company_id,
                "crm_type": result.crm_type,
                "status": str(result.status),
                "message": result.message,
                "api_calls": result.api_calls,
                "seconds": result.seconds,
            },
        )


def checks_for(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The checks of one DAG run, problems first."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sql("credential_checks_for_run"), {"run_id": run_id}).mappings()]


def format_checks(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of checks for the task log (statuses and redacted messages only)."""
    if not rows:
        return "no credential checks in this run"
    lines = [f"{'company':>8}  {'crm':<13} {'status':<16} message"]
    for r in rows:
        lines.append(f"{r['company_id']:>8}  {r['crm_type']:<13} {r['status']:<16} {(r['message'] or '')[:160]}")
    return "\n".join(lines)
