"""Jobber hook: one GraphQL endpoint, OAuth2 with rotating refresh tokens, a query-cost budget.

Vendor facts this module relies on (each method's docstring names the operation it sends):

* **GraphQL only**: every call is ``POST https://api.getjobber.com/api/graphql`` with a JSON
  body, ``Authorization: Bearer <access token>`` and ``X-JOBBER-GRAPHQL-VERSION: YYYY-MM-DD``
  (required for all apps; an unsupported version is answered with a warning in
  ``extensions.versioning``, a removed one is upgraded to the oldest supported one)
  (https://developer.getjobber.com/docs/using_jobbers_api/api_queries_and_mutations,
  https://developer.getjobber.com/docs/using_jobbers_api/api_versioning; copies in
  ``aswath-veersoft/workspace-addons@0588794:getjobber-developer-docs/``).
* **OAuth 2.0 only** (authorization code; there are no API keys): ``POST
  /api/oauth/token`` form ``client_id, client_secret, grant_type=refresh_token,
  refresh_token`` returns ``access_token`` (a JWT whose ``exp`` claim is its expiry,
  60 minutes by default) and ``refresh_token``. With refresh token rotation (on by
  default, required for Marketplace apps) every refresh returns a new refresh token and,
  for apps created after 2024-01-02, the previous one is invalid at once ("The provided
  refresh token is not valid") (https://developer.getjobber.com/docs/building_your_app/app_authorization,
  https://developer.getjobber.com/docs/building_your_app/refresh_token_rotation; Jobber's
  template reads the expiry from the JWT: ``GetJobber/Jobber-AppTemplate-RailsAPI@0456ed1:
  app/services/jobber_service.rb``). An invalid or expired token is HTTP 401.
* **Limits** per app and account: 2,500 requests per 300 s (HTTP 429), and a leaky-bucket
  query-cost budget reported on every response as ``extensions.cost {requestedQueryCost,
  actualQueryCost, throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}}``
  (10,000 points, 500 restored per second in the documented example); a request costing
  more than ``currentlyAvailable`` is answered HTTP 200 with ``errors[].extensions.code =
  "THROTTLED"``. Cost: 1 per field, ``edges``/``nodes``/``node`` free, a connection's nodes
  times ``first`` (100 when omitted) (https://developer.getjobber.com/docs/using_jobbers_api/api_rate_limits).
* **No idempotency key** on any mutation (no such argument in the schema): a mutation document is sent at
  most once unless Jobber refused it unexecuted (HTTP 429, ``THROTTLED``, 401 + refresh);
  after a timeout or a 5xx the caller gets a :class:`RetryableError` and looks the records up.
* **Errors**: GraphQL ``errors[]`` with HTTP 200; mutations report validation problems in
  ``userErrors [{message, path}]`` (schema of version 2022-03-10 as Jobber's app template introspected it,
  https://github.com/GetJobber/Jobber-AppTemplate-RailsAPI/blob/0456ed1/db/schema.json; changelog
  https://developer.getjobber.com/docs/changelog).
* **Operations** (names re-checked against the changelog and a 2026 introspection note,
  ``jobCreate(input: JobCreateAttributes!)`` with ``propertyId`` and ``invoicing``
  required): ``account``, ``client``, ``clients(searchTerm)``, ``jobs(searchTerm, filter)``,
  ``clientCreate``, ``clientEdit``, ``propertyCreate``, ``jobCreate``, ``jobEdit``, ``jobClose``.

**UNCONFIRMED** (not in a primary source; everything that depends on it is here):

* :data:`DEFAULT_API_VERSION` is still an active version (the newest one the stored changelog
  names); ``crmSettings.apiVersion`` pins another.
* Several aliased mutations in one document are accepted and their costs summed
  (GraphQL allows it; Jobber's docs neither show nor forbid it). :meth:`JobberHook.chunks`
  keeps every document under :data:`MAX_REQUEST_COST` and ``crmSettings.aliasesPerRequest``.
* ``clients(searchTerm)`` matches email addresses, phone numbers (by digits) and names, and
  ``jobs(searchTerm)`` matches words of a job title; callers verify every hit exactly.
* The bodies of token-endpoint errors (OAuth ``{error, error_description}``) and of the 401
  and 429 answers; whether the 429 carries ``Retry-After`` (honoured when present).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, ClassVar

import requests
import tenacity

from crm_hooks.base import MAX_RETRY_AFTER_SECONDS, CrmHook, json_body
from crm_hooks.errors import (
    BadCredentialsError,
    ConfigurationError,
    CrmError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.rate_limit import RateLimit

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.getjobber.com/api"
GRAPHQL_PATH = "/graphql"
TOKEN_PATH = "/oauth/token"
VERSION_HEADER = "X-JOBBER-GRAPHQL-VERSION"
#: UNCONFIRMED as still active (see the module docstring); ``crmSettings.apiVersion`` overrides it.
DEFAULT_API_VERSION = "2025-04-16"
#: Documented default access-token lifetime, used when neither the JWT nor the body says.
DEFAULT_TOKEN_SECONDS = 3600.0
#: Query-cost budget from the rate-limit page's example, until a response reports the real one.
DEFAULT_COST_MAXIMUM = 10_000.0
DEFAULT_RESTORE_RATE = 500.0
#: Highest requested cost of one document: a quarter of the bucket, so one request never
#: waits long for points and other apps on the account keep some.
MAX_REQUEST_COST = 2_500
DEFAULT_ALIASES_PER_REQUEST = 25
#: Longest wait for query-cost points inside one call (a full bucket refills in 20 s).
MAX_COST_WAIT_SECONDS = 30.0
RECONNECT = "reconnect Jobber in Rank It Pro"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AUTH_CODES = {"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN", "ACCESS_DENIED"}


# ---------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Field:
    """One field of a GraphQL selection, rendered and costed the way Jobber counts it.

    ``args`` holds GraphQL text per argument (``"$v0"``, ``"5"``); a ``first`` argument makes
    the field a connection whose ``nodes`` cost is multiplied by it.
    """

    name: str
    children: tuple[Field, ...] = ()
    args: tuple[tuple[str, str], ...] = ()
    alias: str | None = None

    def render(self) -> str:
        head = f"{self.alias}: {self.name}" if self.alias else self.name
        if self.args:
            head += "(" + ", ".join(f"{k}: {v}" for k, v in self.args) + ")"
        if self.children:
            head += " { " + " ".join(c.render() for c in self.children) + " }"
        return head

    def cost(self) -> int:
        """1 per field; ``nodes``/``edges``/``node`` free; connections: ``first`` x the nodes' cost."""
        inner = sum(c.cost() for c in self.children)
        if self.name in ("nodes", "edges", "node"):
            return inner
        first = dict(self.args).get("first")
        if first is not None and first.isdigit():
            paged = sum(c.cost() for c in self.children if c.name in ("nodes", "edges"))
            return int(first) * paged + (inner - paged)
        return 1 + inner


