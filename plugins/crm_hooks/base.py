"""The shared base of every CRM hook: session, auth tokens, rate limits, retries, errors.

A concrete hook (one module per CRM) declares its vendor facts as class
attributes and implements three small methods:

* ``authenticator()`` -> a :mod:`crm_hooks.auth` object whose ``fetch_token()`` returns
  ``(token, expires_in_seconds)`` (static key, client credentials, refresh token);
  :meth:`CrmHook.access_token` caches it and refreshes it a minute before expiry and after a 401.
* ``auth_headers()`` -> the headers that authenticate one request.
* ``classify_error(response)`` -> the :mod:`crm_hooks.errors` class for a failed
  response, read from the vendor's documented error body.

Everything else (timeouts, ``Retry-After``, exponential backoff with jitter, sending a
create at most once (:meth:`CrmHook.send_write`),
client-side rolling-window rate limiters that adapt to the account's limit (:mod:`crm_hooks.rate_limit`;
a 429 blocks a whole window only when the vendor says the window is exhausted, :meth:`CrmHook.window_exhausted`),
call accounting, secret masking, the
``CRM_SYNC_ALLOWED_HOSTS`` rule for URL overrides) lives here once.

A hook is built either from a company's integration JSON exactly as the Rank It
Pro app stores it (:meth:`CrmHook.from_integration`, the multi-tenant path the
DAGs use) or from an Airflow connection of the hook's own ``conn_type``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, ClassVar, Literal, TypeVar

import requests
import tenacity
from airflow.sdk import BaseHook

from crm_hooks.auth import Authenticator
from crm_hooks.crm_settings import CrmSettings, SettingsReader
from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    BudgetExhaustedError,
    ConfigurationError,
    CrmError,
    QuotaExhaustedError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.hosts import GuardedSession, check_url
from crm_hooks.rate_limit import RateLimit, RollingWindowLimiter, limiter_for
from crm_hooks.redaction import redact_and_truncate, register_secrets

log = logging.getLogger(__name__)

#: Longest ``Retry-After`` the hook sleeps through inside one call; longer waits
#: fail the call as retryable so the rows are retried next run instead.
MAX_RETRY_AFTER_SECONDS = 120.0
#: Jitter added on top of a ``Retry-After`` (never less than the vendor asked): this share of it, at most
#: :data:`RETRY_AFTER_JITTER_MAX` seconds, so workers told the same moment do not all return at once.
RETRY_AFTER_JITTER_SHARE = 0.1
RETRY_AFTER_JITTER_MAX = 1.0

_SENT = threading.local()

#: How a request may be re-sent after a failure (see :meth:`CrmHook.send_write`).
Resend = Literal["always", "never", "after_lookup"]
T = TypeVar("T")


def requests_sent() -> int:
    """Requests this thread has sent through any hook: a per-record loop compares it before and after a
    record to know whether that record's write began (a time-budget stop before it is not ambiguous)."""
    return getattr(_SENT, "count", 0)


