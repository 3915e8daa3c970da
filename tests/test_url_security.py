"""Credentials never leave for a host the deployment did not allow (issue #10, sections 1, 2 and 7).

Each hostile URL form is checked twice: by the validator alone, and through every hook's real
request path against a local TCP listener on 127.0.0.2 that must accept no connection. The
allow-list in these tests is ``127.0.0.1:<port>`` only, so 127.0.0.2 is foreign however the URL
spells it. Redirects are tested with a real HTTP server on the allowed host answering 307.
"""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from crm_hooks.base import CrmHook
from crm_hooks.errors import ConfigurationError
from crm_hooks.hosts import check_url
from crm_hooks.registry import HOOKS

SECRET = "s3cr3t-url-security-value"
REFRESH = "refresh-url-security-value"


# ---------------------------------------------------------------------- a listener that must hear nothing
@dataclass
class Listener:
    """Counts TCP connections (and keeps what they sent) on a foreign loopback address."""

    host: str
    port: int = 0
    connections: int = 0
    received: list[bytes] = field(default_factory=list)


class _CountingHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        listener: Listener = self.server.listener  # type: ignore[attr-defined]
        listener.connections += 1
        self.request.settimeout(2)
        try:
            listener.received.append(self.request.recv(65536))
        except OSError:
            pass
        # Answer like a CRM, so a hook that did connect finishes quickly (and the test sees the leak).
        body = b'{"access_token": "t", "expires_in": 3600}'
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(server: socketserver.BaseServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    found = Listener("127.0.0.2")
    server = _Server((found.host, 0), _CountingHandler)
    server.listener = found  # type: ignore[attr-defined]
    found.port = server.server_address[1]
    for _ in _serve(server):
        yield found


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def allowed_port() -> int:
    """The one allowed ``127.0.0.1`` port (nothing listens there in the hostile-form tests)."""
    return _unused_port()


@pytest.fixture
def allow_only(monkeypatch, allowed_port):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", f"127.0.0.1:{allowed_port}")
    monkeypatch.setenv("CRM_SYNC_MAX_ATTEMPTS", "1")  # the original code would retry each leak 5 times
    return allowed_port


# ---------------------------------------------------------------------- the hostile forms
#: ``{L}`` = the listener (127.0.0.2:port), ``{lp}`` its port, ``{A}`` = the allowed 127.0.0.1:port,
#: ``{ap}`` its port, ``{V}`` = a host of the hook's vendor.
HOSTILE: list[tuple[str, str]] = [
    # the two vectors of the issue
    ("issue-backslash-vendor", "https://attacker.example\\@api.hubapi.com"),
    ("issue-backslash-allowed", "http://{L}\\@{A}/hubspot"),
    # backslashes
    ("backslash-vendor", "https://{L}\\@{V}"),
    ("backslash-path", "http://{L}\\{A}/"),
    ("backslash-scheme", "http:\\\\{L}\\"),
    # userinfo
    ("userinfo-allowed-looking", "http://{A}@{L}/"),
    ("userinfo-to-allowed", "http://user:pass@{A}/"),
    ("userinfo-vendor", "https://{V}@{L}/"),
    # '@' in path, query, fragment (a naive parser takes the part after '@')
    ("at-in-path", "http://{L}/@{A}"),
    ("at-in-query", "http://{L}?@{A}"),
    ("at-in-fragment", "http://{L}#@{A}"),
    # encoded dots, colons and slashes
    ("encoded-dots", "http://127%2E0%2E0%2E2:{lp}/"),
    ("encoded-colon-slash", "http://127.0.0.2%3A{lp}%2F@{A}/"),
    ("encoded-slash-userinfo", "http://{A}%2F@{L}/"),
    ("encoded-port", "http://{L}%2F%2E%2E/"),
    # IDNA look-alikes and non-ASCII hosts
    ("idna-cyrillic-a", "https://\u0430pi.hubapi.com/"),
    ("idna-ideographic-dot", "https://{V}\u3002evil.example/"),
    ("idna-fullwidth", "https://\uff41\uff50\uff49.hubapi.com/"),
    ("idna-fullwidth-digits", "http://\uff11\uff12\uff17.\uff10.\uff10.\uff12:{lp}/"),
    # whitespace and control characters inside the URL
    ("tab-in-authority", "http://{A}\t@{L}/"),
    ("newline-in-authority", "http://{A}\n.{L}/"),
    ("crlf-header-injection", "http://{L}/\r\nHost: 127.0.0.1"),
    ("space-in-path", "http://{L}/ x"),
    ("nul-byte", "http://{L}\x00.{A}/"),
    # IPv6 literals and zone ids
    ("ipv6-mapped", "http://[::ffff:127.0.0.2]:{lp}/"),
    ("ipv6-mapped-hex", "http://[::ffff:7f00:2]:{lp}/"),
    ("ipv6-loopback", "http://[::1]:{lp}/"),
    ("ipv6-zone-id", "http://[fe80::1%25lo]:{lp}/"),
    ("ipv6-mapped-zone-id", "http://[::ffff:127.0.0.2%25lo]:{lp}/"),
    ("ipv6-unclosed", "http://[::1"),
    ("ipv6-holding-ipv4", "http://[127.0.0.2]:{lp}/"),
    # integer, octal, hex IPv4 forms
    ("decimal-ip", "http://2130706434:{lp}/"),
    ("hex-ip", "http://0x7f000002:{lp}/"),
    ("octal-ip", "http://0177.0.0.2:{lp}/"),
    ("hex-dotted-ip", "http://0x7f.0.0.2:{lp}/"),
    ("short-ip", "http://127.2:{lp}/"),
    ("three-part-ip", "http://127.0.2:{lp}/"),
    ("octal-integer-ip", "http://017700000002:{lp}/"),
    # trailing dots
    ("trailing-dot-ip", "http://127.0.0.2.:{lp}/"),
    ("trailing-dot-allowed", "http://127.0.0.1.:{ap}/"),
    ("trailing-dot-vendor", "https://{V}./"),
    # scheme tricks
    ("http-colon-host", "http:evil"),
    ("http-colon-listener", "http:{L}/"),
    ("scheme-relative", "//{L}/"),
    ("one-slash", "http:/{L}/"),
    ("ftp", "ftp://{A}/"),
    ("file", "file:///etc/passwd"),
    ("http-to-vendor", "http://{V}/"),
    # ports and empty hosts
    ("port-too-big", "http://127.0.0.1:99999"),
    ("port-zero", "http://127.0.0.1:0/"),
    ("port-negative", "http://127.0.0.1:-1/"),
    ("port-plus", "http://127.0.0.1:+{ap}/"),
    ("two-ports-allowed-first", "http://{A}:{lp}/"),
    ("two-ports-listener-first", "http://{L}:{ap}/"),
    ("empty-host", "http:///x"),
    ("empty-host-with-port", "http://:{lp}/"),
]


def form(template: str, listener: Listener, allowed_port: int, vendor: str) -> str:
    return template.format(
        L=f"{listener.host}:{listener.port}", lp=listener.port, A=f"127.0.0.1:{allowed_port}", ap=allowed_port, V=vendor
    )


def vendor_host(hook_cls: type[CrmHook]) -> str:
    return f"api.{hook_cls.vendor_domains[0]}"


def test_there_are_at_least_thirty_hostile_forms():
    assert len({t for _, t in HOSTILE}) >= 30


@pytest.mark.parametrize("template", [t for _, t in HOSTILE], ids=[i for i, _ in HOSTILE])
@pytest.mark.parametrize("crm", sorted(HOOKS))
def test_validator_refuses(template, crm, listener, allow_only):
    hook_cls = HOOKS[crm]
    url = form(template, listener, allow_only, vendor_host(hook_cls))
    with pytest.raises(ConfigurationError) as info:
        check_url(url, hook_cls.vendor_domains, what=f"{crm} baseUrl")
    message = str(info.value)
    assert message.startswith(f"{crm} baseUrl") and url not in message


def test_validator_accepts_the_plain_forms(allow_only):
    allowed = f"http://127.0.0.1:{allow_only}"
    assert check_url(f"{allowed}/hubspot/", ("hubapi.com",), what="x") == f"{allowed}/hubspot"
    assert check_url("https://API.HubApi.com/x?email=a@b.example", ("hubapi.com",), what="x")
    assert check_url("https://eu1.api.hubapi.com:443", ("hubapi.com",), what="x")


def test_refusals_never_echo_the_url(allow_only):
    with pytest.raises(ConfigurationError) as info:
        check_url(f"http://user:{SECRET}@127.0.0.1:{allow_only}/", ("hubapi.com",), what="hubspot baseUrl")
    assert SECRET not in str(info.value) and "hubspot baseUrl" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        check_url(f"http://127.0.0.1:99999/?token={SECRET}", ("hubapi.com",), what="hubspot baseUrl")
    assert SECRET not in str(info.value) and "port" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        check_url(f"http://127.0.0.1:{SECRET}/", ("hubapi.com",), what="hubspot baseUrl")
    assert SECRET[:4] not in str(info.value) and "invalid port" in str(info.value)


# ---------------------------------------------------------------------- every hook, every URL setting
#: crm -> (credentials without the hostile URL, the URL settings it reads)
HOOK_SETUPS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "hubspot": ({"clientId": "cid", "clientSecret": SECRET, "refreshToken": REFRESH}, ("baseUrl",)),
    "salesforce": (
        {"clientId": "cid", "clientSecret": SECRET, "username": "u@example.com", "password": SECRET},
        ("authUrl", "instanceUrl"),
    ),
    "servicetitan": (
        {"clientId": "cid", "clientSecret": SECRET, "tenantId": "1234567", "appKey": SECRET},
        ("baseUrl", "authUrl"),
    ),
    "housecallpro": ({"apiKey": SECRET}, ("baseUrl",)),
    "jobber": ({"clientId": "cid", "clientSecret": SECRET, "refreshToken": REFRESH}, ("baseUrl", "authUrl")),
    "fieldedge": ({"clientId": "cid", "clientSecret": SECRET, "targetId": "t-1"}, ("baseUrl", "authUrl")),
}
CASES = [(crm, key) for crm, (_, keys) in HOOK_SETUPS.items() for key in keys] + [("salesforce", "myDomainUrl")]


