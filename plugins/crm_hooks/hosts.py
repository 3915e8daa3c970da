"""Where a hook may send credentials: the one URL rule of the sync.

A company's integration JSON may override a CRM's base URL (``baseUrl``,
``authUrl``, Salesforce's ``instanceUrl`` / ``myDomainUrl``), and a CRM hands back
absolute URLs (Salesforce's ``instance_url``, next-page links). Any admin of any
company edits that JSON, so every such URL is hostile until :func:`check_url`
accepts it. A URL is accepted only when its host belongs to the vendor's own
domains (https only), or matches one of the deployment's ``CRM_SYNC_ALLOWED_HOSTS``
patterns (comma-separated ``host[:port]`` with ``*`` wildcards, e.g.
``127.0.0.1:*,sandbox.internal``; IPv6 as ``[::1]:8765``).

Parsers disagree on odd URLs: ``https://attacker.example\\@api.hubapi.com`` is
``api.hubapi.com`` to :func:`urllib.parse.urlsplit` but ``attacker.example`` to
``requests``/urllib3. So the rule first refuses every form two parsers could read
differently (backslashes, userinfo, whitespace and control characters, percent
signs or non-ASCII in the host, integer/octal/hex IPv4 forms, zone ids, trailing
dots, bad ports), then parses the URL the way ``requests`` will send it and requires
both readings to name the same scheme, host and port. The same rule runs again at
send time on every prepared request (:class:`crm_hooks.base.CrmHook.get_conn`).

Every refusal is a :class:`~crm_hooks.errors.ConfigurationError` naming the
setting; the URL itself is never echoed (it may carry a token in its query).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3.util
from urllib3.exceptions import LocationParseError

from crm_hooks.errors import ConfigurationError

ALLOWED_HOSTS_ENV = "CRM_SYNC_ALLOWED_HOSTS"

_SCHEME = re.compile(r"(https?)://", re.IGNORECASE)
#: A DNS name or dotted IPv4: letters, digits, '-', '_' (compose service names) and dots.
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
#: A label the WHATWG URL standard reads as a number (so the host is an IPv4 in some form).
_NUMBER_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """Where a URL really goes: lower-case scheme, host (IPv6 in brackets, compressed) and port."""

    scheme: str
    host: str
    port: int


def _refuse(what: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{what} is refused: {problem}")


def parse_target(url: str, *, what: str) -> Target:
    """The scheme, host and port ``url`` connects to, or a :class:`ConfigurationError`.

    Strict on purpose: any form a URL parser could read as another host is refused
    rather than interpreted.

    :param what: the setting's name, for the error message.
    """
    if not isinstance(url, str) or not url:
        raise _refuse(what, "it is not a URL")
    for ch in url:
        if ord(ch) > 126:
            raise _refuse(what, "it contains non-ASCII characters (use the punycode host and percent-encoded path)")
        if ord(ch) <= 32 or ord(ch) == 127:
            raise _refuse(what, "it contains whitespace or control characters")
        if ch == "\\":
            raise _refuse(what, "it contains a backslash")
    match = _SCHEME.match(url)
    if not match:
        raise _refuse(what, "it must be an absolute http:// or https:// URL")
    scheme = match.group(1).lower()
    authority = re.split(r"[/?#]", url[match.end() :], maxsplit=1)[0]
    if not authority:
        raise _refuse(what, "it has no host")
    if "@" in authority:
        raise _refuse(what, "user names or passwords in the URL (an '@' before the host) are not allowed")
    if "%" in authority:
        raise _refuse(what, "percent-encoding or an IPv6 zone id in the host is not allowed")
    host, port = _split_authority(authority, scheme, what)
    _cross_check(url, Target(scheme, host, port), what)
    return Target(scheme, host, port)


def _split_authority(authority: str, scheme: str, what: str) -> tuple[str, int]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _refuse(what, "malformed IPv6 address (no closing ']')")
        try:
            host = f"[{ipaddress.IPv6Address(authority[1:end]).compressed}]"
        except ValueError:
            raise _refuse(what, "malformed IPv6 address") from None
        rest = authority[end + 1 :]
    else:
        host, sep, port_text = authority.partition(":")
        rest = sep + port_text
        host = host.lower()
        if not host:
            raise _refuse(what, "it has no host")
        if host.endswith("."):
            raise _refuse(what, "host names with a trailing dot are not allowed")
        if not _NAME.fullmatch(host):
            raise _refuse(what, "the host is not a plain host name or IP address")
        labels = host.split(".")
        if _NUMBER_LABEL.fullmatch(labels[-1]) and not _dotted_quad(labels):
            raise _refuse(what, "integer, octal or hexadecimal IPv4 forms are not allowed (write a.b.c.d)")
    if not rest:
        return host, _DEFAULT_PORTS[scheme]
    port_text = rest[1:] if rest.startswith(":") else ""
    if not (port_text.isascii() and port_text.isdigit()):
        # Not echoed: "host:secret" is a common slip for userinfo.
        raise _refuse(what, "invalid port: not a number (a port is 1-65535)")
    if not 0 < int(port_text) <= 65535:
        raise _refuse(what, f"invalid port {port_text[:12]} (a port is 1-65535)")
    return host, int(port_text)


def _dotted_quad(labels: list[str]) -> bool:
    """Four decimal labels 0-255 without leading zeros (``0177`` is octal to some resolvers)."""
    return len(labels) == 4 and all(
        lbl.isdigit() and int(lbl) <= 255 and (lbl == "0" or not lbl.startswith("0")) for lbl in labels
    )


def _cross_check(url: str, ours: Target, what: str) -> None:
    """Require urlsplit and requests/urllib3 to read ``url`` as ``ours``."""
    try:
        parts = urlsplit(url)
        split = Target(
            parts.scheme.lower(),
            _normal_host(parts.hostname or ""),
            parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0),
        )
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        wire = urllib3.util.parse_url(prepared.url or "")
        client = Target(
            (wire.scheme or "").lower(),
            _normal_host(wire.host or ""),
            wire.port or _DEFAULT_PORTS.get((wire.scheme or "").lower(), 0),
        )
    except (ValueError, requests.RequestException, LocationParseError):
        raise _refuse(what, "the URL cannot be parsed") from None
    if split != ours or client != ours:
        raise _refuse(what, "URL parsers disagree about its host")


def _normal_host(host: str) -> str:
    host = host.lower()
    if host.startswith("[") or ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host.strip('[]')).compressed}]"
        except ValueError:
            return host
    return host


def is_vendor_host(host: str, vendor_domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in vendor_domains)


def _allowed_patterns() -> list[tuple[str, str | None]]:
    """``CRM_SYNC_ALLOWED_HOSTS`` as ``(host pattern, port pattern or None)`` pairs."""
    out: list[tuple[str, str | None]] = []
    for raw in os.environ.get(ALLOWED_HOSTS_ENV, "").split(","):
        pattern = raw.strip().lower()
        if not pattern:
            continue
        if pattern.startswith("["):
            host, _, rest = pattern.partition("]")
            host = _normal_host(host + "]")
            port = rest[1:] if rest.startswith(":") else None
        else:
            host, sep, port_text = pattern.partition(":")
            port = port_text if sep else None
        out.append((host, port))
    return out


def _glob(pattern: str, text: str) -> bool:
    """``*`` matches any run of characters; nothing else is special (IPv6 brackets included)."""
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), text) is not None


def host_allowed(target: Target, vendor_domains: tuple[str, ...]) -> bool:
    """A vendor host over https, or a host (and port) listed in ``CRM_SYNC_ALLOWED_HOSTS``."""
    if is_vendor_host(target.host, vendor_domains):
        return target.scheme == "https"
    return any(
        _glob(host, target.host) and (port is None or _glob(port, str(target.port)))
        for host, port in _allowed_patterns()
    )


def check_url(url: str, vendor_domains: tuple[str, ...], *, what: str) -> str:
    """Return ``url`` without a trailing slash if its host may receive credentials.

    :param url: an override from the integration settings, or an absolute URL a CRM returned.
    :param vendor_domains: domain suffixes owned by the vendor (``hubapi.com``).
    :param what: the setting's name, for the error message.
    :raises ConfigurationError: a malformed or ambiguous URL, not https for a vendor host,
        or a host not allowed.
    """
    target = parse_target(url, what=what)
    if host_allowed(target, vendor_domains):
        return url.rstrip("/")
    if is_vendor_host(target.host, vendor_domains):
        raise ConfigurationError(f"{what} must use https for {target.host}")
    raise ConfigurationError(
        f"{what} host {target.host}:{target.port} is not a {'/'.join(vendor_domains)} host and is not listed in "
        f"{ALLOWED_HOSTS_ENV}; refusing to send credentials there"
    )


# ---------------------------------------------------------------------- the hook session
class _CheckedAdapter(requests.adapters.HTTPAdapter):
    """A transport adapter that runs the URL rule on the final URL of every request it sends."""

    def __init__(self, session: GuardedSession, **kwargs: Any):
        self._guard = session
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        check_url(request.url or "", self._guard.vendor_domains, what=f"{self._guard.crm_type} request")
        return super().send(request, *args, **kwargs)


class GuardedSession(requests.Session):
    """The only session a hook sends with: allowed hosts only, and no redirects followed.

    Every URL a hook builds was already checked, but the check is repeated on the
    prepared request at send time so no code path (a new endpoint, a helper calling
    ``get_conn().post`` directly) can skip it. ``requests`` follows 30x by default and
    re-sends bodies (client secrets, refresh tokens) and custom headers (``ST-App-Key``,
    ``Ocp-Apim-Subscription-Key``) to the new URL; a redirect is instead a
    :class:`ConfigurationError` for the integration. No vendor API the hooks use
    answers with a redirect on success.
    """

    def __init__(self, crm_type: str, vendor_domains: tuple[str, ...], **adapter_kwargs: Any):
        super().__init__()
        self.crm_type = crm_type
        self.vendor_domains = tuple(vendor_domains)
        self.max_redirects = 0
        adapter = _CheckedAdapter(self, **adapter_kwargs)
        # "" catches every other scheme, so it reaches the rule (and is refused) instead of another adapter.
        for prefix in ("https://", "http://", ""):
            self.mount(prefix, adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        response = super().send(request, **kwargs)
        location = self.get_redirect_target(response)
        if location is not None:
            status = response.status_code
            response.close()
            raise ConfigurationError(
                f"{self.crm_type} answered HTTP {status} with a redirect to {_where(response.url, location)}; "
                "redirects are not followed (credentials are never re-sent to another address): set the "
                "integration's URL to the address the CRM answers on directly"
            )
        return response

    def resolve_redirects(self, resp: requests.Response, req: requests.PreparedRequest, **kwargs: Any):
        """Never builds a follow-up request (``requests`` asks even when not following)."""
        return iter(())


def _where(base: str | None, location: str) -> str:
    """``host:port`` a redirect points to, for the message: never its path or query (tokens live there)."""
    try:
        parts = urlsplit(urljoin(base or "", location))
        where = f"{parts.hostname}:{parts.port or _DEFAULT_PORTS.get(parts.scheme, '')}".rstrip(":")
    except ValueError:
        return "an unparseable address"
    return where if re.fullmatch(r"[A-Za-z0-9._:\[\]-]{1,120}", where) and parts.hostname else "another address"
