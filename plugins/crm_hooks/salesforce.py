"""Salesforce hook: SOQL, describe and sObject Collections through the REST API.

Vendor facts this module relies on (each method's docstring names its endpoint):

* Data API ``{instance_url}/services/data/vXX.X/...``; ``instance_url`` comes from the
  OAuth token response (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/quickstart_oauth.htm).
* Auth, two flows, both ``POST .../services/oauth2/token`` (form-encoded):

  - **client credentials** (recommended for server-to-server): at the org's My Domain
    host, ``grant_type=client_credentials``, the External Client App's id/secret as HTTP
    Basic auth, as simple-salesforce sends them (``simple_salesforce/login.py``,
    https://github.com/simple-salesforce/simple-salesforce); needs a run-as user.
  - **username-password** (``grant_type=password``, password + security token):
    Salesforce recommends against it and is deprecating it (it bypasses MFA); orgs may
    block it (https://help.salesforce.com/apex/HTViewHelpDoc?id=remoteaccess_oauth_username_password_flow.htm,
    knowledge article 000886201 "Migrate from OAuth Username-Password to Client
    Credentials Flow", https://help.salesforce.com/s/articleView?id=000886201&language=en_US&type=1).
    Kept only because the Rank It Pro form collects these keys.

  Neither flow returns ``expires_in`` nor a refresh token: the session is cached for
  ``sessionSeconds`` (default 3600) and re-requested after a 401 ``INVALID_SESSION_ID``.
* Errors: a JSON array ``[{"message", "errorCode", "fields"?}]``; 401
  ``INVALID_SESSION_ID``, 403 ``REQUEST_LIMIT_EXCEEDED`` (daily allocation, not 429),
  404 ``NOT_FOUND``, 300 for an upsert whose external id matches several records,
  410 for a retired API version
  (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm).
* Usage: every response carries ``Sforce-Limit-Info: api-usage=USED/MAX``
  (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm).
* sObject Collections: create ``POST /composite/sobjects``, update ``PATCH
  /composite/sobjects``, upsert ``PATCH /composite/sobjects/{Object}/{ExtIdField}``;
  at most 200 records, one API call each, per-record ``success``/``errors`` with HTTP 200
  (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html,
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_create.htm).
* Bulk API 2.0 ingest (large batches): :mod:`crm_hooks.salesforce_bulk`, mixed into the hook.
  SOQL literals and API names: :mod:`crm_hooks.soql`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from crm_hooks.auth import ClientCredentials, SalesforcePassword
from crm_hooks.base import CrmHook, json_body
from crm_hooks.crm_settings import CrmSettings, SettingsReader
from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    ConfigurationError,
    CrmError,
    QuotaExhaustedError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.hosts import check_url
from crm_hooks.rate_limit import RateLimit, salesforce_usage
from crm_hooks.salesforce_bulk import SalesforceBulkIngest
from crm_hooks.soql import api_name

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
TOKEN_PATH = "/services/oauth2/token"
_API_VERSION = re.compile(r"^v?(\d{2,3}\.\d)$")
#: From this many Cases (or new customers) in one engine batch on, the destination sends them in Bulk API 2.0
#: upsert jobs instead of sObject Collections (Salesforce advises Bulk API above 2,000 records:
#: https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/bulk_api_2_limits.htm).
#: ``crmSettings.bulkThreshold`` overrides it per integration.
DEFAULT_BULK_THRESHOLD = 2000


@dataclass(frozen=True)
class SalesforceSettings(CrmSettings):
    """``crmSettings``: ``apiVersion`` (checked by :attr:`SalesforceHook.api_version`; None: the hook's
    default), ``sessionSeconds`` (default 3600), ``dailyBudgetShare`` (default 0.9, see
    :meth:`SalesforceHook.budget_exhausted`), ``requestsPerSecond`` (1..100, default unlimited: Salesforce
    documents no per-second limit); for the destination ``bulkThreshold`` (at least 1, default
    :data:`DEFAULT_BULK_THRESHOLD`; a non-number is the default with a warning), ``caseStatus`` (default
    "Closed") and ``caseOrigin`` (default none)."""

    api_version: str | None = None
    session_seconds: float = 3600.0
    daily_budget_share: float = 0.9
    requests_per_second: float | None = None
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD
    case_status: str | None = "Closed"
    case_origin: str | None = None

    @classmethod
    def read(cls, reader: SettingsReader) -> SalesforceSettings:
        try:
            share = float(reader.raw.get("dailyBudgetShare", 0.9))
        except (TypeError, ValueError):
            share = 0.9
        status, origin = reader.raw.get("caseStatus", "Closed"), reader.raw.get("caseOrigin")
        return cls(
            api_version=reader.present("apiVersion"),
            session_seconds=reader.lenient_float("sessionSeconds", 3600.0),
            daily_budget_share=share,
            requests_per_second=reader.number("requestsPerSecond", default=None, minimum=1, maximum=100),
            bulk_threshold=reader.integer("bulkThreshold", default=DEFAULT_BULK_THRESHOLD, minimum=1, clamp=True),
            case_status=None if status is None else str(status),
            case_origin=None if origin is None else str(origin),
        )

    def rate_limits(self, defaults: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
        """Unlimited unless ``requestsPerSecond`` is set; the daily allocation is watched through
        ``Sforce-Limit-Info`` instead (:meth:`SalesforceHook.budget_exhausted`)."""
        return {"default": RateLimit(self.requests_per_second, 1.0)}


class SalesforceHook(SalesforceBulkIngest, CrmHook):
    """Salesforce (client credentials at My Domain, or the deprecated username-password flow).

    Credentials (the app's keys): ``clientId``, ``clientSecret``; then either
    ``myDomainUrl`` (client credentials, chosen when username/password are absent) or
    ``username`` + ``password`` (+ optional ``securityToken``; token URL from ``authUrl``,
    ``myDomainUrl``, ``instanceUrl`` or https://login.salesforce.com). ``instanceUrl``
    is the fallback data host when the token response has no ``instance_url``. Every
    URL, including the token response's ``instance_url``, must be a Salesforce host or
    allowed by ``CRM_SYNC_ALLOWED_HOSTS``.

    Settings (``crmSettings``): ``apiVersion`` (default ``62.0``), ``sessionSeconds``
    (default 3600), ``dailyBudgetShare`` (default 0.9, see :meth:`budget_exhausted`),
    ``requestsPerSecond`` (1..100, default unlimited: Salesforce documents no per-second limit).

    :ivar api_usage: ``(used, max)`` from the last ``Sforce-Limit-Info`` header, or ``None``.
    """

    conn_type = "crm_salesforce"
    hook_name = "Salesforce (Rank It Pro sync)"
    default_conn_name = "crm_salesforce_default"
    crm_type = "salesforce"
    display_name = "Salesforce"
    report_colour = "#00a1e0"
    vendor_domains = ("salesforce.com", "force.com", "cloudforce.com")
    #: The login host; the data host is the token response's ``instance_url``.
    default_base_url = DEFAULT_LOGIN_URL
    default_api_version: ClassVar[str] = "62.0"
    batch_size = 200
    #: Collections calls (and SOQL reads) of one step sent at a time, so one call's 429 or 5xx wait does not
    #: stop the sync (Salesforce limits concurrent requests only when they run longer than 20 s).
    lanes = 4
    secret_keys = ("clientSecret", "password", "securityToken")
    default_rate_limits: ClassVar[dict[str, RateLimit]] = {"default": RateLimit(None)}
    settings_class = SalesforceSettings

    def __init__(self, conn_id: str | None = None, **kwargs: Any):
        super().__init__(conn_id, **kwargs)
        self._instance_url: str | None = None
        self._identity_url: str | None = None  # the token response's ``id`` (names the org)
        self._describe_cache: dict[str, dict[str, Any]] = {}
        self.api_usage: tuple[int, int] | None = None

    # ------------------------------------------------------------------ config
    @classmethod
    def credentials_from_connection(cls, conn: Any) -> dict[str, Any]:
        """Connection -> app keys: login -> ``username``, password -> ``password``, host ->
        ``instanceUrl`` (or ``myDomainUrl`` when there is no login and no ``myDomainUrl``
        extra); extra ``clientId``, ``clientSecret``, ``securityToken``, ``myDomainUrl``,
        ``authUrl``, ``instanceUrl`` (plain or ``extra__crm_salesforce__`` prefixed)."""
        extra = conn.extra_dejson or {}
        creds: dict[str, Any] = {"username": conn.login, "password": conn.password}
        for key in ("clientId", "clientSecret", "securityToken", "myDomainUrl", "authUrl", "instanceUrl"):
            creds[key] = extra.get(key) or extra.get(f"extra__{cls.conn_type}__{key}")
        host = (conn.host or "").strip()
        if host:
            if "://" not in host:
                host = f"https://{host}"
            if getattr(conn, "port", None) and urlsplit(host).port is None:
                parts = urlsplit(host)
                host = f"{parts.scheme}://{parts.hostname}:{conn.port}{parts.path}"
            if not creds.get("myDomainUrl") and not conn.login:
                creds["myDomainUrl"] = host
            elif not creds.get("instanceUrl"):
                creds["instanceUrl"] = host
        return {k: v for k, v in creds.items() if v not in (None, "")}

    @property
    def api_version(self) -> str:
        """``apiVersion`` setting (``"62.0"``; a leading ``v`` is accepted)."""
        raw = str(self.crm_settings.api_version or self.default_api_version).strip()
        match = _API_VERSION.match(raw)
        if not match:
            raise ConfigurationError(f"salesforce: apiVersion {raw!r} is not like '62.0'")
        return match.group(1)

    def data_path(self, suffix: str) -> str:
        """``/services/data/vXX.X/<suffix>``."""
        return f"/services/data/v{self.api_version}/{suffix.lstrip('/')}"

    @property
    def auth_flow(self) -> str:
        """``"client_credentials"`` or ``"password"``, from which keys are present.

        :raises ConfigurationError: naming what each flow is missing.
        """
        has_user = self.cred("username") is not None or self.cred("password") is not None
        if self.cred("myDomainUrl") is not None and not has_user:
            return "client_credentials"
        if has_user:
            return "password"
        cc_missing = [k for k in ("myDomainUrl", "clientId", "clientSecret") if self.cred(k) is None]
        pw_missing = [k for k in ("clientId", "clientSecret", "username", "password") if self.cred(k) is None]
        raise ConfigurationError(
            "salesforce: credentials fit no OAuth flow; client credentials flow is missing "
            f"{', '.join(cc_missing)}; username-password flow is missing {', '.join(pw_missing)}"
        )

    def _url_setting(self, key: str) -> str | None:
        if self.cred(key) is None:
            return None
        return self.override_url(key, "") or None

    @property
    def token_url(self) -> str:
        """Where :meth:`fetch_token` posts (My Domain for client credentials)."""
        if self.auth_flow == "client_credentials":
            base = self._url_setting("myDomainUrl")
        else:
            base = (
                self._url_setting("authUrl")
                or self._url_setting("myDomainUrl")
                or self._url_setting("instanceUrl")
                or DEFAULT_LOGIN_URL
            )
        return f"{base}{TOKEN_PATH}"

    @property
    def base_url(self) -> str:
        """The org's instance URL (from the token response); fetches a token if needed."""
        if self._instance_url is None:
            self.access_token()
        assert self._instance_url is not None
        return self._instance_url

    @property
    def account_key(self) -> str:
        """Per-org bucket key that does not need a token (the base's uses ``base_url``)."""
        if self._account_key:
            return self._account_key
        host = self.cred("myDomainUrl") or self.cred("instanceUrl") or self.cred("authUrl") or DEFAULT_LOGIN_URL
        return f"{self.crm_type}:{str(host).rstrip('/')}:{self.account_id()}"

    def account_id(self) -> str:
        """A short non-secret fingerprint of client id + user + My Domain (sha256, 12 hex)."""
        basis = "|".join(str(self.cred(k) or "") for k in ("clientId", "username", "myDomainUrl"))
        return hashlib.sha256(basis.encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ auth
    def authenticator(self) -> ClientCredentials:
        """``POST {token host}/services/oauth2/token`` for the configured flow (:attr:`auth_flow`).

        Client credentials: form ``grant_type=client_credentials`` with
        ``Authorization: Basic base64(clientId:clientSecret)``. Username-password
        (:class:`~crm_hooks.auth.SalesforcePassword`): form ``grant_type=password, client_id, client_secret,
        username, password`` (password + security token). The response's ``instance_url`` becomes the data
        host after passing :func:`crm_hooks.hosts.check_url`; the session is cached for ``sessionSeconds``.
        https://developer.salesforce.com/blogs/2024/02/invoke-rest-apis-with-the-salesforce-integration-user-and-oauth-client-credentials,
        https://help.salesforce.com/s/articleView?id=000886201&language=en_US&type=1
        """
        common: dict[str, Any] = {
            "token_path": TOKEN_PATH,
            "token_url": lambda: self.token_url,
            "lifetime": self._session_seconds,
            "on_token": self._on_token,
        }
        if self.auth_flow == "client_credentials":
            return ClientCredentials(self, form=self._client_credentials_form, **common)
        return SalesforcePassword(self, **common)

    def _client_credentials_form(self) -> dict[str, Any]:
        client_id, client_secret, _ = self.require("clientId", "clientSecret", "myDomainUrl")
        return {"data": {"grant_type": "client_credentials"}, "auth": (str(client_id), str(client_secret))}

    def _on_token(self, body: Mapping[str, Any]) -> None:
        """Keep the org's identity URL and its data host (``instance_url``, else ``instanceUrl``/``myDomainUrl``)."""
        self._identity_url = str(body.get("id") or "") or None
        instance = body.get("instance_url")
        if instance:
            self._instance_url = check_url(
                str(instance), self.vendor_domains, what="salesforce token response instance_url"
            )
        else:
            fallback = self._url_setting("instanceUrl") or self._url_setting("myDomainUrl")
            if not fallback:
                raise ConfigurationError("salesforce: token response has no instance_url and instanceUrl is not set")
            self._instance_url = fallback

    def _session_seconds(self, body: Mapping[str, Any], token: str) -> float:
        """Neither flow returns ``expires_in``: ``crmSettings.sessionSeconds`` (default 3600)."""
        return self.crm_settings.session_seconds

    def fetch_account_identity(self) -> str:
        """The org id: from the token response's ``id`` (``https://login.salesforce.com/id/<orgId>/<userId>``),
        else ``GET /services/oauth2/userinfo`` -> ``organization_id``.

        https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_openid.htm (identity URL),
        https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_userinfo_endpoint.htm (UserInfo).
        """
        self.access_token()
        org = _org_from_identity_url(self._identity_url)
        if org is None:
            body = self.request_json("GET", "/services/oauth2/userinfo", endpoint="GET /services/oauth2/userinfo")
            org = str(body.get("organization_id") or "") if isinstance(body, Mapping) else ""
        return org

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <session>``."""
        return {"Authorization": f"Bearer {self.access_token()}"}

    # ------------------------------------------------------------------ errors
    def classify_error(self, response: requests.Response) -> CrmError:
        """Map Salesforce's error array (or an OAuth error object) to a typed error.

        OAuth ``{"error", "error_description"}`` (4xx) -> :class:`BadCredentialsError` with
        the description; 401 ``INVALID_SESSION_ID`` -> :class:`BadCredentialsError` (the base
        refreshes once); 403 ``REQUEST_LIMIT_EXCEEDED`` -> :class:`QuotaExhaustedError`
        (never retried), except the concurrent long-running request limit
        (``ConcurrentPerOrgLongTxn``) -> :class:`RateLimitedError`; other 403 ->
        :class:`BadCredentialsError`; 300 (external id matches several records), 400, 404
        -> :class:`BadRecordError`; 410 (API version retired) -> :class:`ConfigurationError`;
        429 -> :class:`RateLimitedError`; 5xx -> :class:`RetryableError`.
        """
        status = response.status_code
        body = json_body(response)
        if isinstance(body, Mapping) and "error" in body:
            detail = self.redact(f"{body.get('error')}: {body.get('error_description') or ''}".rstrip(": "))
            if status >= 500:
                return RetryableError(f"salesforce HTTP {status}: {detail}", status=status)
            if status == 429:
                return self.default_error(response, detail, code=str(body.get("error")))
            return BadCredentialsError(
                f"salesforce authentication failed: {detail}", status=status, code=str(body.get("error"))
            )
        code: str | None = None
        message: str | None = None
        if isinstance(body, list) and body and isinstance(body[0], Mapping):
            code = body[0].get("errorCode")
            message = body[0].get("message")
            fields = body[0].get("fields")
            if fields:
                message = f"{message} (fields: {', '.join(map(str, fields))})"
        if status == 300:
            matches = len(body) if isinstance(body, list) else "several"
            return BadRecordError(
                f"salesforce HTTP 300: external ID matches {matches} records",
                status=status,
                code="MULTIPLE_EXTERNAL_ID_MATCHES",
            )
        detail = self.redact(
            ": ".join(str(p) for p in (code, message) if p) or (response.reason or "").strip() or f"HTTP {status}"
        )
        text = f"salesforce HTTP {status}: {detail}"
        if status == 429:  # not a Salesforce status, but proxies send it: a rate limit, Retry-After honoured
            return self.default_error(response, detail, code=code)
        if code == "REQUEST_LIMIT_EXCEEDED":
            # Only the daily allocation is final; the concurrency limit clears by itself.
            if "concurrent" in str(message or "").lower():
                return RateLimitedError(text, status=status, code=code)
            return QuotaExhaustedError(text, status=status, code=code)
        if status == 410:
            version = self.crm_settings.api_version or self.default_api_version
            return ConfigurationError(
                f"{text} (API version {version} is retired; set crmSettings.apiVersion)", status=status, code=code
            )
        return self.default_error(response, detail, code=code)

    def observe_response(self, response: requests.Response) -> None:
        """Read ``Sforce-Limit-Info: api-usage=USED/MAX`` into :attr:`api_usage`."""
        usage = salesforce_usage(response.headers)
        if usage:
            self.api_usage = usage

    def budget_exhausted(self) -> bool:
        """True once ``dailyBudgetShare`` (default 0.9) of the org's daily API allocation
        is used, per the last ``Sforce-Limit-Info``; the engine stops the run then."""
        if not self.api_usage or not self.api_usage[1]:
            return False
        share = self.crm_settings.daily_budget_share
        used, maximum = self.api_usage
        return used >= share * maximum

    # ------------------------------------------------------------------ API
    def _resolve_next(self, next_url: str) -> str:
        """A ``nextRecordsUrl`` is a path from the instance root (``/services/data/...``)."""
        if next_url.startswith(("http://", "https://")):
            return check_url(next_url, self.vendor_domains, what="salesforce nextRecordsUrl")
        base = urlsplit(self.base_url)
        prefix = base.path.rstrip("/")
        if prefix and next_url.startswith(prefix + "/"):
            return f"{base.scheme}://{base.netloc}{next_url}"
        return f"{self.base_url}/{next_url.lstrip('/')}"

    def query(self, soql: str) -> Iterator[dict[str, Any]]:
        """Run SOQL: ``GET /services/data/vXX.X/query?q=...``, following ``nextRecordsUrl``.

        Lazily yields records (each with its ``attributes``). Build literals with
        :func:`crm_hooks.soql.soql_quote` / :func:`crm_hooks.soql.soql_in`.
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm
        """

        def fetch_page(next_url: Any) -> tuple[list[Any], Any]:
            if next_url:
                body = self.request_json("GET", self._resolve_next(str(next_url)), endpoint="GET query (next)")
            else:
                body = self.request_json("GET", self.data_path("query"), params={"q": soql}, endpoint="GET query")
            body = body or {}
            more = None if body.get("done", True) else body.get("nextRecordsUrl")
            return list(body.get("records") or []), more

        return self.paginate(fetch_page)

    def describe(self, sobject: str) -> dict[str, Any]:
        """``GET /services/data/vXX.X/sobjects/{sobject}/describe`` (cached per hook instance).
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm
        """
        name = api_name(sobject, "sObject name")
        if name not in self._describe_cache:
            self._describe_cache[name] = (
                self.request_json(
                    "GET", self.data_path(f"sobjects/{name}/describe"), endpoint=f"GET sobjects/{name}/describe"
                )
                or {}
            )
        return self._describe_cache[name]

    @staticmethod
    def _typed(record: Mapping[str, Any], sobject: str | None, index: int) -> dict[str, Any]:
        rec = dict(record)
        attrs = dict(rec.get("attributes") or {})
        if sobject is not None:
            if attrs.get("type") not in (None, sobject):
                raise ValueError(f"record {index} has type {attrs.get('type')!r}, expected {sobject!r}")
            attrs["type"] = sobject
        elif not attrs.get("type"):
            raise ValueError(f"record {index} has no attributes.type")
        rec["attributes"] = attrs
        return rec

    def _check_size(self, records: Sequence[Any]) -> None:
        if len(records) > self.batch_size:
            raise ValueError(f"sObject Collections take at most {self.batch_size} records, got {len(records)}")

    def upsert_records(
        self,
        sobject: str,
        external_id_field: str,
        records: Sequence[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
    ) -> list[dict[str, Any]]:
        """Upsert by external id: ``PATCH /services/data/vXX.X/composite/sobjects/{sobject}/{field}``.

        Body ``{allOrNone, records: [{attributes: {type}, <field>: value, ...}]}`` (at most
        200; ``attributes.type`` is filled in). Returns Salesforce's per-record results in
        request order: ``{id, success, created, errors: [{statusCode, message, fields}]}``.
        https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html
        """
        name = api_name(sobject, "sObject name")
        ext = api_name(external_id_field, "external ID field")
        self._check_size(records)
        if not records:
            return []
        typed = []
        for i, record in enumerate(records):
            if record.get(ext) in (None, ""):
                raise ValueError(f"record {i} has no value for external ID field {ext}")
            typed.append(self._typed(record, name, i))
        return list(
            self.request_json(
                "PATCH",
                self.data_path(f"composite/sobjects/{name}/{ext}"),
                json={"allOrNone": bool(all_or_none), "records": typed},
                endpoint=f"PATCH composite/sobjects/{name}/{ext}",
            )
            or []
        )

    def create_records(
        self, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[dict[str, Any]]:
        """Create records: ``POST /services/data/vXX.X/composite/sobjects``.

        Each record needs ``attributes.type`` (types may be mixed); at most 200. Returns
        ``[{id, success, errors}]`` in request order.
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_create.htm
        """
        self._check_size(records)
        if not records:
            return []
        typed = [self._typed(r, None, i) for i, r in enumerate(records)]
        return list(
            self.request_json(
                "POST",
                self.data_path("composite/sobjects"),
                json={"allOrNone": bool(all_or_none), "records": typed},
                endpoint="POST composite/sobjects",
            )
            or []
        )

    def update_records(
        self, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[dict[str, Any]]:
        """Update records: ``PATCH /services/data/vXX.X/composite/sobjects``.

        Each record needs ``attributes.type`` and ``id``; at most 200. Returns
        ``[{id, success, errors}]`` in request order.
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_update.htm
        """
        self._check_size(records)
        if not records:
            return []
        typed = []
        for i, record in enumerate(records):
            if not (record.get("id") or record.get("Id")):
                raise ValueError(f"record {i} has no id")
            typed.append(self._typed(record, None, i))
        return list(
            self.request_json(
                "PATCH",
                self.data_path("composite/sobjects"),
                json={"allOrNone": bool(all_or_none), "records": typed},
                endpoint="PATCH composite/sobjects",
            )
            or []
        )

    def limits(self) -> dict[str, Any]:
        """The org's limits: ``GET /services/data/vXX.X/limits`` (``DailyApiRequests`` etc.).
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_limits.htm
        """
        return self.request_json("GET", self.data_path("limits"), endpoint="GET limits") or {}

    def check_access(self) -> str:
        """Describe ``Account`` (as Airflow's Salesforce hook does) and report the API usage."""
        self.describe("Account")
        usage = f"{self.api_usage[0]}/{self.api_usage[1]}" if self.api_usage else "unknown"
        host = urlsplit(self.base_url).netloc
        return f"Connected to Salesforce {host} (API v{self.api_version}, Account readable; API usage {usage})"


def _org_from_identity_url(url: str | None) -> str | None:
    """``<orgId>`` of an identity URL ``.../id/<orgId>/<userId>``; None when it is not one."""
    parts = urlsplit(url or "").path.strip("/").split("/")
    if len(parts) >= 3 and parts[-3] == "id" and re.fullmatch(r"00D[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?", parts[-2]):
        return parts[-2]
    return None


__all__ = ["DEFAULT_BULK_THRESHOLD", "SalesforceHook", "SalesforceSettings"]