def build(crm: str, key: str, url: str) -> CrmHook:
    creds, _ = HOOK_SETUPS[crm]
    creds = dict(creds)
    if key == "myDomainUrl":  # Salesforce's client credentials flow
        creds.pop("username"), creds.pop("password")
    creds[key] = url
    return HOOKS[crm](credentials=creds, account_key=f"{crm}-{key}-{id(url)}", credentials_writer=lambda _: None)


def test_every_crm_and_url_setting_is_covered():
    assert set(HOOK_SETUPS) == set(HOOKS)


@pytest.mark.parametrize("template", [t for _, t in HOSTILE], ids=[i for i, _ in HOSTILE])
@pytest.mark.parametrize(("crm", "key"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_hook_sends_nothing_to_a_hostile_url(crm, key, template, listener, allow_only):
    url = form(template, listener, allow_only, vendor_host(HOOKS[crm]))
    before = listener.connections
    hook = build(crm, key, url)
    with pytest.raises(ConfigurationError) as info:
        hook.check_access()
    assert listener.connections == before, listener.received[-1:]
    assert SECRET not in str(info.value) and REFRESH not in str(info.value)
    ok, message = hook.test_connection()
    assert not ok and listener.connections == before and SECRET not in message


@pytest.mark.parametrize("crm", sorted(HOOKS))
def test_session_refuses_a_foreign_host_even_without_the_validator(crm, listener, allow_only):
    """Defence in depth: the session's transport adapter checks every prepared request."""
    hook = HOOKS[crm](credentials=HOOK_SETUPS[crm][0])
    session = hook.get_conn()
    before = listener.connections
    for send in (
        lambda: session.get(f"http://{listener.host}:{listener.port}/"),
        lambda: session.post(
            f"http://{listener.host}:{listener.port}\\@127.0.0.1:{allow_only}/", data={"client_secret": SECRET}
        ),
        lambda: session.request("GET", f"http://2130706434:{listener.port}/"),
        lambda: session.get(f"ftp://127.0.0.1:{allow_only}/"),
    ):
        with pytest.raises(ConfigurationError, match=f"{crm} request"):
            send()
    assert listener.connections == before


def test_no_product_code_sends_http_outside_the_guarded_session():
    """Every send goes through ``CrmHook.get_conn`` (a :class:`GuardedSession`): no module-level
    ``requests.post``, no bare ``requests.Session()``, no other HTTP client in the hooks, the sync or the DAGs."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    senders = {"get", "post", "put", "patch", "delete", "head", "options", "request", "Session", "session"}
    found = []
    for path in [*(root / "plugins").rglob("*.py"), *(root / "dags").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if (
                    (name == "requests" and node.func.attr in senders)
                    or name in ("httpx", "urllib3")
                    or node.func.attr in ("urlopen", "HTTPConnection", "HTTPSConnection", "PoolManager")
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if (
                    any(
                        m.split(".")[0] in ("httpx", "aiohttp", "urllib3") or m in ("http.client", "urllib.request")
                        for m in mods
                    )
                    and path.name != "hosts.py"
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno} (import)")
    assert found == []


# ---------------------------------------------------------------------- redirects
class _Redirector(http.server.BaseHTTPRequestHandler):
    """An allowed host that answers 307 to a foreign listener (token requests too, when told)."""

    def _answer(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server.paths.append(self.path)  # type: ignore[attr-defined]
        if "token" in self.path and not server.redirect_token:  # type: ignore[attr-defined]
            body = json.dumps(
                {"access_token": "tok-redirect-test", "expires_in": 3600, "instance_url": server.base}
            ).encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(307)
        self.send_header("Location", f"{server.target}/steal?token=abc")  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def redirector(listener, monkeypatch) -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    server.daemon_threads = True
    server.base = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    server.target = f"http://{listener.host}:{listener.port}"  # type: ignore[attr-defined]
    server.paths = []  # type: ignore[attr-defined]
    server.redirect_token = True  # type: ignore[attr-defined]
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", f"127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("CRM_SYNC_MAX_ATTEMPTS", "1")
    for _ in _serve(server):
        yield server


def redirect_hook(crm: str, base: str) -> CrmHook:
    creds = dict(HOOK_SETUPS[crm][0])
    if crm == "salesforce":
        creds["authUrl"] = base
    else:
        creds["baseUrl"] = base
        if "authUrl" in HOOK_SETUPS[crm][1]:
            creds["authUrl"] = base
    return HOOKS[crm](credentials=creds, account_key=f"{crm}-redirect-{id(creds)}", credentials_writer=lambda _: None)


@pytest.mark.parametrize("redirect_token", [True, False], ids=["token-request", "api-request"])
@pytest.mark.parametrize("crm", sorted(HOOKS))
def test_a_redirect_is_refused_and_carries_nothing(crm, redirect_token, redirector, listener):
    if redirect_token and crm == "housecallpro":
        pytest.skip("Housecall Pro has no token request (a static API key)")
    redirector.redirect_token = redirect_token
    before = listener.connections
    with pytest.raises(ConfigurationError) as info:
        redirect_hook(crm, redirector.base).check_access()
    message = str(info.value)
    assert listener.connections == before, listener.received[-1:]
    assert "redirect" in message and "not followed" in message and f"127.0.0.2:{listener.port}" in message
    assert "steal" not in message and "token=abc" not in message and SECRET not in message
    asked = redirector.paths
    assert asked and (("token" in asked[-1]) if redirect_token else ("token" not in asked[-1])), asked


# ---------------------------------------------------------------------- a malformed override in a real run
@pytest.mark.parametrize(
    ("crm", "key", "url", "problem"),
    [
        ("hubspot", "baseUrl", "http://127.0.0.1:99999", "invalid port"),
        ("hubspot", "baseUrl", "http://[::1", "malformed IPv6"),
        ("fieldedge", "authUrl", "http://127.0.0.1:99999/fieldedge", "invalid port"),
        ("salesforce", "myDomainUrl", "http://[::1", "malformed IPv6"),
    ],
)
def test_a_malformed_override_is_a_config_error_of_the_run(db, crm, key, url, problem):
    """Issue #10 section 7: no ValueError out of the engine; the run row and the app's history say why."""
    import sqlalchemy as sa

    from crm_hooks.registry import display_name
    from crm_sync.integration_sync import IntegrationSync
    from e2e_helpers import company_json
    from localdev.demo_data import check_in_rows, create_company, insert_check_ins

    creds = dict(HOOK_SETUPS[crm][0])
    if key == "myDomainUrl":
        creds.pop("username"), creds.pop("password")
    creds[key] = url
    integration = {
        "name": display_name(crm),
        "status": "active",
        "credentials": creds,
        "syncSettings": {"customerMatchStrategy": "all"},
    }
    company_id, tech = create_company(db, "Malformed URL Co", {crm: integration})
    insert_check_ins(db, check_in_rows(company_id, tech, 2, messy=False))

    result = IntegrationSync(
        db, company_id=company_id, crm_type=crm, integration=integration, run_id="malformed-url"
    ).run()

    assert result.status == "config_error" and problem in (result.error or ""), result.error
    assert f"{crm} {key}" in result.error and url not in result.error
    with db.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT status, error FROM crm_sync.runs WHERE run_id = 'malformed-url' "
                "AND company_id = :c AND crm_type = :t"
            ),
            {"c": company_id, "t": crm},
        ).one()
    assert row.status == "config_error" and problem in row.error
    _, history = company_json(db, company_id)
    assert history and history[0]["crmType"] == crm and history[0]["status"] == "failed"
