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

* :data:`DEFAULT_API_VERSION` is still an active version. It is the newest version Jobber's changelog
  names (https://developer.getjobber.com/docs/changelog, read 2026-12: 2025-04-16, then 2025-01-20,
  2024-12-05, ...; no later version in any stored copy). The versioning page says a version stays
  supported 12 months after a *newer* one is released, and (older wording) accessible up to 18 months
  from its release: the newest version should stay usable until a newer one appears, but that is not
  confirmed. Each run reads the version Jobber answers with (``extensions.versioning.version``; a removed
  version is upgraded to the oldest supported one) and warns once (:func:`version_age_warning`) when the
  pinned version is older than :data:`VERSION_WARN_MONTHS` or Jobber answered with another version;
  ``crmSettings.apiVersion`` pins another.
* Several aliased mutations in one document are accepted and their costs summed
  (GraphQL allows it; Jobber's docs neither show nor forbid it). :meth:`JobberHook.chunks`
  keeps every document under :data:`MAX_REQUEST_COST` and ``crmSettings.aliasesPerRequest``.
* ``clients(searchTerm)`` matches email addresses, phone numbers (by digits) and names, and
  ``jobs(searchTerm)`` matches words of a job title; callers verify every hit exactly.
* The bodies of token-endpoint errors (OAuth ``{error, error_description}``) and of the 401
  and 429 answers; whether the 429 carries ``Retry-After`` (honoured when present).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import requests

from crm_hooks.auth import Authenticator, RefreshToken, is_token_request, jwt_expiry
from crm_hooks.base import CrmHook, json_body
from crm_hooks.crm_settings import CrmSettings, SettingsReader
from crm_hooks.errors import (
    BadCredentialsError,
    ConfigurationError,
    CrmError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.jobber_cost import MAX_COST_WAIT_SECONDS, MAX_REQUEST_COST, cost_budget, throttle_wait
from crm_hooks.jobber_graphql import (
    ADDRESS,
    CLIENT_MATCH_FIELDS,
    USER_ERRORS,
    Field,
    GraphQLResult,
    MutationOutcome,
    client_fields,
    document,
    f,
)
from crm_hooks.rate_limit import RateLimit, jobber_window_exhausted

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.getjobber.com/api"
GRAPHQL_PATH = "/graphql"
TOKEN_PATH = "/oauth/token"
VERSION_HEADER = "X-JOBBER-GRAPHQL-VERSION"
#: UNCONFIRMED as still active (see the module docstring); ``crmSettings.apiVersion`` overrides it.
DEFAULT_API_VERSION = "2025-04-16"
#: Documented default access-token lifetime, used when neither the JWT nor the body says.
DEFAULT_TOKEN_SECONDS = 3600.0
DEFAULT_ALIASES_PER_REQUEST = 25
#: ``JobInvoicingAttributes`` values a job may be created with (``crmSettings.invoicingType`` / ``invoicingSchedule``).
INVOICING_TYPES = ("FIXED_PRICE", "VISIT_BASED")
INVOICING_SCHEDULES = ("ON_COMPLETION", "PERIODIC", "PER_VISIT", "NEVER")
RECONNECT = "reconnect Jobber in Rank It Pro"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Warn when the pinned version is older than this: Jobber keeps a version accessible about 18 months
#: from its release (https://developer.getjobber.com/docs/using_jobbers_api/api_versioning), so this
#: leaves about 3 months to move (Jobber's own warning comes 3 months before removal too).
VERSION_WARN_MONTHS = 15

_AUTH_CODES = {"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN", "ACCESS_DENIED"}


def version_age_warning(pinned: str, today: date, reported: str | None = None) -> str | None:
    """The run warning about the pinned ``X-JOBBER-GRAPHQL-VERSION`` (pure: no clock, no network).

    ``pinned`` (``YYYY-MM-DD``) older than :data:`VERSION_WARN_MONTHS` calendar months on ``today``, or
    Jobber answering as another version (``reported``, ``extensions.versioning.version``: the pinned one
    was removed and upgraded), gives a warning naming what to do; otherwise None.
    """
    released = date.fromisoformat(pinned)
    months = (today.year - released.year) * 12 + today.month - released.month - (today.day < released.day)
    problems = []
    if months >= VERSION_WARN_MONTHS:
        problems.append(
            f"the pinned API version {pinned} is {months} months old (Jobber keeps a version about 18 months)"
        )
    if reported and reported != pinned:
        problems.append(f"Jobber answered as version {reported}, not the pinned {pinned} (it was upgraded)")
    if not problems:
        return None
    return (
        f"jobber: {'; '.join(problems)}: check https://developer.getjobber.com/docs/changelog and pin a "
        "current version in crmSettings.apiVersion (or upgrade the sync)"
    )


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


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class JobberSettings(CrmSettings):
    """``crmSettings``: ``apiVersion`` (``YYYY-MM-DD``, default :data:`DEFAULT_API_VERSION`; checked where it
    is used, :attr:`JobberHook.api_version`), ``aliasesPerRequest`` (mutations or searches per GraphQL
    document, clamped to 1..100, default 25; a non-number is the default with a warning); for the
    destination ``invoicingType`` / ``invoicingSchedule`` (one of :data:`INVOICING_TYPES` /
    :data:`INVOICING_SCHEDULES`, default ``FIXED_PRICE`` / ``NEVER``; another value is an error when a run
    starts) and ``closeJobs`` (default on; only ``false`` turns it off)."""

    api_version: str = DEFAULT_API_VERSION
    aliases_per_request: int = DEFAULT_ALIASES_PER_REQUEST
    invoicing_type: str = "FIXED_PRICE"
    invoicing_schedule: str = "NEVER"
    close_jobs: bool = True

    @classmethod
    def read(cls, reader: SettingsReader) -> JobberSettings:
        aliases = reader.integer(
            "aliasesPerRequest", default=DEFAULT_ALIASES_PER_REQUEST, minimum=1, maximum=100, clamp=True
        )
        return cls(
            api_version=(reader.present("apiVersion") or DEFAULT_API_VERSION).strip(),
            aliases_per_request=aliases,
            invoicing_type=_choice(reader, "invoicingType", INVOICING_TYPES, "FIXED_PRICE"),
            invoicing_schedule=_choice(reader, "invoicingSchedule", INVOICING_SCHEDULES, "NEVER"),
            close_jobs=reader.raw.get("closeJobs", True) is not False,
            errors=reader.errors,
        )


def _choice(reader: SettingsReader, key: str, allowed: Sequence[str], default: str) -> str:
    """``raw[key]`` (``default`` when absent) if it is one of ``allowed``; else ``default``, refused."""
    value = reader.raw.get(key, default)
    if value not in allowed:
        reader.refuse(key, f"jobber: crmSettings.{key} must be one of {', '.join(allowed)}")
        return default
    return str(value)


# ---------------------------------------------------------------------------- auth


class JobberBareToken(Authenticator):
    """A bare access token (``apiKey`` or ``accessToken`` without a refresh token): used until its JWT
    expires or Jobber refuses it; Jobber has no long-lived API keys."""

    hook: JobberHook

    def fetch_token(self) -> tuple[str, float]:
        token = str(self.hook.cred("apiKey") or self.hook.cred("accessToken"))
        left = self.hook.usable_seconds(token, margin=5.0)
        if left == 0.0:
            raise BadCredentialsError(
                "jobber: the stored access token (apiKey) has expired or was refused, and Jobber has no "
                f"long-lived API keys: {RECONNECT} (OAuth) so the integration gets refreshToken, clientId "
                "and clientSecret"
            )
        return token, left if left is not None else DEFAULT_TOKEN_SECONDS


class JobberRefresh(RefreshToken):
    """Jobber's refresh-token grant (``POST {authUrl}/oauth/token``, form ``client_id, client_secret,
    grant_type=refresh_token, refresh_token``;
    https://developer.getjobber.com/docs/building_your_app/app_authorization#refresh-token-flow).

    The stored access token serves while its JWT is valid (two minutes' margin). Rotation kills the old
    refresh token at once, so a hook without a credentials writer refuses to redeem it, and the new pair
    is written (:meth:`JobberHook.store_tokens`) before it is used.
    """

    hook: JobberHook

    def stored_token(self) -> tuple[str, float] | None:
        stored = self.hook.cred("accessToken")
        left = self.hook.usable_seconds(stored, margin=120.0)
        return (str(stored), left) if left else None

    def before_refresh(self) -> None:
        if self.hook.credentials_writer is None:
            raise ConfigurationError(
                "jobber: the access token must be refreshed, but this hook has no credentials writer; Jobber "
                "rotates refresh tokens (the old one dies at once), so redeeming it here would lock the company "
                "out. Refresh through the sync (it stores the new tokens) or set a valid accessToken"
            )

    def lifetime(self, body: Mapping[str, Any], token: str) -> float:
        """The JWT's ``exp``, else the answer's ``expires_at``, else 60 minutes."""
        expiry = jwt_expiry(token) or _parse_expires_at(body.get("expires_at"))
        return expiry - time.time() if expiry else DEFAULT_TOKEN_SECONDS

    def store(self, access: str, refresh: str, previous: str, body: Mapping[str, Any]) -> None:
        self.hook.add_runtime_secret(access)
        self.hook.add_runtime_secret(refresh)
        if body.get("warning"):
            log.warning("jobber token endpoint: %s", self.hook.redact(str(body["warning"]), limit=300))
        self.hook.store_tokens({"accessToken": access, "refreshToken": refresh})


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
    #: Cost-sized chunks of one step sent at a time (``CrmHook.lanes``): a 429 or 5xx wait holds up one chunk.
    lanes: ClassVar[int] = 4
    default_rate_limits: ClassVar[dict[str, RateLimit]] = {"default": RateLimit(2500, 300.0)}
    settings_class = JobberSettings

    def __init__(self, conn_id: str | None = None, **kwargs: Any):
        super().__init__(conn_id, **kwargs)
        self._rejected: set[str] = set()
        self._version_warned = False
        #: the version Jobber reported it answered as (``extensions.versioning``), and its warning if any
        self.reported_api_version: str | None = None
        self.vendor_version_warning: str | None = None

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

    def version_warnings(self, today: date | None = None) -> list[str]:
        """This run's warnings about the API version: :func:`version_age_warning` for the pinned version and
        the version Jobber answered with (read from the answers so far), plus Jobber's own warning."""
        warning = version_age_warning(self.api_version, today or datetime.now(UTC).date(), self.reported_api_version)
        vendor = f"jobber API version: {self.vendor_version_warning}" if self.vendor_version_warning else None
        return [w for w in (warning, vendor) if w]

    @property
    def api_version(self) -> str:
        """``crmSettings.apiVersion`` or :data:`DEFAULT_API_VERSION` (sent as ``X-JOBBER-GRAPHQL-VERSION``)."""
        version = self.crm_settings.api_version
        if not _VERSION.match(version):
            raise ConfigurationError(
                f"jobber: crmSettings.apiVersion {version[:20]!r} is not a date like {DEFAULT_API_VERSION}"
            )
        return version

    @property
    def aliases_per_request(self) -> int:
        """``crmSettings.aliasesPerRequest`` (1..100, default 25)."""
        return self.crm_settings.aliases_per_request

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
                raise ConfigurationError(
                    f"jobber: credentials are missing {', '.join(missing)} (needed with "
                    "refreshToken to renew Jobber's 60-minute access tokens)"
                )
        elif self.cred("apiKey") is None and self.cred("accessToken") is None:
            raise ConfigurationError(
                "jobber: credentials are missing refreshToken, clientId and clientSecret "
                f"(Jobber only offers OAuth; {RECONNECT})"
            )

    def invalidate_token(self, refused: Mapping[str, str] | None = None) -> None:
        """After a 401: remember that this token is refused, so a stored one is not tried again (a token
        fetched since the refused call took its own is kept: :meth:`CrmHook.invalidate_token`)."""
        with self._token_lock:
            if not self.refused_current_token(refused):
                return
            if self._token:
                self._rejected.add(self._token)
            self._token = None

    def usable_seconds(self, token: str | None, margin: float) -> float | None:
        """Seconds ``token`` stays valid (None: unknown expiry), or 0 when refused or expired."""
        if not token or token in self._rejected:
            return 0.0
        expiry = jwt_expiry(token)
        if expiry is None:
            return None
        left = expiry - time.time()
        return left if left > margin else 0.0

    def authenticator(self) -> Authenticator:
        """A usable access token: the stored one while its JWT is valid, else a refresh (:class:`JobberRefresh`).

        A bare token (``apiKey``) is used until it expires or is refused (:class:`JobberBareToken`).
        """
        self._check_auth_config()
        if not self.uses_oauth:
            return JobberBareToken(self)
        return JobberRefresh(
            self,
            token_path=TOKEN_PATH,
            token_url=lambda: self.token_url,
            default_seconds=DEFAULT_TOKEN_SECONDS,
            hint=RECONNECT,
        )

    def store_tokens(self, tokens: dict[str, str]) -> None:
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
                self.replace_credentials({**self.credentials, **tokens})
                return
            except Exception as exc:  # noqa: BLE001 - any database error; its text may hold the tokens
                failure = f"{type(exc).__name__}"
                if attempt == 2:
                    raise BadCredentialsError(
                        f"jobber: the rotated refresh token could not be saved ({failure}); Jobber has already "
                        f"invalidated the previous one, so the next run may need to {RECONNECT}"
                    ) from None
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
        (``Retry-After`` if sent, or the cost bucket's refill time when the body reports
        ``throttleStatus`` short of the cost: :func:`crm_hooks.rate_limit.jobber_window_exhausted`);
        400 on the GraphQL endpoint -> :class:`ConfigurationError`
        (the request itself is malformed: version header, JSON); 5xx -> :class:`RetryableError`.
        """
        status = response.status_code
        detail = self.redact(_error_text(json_body(response)) or (response.reason or "").strip() or f"HTTP {status}")
        if is_token_request(response, TOKEN_PATH) and 400 <= status < 500 and status != 429:
            return BadCredentialsError(
                f"jobber: refreshing the access token failed ({detail}); {RECONNECT}", status=status
            )
        if status == 401:
            return BadCredentialsError(f"jobber HTTP 401: {detail}", status=status)
        if status == 403:
            return BadCredentialsError(
                f"jobber HTTP 403: {detail} (the app may lack a scope; {RECONNECT})", status=status
            )
        if status == 400:
            return ConfigurationError(f"jobber HTTP 400: {detail} (API version {self.api_version})", status=status)
        error = self.default_error(response, detail)
        if isinstance(error, RateLimitedError):
            # A 429 that reports the cost bucket short of the request's cost: wait for the points (not the
            # 5-minute request window); one without it is waited out alone (Retry-After or backoff).
            refill = jobber_window_exhausted(json_body(response))
            if refill is not None:
                error.retry_after = max(error.retry_after or 0.0, refill)
        return error

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
            self.stats.add(quota_points=float(cost["actualQueryCost"]))
        versioning = extensions.get("versioning")
        if isinstance(versioning, Mapping) and isinstance(versioning.get("version"), str):
            self.reported_api_version = versioning["version"][:20]
        if isinstance(versioning, Mapping) and versioning.get("warning") and not self._version_warned:
            self._version_warned = True
            self.vendor_version_warning = self.redact(str(versioning["warning"]), limit=300)
            log.warning("jobber API version: %s", self.vendor_version_warning)
        errors = body.get("errors") or []
        if any(_code(e) == "THROTTLED" for e in errors if isinstance(e, Mapping)):
            requested, maximum = cost.get("requestedQueryCost"), (status or {}).get("maximumAvailable")
            if isinstance(requested, (int, float)) and isinstance(maximum, (int, float)) and requested > maximum:
                raise ConfigurationError(
                    f"jobber: a document costing {requested} points never fits the account's "
                    f"maximum of {maximum}; lower crmSettings.aliasesPerRequest"
                )
            self.stats.add(rate_limited=1)
            raise RateLimitedError(
                "jobber: GraphQL query cost throttled", code="THROTTLED", retry_after=throttle_wait(cost)
            )

    # ------------------------------------------------------------------ GraphQL
    def chunks(self, items: Sequence[Any], unit_cost: int) -> Iterator[Sequence[Any]]:
        """``items`` in slices that fit one document: ``aliasesPerRequest``, and a requested cost of at
        most :data:`MAX_REQUEST_COST` or half the account's bucket, whichever is lower."""
        cap = min(MAX_REQUEST_COST, int(cost_budget(self.account_key).maximum // 2))
        size = max(1, min(self.aliases_per_request, cap // max(1, unit_cost)))
        for start in range(0, len(items), size):
            yield items[start : start + size]

    def graphql(
        self, kind: str, name: str, variables: Mapping[str, tuple[str, Any]], fields: Sequence[Field]
    ) -> GraphQLResult:
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
            # Jobber has no idempotency key: after a timeout or a 5xx the mutations may have run, so that
            # error is raised (the destination keeps the rows in_flight and looks them up next run). An HTTP
            # 429 from the DDoS guard and a THROTTLED answer run nothing and are waited out; a 401 is answered
            # by one token refresh, as for any call (CrmHook.send_write).
            self.access_token()  # a refresh now gets the token endpoint's own retries
            response = self.request(
                "POST", GRAPHQL_PATH, json=payload, headers=headers, endpoint=f"POST graphql {name}", resend="never"
            )
        else:
            response = self.request(
                "POST", GRAPHQL_PATH, json=payload, headers=headers, endpoint=f"POST graphql {name}"
            )
        body = json_body(response)
        if not isinstance(body, Mapping):
            raise RetryableError(f"jobber: the GraphQL answer to {name} is not JSON")
        result = GraphQLResult(
            data=body.get("data") if isinstance(body.get("data"), Mapping) else None,
            errors=[e for e in body.get("errors") or [] if isinstance(e, Mapping)],
            extensions=body.get("extensions") if isinstance(body.get("extensions"), Mapping) else {},
        )
        self._raise_request_errors(name, kind, result)
        return result

    def _raise_request_errors(self, name: str, kind: str, result: GraphQLResult) -> None:
        if not result.errors:
            return
        text = self.redact("; ".join(str(e.get("message") or "error") for e in result.errors[:3]))
        if any(_code(e) in _AUTH_CODES for e in result.errors) or "disconnected" in text.lower():
            raise BadCredentialsError(f"jobber: {text}; {RECONNECT}")
        field_errors = result.data is not None or any(e.get("path") for e in result.errors)
        if field_errors and kind == "mutation":
            return  # per alias: the caller marks those aliases failed or uncertain
        if field_errors or any("temporarily unavailable" in str(e.get("message") or "").lower() for e in result.errors):
            # A read that failed in part must not pass for "nothing found" (that would create duplicates).
            raise RetryableError(f"jobber {name}: {text}")
        raise ConfigurationError(f"jobber: API version {self.api_version} rejected the {kind} {name}: {text}")

    def _await_points(self, cost: int) -> None:
        budget = cost_budget(self.account_key)
        now = time.monotonic()
        if cost > budget.maximum:
            raise ConfigurationError(
                f"jobber: a document costing {cost} points exceeds the account's maximum "
                f"of {budget.maximum:.0f}; lower crmSettings.aliasesPerRequest"
            )
        wait = min(budget.wait_for(cost, now, self.rate_share), MAX_COST_WAIT_SECONDS)
        if wait > 0:
            self.check_budget(wait)
            self.stats.add(waited_seconds=wait)
            _sleep(wait)
        budget.spend(cost, time.monotonic())

    def _aliased(
        self, kind: str, name: str, items: Sequence[Any], arg_types: Mapping[str, str], build: Any
    ) -> tuple[GraphQLResult, list[str]]:
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
                reason = self.redact(
                    "; ".join(errors)
                    or "; ".join(str(e.get("message")) for e in result.errors[:2])
                    or "no payload returned",
                    limit=300,
                )
                out.append(MutationOutcome(error=f"Jobber: {reason}", uncertain=True))
                continue
            user_errors = [e for e in payload.get("userErrors") or [] if isinstance(e, Mapping)]
            record = payload.get(payload_key)
            if user_errors:
                out.append(
                    MutationOutcome(error="Jobber refused: " + self.redact(_user_errors_text(user_errors), limit=400))
                )
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
                "query",
                "RipClientSearch",
                chunk,
                {"t": "String!"},
                lambda i, term: (
                    f("clients", f("nodes", *CLIENT_MATCH_FIELDS), alias=f"s{i}", searchTerm=f"$t{i}", first=first),
                    {"t": term},
                ),
            )
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
            result, aliases = self._aliased(
                "query",
                "RipClients",
                chunk,
                {"c": "EncodedId!"},
                lambda i, cid: (f("client", *fields, alias=f"c{i}", id=f"$c{i}"), {"c": cid}),
            )
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
        selection = (f("client", "id", f("clientProperties", f("nodes", "id", ADDRESS), first=properties)), USER_ERRORS)
        result, aliases = self._aliased(
            "mutation",
            "RipClientCreate",
            inputs,
            {"i": "ClientCreateInput!"},
            lambda i, data: (f("clientCreate", *selection, alias=f"m{i}", input=f"$i{i}"), {"i": dict(data)}),
        )
        return self._outcomes(result, aliases, "client")

    def create_clients_cost(self, properties: int = 5) -> int:
        return f(
            "clientCreate",
            f("client", "id", f("clientProperties", f("nodes", "id", ADDRESS), first=properties)),
            USER_ERRORS,
        ).cost()

    def edit_clients(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[MutationOutcome]:
        """``clientEdit(clientId: $c, input: ClientEditInput!) { client { id } userErrors { message path } }``
        per ``(client id, input)``, in one document."""
        result, aliases = self._aliased(
            "mutation",
            "RipClientEdit",
            items,
            {"c": "EncodedId!", "i": "ClientEditInput!"},
            lambda i, item: (
                f("clientEdit", f("client", "id"), USER_ERRORS, alias=f"m{i}", clientId=f"$c{i}", input=f"$i{i}"),
                {"c": item[0], "i": dict(item[1])},
            ),
        )
        return self._outcomes(result, aliases, "client")

    def create_properties(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[MutationOutcome]:
        """``propertyCreate(clientId: $c, input: {properties: [{address}]}) { properties { id address { ... } }
        userErrors { message path } }`` per ``(client id, AddressAttributes)``, in one document.

        Each outcome's ``record`` is the created property.
        """
        result, aliases = self._aliased(
            "mutation",
            "RipPropertyCreate",
            items,
            {"c": "EncodedId!", "i": "PropertyCreateInput!"},
            lambda i, item: (
                f(
                    "propertyCreate",
                    f("properties", "id", ADDRESS),
                    USER_ERRORS,
                    alias=f"m{i}",
                    clientId=f"$c{i}",
                    input=f"$i{i}",
                ),
                {"c": item[0], "i": {"properties": [{"address": dict(item[1])}]}},
            ),
        )
        outcomes = self._outcomes(result, aliases, "properties")
        for outcome in outcomes:
            if outcome.ok:
                outcome.record = outcome.record[0]
        return outcomes

    def create_jobs(self, inputs: Sequence[Mapping[str, Any]]) -> list[MutationOutcome]:
        """``jobCreate(input: JobCreateAttributes!) { job { id jobNumber title } userErrors { message path } }``
        for every input, in one document (use :meth:`chunks` with :attr:`JOB_WRITE_COST`)."""
        result, aliases = self._aliased(
            "mutation",
            "RipJobCreate",
            inputs,
            {"i": "JobCreateAttributes!"},
            lambda i, data: (
                f("jobCreate", f("job", "id", "jobNumber", "title"), USER_ERRORS, alias=f"m{i}", input=f"$i{i}"),
                {"i": dict(data)},
            ),
        )
        return self._outcomes(result, aliases, "job")

    def edit_jobs(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[MutationOutcome]:
        """``jobEdit(jobId: $j, input: JobEditInput!) { job { id title } userErrors { message path } }`` per
        ``(job id, input)``, in one document."""
        result, aliases = self._aliased(
            "mutation",
            "RipJobEdit",
            items,
            {"j": "EncodedId!", "i": "JobEditInput!"},
            lambda i, item: (
                f("jobEdit", f("job", "id", "title"), USER_ERRORS, alias=f"m{i}", jobId=f"$j{i}", input=f"$i{i}"),
                {"j": item[0], "i": dict(item[1])},
            ),
        )
        return self._outcomes(result, aliases, "job")

    def close_jobs(
        self, job_ids: Sequence[str], decision: str = "COMPLETE_PAST_DESTROY_FUTURE"
    ) -> list[MutationOutcome]:
        """``jobClose(jobId: $j, input: {modifyIncompleteVisitsBy: DECISION}) { job { id jobStatus }
        userErrors { message path } }`` per job: closes it and completes its past visits."""
        result, aliases = self._aliased(
            "mutation",
            "RipJobClose",
            job_ids,
            {"j": "EncodedId!", "i": "JobCloseInput!"},
            lambda i, jid: (
                f("jobClose", f("job", "id", "jobStatus"), USER_ERRORS, alias=f"m{i}", jobId=f"$j{i}", input=f"$i{i}"),
                {"j": jid, "i": {"modifyIncompleteVisitsBy": decision}},
            ),
        )
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
            result, aliases = self._aliased(
                "query",
                "RipJobSearch",
                chunk,
                {"t": "String!"},
                lambda i, term: (
                    f("jobs", f("nodes", "id", "title"), alias=f"s{i}", searchTerm=f"$t{i}", first=first),
                    {"t": term},
                ),
            )
            for term, alias in zip(chunk, aliases, strict=True):
                found = ((result.data or {}).get(alias) or {}).get("nodes") or []
                out[term] = [n for n in found if isinstance(n, Mapping)]
        return out

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``job(id: $j) { id title instructions jobStatus }`` per id, many aliased in one request within the query-cost
        budget (Jobber's GraphQL has no list-by-ids argument on ``jobs``; ``job(id: EncodedId!)`` is the documented
        root field of the 2022-03-10 schema). Returns id -> job for the
        jobs that exist; a deleted job resolves to null and is left out."""
        unique = list(dict.fromkeys(str(i) for i in job_ids))
        out: dict[str, dict[str, Any]] = {}
        for chunk in self.chunks(unique, f("job", "id", "title", "instructions", "jobStatus").cost()):
            result, aliases = self._aliased(
                "query",
                "RipJobsRead",
                chunk,
                {"j": "EncodedId!"},
                lambda i, jid: (
                    f("job", "id", "title", "instructions", "jobStatus", alias=f"j{i}", id=f"$j{i}"),
                    {"j": jid},
                ),
            )
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


__all__ = ["JobberBareToken", "JobberHook", "JobberRefresh"]
