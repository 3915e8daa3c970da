"""Where a hook may send credentials.

A company's integration JSON may override a CRM's base URL (``baseUrl``,
``authUrl``, Salesforce's ``instanceUrl`` / ``myDomainUrl``). An override is
accepted only when its host belongs to the vendor's own domains, or matches one of
the deployment's ``CRM_SYNC_ALLOWED_HOSTS`` patterns (comma-separated
``host[:port]`` with ``*`` wildcards, e.g. ``127.0.0.1:*,sandbox.internal``).
So a typo or a malicious setting can never ship a token to an arbitrary server.
"""

from __future__ import annotations

import fnmatch
import os
from urllib.parse import urlsplit

from crm_hooks.errors import ConfigurationError

ALLOWED_HOSTS_ENV = "CRM_SYNC_ALLOWED_HOSTS"


def _allowed_patterns() -> list[str]:
    raw = os.environ.get(ALLOWED_HOSTS_ENV, "")
    return [p.strip().lower() for p in raw.split(",") if p.strip()]


def check_url(url: str, vendor_domains: tuple[str, ...], *, what: str) -> str:
    """Return ``url`` without a trailing slash if its host may receive credentials.

    :param url: the override from the integration settings.
    :param vendor_domains: domain suffixes owned by the vendor (``hubapi.com``).
    :param what: the setting's name, for the error message.
    :raises ConfigurationError: not https for a vendor host, or a host not allowed.
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"{what} must be an absolute http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    is_vendor = any(host == d or host.endswith("." + d) for d in vendor_domains)
    if is_vendor:
        if parts.scheme != "https":
            raise ConfigurationError(f"{what} must use https for {host}")
        return url.strip().rstrip("/")
    hostport = f"{host}:{port}"
    for pattern in _allowed_patterns():
        target = hostport if ":" in pattern else host
        if fnmatch.fnmatchcase(target, pattern):
            return url.strip().rstrip("/")
    raise ConfigurationError(
        f"{what} host {host}:{port} is not a {'/'.join(vendor_domains)} host and is not listed in "
        f"{ALLOWED_HOSTS_ENV}; refusing to send credentials there"
    )