def f(name: str, *children: Field | str, alias: str | None = None, **args: Any) -> Field:
    """Shorthand: ``f("clients", f("nodes", "id"), first=5, searchTerm="$t0")``."""
    kids = tuple(c if isinstance(c, Field) else Field(c) for c in children)
    return Field(name, kids, tuple((k, str(v)) for k, v in args.items()), alias)


def document(kind: str, name: str, variables: Mapping[str, str], fields: Sequence[Field]) -> str:
    """``kind name($v: Type, ...) { fields }`` (``kind`` is ``query`` or ``mutation``)."""
    declared = ", ".join(f"${k}: {t}" for k, t in variables.items())
    head = f"{kind} {name}" + (f"({declared})" if declared else "")
    return head + " { " + " ".join(fl.render() for fl in fields) + " }"


USER_ERRORS = f("userErrors", "message", "path")
ADDRESS = f("address", "street1", "city", "province", "postalCode")
CLIENT_MATCH_FIELDS = (f("id"), f("firstName"), f("lastName"), f("companyName"), f("emails", "address"),
                       f("phones", "number"))


def client_fields(properties: int) -> tuple[Field, ...]:
    """Client fields the sync reads; with ``properties`` > 0 also its first service properties."""
    if properties <= 0:
        return CLIENT_MATCH_FIELDS
    return (*CLIENT_MATCH_FIELDS, f("clientProperties", f("nodes", "id", ADDRESS), first=properties))


# ---------------------------------------------------------------------------- results


@dataclass
class GraphQLResult:
    """One GraphQL answer: ``data`` (None when nothing could be returned), ``errors``, cost."""

    data: dict[str, Any] | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)

    def errors_for(self, alias: str) -> list[str]:
        """Messages of the errors whose path starts at ``alias``."""
        return [str(e.get("message") or "error") for e in self.errors
                if isinstance(e, Mapping) and (e.get("path") or [None])[0] == alias]


@dataclass
class MutationOutcome:
    """The outcome of one aliased mutation.

    :ivar record: the payload's object (``client``, ``job``, ``properties``) on success.
    :ivar error: why it failed (``userErrors`` or a GraphQL error), redacted.
    :ivar uncertain: the mutation may have been applied (no payload came back for it).
    """

    record: Any = None
    error: str | None = None
    uncertain: bool = False

    @property
    def ok(self) -> bool:
        return self.record is not None and self.error is None and not self.uncertain