@dataclass
class CallStats:
    """What one hook instance spent talking to its CRM (for run summaries and benchmarks)."""

    api_calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    token_refreshes: int = 0
    waited_seconds: float = 0.0
    #: points of a cost-based budget the calls spent (Jobber's GraphQL query cost), beside the request count
    quota_points: float = 0.0
    #: points that budget restores per second (None: the CRM limits requests only)
    quota_restore_rate: float | None = None
    by_endpoint: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, endpoint: str | None = None, **counts: float) -> None:
        """Add to counters (and one call to ``endpoint``): thread-safe, a per-record loop writes in lanes."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)
            if endpoint is not None:
                self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_calls": self.api_calls,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "token_refreshes": self.token_refreshes,
            "rate_limit_wait_seconds": round(self.waited_seconds, 3),
        }


class CrmHook(BaseHook):
    """Base class for the CRM hooks.

    :param conn_id: an Airflow connection of this hook's ``conn_type``; used when
        ``credentials`` is not given.
    :param credentials: the integration's ``credentials`` object (the app's keys).
    :param settings: the integration's non-secret settings (``crmSettings``).
    :param account_key: identifies the CRM account for shared rate limiters;
        defaults to a value derived from the credentials' base URL and id.
    :param rate_share: share (0-1] of the documented limit this hook may use.
    :param max_attempts: attempts per request before a retryable error is raised.
    :param credentials_writer: called with the new tokens when the CRM rotates a
        refresh token, before the new token is used (Jobber). It may also offer
        ``exclusive()``, a context manager yielding the live token pair while it holds
        the integration's refresh lock (:meth:`credential_rotation`); the sync's is
        :class:`crm_sync.token_store.TokenStore`.
    """

    conn_name_attr = "conn_id"
    #: The key the Rank It Pro app uses for this CRM in ``crm_integrations``.
    crm_type: ClassVar[str] = ""
    #: The CRM's name as the app shows it (``crmName`` of a sync-history entry).
    display_name: ClassVar[str] = ""
    #: The CRM's line colour in the quality report's charts ("": a fallback colour).
    report_colour: ClassVar[str] = ""
    #: Vendor-owned domain suffixes; URL overrides elsewhere need CRM_SYNC_ALLOWED_HOSTS.
    vendor_domains: ClassVar[tuple[str, ...]] = ()
    default_base_url: ClassVar[str] = ""
    #: The documented client-side limits; :attr:`rate_limits` applies ``crmSettings`` to them.
    default_rate_limits: ClassVar[dict[str, RateLimit]] = {"default": RateLimit(None)}
    #: False when the vendor publishes no limit (the default is a guess): calls are then spaced evenly
    #: from the start and the limiter learns the account's rate from its 429s (:mod:`crm_hooks.rate_limit`).
    limit_published: ClassVar[bool] = True
    #: This CRM's typed ``crmSettings`` (:mod:`crm_hooks.crm_settings`).
    settings_class: ClassVar[type[CrmSettings]] = CrmSettings
    #: Records per batch call the CRM accepts (1 where it has no batch endpoint).
    batch_size: ClassVar[int] = 1
    #: Records a per-record write loop sends at a time (``crm_sync.destinations.base.per_record``), or batch
    #: calls of one step (``in_chunks``, HubSpot): more than one, a 429's ``Retry-After`` or a 5xx backoff
    #: holds up one record or batch, not the sync. The rate limiter, shared by the lanes, still sets the pace.
    lanes: ClassVar[int] = 1
    #: Credential keys that hold secrets (masked, redacted).
    secret_keys: ClassVar[tuple[str, ...]] = ()
    timeout: ClassVar[tuple[float, float]] = (10.0, 60.0)
    max_attempts_default: ClassVar[int] = 5
    #: First wait of the exponential backoff (seconds, plus as much jitter) when no ``Retry-After`` is sent:
    #: 0.25, 0.5, 1, 2 s over the default 5 attempts. A lone 5xx is over by the first retry, and each such
    #: wait holds up a step of a batch: three HubSpot runs of 20,000 rows with 3% 503s and 3% 429s took
    #: 44.7 s on average from 0.5, 40.0 s from 0.25. Tests lower it.
    backoff_seconds: ClassVar[float] = 0.25
    backoff_max_seconds: ClassVar[float] = 30.0

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        credentials: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        account_key: str | None = None,
        rate_share: float = 1.0,
        max_attempts: int | None = None,
        credentials_writer: Callable[[dict[str, Any]], None] | None = None,
    ):
        super().__init__()
        self.conn_id = conn_id or getattr(self, "default_conn_name", None)
        self._credentials = dict(credentials) if credentials is not None else None
        self._settings: dict[str, Any] = dict(settings or {})
        self._account_key = account_key
        self.rate_share = rate_share
        # CRM_SYNC_MAX_ATTEMPTS: a deployment-wide override of the attempts per request.
        self.max_attempts = max_attempts or int(os.environ.get("CRM_SYNC_MAX_ATTEMPTS") or self.max_attempts_default)
        self.credentials_writer = credentials_writer
        self.stats = CallStats()
        self._session: requests.Session | None = None
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = threading.Lock()
        self._runtime_secrets: list[str] = []
        self._account_identity: str | None = None
        self._setting_warnings: dict[str, str] = {}
        self._crm_settings: CrmSettings | None = None
        self._crm_settings_source: dict[str, Any] | None = None
        #: ``time.monotonic()`` by which this hook's caller must be done (None: no budget); see
        #: :meth:`check_budget`. Waits that would cross it raise :class:`BudgetExhaustedError` instead.
        self.deadline: float | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_integration(cls, integration: Mapping[str, Any], **kwargs: Any) -> CrmHook:
        """Build from one entry of ``companies.crm_integrations`` (the app's JSON)."""
        creds = integration.get("credentials")
        if not isinstance(creds, Mapping) or not creds:
            raise ConfigurationError(f"{cls.crm_type}: integration has no credentials object")
        settings = integration.get("crmSettings") or {}
        if not isinstance(settings, Mapping):
            raise ConfigurationError(f"{cls.crm_type}: crmSettings must be a JSON object")
        return cls(credentials=creds, settings=settings, **kwargs)

    @classmethod
    def credentials_from_connection(cls, conn: Any) -> dict[str, Any]:
        """Map an Airflow connection of this type to the app's credential keys."""
        raise NotImplementedError

    @property
    def credentials(self) -> dict[str, Any]:
        if self._credentials is None:
            conn = self.get_connection(self.conn_id)
            self._credentials = self.credentials_from_connection(conn)
            extra = conn.extra_dejson or {}
            self._settings = {**extra.get("crmSettings", {}), **self._settings}
        return self._credentials

    @property
    def settings(self) -> dict[str, Any]:
        """The non-secret settings; a connection-built hook loads its connection first,
        so ``extra.crmSettings`` is there even before any credential was read."""
        if self._credentials is None:
            self.credentials  # noqa: B018 - merges the connection's crmSettings
        return self._settings

    @settings.setter
    def settings(self, value: Mapping[str, Any]) -> None:
        self._settings = dict(value)

    @property
    def crm_settings(self) -> Any:
        """``crmSettings`` as this CRM's typed, validated object (:attr:`settings_class`, e.g. ``HubSpotSettings``).

        Built once and rebuilt only when the raw settings change; values it refused are in
        :attr:`setting_warnings`. Typed ``Any`` so callers read each CRM's own fields.
        """
        raw = self.settings
        if self._crm_settings is None or self._crm_settings_source != raw:
            reader = SettingsReader(raw)
            self._crm_settings = self.settings_class.read(reader)
            self._crm_settings_source = dict(raw)
            self._setting_warnings = reader.warnings
        return self._crm_settings

    @property
    def setting_warnings(self) -> list[str]:
        """What reading :attr:`crm_settings` refused (for the run summary), one warning per key."""
        self.crm_settings  # noqa: B018 - reads (and checks) the admin-set values
        return list(self._setting_warnings.values())

    @property
    def rate_limits(self) -> dict[str, RateLimit]:
        """Named client-side limits (``default`` applies unless a call names another):
        :attr:`default_rate_limits` with the admin-set values of :attr:`crm_settings` applied."""
        return self.crm_settings.rate_limits(self.default_rate_limits)

    def cred(self, key: str, default: Any = None) -> Any:
        """One credential value; blank strings count as missing (UI forms send '')."""
        value = self.credentials.get(key)
        if isinstance(value, str):
            value = value.strip()
        return value if value not in (None, "") else default

    def require(self, *keys: str) -> list[Any]:
        """The values of ``keys``; a :class:`ConfigurationError` names every missing one."""
        missing = [k for k in keys if self.cred(k) is None]
        if missing:
            raise ConfigurationError(f"{self.crm_type}: credentials are missing {', '.join(missing)}")
        return [self.cred(k) for k in keys]

    def override_url(self, key: str, default: str) -> str:
        """``credentials[key]`` if set and allowed, else ``default``."""
        value = self.cred(key)
        if not value:
            return default.rstrip("/")
        return check_url(str(value), self.vendor_domains, what=f"{self.crm_type} {key}")

    @property
    def base_url(self) -> str:
        return self.override_url("baseUrl", self.default_base_url)

    @property
    def account_key(self) -> str:
        return self._account_key or f"{self.crm_type}:{self.base_url}:{self.account_id()}"

    def account_id(self) -> str:
        """Something that tells CRM accounts apart (tenant id, org URL); not a secret."""
        return ""

    def account_identity(self) -> str:
        """The CRM account these credentials reach, as the CRM itself reports it (one call, cached).

        The sync binds every CRM record id it stores to this value (``crm_sync.accounts``): ids of
        one HubSpot portal / Salesforce org / ServiceTitan tenant mean nothing in another. It is
        read from the CRM's answer, never trusted from the integration JSON alone, so a company
        that reconnects to another account is noticed even when nothing else in its settings changed.
        """
        if self._account_identity is None:
            value = str(self.fetch_account_identity() or "").strip()
            if not value:
                raise ConfigurationError(f"{self.crm_type}: the CRM did not say which account these credentials reach")
            self._account_identity = value
        return self._account_identity

    def assume_account_identity(self, value: str) -> None:
        """Take ``value`` as the account identity without asking the CRM: it was read from the CRM already
        (an earlier run with the same credentials, kept in ``crm_sync.account_facts``, or another answer)."""
        self._account_identity = value

    def fetch_account_identity(self) -> str:
        """One cheap authenticated call that returns the account id (per hook; see :meth:`account_identity`)."""
        raise NotImplementedError(f"{self.crm_type}: account identity is not implemented")

    # ------------------------------------------------------------------ secrets
    def secrets(self) -> list[str]:
        """Every secret value this hook knows: credential values and fetched tokens."""
        values = [str(self.credentials.get(k)) for k in self.secret_keys if self.credentials.get(k)]
        return values + self._runtime_secrets

    def add_runtime_secret(self, value: str | None) -> None:
        if value:
            self._runtime_secrets.append(value)
            register_secrets([value])

    def redact(self, text: str | None, limit: int | None = None) -> str:
        """``text`` without any secret this hook knows; cut to ``limit`` only after redacting."""
        return redact_and_truncate(text, self.secrets(), limit)

    # ------------------------------------------------------------------ auth
    def authenticator(self) -> Authenticator:
        """How this hook gets its token (:mod:`crm_hooks.auth`); built per refresh, from the current
        credentials, so it follows a rotated or reloaded pair."""
        raise NotImplementedError(f"{self.crm_type}: no authenticator")

    def fetch_token(self) -> tuple[str, float]:
        """Obtain a new access token; return ``(token, expires_in_seconds)`` (the authenticator's)."""
        return self.authenticator().fetch_token()

    def replace_credentials(self, credentials: Mapping[str, Any]) -> None:
        """Use ``credentials`` from now on (rotated tokens); the caller registers new secrets."""
        self._credentials = dict(credentials)

    def access_token(self) -> str:
        """The cached token, refreshed a minute before expiry (thread-safe)."""
        with self._token_lock:
            if self._token is None or time.monotonic() > self._token_expires_at - 60:
                token, expires_in = self.fetch_token()
                self.add_runtime_secret(token)
                self.stats.add(token_refreshes=1)
                self._token = token
                self._token_expires_at = time.monotonic() + max(float(expires_in), 61.0)
            return self._token

    def invalidate_token(self, refused: Mapping[str, str] | None = None) -> None:
        """Forget the token (the CRM refused it), the one kept for the next runs included.

        :param refused: the headers of the refused call. A token is fetched before a call waits for its
            rate-limit slot, so calls waiting meanwhile still carry the old one: their 401s must not throw
            away (and fetch again) the token the first 401 already replaced.
        """
        with self._token_lock:
            if not self.refused_current_token(refused):
                return
            self._token = None
            forget = getattr(self.credentials_writer, "forget_session", None)
            if forget is not None:
                forget()

    def refused_current_token(self, refused: Mapping[str, str] | None) -> bool:
        """Whether the headers of a refused call carry the token this hook holds now (no headers: assume so).
        Called with the token lock held."""
        return refused is None or self._token is None or any(self._token in v for v in refused.values())

    @contextlib.contextmanager
    def credential_rotation(self) -> Iterator[None]:
        """Wrap a refresh that may rotate the refresh token: with a writer that offers ``exclusive()``,
        hold its lock and take its live ``accessToken``/``refreshToken`` first.

        Another task may have rotated the pair, or the admin reconnected, since this hook was built
        from the app's JSON; without the lock two tasks would redeem the same refresh token and,
        with rotation, the second would fail. The replaced values stay registered as secrets.
        """
        exclusive = getattr(self.credentials_writer, "exclusive", None)
        if exclusive is None:
            yield
            return
        with exclusive() as live:
            credentials = dict(self.credentials)
            for key, value in live.items():
                if value == credentials.get(key):
                    continue
                self.add_runtime_secret(credentials.get(key))
                self.add_runtime_secret(value)
                if value is None:
                    credentials.pop(key, None)
                else:
                    credentials[key] = value
            self._credentials = credentials
            yield

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    # ------------------------------------------------------------------ HTTP
    def get_conn(self) -> requests.Session:
        """A pooled session that sends only to this CRM's vendor hosts or ``CRM_SYNC_ALLOWED_HOSTS`` and
        never follows a redirect (:class:`crm_hooks.hosts.GuardedSession`); secrets are registered with
        the masker first."""
        if self._session is None:
            register_secrets(self.secrets())
            session = GuardedSession(
                self.crm_type, self.vendor_domains, pool_connections=4, pool_maxsize=16, max_retries=0
            )
            session.headers.update({"Accept": "application/json", "User-Agent": "rankitpro-crm-sync/1.0"})
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def classify_error(self, response: requests.Response) -> CrmError:
        """Map a failed response to a typed error. Subclasses read the vendor body."""
        return self.default_error(response, self.redact(response.text, limit=500))

    def default_error(self, response: requests.Response, message: str, code: str | None = None) -> CrmError:
        """The class an HTTP status implies, with ``message`` (already redacted)."""
        status = response.status_code
        text = f"{self.crm_type} HTTP {status}: {message}"
        if status == 429:
            return RateLimitedError(text, status=status, code=code, retry_after=_retry_after(response))
        if status >= 500 or status in (408, 423):
            return RetryableError(text, status=status, code=code)
        if status == 401:
            return BadCredentialsError(text, status=status, code=code)
        if status == 403:
            return BadCredentialsError(text, status=status, code=code)
        return BadRecordError(text, status=status, code=code)

    def url(self, path_or_url: str) -> str:
        """An absolute URL; absolute ones (token hosts, next-page links) pass the allowed-hosts rule too."""
        if path_or_url.startswith(("http://", "https://")):
            return check_url(path_or_url, self.vendor_domains, what=f"{self.crm_type} request URL")
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        limit: str = "default",
        authenticated: bool = True,
        endpoint: str | None = None,
        resend: Resend = "always",
        **kwargs: Any,
    ) -> requests.Response:
        """Send one API request with rate limiting, retries and token refresh.

        :param limit: the name of the rate limit this endpoint counts against.
        :param endpoint: a label for call accounting (defaults to the method + path).
        :param resend: ``"always"`` (reads, idempotent writes: every retryable error is re-sent) or
            ``"never"`` (a write the CRM cannot deduplicate: only answers that say the CRM did not act,
            a 429, are re-sent; see :meth:`send_write`). A resend after a look-up needs
            :meth:`request_json` with ``lookup``.
        :returns: the successful response (2xx).
        :raises CrmError: a typed error once retries are exhausted or not applicable.
        """
        if resend == "always":
            return self._send(
                method,
                path_or_url,
                limit=limit,
                authenticated=authenticated,
                endpoint=endpoint,
                attempts=self.max_attempts,
                **kwargs,
            )
        if resend != "never":
            raise ValueError(f"request(resend={resend!r}): a resend after a look-up needs request_json(lookup=...)")
        return self.send_write(
            lambda: self._send(
                method, path_or_url, limit=limit, authenticated=authenticated, endpoint=endpoint, attempts=1, **kwargs
            ),
            resend="never",
        )

    def send_write(
        self, send_once: Callable[[], T], *, resend: Resend, lookup: Callable[[], T | None] | None = None
    ) -> T:
        """Run ``send_once`` (one attempt of a write) under a resend policy; the one home of "at most once".

        Most CRMs have no idempotency key, so a create must never be re-sent blindly:

        * a :class:`RateLimitedError` (429, a throttle answer) means the CRM did not act: waited out and
          re-sent, up to :attr:`max_attempts` sends, like any call;
        * any other :class:`RetryableError` (timeout, dropped connection, 5xx, or ``send_once`` saying
          the 2xx answer does not confirm the write) may come after the CRM stored the record. With
          ``resend="never"`` it is raised at once (the caller looks the record up later); with
          ``resend="after_lookup"`` the next attempt first calls ``lookup()`` and returns what it finds
          (not None) instead of sending again.

        Waits, budget checks and logging are the same as :meth:`request`'s. ``send_once`` must make
        one attempt only (``_send(attempts=1)``: the 401 token-refresh resend still comes on top).
        """
        if resend not in ("never", "after_lookup"):
            raise ValueError(f"send_write(resend={resend!r}): use request() for writes that may be re-sent")
        uncertain = False
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RateLimitedError if resend == "never" else RetryableError),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if uncertain and lookup is not None:
                    existing = lookup()
                    if existing is not None:
                        return existing
                try:
                    return send_once()
                except RateLimitedError:
                    raise
                except RetryableError:
                    uncertain = True
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _send(
        self,
        method: str,
        path_or_url: str,
        *,
        limit: str,
        authenticated: bool,
        endpoint: str | None,
        attempts: int,
        **kwargs: Any,
    ) -> requests.Response:
        """:meth:`request`'s loop: up to ``attempts`` sends for retryable errors, plus one after a token refresh."""
        url = self.url(path_or_url)
        label = endpoint or f"{method} {path_or_url.split('?')[0]}"
        auth_retry = {"done": False}
        extra_headers = dict(kwargs.pop("headers", None) or {})

        def attempt() -> requests.Response:
            try:
                # Before the slot: a token request takes a slot of its own, and must not wait on this one.
                auth = self.auth_headers() if authenticated else {}
            except RetryableError as exc:
                # The token request already had its own retries: do not multiply them here.
                raise _TokenUnavailable(exc) from None
            send_headers = {**extra_headers, **auth}
            limiter = self.limiter(limit)
            self.stats.add(waited_seconds=limiter.acquire(deadline=self.deadline, in_flight=True))
            try:
                # The slot's window runs from the answer (rate_limit's docstring): released however this ends.
                self.check_budget()
                self.stats.add(api_calls=1, endpoint=label)
                _SENT.count = requests_sent() + 1
                try:
                    response = self.get_conn().request(
                        method, url, headers=send_headers, timeout=self.request_timeout(), **kwargs
                    )
                except (requests.ConnectionError, requests.Timeout) as exc:
                    raise RetryableError(f"{self.crm_type} {label}: {type(exc).__name__}") from None
            finally:
                limiter.release()
            log.debug("%s -> %s", label, response.status_code)
            if response.status_code < 400 and response.status_code != 300:
                self.observe_response(response)
                limiter.succeeded()
                return response
            error = self.classify_error(response)
            if isinstance(error, RateLimitedError):
                self.stats.add(rate_limited=1)
                exhausted = self.window_exhausted(response)
                if exhausted is not None:
                    # The vendor says the window is used up: every caller of this limiter waits it out.
                    limiter.rate_limited(exhausted, exhausted=True)
                    limiter.drain()
                    error.retry_after = max(error.retry_after or 0.0, exhausted)
                else:
                    limiter.rate_limited(error.retry_after)
            elif isinstance(error, RetryableError):
                self.stats.add(server_errors=1)
            if (
                isinstance(error, BadCredentialsError)
                and authenticated
                and not auth_retry["done"]
                and response.status_code == 401
            ):
                # One refresh per call: a token can expire between our clock and theirs.
                auth_retry["done"] = True
                self.invalidate_token(refused=auth)
                raise _RefreshAndRetry()
            raise error

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((RetryableError, _RefreshAndRetry)),
            # ``attempts`` real attempts; the one token-refresh resend comes on top of them.
            stop=lambda rs: rs.attempt_number >= attempts + (1 if auth_retry["done"] else 0),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _TokenUnavailable as wrapped:
            raise wrapped.error from None
        except _RefreshAndRetry:  # pragma: no cover - only if attempts run out on refresh
            raise BadCredentialsError(f"{self.crm_type}: authentication failed after token refresh") from None

    def check_budget(self, wait: float = 0.0) -> None:
        """Raise :class:`BudgetExhaustedError` when waiting ``wait`` seconds would cross :attr:`deadline`.

        Called before every request and before every sleep (rate limits, backoff, Retry-After,
        cost points), so a run with a time budget stops before work it cannot finish.
        """
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            what = f"waiting {wait:.0f} s more" if wait else "another request"
            raise BudgetExhaustedError(f"{self.crm_type}: time budget reached before {what}")

    def request_timeout(self) -> tuple[float, float]:
        """:attr:`timeout`, with the read timeout cut to the time left in the budget (at least 1 s).

        A hanging host then costs at most one (shortened) request past the deadline, never a
        full read timeout per retry.
        """
        connect, read = self.timeout
        if self.deadline is None:
            return connect, read
        left = max(1.0, self.deadline - time.monotonic())
        return min(connect, left), min(read, left)

    def observe_response(self, response: requests.Response) -> None:
        """Hook for subclasses that read usage headers (Salesforce ``Sforce-Limit-Info``)."""

    def window_exhausted(self, response: requests.Response) -> float | None:
        """For a 429: the seconds until the vendor's window frees when the vendor says it is exhausted, else
        None (then the 429 is waited out alone and only teaches the adaptive limiter). Subclasses read their
        vendor's headers (HubSpot ``X-HubSpot-RateLimit-Remaining``); the base knows none."""
        return None

    def limiter(self, name: str = "default") -> RollingWindowLimiter:
        """The process-wide limiter of this account's limit ``name`` (the ceiling scaled by :attr:`rate_share`)."""
        limit = self.rate_limits.get(name, self.rate_limits["default"]).scaled(self.rate_share)
        return limiter_for(self.account_key, name, limit, paced=not self.limit_published)

    def learned_rates(self) -> dict[str, float | None]:
        """Per named limit, the rate (requests / s) the adaptive limiter learned below its ceiling (None: none)."""
        return {name: self.limiter(name).learned_rate for name in self.rate_limits}

    def start_from_learned(self, rates: Mapping[str, float]) -> None:
        """Start each named limiter from a rate an earlier run learned (the ceiling still caps it)."""
        for name, rate in rates.items():
            if name in self.rate_limits:
                self.limiter(name).start_from(rate)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _RefreshAndRetry):
            return 0.0
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            if exc.retry_after > MAX_RETRY_AFTER_SECONDS:
                raise exc
            wait = retry_after_wait(exc.retry_after)
            self.check_budget(wait)
            return wait
        # CRM_SYNC_BACKOFF_SECONDS lets a deployment (or a test) change the backoff base.
        first = float(os.environ.get("CRM_SYNC_BACKOFF_SECONDS") or self.backoff_seconds)
        wait = backoff_wait(retry_state, first, self.backoff_max_seconds)
        self.check_budget(wait)
        return wait

    def _before_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _RefreshAndRetry):
            return
        self.stats.add(retries=1)
        log.warning(
            "%s: retrying after %s (attempt %d of %d)",
            self.crm_type,
            exc,
            retry_state.attempt_number,
            self.max_attempts,
        )

    def request_json(
        self,
        method: str,
        path_or_url: str,
        *,
        resend: Resend = "always",
        lookup: Callable[[], Any] | None = None,
        parse: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """:meth:`request` and decode the JSON body (``None`` for an empty body).

        For a write the CRM cannot deduplicate (``resend="never"`` or ``"after_lookup"``, see
        :meth:`send_write`): ``lookup()`` returns the record an uncertain attempt may have stored (or
        None), and ``parse(body)`` turns a 2xx body into the same kind of value, raising a
        :class:`RetryableError` when the body does not confirm the write (then it counts as uncertain).
        """
        if resend == "always":
            if lookup is not None or parse is not None:
                raise ValueError("request_json: lookup and parse belong to resend='never' or 'after_lookup'")
            return _decoded(self.request(method, path_or_url, **kwargs))
        limit = kwargs.pop("limit", "default")
        authenticated = kwargs.pop("authenticated", True)
        endpoint = kwargs.pop("endpoint", None)

        def send_once() -> Any:
            body = _decoded(
                self._send(
                    method,
                    path_or_url,
                    limit=limit,
                    authenticated=authenticated,
                    endpoint=endpoint,
                    attempts=1,
                    **kwargs,
                )
            )
            return parse(body) if parse is not None else body

        return self.send_write(send_once, resend=resend, lookup=lookup)

    @staticmethod
    def paginate(fetch_page: Callable[[Any], tuple[list[Any], Any]]) -> Iterator[Any]:
        """Yield items from ``fetch_page(cursor) -> (items, next_cursor)`` until no cursor."""
        cursor = None
        while True:
            items, cursor = fetch_page(cursor)
            yield from items
            if not cursor:
                return

    # ------------------------------------------------------------------ UI
    def test_connection(self) -> tuple[bool, str]:
        """Make one real authenticated call (the Airflow UI's Test button)."""
        try:
            return True, self.check_access()
        except CrmError as exc:
            return False, self.redact(str(exc))
        except Exception as exc:  # anything else: still a clean message, never a traceback with secrets
            return False, self.redact(f"{type(exc).__name__}: {exc}")

    def check_access(self) -> str:
        """One cheap authenticated read; return a success message."""
        raise NotImplementedError


class _RefreshAndRetry(Exception):
    """Internal signal: the token was refreshed, send the request again."""


class _TokenUnavailable(Exception):
    """Internal: fetching a token failed after its own retries; carries that error out unretried."""

    def __init__(self, error: CrmError):
        super().__init__(str(error))
        self.error = error


def _decoded(response: requests.Response) -> Any:
    """The decoded JSON body of a successful answer (``None`` for an empty body)."""
    if not response.content:
        return None
    return response.json()


def json_body(response: requests.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON (a proxy's HTML error page)."""
    try:
        return response.json()
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds (``"7"``, ``"0.5"``) or an HTTP date (RFC 9110 section 10.2.3),
    measured from ``now`` (epoch seconds, default the clock); a past date is 0; anything else is None."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after_wait(retry_after: float, rand: Callable[[], float] = random.random) -> float:
    """What a ``Retry-After`` of ``retry_after`` seconds costs: that, plus jitter of up to
    :data:`RETRY_AFTER_JITTER_SHARE` of it (at most :data:`RETRY_AFTER_JITTER_MAX` s); never less than asked.
    The caller refuses values above :data:`MAX_RETRY_AFTER_SECONDS` (the cap) first."""
    return retry_after + rand() * min(RETRY_AFTER_JITTER_MAX, RETRY_AFTER_JITTER_SHARE * retry_after)


def backoff_wait(retry_state: tenacity.RetryCallState, first: float, maximum: float) -> float:
    """No ``Retry-After``: tenacity's exponential backoff with jitter, ``first`` x 2^(attempt-1) plus up to
    ``first`` of jitter, at most ``maximum`` seconds."""
    return tenacity.wait_exponential_jitter(initial=first, max=maximum, jitter=first)(retry_state)


def _retry_after(response: requests.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


__all__ = [
    "BadCredentialsError",
    "BadRecordError",
    "BudgetExhaustedError",
    "CallStats",
    "ConfigurationError",
    "CrmError",
    "CrmHook",
    "QuotaExhaustedError",
    "RateLimit",
    "RateLimitedError",
    "Resend",
    "RetryableError",
]