class _CostBudget:
    """Mirror of Jobber's leaky bucket for one account, fed by every ``throttleStatus``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.maximum = DEFAULT_COST_MAXIMUM
        self.available: float | None = None
        self.restore = DEFAULT_RESTORE_RATE
        self.at = 0.0

    def observe(self, status: Mapping[str, Any], now: float) -> None:
        try:
            maximum = float(status["maximumAvailable"])
            available = float(status["currentlyAvailable"])
            restore = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        with self.lock:
            self.maximum, self.available, self.at = maximum, available, now
            self.restore = restore if restore > 0 else DEFAULT_RESTORE_RATE

    def wait_for(self, cost: float, now: float, share: float = 1.0) -> float:
        """Seconds until ``cost`` points are available, keeping ``1 - share`` of the bucket for others."""
        with self.lock:
            if self.available is None:
                return 0.0
            current = min(self.maximum, self.available + self.restore * max(0.0, now - self.at))
            reserve = (1.0 - min(max(share, 0.0), 1.0)) * self.maximum
            needed = min(cost + reserve, self.maximum) - current
            return max(0.0, needed / self.restore)

    def spend(self, cost: float, now: float) -> None:
        """Account for a request we are about to send (the next answer corrects the figure)."""
        with self.lock:
            if self.available is not None:
                current = min(self.maximum, self.available + self.restore * max(0.0, now - self.at))
                self.available, self.at = max(0.0, current - cost), now


_BUDGETS: dict[str, _CostBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def cost_budget(account_key: str) -> _CostBudget:
    """The process-wide query-cost budget of one Jobber account (shared by its hook instances)."""
    with _BUDGETS_LOCK:
        return _BUDGETS.setdefault(account_key, _CostBudget())


def jwt_expiry(token: str | None) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it; None if not a JWT."""
    parts = str(token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (ValueError, KeyError, TypeError):
        return None


def _parse_expires_at(value: Any) -> float | None:
    """``"2024-04-09 21:04:31 UTC"`` (Jobber's token response) -> epoch seconds."""
    if not isinstance(value, str):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S UTC", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


# ---------------------------------------------------------------------------- the hook


class JobberHook(CrmHook):
    """Jobber (GraphQL, OAuth 2.0 with rotating refresh tokens).

    Credentials (the app's keys): ``refreshToken`` + ``clientId`` + ``clientSecret``
    (OAuth; ``accessToken`` is used while its JWT is valid), or a bare access token as
    ``apiKey`` (or ``accessToken``) without a refresh token: it works until it expires, then
    every call fails with a "reconnect Jobber" error. Optional ``baseUrl`` (default
    https://api.getjobber.com/api) and ``authUrl`` (token host, default ``baseUrl``), both
    Jobber hosts or allowed by ``CRM_SYNC_ALLOWED_HOSTS``.

    A refresh rotates the refresh token and kills the old one, so the new tokens are handed
    to ``credentials_writer`` (the sync's keeps the live pair in its own encrypted store,
    :mod:`crm_sync.token_store`) *before* they are used, and the refresh runs inside
    :meth:`~crm_hooks.base.CrmHook.credential_rotation` (one refresh per integration at a
    time, starting from the live pair); a hook without a writer refuses to redeem the
    refresh token rather than lock the company out.

    Settings (``crmSettings``): ``apiVersion`` (``YYYY-MM-DD``, default
    :data:`DEFAULT_API_VERSION`), ``aliasesPerRequest`` (mutations or searches per GraphQL
    document, default 25).
    """

    conn_type = "crm_jobber"
    hook_name = "Jobber (Rank It Pro sync)"
    default_conn_name = "crm_jobber_default"
    crm_type = "jobber"
    display_name = "Jobber"
    report_colour = "#7b3fe4"
    vendor_domains = ("getjobber.com",)
    default_base_url = DEFAULT_BASE_URL
    #: Rows per engine batch: one aliased document per step serves the whole batch.
    batch_size = 25
    secret_keys = ("accessToken", "refreshToken", "clientSecret", "apiKey")
    #: The DDoS guard: 2,500 requests per 5 minutes per app and account.
    rate_limits: ClassVar[dict[str, RateLimit]] = {"default": RateLimit(2500, 300.0)}

    def __init__(self, conn_id: str | None = None, **kwargs: Any):
        super().__init__(conn_id, **kwargs)
        self._rejected: set[str] = set()
        self._version_warned = False

    # ------------------------------------------------------------------ config
    @classmethod
    def credentials_from_connection(cls, conn: Any) -> dict[str, Any]:
        """Connection -> app keys: login -> ``clientId``, password -> ``clientSecret``; extra
        ``refreshToken``, ``accessToken``, ``apiKey``, ``baseUrl``, ``authUrl`` (plain or
        ``extra__crm_jobber__`` prefixed)."""
        extra = conn.extra_dejson or {}
        creds: dict[str, Any] = {"clientId": conn.login, "clientSecret": conn.password}
        for key in ("refreshToken", "accessToken", "apiKey", "baseUrl", "authUrl"):
            creds[key] = extra.get(key) or extra.get(f"extra__{cls.conn_type}__{key}")
        return {k: v for k, v in creds.items() if v not in (None, "")}

    @property
    def api_version(self) -> str:
        """``crmSettings.apiVersion`` or :data:`DEFAULT_API_VERSION` (sent as ``X-JOBBER-GRAPHQL-VERSION``)."""
        version = str(self.settings.get("apiVersion") or DEFAULT_API_VERSION).strip()
        if not _VERSION.match(version):
            raise ConfigurationError(f"jobber: crmSettings.apiVersion {version[:20]!r} is not a date like "
                                     f"{DEFAULT_API_VERSION}")
        return version

    @property
    def aliases_per_request(self) -> int:
        try:
            value = int(self.settings.get("aliasesPerRequest") or DEFAULT_ALIASES_PER_REQUEST)
        except (TypeError, ValueError):
            value = DEFAULT_ALIASES_PER_REQUEST
        return max(1, min(value, 100))

    @property
    def token_url(self) -> str:
        return f"{self.override_url('authUrl', self.base_url)}{TOKEN_PATH}"

    @property
    def uses_oauth(self) -> bool:
        return self.cred("refreshToken") is not None

    def account_id(self) -> str:
        """A non-secret fingerprint (sha256, 12 hex) of the client id and the first token seen.

        Jobber's limits are per app *and* account; the refresh token identifies the
        installation but rotates, so the key is computed once per hook (see :attr:`account_key`).
        """
        basis = "|".join(str(self.cred(k) or "") for k in ("clientId", "refreshToken", "apiKey", "accessToken"))
        return hashlib.sha256(basis.encode()).hexdigest()[:12]

    @property
    def account_key(self) -> str:
        """Computed once: rotating tokens must not move the account to another limiter mid-run."""
        if self._account_key is None:
            self._account_key = f"{self.crm_type}:{self.base_url}:{self.account_id()}"
        return self._account_key

    # ------------------------------------------------------------------ auth
    def _check_auth_config(self) -> None:
        if self.uses_oauth:
            missing = [k for k in ("clientId", "clientSecret") if self.cred(k) is None]
            if missing:
                raise ConfigurationError(f"jobber: credentials are missing {', '.join(missing)} (needed with "
                                         "refreshToken to renew Jobber's 60-minute access tokens)")
        elif self.cred("apiKey") is None and self.cred("accessToken") is None:
            raise ConfigurationError("jobber: credentials are missing refreshToken, clientId and clientSecret "
                                     f"(Jobber only offers OAuth; {RECONNECT})")

    def invalidate_token(self) -> None:
        """After a 401: remember that this token is refused, so a stored one is not tried again."""
        with self._token_lock:
            if self._token:
                self._rejected.add(self._token)
            self._token = None

    def _usable(self, token: str | None, margin: float) -> float | None:
        """Seconds ``token`` stays valid (None: unknown expiry), or 0 when refused or expired."""
        if not token or token in self._rejected:
            return 0.0
        expiry = jwt_expiry(token)
        if expiry is None:
            return None
        left = expiry - time.time()
        return left if left > margin else 0.0

    def fetch_token(self) -> tuple[str, float]:
        """A usable access token: the stored one while its JWT is valid, else a refresh.

        Refresh: ``POST {authUrl}/oauth/token`` (form ``client_id, client_secret,
        grant_type=refresh_token, refresh_token``). The rotated refresh token and the new
        access token are written back through ``credentials_writer`` before they are used.
        A bare token (``apiKey``) is used until it expires or is refused, then a
        :class:`BadCredentialsError` asks the company to reconnect.
        https://developer.getjobber.com/docs/building_your_app/app_authorization#refresh-token-flow
        """
        self._check_auth_config()
        if not self.uses_oauth:
            return self._bare_token()
        stored = self.cred("accessToken")
        left = self._usable(stored, margin=120.0)
        if left:
            return str(stored), left
        return self._refresh()

    def _bare_token(self) -> tuple[str, float]:
        token = str(self.cred("apiKey") or self.cred("accessToken"))
        left = self._usable(token, margin=5.0)
        if left == 0.0:
            raise BadCredentialsError(
                "jobber: the stored access token (apiKey) has expired or was refused, and Jobber has no "
                f"long-lived API keys: {RECONNECT} (OAuth) so the integration gets refreshToken, clientId "
                "and clientSecret")
        return token, left if left is not None else DEFAULT_TOKEN_SECONDS

    def _refresh(self) -> tuple[str, float]:
        if self.credentials_writer is None:
            raise ConfigurationError(
                "jobber: the access token must be refreshed, but this hook has no credentials writer; Jobber "
                "rotates refresh tokens (the old one dies at once), so redeeming it here would lock the company "
                "out. Refresh through the sync (it stores the new tokens) or set a valid accessToken")
        with self.credential_rotation():
            # The live pair: another task may have refreshed while this one waited; its token serves.
            stored = self.cred("accessToken")
            left = self._usable(stored, margin=120.0)
            if left:
                return str(stored), left
            return self._redeem_refresh_token()

    def _redeem_refresh_token(self) -> tuple[str, float]:
        """``POST {authUrl}/oauth/token`` with the refresh token; the rotated pair is stored before it is used."""
        client_id, client_secret, refresh_token = self.require("clientId", "clientSecret", "refreshToken")
        body = self.request_json(
            "POST", self.token_url, authenticated=False, endpoint=f"POST {TOKEN_PATH}",
            data={"client_id": client_id, "client_secret": client_secret, "grant_type": "refresh_token",
                  "refresh_token": refresh_token},
        )
        body = body if isinstance(body, Mapping) else {}
        access = body.get("access_token")
        if not access:
            raise BadCredentialsError(f"jobber: the token response has no access_token; {RECONNECT}")
        rotated = body.get("refresh_token") or refresh_token
        self.add_runtime_secret(str(access))
        self.add_runtime_secret(str(rotated))
        if body.get("warning"):
            log.warning("jobber token endpoint: %s", self.redact(str(body["warning"]), limit=300))
        self._store_tokens({"accessToken": str(access), "refreshToken": str(rotated)})
        expiry = jwt_expiry(str(access)) or _parse_expires_at(body.get("expires_at"))
        seconds = expiry - time.time() if expiry else DEFAULT_TOKEN_SECONDS
        return str(access), seconds

    def _store_tokens(self, tokens: dict[str, str]) -> None:
        """Persist rotated tokens (only these keys: the writer merges them), then keep them in memory.

        One retry covers a dropped database connection; if both fail the old refresh token is
        already dead at Jobber, so the integration stops with a message saying so.
        """
        assert self.credentials_writer is not None
        for key in tokens:  # the replaced values stay secrets: error bodies may still echo them
            self.add_runtime_secret(self.cred(key))
        for attempt in (1, 2):
            try:
                self.credentials_writer(dict(tokens))
                self._credentials = {**self.credentials, **tokens}
                return
            except Exception as exc:  # noqa: BLE001 - any database error; its text may hold the tokens
                failure = f"{type(exc).__name__}"
                if attempt == 2:
                    raise BadCredentialsError(
                        f"jobber: the rotated refresh token could not be saved ({failure}); Jobber has already "
                        f"invalidated the previous one, so the next run may need to {RECONNECT}") from None
                log.warning("jobber: saving the rotated tokens failed (%s); retrying once", failure)

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <access token>``."""
        return {"Authorization": f"Bearer {self.access_token()}"}

    # ------------------------------------------------------------------ errors
    def classify_error(self, response: requests.Response) -> CrmError:
        """Map a failed HTTP answer to a typed error (GraphQL errors with HTTP 200 are read elsewhere).

        Token endpoint 4xx -> :class:`BadCredentialsError` ("reconnect Jobber"); 401 ->
        :class:`BadCredentialsError` (the base refreshes once first); 403 ->
        :class:`BadCredentialsError` (a scope the app lacks); 429 -> :class:`RateLimitedError`
        (``Retry-After`` if sent); 400 on the GraphQL endpoint -> :class:`ConfigurationError`
        (the request itself is malformed: version header, JSON); 5xx -> :class:`RetryableError`.
        """
        status = response.status_code
        detail = self.redact(_error_text(json_body(response)) or (response.reason or "").strip() or f"HTTP {status}")
        if _is_token_request(response) and 400 <= status < 500 and status != 429:
            return BadCredentialsError(f"jobber: refreshing the access token failed ({detail}); {RECONNECT}",
                                       status=status)
        if status == 401:
            return BadCredentialsError(f"jobber HTTP 401: {detail}", status=status)
        if status == 403:
            return BadCredentialsError(f"jobber HTTP 403: {detail} (the app may lack a scope; {RECONNECT})",
                                       status=status)
        if status == 400:
            return ConfigurationError(f"jobber HTTP 400: {detail} (API version {self.api_version})", status=status)
        return self.default_error(response, detail)

    def observe_response(self, response: requests.Response) -> None:
        """Read ``extensions.cost.throttleStatus`` and the version warning of every GraphQL answer.

        A ``THROTTLED`` answer (HTTP 200, nothing executed) is raised as a
        :class:`RateLimitedError` from here, inside the base's retry loop, with the wait the
        bucket needs: ``(requestedQueryCost - currentlyAvailable) / restoreRate``.
        """
        if not response.url.split("?")[0].endswith(GRAPHQL_PATH):
            return
        body = json_body(response)
        if not isinstance(body, Mapping):
            return
        extensions = body.get("extensions") if isinstance(body.get("extensions"), Mapping) else {}
        cost = extensions.get("cost") if isinstance(extensions.get("cost"), Mapping) else {}
        status = cost.get("throttleStatus")
        if isinstance(status, Mapping):
            budget = cost_budget(self.account_key)
            budget.observe(status, time.monotonic())
            self.stats.quota_restore_rate = budget.restore
        if isinstance(cost.get("actualQueryCost"), (int, float)):
            self.stats.quota_points += float(cost["actualQueryCost"])
        versioning = extensions.get("versioning")
        if isinstance(versioning, Mapping) and versioning.get("warning") and not self._version_warned:
            self._version_warned = True
            log.warning("jobber API version: %s", self.redact(str(versioning["warning"]), limit=300))
        errors = body.get("errors") or []
        if any(_code(e) == "THROTTLED" for e in errors if isinstance(e, Mapping)):
            requested, maximum = cost.get("requestedQueryCost"), (status or {}).get("maximumAvailable")
            if isinstance(requested, (int, float)) and isinstance(maximum, (int, float)) and requested > maximum:
                raise ConfigurationError(f"jobber: a document costing {requested} points never fits the account's "
                                         f"maximum of {maximum}; lower crmSettings.aliasesPerRequest")
            self.stats.rate_limited += 1
            raise RateLimitedError("jobber: GraphQL query cost throttled", code="THROTTLED",
                                   retry_after=_throttle_wait(cost))

    # ------------------------------------------------------------------ GraphQL
    def chunks(self, items: Sequence[Any], unit_cost: int) -> Iterator[Sequence[Any]]:
        """``items`` in slices that fit one document: ``aliasesPerRequest``, and a requested cost of at
        most :data:`MAX_REQUEST_COST` or half the account's bucket, whichever is lower."""
        cap = min(MAX_REQUEST_COST, int(cost_budget(self.account_key).maximum // 2))
        size = max(1, min(self.aliases_per_request, cap // max(1, unit_cost)))
        for start in range(0, len(items), size):
            yield items[start:start + size]

    def graphql(self, kind: str, name: str, variables: Mapping[str, tuple[str, Any]],
                fields: Sequence[Field]) -> GraphQLResult:
        """Send one document: ``POST /graphql`` ``{query, variables}``; waits for query-cost points first.

        :param variables: name -> (GraphQL type, value).
        :returns: the answer; whole-request errors are raised typed: authentication
            (:class:`BadCredentialsError`), a document the pinned version rejects
            (:class:`ConfigurationError`), other errors without data (:class:`RetryableError`).
            Errors of single aliases stay in the result.
        """
        doc = document(kind, name, {k: t for k, (t, _) in variables.items()}, fields)
        cost = sum(fl.cost() for fl in fields)
        self._await_points(cost)
        payload = {"query": doc, "variables": {k: v for k, (_, v) in variables.items()}}
        headers = {VERSION_HEADER: self.api_version}
        if kind == "mutation":
            response = self._send_at_most_once(payload, headers, f"POST graphql {name}")
        else:
            response = self.request("POST", GRAPHQL_PATH, json=payload, headers=headers,
                                    endpoint=f"POST graphql {name}")
        body = json_body(response)
        if not isinstance(body, Mapping):
            raise RetryableError(f"jobber: the GraphQL answer to {name} is not JSON")
        result = GraphQLResult(data=body.get("data") if isinstance(body.get("data"), Mapping) else None,
                               errors=[e for e in body.get("errors") or [] if isinstance(e, Mapping)],
                               extensions=body.get("extensions") if isinstance(body.get("extensions"), Mapping)
                               else {})
        self._raise_request_errors(name, kind, result)
        return result

    def _send_at_most_once(self, payload: dict[str, Any], headers: dict[str, str], label: str) -> requests.Response:
        """Send a mutation document again only when Jobber refused it unexecuted.

        Jobber has no idempotency key: after a timeout or a 5xx the mutations may have run,
        so that error is raised (the destination keeps the rows in_flight and looks them up
        next run) instead of being retried. An HTTP 429 from the DDoS guard and a
        ``THROTTLED`` answer run nothing and are waited out; a 401 is answered by one token
        refresh inside :meth:`request`, as for any call.
        """
        self.access_token()  # a refresh now gets the token endpoint's own retries
        attempt = 0
        while True:
            attempt += 1
            allowed, self.max_attempts = self.max_attempts, 1
            try:
                return self.request("POST", GRAPHQL_PATH, json=payload, headers=headers, endpoint=label)
            except RateLimitedError as exc:
                if attempt >= allowed:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else \
                    self._wait(SimpleNamespace(outcome=None, attempt_number=attempt))
                if wait > MAX_RETRY_AFTER_SECONDS:
                    raise
                log.warning("jobber: %s refused unexecuted (%s); sending again in %.1f s", label, exc.code or
                            exc.status, wait)
            finally:
                self.max_attempts = allowed
            self.stats.retries += 1
            self.check_budget(wait)
            tenacity.nap.sleep(wait)

    def _raise_request_errors(self, name: str, kind: str, result: GraphQLResult) -> None:
        if not result.errors:
            return
        text = self.redact("; ".join(str(e.get("message") or "error") for e in result.errors[:3]))
        if any(_code(e) in _AUTH_CODES for e in result.errors) or "disconnected" in text.lower():
            raise BadCredentialsError(f"jobber: {text}; {RECONNECT}")
        field_errors = result.data is not None or any(e.get("path") for e in result.errors)
        if field_errors and kind == "mutation":
            return  # per alias: the caller marks those aliases failed or uncertain
        if field_errors or any("temporarily unavailable" in str(e.get("message") or "").lower()
                               for e in result.errors):
            # A read that failed in part must not pass for "nothing found" (that would create duplicates).
            raise RetryableError(f"jobber {name}: {text}")
        raise ConfigurationError(f"jobber: API version {self.api_version} rejected the {kind} {name}: {text}")

    def _await_points(self, cost: int) -> None:
        budget = cost_budget(self.account_key)
        now = time.monotonic()
        if cost > budget.maximum:
            raise ConfigurationError(f"jobber: a document costing {cost} points exceeds the account's maximum "
                                     f"of {budget.maximum:.0f}; lower crmSettings.aliasesPerRequest")
        wait = min(budget.wait_for(cost, now, self.rate_share), MAX_COST_WAIT_SECONDS)
        if wait > 0:
            self.check_budget(wait)
            self.stats.waited_seconds += wait
            _sleep(wait)
        budget.spend(cost, time.monotonic())

    def _aliased(self, kind: str, name: str, items: Sequence[Any], arg_types: Mapping[str, str],
                 build: Any) -> tuple[GraphQLResult, list[str]]:
        """One document with one aliased field per item: ``build(i, item)`` -> (field, {arg: value})."""
        variables: dict[str, tuple[str, Any]] = {}
        fields: list[Field] = []
        aliases: list[str] = []
        for i, item in enumerate(items):
            fld, values = build(i, item)
            for arg, value in values.items():
                variables[f"{arg}{i}"] = (arg_types[arg], value)
            fields.append(fld)
            aliases.append(fld.alias or fld.name)
        return self.graphql(kind, name, variables, fields), aliases

    def _outcomes(self, result: GraphQLResult, aliases: Sequence[str], payload_key: str) -> list[MutationOutcome]:
        out = []
        for alias in aliases:
            payload = result.data.get(alias) if result.data is not None else None
            errors = result.errors_for(alias)
            if not isinstance(payload, Mapping):
                # No payload: the mutation may or may not have run (a non-null field nulls all data).
                reason = self.redact("; ".join(errors) or "; ".join(str(e.get("message")) for e in result.errors[:2])
                                     or "no payload returned", limit=300)
                out.append(MutationOutcome(error=f"Jobber: {reason}", uncertain=True))
                continue
            user_errors = [e for e in payload.get("userErrors") or [] if isinstance(e, Mapping)]
            record = payload.get(payload_key)
            if user_errors:
                out.append(MutationOutcome(error="Jobber refused: " + self.redact(_user_errors_text(user_errors),
                                                                                  limit=400)))
            elif record in (None, []):
                out.append(MutationOutcome(error="Jobber returned no record and no error", uncertain=True))
            else:
                out.append(MutationOutcome(record=record))
        return out

    # ------------------------------------------------------------------ operations
    def account(self) -> dict[str, Any]:
        """``query { account { id name } }`` (3 points)."""
        result = self.graphql("query", "RipAccount", {}, [f("account", "id", "name")])
        return dict((result.data or {}).get("account") or {})

    def fetch_account_identity(self) -> str:
        """The Jobber account id: ``query { account { id name } }`` (the account the token belongs to;
        https://developer.getjobber.com/docs/, ``Query.account``)."""
        return str(self.account().get("id") or "")

    def search_clients(self, terms: Sequence[str], *, first: int = 10) -> dict[str, list[dict[str, Any]]]:
        """``clients(searchTerm: $t, first: N) { nodes { id firstName lastName companyName emails { address }
        phones { number } } }``, one alias per term, as few documents as the cost allows.

        Returns term -> candidate clients; Jobber's search is fuzzy, callers verify matches.
        """
        unique = list(dict.fromkeys(terms))
        out: dict[str, list[dict[str, Any]]] = {}
        unit = f("clients", f("nodes", *CLIENT_MATCH_FIELDS), first=first).cost()
        for chunk in self.chunks(unique, unit):
            result, aliases = self._aliased(
                "query", "RipClientSearch", chunk, {"t": "String!"},
                lambda i, term: (f("clients", f("nodes", *CLIENT_MATCH_FIELDS), alias=f"s{i}", searchTerm=f"$t{i}",
                                   first=first), {"t": term}))
            for term, alias in zip(chunk, aliases, strict=True):
                found = ((result.data or {}).get(alias) or {}).get("nodes") or []
                out[term] = [n for n in found if isinstance(n, Mapping)]
        return out

    def get_clients(self, client_ids: Sequence[str], *, properties: int = 20) -> dict[str, dict[str, Any] | None]:
        """``client(id: $c) { ...; clientProperties(first: N) { nodes { id address { ... } } } }`` per id.

        Returns id -> client (None when Jobber has no such client).
        """
        unique = list(dict.fromkeys(client_ids))
        fields = client_fields(properties)
        out: dict[str, dict[str, Any] | None] = {}
        for chunk in self.chunks(unique, f("client", *fields).cost()):
            result, aliases = self._aliased("query", "RipClients", chunk, {"c": "EncodedId!"},
                                            lambda i, cid: (f("client", *fields, alias=f"c{i}", id=f"$c{i}"),
                                                            {"c": cid}))
            for cid, alias in zip(chunk, aliases, strict=True):
                node = (result.data or {}).get(alias)
                out[cid] = dict(node) if isinstance(node, Mapping) else None
        return out

    def iter_all_clients(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every client, page by page: ``clients(first: N, after: $cursor) { nodes { id firstName lastName
        companyName emails { address } phones { number } } pageInfo { hasNextPage endCursor } }``.

        Relay cursors (``first``/``after``, ``pageInfo{hasNextPage, endCursor}``) as in the 2022-03-10 schema
        (``ClientConnection``, see the module docstring) and
        https://developer.getjobber.com/docs/using_jobbers_api/api_queries_and_mutations . ``N`` is lowered
        so one page's requested cost (N x the node's cost) stays within the per-request cap of :meth:`chunks`;
        :meth:`graphql` waits for the points in the account's cost bucket before each page.
        """
        unit = f("nodes", *CLIENT_MATCH_FIELDS).cost()
        cap = min(MAX_REQUEST_COST, int(cost_budget(self.account_key).maximum // 2))
        first = max(1, min(int(page_size), cap // max(1, unit)))

        def fetch_page(cursor: Any) -> tuple[list[Any], Any]:
            variables: dict[str, tuple[str, Any]] = {}
            args: dict[str, Any] = {"first": first}
            if cursor:
                variables["cursor"] = ("String", cursor)
                args["after"] = "$cursor"
            fld = f("clients", f("nodes", *CLIENT_MATCH_FIELDS), f("pageInfo", "hasNextPage", "endCursor"), **args)
            result = self.graphql("query", "RipClientPage", variables, [fld])
            page = (result.data or {}).get("clients") or {}
            info = page.get("pageInfo") or {}
            nodes = [n for n in page.get("nodes") or [] if isinstance(n, Mapping)]
            return nodes, info.get("endCursor") if info.get("hasNextPage") else None

        return self.paginate(fetch_page)

    def create_clients(self, inputs: Sequence[Mapping[str, Any]], *, properties: int = 5) -> list[MutationOutcome]:
        """``clientCreate(input: ClientCreateInput!) { client { id clientProperties { nodes { id } } }
        userErrors { message path } }`` for every input, in ONE document (use :meth:`chunks`).

        https://developer.getjobber.com/docs/using_jobbers_api/api_queries_and_mutations
        """
        selection = (f("client", "id", f("clientProperties", f("nodes", "id", ADDRESS), first=properties)),
                     USER_ERRORS)
        result, aliases = self._aliased("mutation", "RipClientCreate", inputs, {"i": "ClientCreateInput!"},
                                        lambda i, data: (f("clientCreate", *selection, alias=f"m{i}",
                                                           input=f"$i{i}"), {"i": dict(data)}))
        return self._outcomes(result, aliases, "client")

    def create_clients_cost(self, properties: int = 5) -> int:
        return f("clientCreate", f("client", "id", f("clientProperties", f("nodes", "id", ADDRESS),
                                                     first=properties)), USER_ERRORS).cost()

    def edit_clients(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[MutationOutcome]:
        """``clientEdit(clientId: $c, input: ClientEditInput!) { client { id } userErrors { message path } }``
        per ``(client id, input)``, in one document."""
        result, aliases = self._aliased(
            "mutation", "RipClientEdit", items, {"c": "EncodedId!", "i": "ClientEditInput!"},
            lambda i, item: (f("clientEdit", f("client", "id"), USER_ERRORS, alias=f"m{i}", clientId=f"$c{i}",
                               input=f"$i{i}"), {"c": item[0], "i": dict(item[1])}))
        return self._outcomes(result, aliases, "client")

    def create_properties(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[MutationOutcome]:
        """``propertyCreate(clientId: $c, input: {properties: [{address}]}) { properties { id address { ... } }
        userErrors { message path } }`` per ``(client id, AddressAttributes)``, in one document.

        Each outcome's ``record`` is the created property.
        """
        result, aliases = self._aliased(
            "mutation", "RipPropertyCreate", items, {"c": "EncodedId!", "i": "PropertyCreateInput!"},
            lambda i, item: (f("propertyCreate", f("properties", "id", ADDRESS), USER_ERRORS, alias=f"m{i}",
                               clientId=f"$c{i}", input=f"$i{i}"),
                             {"c": item[0], "i": {"properties": [{"address": dict(item[1])}]}}))
        outcomes = self._outcomes(result, aliases, "properties")
        for outcome in outcomes:
            if outcome.ok:
                outcome.record = outcome.record[0]
        return outcomes

    def create_jobs(self, inputs: Sequence[Mapping[str, Any]]) -> list[MutationOutcome]:
        """``jobCreate(input: JobCreateAttributes!) { job { id jobNumber title } userErrors { message path } }``
        for every input, in one document (use :meth:`chunks` with :attr:`JOB_WRITE_COST`)."""
        result, aliases = self._aliased("mutation", "RipJobCreate", inputs, {"i": "JobCreateAttributes!"},
                                        lambda i, data: (f("jobCreate", f("job", "id", "jobNumber", "title"),
                                                           USER_ERRORS, alias=f"m{i}", input=f"$i{i}"),
                                                         {"i": dict(data)}))
        return self._outcomes(result, aliases, "job")

    def edit_jobs(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[MutationOutcome]:
        """``jobEdit(jobId: $j, input: JobEditInput!) { job { id title } userErrors { message path } }`` per
        ``(job id, input)``, in one document."""
        result, aliases = self._aliased(
            "mutation", "RipJobEdit", items, {"j": "EncodedId!", "i": "JobEditInput!"},
            lambda i, item: (f("jobEdit", f("job", "id", "title"), USER_ERRORS, alias=f"m{i}", jobId=f"$j{i}",
                               input=f"$i{i}"), {"j": item[0], "i": dict(item[1])}))
        return self._outcomes(result, aliases, "job")

    def close_jobs(self, job_ids: Sequence[str], decision: str = "COMPLETE_PAST_DESTROY_FUTURE") -> list[MutationOutcome]:
        """``jobClose(jobId: $j, input: {modifyIncompleteVisitsBy: DECISION}) { job { id jobStatus }
        userErrors { message path } }`` per job: closes it and completes its past visits."""
        result, aliases = self._aliased(
            "mutation", "RipJobClose", job_ids, {"j": "EncodedId!", "i": "JobCloseInput!"},
            lambda i, jid: (f("jobClose", f("job", "id", "jobStatus"), USER_ERRORS, alias=f"m{i}", jobId=f"$j{i}",
                              input=f"$i{i}"), {"j": jid, "i": {"modifyIncompleteVisitsBy": decision}}))
        return self._outcomes(result, aliases, "job")

    #: Requested cost of one aliased job write (create/edit/close), for :meth:`chunks`.
    JOB_WRITE_COST: ClassVar[int] = f("jobCreate", f("job", "id", "jobNumber", "title"), USER_ERRORS).cost()
    PROPERTY_WRITE_COST: ClassVar[int] = f("propertyCreate", f("properties", "id", ADDRESS), USER_ERRORS).cost()
    CLIENT_EDIT_COST: ClassVar[int] = f("clientEdit", f("client", "id"), USER_ERRORS).cost()

    def search_jobs(self, terms: Sequence[str], *, first: int = 5) -> dict[str, list[dict[str, Any]]]:
        """``jobs(searchTerm: $t, first: N) { nodes { id title } }`` per term (fuzzy: verify hits)."""
        unique = list(dict.fromkeys(terms))
        out: dict[str, list[dict[str, Any]]] = {}
        for chunk in self.chunks(unique, f("jobs", f("nodes", "id", "title"), first=first).cost()):
            result, aliases = self._aliased("query", "RipJobSearch", chunk, {"t": "String!"},
                                            lambda i, term: (f("jobs", f("nodes", "id", "title"), alias=f"s{i}",
                                                               searchTerm=f"$t{i}", first=first), {"t": term}))
            for term, alias in zip(chunk, aliases, strict=True):
                found = ((result.data or {}).get(alias) or {}).get("nodes") or []
                out[term] = [n for n in found if isinstance(n, Mapping)]
        return out

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``job(id: $j) { id title instructions }`` per id, many aliased in one request within the query-cost
        budget (Jobber's GraphQL has no list-by-ids argument on ``jobs``; ``job(id: EncodedId!)`` is the documented
        root field of the 2022-03-10 schema). Returns id -> job for the
        jobs that exist; a deleted job resolves to null and is left out."""
        unique = list(dict.fromkeys(str(i) for i in job_ids))
        out: dict[str, dict[str, Any]] = {}
        for chunk in self.chunks(unique, f("job", "id", "title", "instructions").cost()):
            result, aliases = self._aliased("query", "RipJobsRead", chunk, {"j": "EncodedId!"},
                                            lambda i, jid: (f("job", "id", "title", "instructions", alias=f"j{i}",
                                                              id=f"$j{i}"), {"j": jid}))
            for jid, alias in zip(chunk, aliases, strict=True):
                node = (result.data or {}).get(alias)
                if isinstance(node, Mapping):
                    out[jid] = dict(node)
        return out

    def jobs_created_after(self, moment: datetime, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every job created after ``moment``: ``jobs(filter: {createdAt: {after: $at}}, first: N, after: $c)
        { nodes { id title } pageInfo { hasNextPage endCursor } }``, page by page."""
        stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def fetch_page(cursor: Any) -> tuple[list[Any], Any]:
            variables: dict[str, tuple[str, Any]] = {"filter": ("JobFilterAttributes", {"createdAt": {"after": stamp}})}
            args: dict[str, Any] = {"filter": "$filter", "first": page_size}
            if cursor:
                variables["cursor"] = ("String", cursor)
                args["after"] = "$cursor"
            fld = f("jobs", f("nodes", "id", "title"), f("pageInfo", "hasNextPage", "endCursor"), **args)
            result = self.graphql("query", "RipJobsCreatedAfter", variables, [fld])
            page = (result.data or {}).get("jobs") or {}
            info = page.get("pageInfo") or {}
            return list(page.get("nodes") or []), info.get("endCursor") if info.get("hasNextPage") else None

        return self.paginate(fetch_page)

    def check_access(self) -> str:
        """``query { account { id name } }``: the cheapest authenticated read (needs no scope)."""
        self._check_auth_config()
        account = self.account()
        return f"Connected to Jobber account {str(account.get('name') or '?')[:80]} (API version {self.api_version})"


# ---------------------------------------------------------------------------- helpers


def _sleep(seconds: float) -> None:
    """Waiting for query-cost points (a seam for tests)."""
    time.sleep(seconds)


def _code(error: Mapping[str, Any]) -> str:
    extensions = error.get("extensions")
    return str(extensions.get("code") or "").upper() if isinstance(extensions, Mapping) else ""


def _throttle_wait(cost: Mapping[str, Any]) -> float | None:
    """``(requestedQueryCost - currentlyAvailable) / restoreRate`` seconds, at least 0.5."""
    status = cost.get("throttleStatus") if isinstance(cost, Mapping) else None
    try:
        requested = float(cost["requestedQueryCost"])
        available = float(status["currentlyAvailable"])  # type: ignore[index]
        rate = float(status["restoreRate"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
    if rate <= 0:
        return None
    return max(0.5, (requested - available) / rate + 0.1)


def _error_text(body: Any) -> str:
    """The message of an OAuth error, a GraphQL error list or a plain JSON message."""
    if isinstance(body, str):
        return body.strip()
    if not isinstance(body, Mapping):
        return ""
    if body.get("error") or body.get("error_description"):
        return ": ".join(str(p) for p in (body.get("error"), body.get("error_description")) if p)
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(e.get("message") if isinstance(e, Mapping) else e) for e in errors[:3])
    return str(body.get("message") or "")


def _user_errors_text(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for error in errors[:3]:
        path = ".".join(str(p) for p in error.get("path") or [])
        parts.append(f"{error.get('message') or 'invalid'}" + (f" ({path})" if path else ""))
    return "; ".join(parts)  # uncut: the caller redacts, then cuts


def _is_token_request(response: requests.Response) -> bool:
    url = response.url or (response.request.url if response.request is not None else "") or ""
    return url.split("?")[0].rstrip("/").endswith(TOKEN_PATH)


__all__ = ["Field", "GraphQLResult", "JobberHook", "MutationOutcome", "cost_budget", "document", "f", "jwt_expiry"]
