"""ServiceTitan hook: customers, locations and jobs through the tenant-scoped v2 REST API.

Vendor facts this module relies on (each method's docstring names its endpoint):

* Hosts: API ``https://api.servicetitan.io``, token endpoint ``https://auth.servicetitan.io/connect/token``;
  the integration (test) environment is ``api-integration.servicetitan.io`` /
  ``auth-integration.servicetitan.io``. Client id/secret are per tenant *and* per environment, the app
  key is neither (https://developer.servicetitan.io/docs/get-going-environments,
  https://developer.servicetitan.io/docs/faqs-apis-app-keys-client-keys).
* Auth: OAuth 2.0 client credentials only: ``POST /connect/token`` form ``grant_type=client_credentials,
  client_id, client_secret``; access tokens expire after 900 s and there is no refresh token; cache them,
  since token requests are throttled (https://developer.servicetitan.io/docs/oauth20,
  https://developer.servicetitan.io/docs/get-going-first-api-call). Every API call sends
  ``Authorization: Bearer <token>`` **and** ``ST-App-Key: <app key>`` (OpenAPI ``securitySchemes``
  ``appKey`` + ``bearerToken`` of ServiceTitan's v2 exports,
  https://github.com/compwright/servicetitan/tree/d86908e/spec).
* Paths ``/{module}/v2/tenant/{tenant}/{resource}``: ``/crm/v2/tenant/{t}/customers``, ``.../locations``,
  ``/jpm/v2/tenant/{t}/jobs``, ``/jpm/v2/tenant/{t}/job-types/{id}``, ``/settings/v2/tenant/{t}/business-units/{id}``,
  ``/marketing/v2/tenant/{t}/campaigns/{id}`` (``tenant-{crm,jpm,settings,marketing}-v2.yml``); the lists
  ``GET /settings/v2/tenant/{t}/business-units`` (``BusinessUnits_GetList``), ``GET /jpm/v2/tenant/{t}/job-types``
  (``JobTypes_GetList``) and ``GET /marketing/v2/tenant/{t}/campaigns`` (``Campaigns_GetList``) take
  ``active`` (``True`` | ``Any`` | ``False``; "only active items will be returned by default") and answer
  items with ``id``, ``name`` (and ``active`` on business units and campaigns).
  Lists are paged with ``page`` (1-based) / ``pageSize`` (50 by default) and answer
  ``{page, pageSize, hasMore, totalCount?, data}``.
* ``externalData``: key/value pairs scoped by an ``applicationGuid`` ("items created with a specific guid
  can be fetched/updated/removed only when the same application guid is provided") on customers,
  locations and jobs; the list filters ``externalDataApplicationGuid`` + ``externalDataKey`` +
  ``externalDataValues`` (comma-separated) exist on ``GET customers`` and ``GET jobs`` in the current API
  (generated types of the newer ServiceTitan spec, ``Customers_GetList``; MindCloud's native reference
  for ``GET /jpm/v2/tenant/{tenant}/jobs``). This is the sync's idempotency marker.
* No batch create/upsert for customers or jobs, no idempotency-key header.
* Limit: "60 calls per second per application per tenant for all APIs except reporting APIs"
  (https://developer.servicetitan.io/docs/faqs-apis-app-keys-client-keys); over it: HTTP 429.
* Errors 400/403/404/409: ``ApiErrorResponse`` "following RFC 7807":
  ``{type, title, status, traceId, errors: {field: [messages]}, data}``.

**UNCONFIRMED** (not in a primary source; everything below is kept in this block and in
:data:`_UNCONFIRMED_DEFAULTS`): the 429 body and whether ``Retry-After`` is sent (api-evangelist's
profile says it is; without it the hook waits one second, the limit's window); 401 bodies and the token
endpoint's error body (an IdentityServer-style ``{"error": "invalid_client"}`` is assumed); how the
``phone`` filter normalises numbers (national digits are sent for NANP numbers, as stored by the sync);
the largest ``pageSize`` and how many ``externalDataValues`` one call takes (50 / 25 are used).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from crm_hooks.auth import ClientCredentials, is_token_request
from crm_hooks.base import CrmHook, json_body
from crm_hooks.crm_settings import CrmSettings, SettingsReader
from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    ConfigurationError,
    CrmError,
    RateLimitedError,
)
from crm_hooks.rate_limit import RateLimit

#: Default hosts per environment (credentials / crmSettings ``environment``).
HOSTS: dict[str, tuple[str, str]] = {
    "production": ("https://api.servicetitan.io", "https://auth.servicetitan.io"),
    "integration": ("https://api-integration.servicetitan.io", "https://auth-integration.servicetitan.io"),
}
TOKEN_PATH = "/connect/token"
#: The sync's externalData application guid unless ``applicationGuid`` is configured
#: (uuid5 of the URL namespace and "https://rankitpro.com/crm-sync/servicetitan").
DEFAULT_APPLICATION_GUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://rankitpro.com/crm-sync/servicetitan"))

_UNCONFIRMED_DEFAULTS = {
    "retry_after_seconds": 1.0,  # 429 without Retry-After: wait out the one-second window
    "page_size": 50,  # the documented default; the maximum is not documented
    "values_per_call": 25,  # externalDataValues per list call
}
PAGE_SIZE = _UNCONFIRMED_DEFAULTS["page_size"]
VALUES_PER_CALL = _UNCONFIRMED_DEFAULTS["values_per_call"]
#: ``ids`` list filters take at most 50 ids (tenant-jpm-v2 / tenant-crm-v2 ``ids`` parameter).
IDS_PER_CALL = 50
_TENANT = re.compile(r"^\d{1,19}$")
#: The client-side window for the documented "60 calls per second": 10% longer (see ``rate_limits``).
WINDOW_SECONDS = 1.1
#: crmSettings keys of the job defaults every ServiceTitan job needs.
REQUIRED_JOB_SETTINGS = ("businessUnitId", "jobTypeId", "campaignId", "priority")
#: The key under which :class:`ServiceTitanSettings` records job defaults it cannot use.
JOB_DEFAULTS = "jobDefaults"
#: The job's reference ids: crmSettings id key, the crmSettings key naming one instead, what it is, and the
#: tenant list it is chosen from (module, resource) when crmSettings gives no id.
JOB_REFERENCES = (
    ("businessUnitId", "businessUnitName", "business unit", ("settings", "business-units")),
    ("jobTypeId", "jobTypeName", "job type", ("jpm", "job-types")),
    ("campaignId", "campaignName", "campaign", ("marketing", "campaigns")),
)
#: The job priority when crmSettings names none (one of ServiceTitan's Low, Normal, High, Urgent).
DEFAULT_PRIORITY = "Normal"
#: Choices a configuration error lists at most.
CHOICES_LISTED = 20


@dataclass(frozen=True)
class JobDefaults:
    """The per-tenant values every job needs (``crmSettings``), plus appointment length and technicians."""

    business_unit_id: int
    job_type_id: int
    campaign_id: int
    priority: str
    appointment_minutes: int = 60
    technician_ids: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class JobSettings:
    """The job defaults as ``crmSettings`` gives them: per reference an id, a name to choose by, or neither
    (then the tenant's single active one is used: :func:`choose_reference`)."""

    #: crmSettings id key (``businessUnitId``, ...) -> the id set there
    ids: Mapping[str, int] = field(default_factory=dict)
    #: crmSettings id key -> the name set under its name key (``campaignName: "Rank It Pro"``)
    names: Mapping[str, str] = field(default_factory=dict)
    priority: str = DEFAULT_PRIORITY
    appointment_minutes: int = 60
    technician_ids: tuple[int, ...] = field(default=())

    def complete(self, ids: Mapping[str, int]) -> JobDefaults:
        """The :class:`JobDefaults` with ``ids`` (chosen from the tenant) for the references not set here."""
        chosen = {**ids, **self.ids}
        return JobDefaults(
            chosen["businessUnitId"],
            chosen["jobTypeId"],
            chosen["campaignId"],
            self.priority,
            self.appointment_minutes,
            self.technician_ids,
        )


def choose_reference(items: Iterable[Mapping[str, Any]], *, key: str, wanted: str | None, tenant: str) -> int:
    """The id of the tenant's item to use for ``key`` (pure): the one active item named ``wanted``
    (case-insensitive, whole name), or without a name the tenant's single active item.

    :raises ConfigurationError: when none or several fit, listing the tenant's choices (id and name) so the
        admin can set ``crmSettings.<key>`` (or the name key).
    """
    _, name_key, what, _ = next(r for r in JOB_REFERENCES if r[0] == key)
    active = [i for i in items if i.get("active", True) is not False and i.get("id") is not None]
    if wanted:
        fits = [i for i in active if str(i.get("name") or "").strip().casefold() == wanted.strip().casefold()]
        if len(fits) == 1:
            return int(fits[0]["id"])
        problem = (
            f"{len(fits)} active {what}s are named {wanted[:60]!r}"
            if fits
            else (f"no active {what} is named {wanted[:60]!r} (crmSettings.{name_key})")
        )
        choices = fits or active
    else:
        if len(active) == 1:
            return int(active[0]["id"])
        problem = f"tenant {tenant} has {len(active) or 'no'} active {what}s"
        choices = active
    if not choices:
        raise ConfigurationError(f"servicetitan: {problem}: create one in ServiceTitan, or set crmSettings.{key}")
    listed = "; ".join(f"{i['id']} {str(i.get('name') or '')[:60]!r}" for i in choices[:CHOICES_LISTED])
    more = f"; and {len(choices) - CHOICES_LISTED} more" if len(choices) > CHOICES_LISTED else ""
    raise ConfigurationError(
        f"servicetitan: {problem}: set crmSettings.{key} (or {name_key}) to one of: {listed}{more}"
    )


def parse_job_settings(settings: Mapping[str, Any]) -> JobSettings:
    """``crmSettings`` -> :class:`JobSettings` (ids and names may be missing; priority defaults to
    :data:`DEFAULT_PRIORITY`).

    :raises ConfigurationError: naming every malformed key.
    """
    ids: dict[str, int] = {}
    names: dict[str, str] = {}
    bad = []
    for key, name_key, _, _ in JOB_REFERENCES:
        if settings.get(key) not in (None, ""):
            try:
                ids[key] = int(str(settings[key]).strip())
            except ValueError:
                bad.append(key)
        elif isinstance(settings.get(name_key), str) and settings[name_key].strip():
            names[key] = settings[name_key].strip()
    minutes = settings.get("appointmentMinutes", 60)
    try:
        minutes = int(minutes)
    except (TypeError, ValueError):
        bad.append("appointmentMinutes")
    technicians = settings.get("technicianIds") or []
    try:
        technician_ids = tuple(int(t) for t in (technicians if isinstance(technicians, list) else [technicians]))
    except (TypeError, ValueError):
        bad.append("technicianIds")
    if bad or not 1 <= minutes <= 24 * 60:
        raise ConfigurationError(
            f"servicetitan: crmSettings {', '.join(bad) or 'appointmentMinutes'} must be "
            "numeric ServiceTitan ids (appointmentMinutes: 1-1440)"
        )
    priority = str(settings.get("priority") or "").strip() or DEFAULT_PRIORITY
    return JobSettings(ids, names, priority, minutes, technician_ids)


def parse_job_defaults(settings: Mapping[str, Any]) -> JobDefaults:
    """``crmSettings`` that set every job default -> :class:`JobDefaults` (no discovery).

    :raises ConfigurationError: naming every missing or malformed key.
    """
    missing = [k for k in REQUIRED_JOB_SETTINGS if settings.get(k) in (None, "")]
    if missing:
        raise ConfigurationError(
            f"servicetitan: crmSettings is missing {', '.join(missing)} (every ServiceTitan job needs a business "
            "unit, job type, campaign and priority; set the tenant's ids under crmSettings)"
        )
    return parse_job_settings(settings).complete({})


@dataclass(frozen=True)
class ServiceTitanSettings(CrmSettings):
    """``crmSettings``: ``requestsPerSecond`` (1..60, default 60, the documented limit), ``environment`` and
    ``applicationGuid`` (credentials take precedence; validated by the hook); for the destination
    ``defaultCountry`` (default "USA"), ``customerType`` (default "Residential") and the job defaults
    (``businessUnitId`` / ``businessUnitName``, ``jobTypeId`` / ``jobTypeName``, ``campaignId`` /
    ``campaignName``, ``priority`` (default "Normal"), ``appointmentMinutes``, ``technicianIds``:
    :func:`parse_job_settings`; a reference without id is chosen from the tenant at run start), checked only
    when check-ins become jobs (:meth:`required_job_settings`)."""

    requests_per_second: float | None = 60.0
    environment: str | None = None
    application_guid: str | None = None
    default_country: str = "USA"
    customer_type: str = "Residential"
    job_settings: JobSettings | None = None

    @classmethod
    def read(cls, reader: SettingsReader) -> ServiceTitanSettings:
        try:
            job_settings: JobSettings | None = parse_job_settings(reader.raw)
        except ConfigurationError as exc:
            job_settings = None
            reader.refuse(JOB_DEFAULTS, exc.message)
        return cls(
            requests_per_second=reader.number("requestsPerSecond", default=60.0, minimum=1, maximum=60),
            environment=reader.present("environment"),
            application_guid=reader.present("applicationGuid"),
            default_country=reader.present("defaultCountry") or "USA",
            customer_type=reader.present("customerType") or "Residential",
            job_settings=job_settings,
            errors=reader.errors,
        )

    def required_job_settings(self) -> JobSettings:
        """The job defaults as set (the destination discovers the rest from the tenant).

        :raises ConfigurationError: naming every malformed key (:func:`parse_job_settings`).
        """
        self.require(JOB_DEFAULTS)
        assert self.job_settings is not None, "read() sets the job settings or records why not"
        return self.job_settings

    def rate_limits(self, defaults: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
        """``requestsPerSecond`` in any window of :data:`WINDOW_SECONDS`.

        ServiceTitan counts requests when they arrive, the limiter when they leave: a window slightly
        longer than the documented second keeps network jitter from drawing 429s at full speed.
        """
        return {"default": RateLimit(self.requests_per_second, WINDOW_SECONDS)}


class ServiceTitanHook(CrmHook):
    """ServiceTitan (OAuth2 client credentials + app key, one tenant per integration).

    Credentials (the app's keys): ``clientId``, ``clientSecret``, ``tenantId`` (what the Rank It Pro form
    collects) and ``appKey`` (the ``ST-App-Key`` header; not collected by the form yet: a missing app key
    is a :class:`ConfigurationError` naming it). Optional ``environment`` (``production`` |
    ``integration``), ``baseUrl`` and ``authUrl`` (the auth host, or the full token URL), each a
    ServiceTitan host or allowed by ``CRM_SYNC_ALLOWED_HOSTS``.

    Settings (``crmSettings``): ``applicationGuid`` (the externalData guid; default
    :data:`DEFAULT_APPLICATION_GUID`), ``requestsPerSecond`` (1..60, default 60, the documented limit);
    ``environment`` is read here too. The job defaults are the destination's.
    """

    conn_type = "crm_servicetitan"
    hook_name = "ServiceTitan (Rank It Pro sync)"
    default_conn_name = "crm_servicetitan_default"
    crm_type = "servicetitan"
    display_name = "ServiceTitan"
    report_colour = "#1d3f72"
    vendor_domains = ("servicetitan.io",)
    default_base_url = HOSTS["production"][0]
    batch_size = 1
    secret_keys = ("clientSecret", "appKey")
    #: Per-record calls in lanes (``CrmHook.lanes``): at 60 calls / s and 6% of answers a 429 or 5xx (the
    #: benchmark's faults profile), about 4 calls a second wait a second; 16 lanes keep the limit busy.
    lanes: ClassVar[int] = 16
    default_rate_limits: ClassVar[dict[str, RateLimit]] = {"default": RateLimit(60, 1.0)}
    settings_class = ServiceTitanSettings

    # ------------------------------------------------------------------ config
    @classmethod
    def credentials_from_connection(cls, conn: Any) -> dict[str, Any]:
        """Connection -> app keys: login -> ``clientId``, password -> ``clientSecret``; extra
        ``tenantId``, ``appKey``, ``environment``, ``baseUrl``, ``authUrl``, ``applicationGuid``
        (plain or ``extra__crm_servicetitan__`` prefixed)."""
        extra = conn.extra_dejson or {}
        creds: dict[str, Any] = {"clientId": conn.login, "clientSecret": conn.password}
        for key in ("tenantId", "appKey", "environment", "baseUrl", "authUrl", "applicationGuid"):
            creds[key] = extra.get(key) or extra.get(f"extra__{cls.conn_type}__{key}")
        return {k: v for k, v in creds.items() if v not in (None, "")}

    @property
    def environment(self) -> str:
        """``production`` (default) or ``integration``, from credentials or crmSettings."""
        value = str(self.cred("environment") or self.crm_settings.environment or "production").strip().lower()
        if value not in HOSTS:
            raise ConfigurationError(f"servicetitan: environment must be one of {', '.join(HOSTS)}, not {value!r}")
        return value

    @property
    def base_url(self) -> str:
        """``baseUrl`` if set (allowed hosts only), else the environment's API host."""
        return self.override_url("baseUrl", HOSTS[self.environment][0])

    @property
    def token_url(self) -> str:
        """``authUrl`` (an auth host, or a full ``.../connect/token`` URL), else the environment's."""
        base = self.override_url("authUrl", HOSTS[self.environment][1])
        return base if base.endswith(TOKEN_PATH) else f"{base}{TOKEN_PATH}"

    @property
    def tenant(self) -> str:
        """The numeric tenant id (a path segment of every call)."""
        (tenant,) = self.require("tenantId")
        text = str(tenant).strip()
        if not _TENANT.match(text):
            raise ConfigurationError("servicetitan: tenantId must be the numeric ServiceTitan tenant id")
        return text

    @property
    def application_guid(self) -> str:
        """The externalData ``applicationGuid`` (``crmSettings.applicationGuid`` or credentials)."""
        raw = self.crm_settings.application_guid or self.cred("applicationGuid") or DEFAULT_APPLICATION_GUID
        try:
            return str(uuid.UUID(str(raw)))
        except ValueError:
            raise ConfigurationError(
                "servicetitan: applicationGuid must be a GUID (e.g. 3f2b...-...; leave it unset for the sync's default)"
            ) from None

    def account_id(self) -> str:
        """Tenant id plus a short fingerprint of the app key (the limit is per app per tenant)."""
        app = hashlib.sha256(str(self.cred("appKey") or "").encode()).hexdigest()[:8]
        return f"{self.cred('tenantId') or ''}-{app}"

    def tenant_path(self, module: str, resource: str) -> str:
        """``/{module}/v2/tenant/{tenant}/{resource}``."""
        return f"/{module}/v2/tenant/{self.tenant}/{resource.lstrip('/')}"

    def check_config(self) -> None:
        """Every credential key a call needs, named at once when missing (before any request)."""
        missing = [k for k in ("clientId", "clientSecret", "tenantId", "appKey") if self.cred(k) is None]
        if missing:
            hint = (
                (
                    " (appKey is the ST-App-Key of the Rank It Pro ServiceTitan app; the admin form does not "
                    "collect it yet: add it to the integration's credentials)"
                )
                if "appKey" in missing
                else ""
            )
            raise ConfigurationError(f"servicetitan: credentials are missing {', '.join(missing)}{hint}")
        self.tenant  # noqa: B018 - validates the id
        self.base_url  # noqa: B018 - validates the override host
        self.token_url  # noqa: B018

    # ------------------------------------------------------------------ auth
    def authenticator(self) -> ClientCredentials:
        """``POST {auth host}/connect/token`` form ``grant_type=client_credentials, client_id,
        client_secret``; answers ``{access_token, expires_in (900), token_type}``.

        https://developer.servicetitan.io/docs/get-going-first-api-call, https://developer.servicetitan.io/docs/oauth20
        """
        return ClientCredentials(
            self,
            token_path=TOKEN_PATH,
            token_url=lambda: self.token_url,
            form=self._token_form,
            lifetime=lambda body, _token: float(body.get("expires_in") or 900),
        )

    def _token_form(self) -> dict[str, Any]:
        self.check_config()
        client_id, client_secret = self.require("clientId", "clientSecret")
        return {"data": {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}}

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>`` and ``ST-App-Key: <appKey>`` (both required on every call)."""
        token = self.access_token()  # checks every credential key first (check_config)
        return {"Authorization": f"Bearer {token}", "ST-App-Key": str(self.cred("appKey"))}

    # ------------------------------------------------------------------ errors
    def classify_error(self, response: requests.Response) -> CrmError:
        """Map ServiceTitan's RFC 7807 body (or an OAuth error) to a typed error.

        A 4xx from the token endpoint -> :class:`BadCredentialsError` (``invalid_client``: wrong client
        id/secret or environment); 401 -> :class:`BadCredentialsError` (the base refreshes the token
        once first); 403 -> :class:`BadCredentialsError` (app not connected to the tenant or scope
        missing); 429 -> :class:`RateLimitedError` (``Retry-After``, else one second); 400/404/409 ->
        :class:`BadRecordError` with the ``errors`` messages; 5xx -> :class:`RetryableError`.
        """
        status = response.status_code
        body = json_body(response)
        body = body if isinstance(body, Mapping) else {}
        detail = self.redact(_problem_text(body) or (response.reason or "").strip() or f"HTTP {status}")
        if is_token_request(response, TOKEN_PATH) and 400 <= status < 500 and status != 429:
            return BadCredentialsError(
                f"servicetitan OAuth token request failed: {detail} (check clientId/clientSecret and that they "
                f"belong to the {self.environment} environment)",
                status=status,
                code=str(body.get("error") or ""),
            )
        if status == 401:
            return BadCredentialsError(
                f"servicetitan HTTP 401: {detail} (check the access token and credentials.appKey)", status=status
            )
        if status == 403:
            return BadCredentialsError(
                f"servicetitan HTTP 403: {detail} (is the app connected to tenant "
                f"{self.cred('tenantId')} with the CRM and Job Planning scopes?)",
                status=status,
            )
        error = self.default_error(response, detail, code=str(body.get("title") or "") or None)
        if isinstance(error, RateLimitedError) and error.retry_after is None:
            error.retry_after = _UNCONFIRMED_DEFAULTS["retry_after_seconds"]
        return error

    # ------------------------------------------------------------------ paging & safe writes
    def _list(
        self, path: str, params: Mapping[str, Any], *, endpoint: str, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list (``page`` from 1 while ``hasMore``)."""
        size = int(page_size or PAGE_SIZE)

        def fetch_page(page: Any) -> tuple[list[Any], Any]:
            number = int(page or 1)
            body = (
                self.request_json("GET", path, params={**params, "page": number, "pageSize": size}, endpoint=endpoint)
                or {}
            )
            return list(body.get("data") or []), (number + 1 if body.get("hasMore") else None)

        return self.paginate(fetch_page)

    def _post_once(
        self, path: str, payload: Mapping[str, Any], lookup: Callable[[], dict[str, Any] | None], *, endpoint: str
    ) -> dict[str, Any]:
        """POST a create that must not happen twice; ServiceTitan has no idempotency key.

        A timeout, dropped connection or 5xx may come after ServiceTitan stored the record, so before
        sending again ``lookup()`` searches the sync's externalData marker and returns what it finds
        (``resend="after_lookup"``, :meth:`CrmHook.send_write`). A 429 is refused before processing and
        is simply retried after its wait.
        """
        return self.request_json(
            "POST",
            path,
            json=dict(payload),
            endpoint=endpoint,
            resend="after_lookup",
            lookup=lookup,
            parse=lambda body: body or {},
        )

    def _by_marker(self, path: str, key: str, values: Iterable[str], *, endpoint: str) -> dict[str, dict[str, Any]]:
        """Records carrying ``externalData`` ``key`` = one of ``values`` (this guid), by value (the first one)."""
        return {value: items[0] for value, items in self._all_by_marker(path, key, values, endpoint=endpoint).items()}

    def _all_by_marker(
        self, path: str, key: str, values: Iterable[str], *, endpoint: str
    ) -> dict[str, list[dict[str, Any]]]:
        """Every record carrying ``externalData`` ``key`` = one of ``values`` (this guid), by value."""
        wanted = list(dict.fromkeys(v for v in values if v))
        bad = [v for v in wanted if "," in v]
        if bad:
            raise ValueError("externalData values for a list filter cannot contain commas")
        found: dict[str, list[dict[str, Any]]] = {}
        guid = self.application_guid
        for start in range(0, len(wanted), VALUES_PER_CALL):
            chunk = wanted[start : start + VALUES_PER_CALL]
            params = {
                "externalDataApplicationGuid": guid,
                "externalDataKey": key,
                "externalDataValues": ",".join(chunk),
            }
            for item in self._list(path, params, endpoint=endpoint):
                for value in external_values(item, key):
                    if value in chunk:
                        found.setdefault(value, []).append(item)
        return found

    # ------------------------------------------------------------------ customers
    def find_customers_by_marker(self, key: str, values: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``GET /crm/v2/tenant/{t}/customers?externalDataApplicationGuid=&externalDataKey=&externalDataValues=``
        (comma-separated; chunks of 25, every page); returns marker value -> customer."""
        return self._by_marker(
            self.tenant_path("crm", "customers"),
            key,
            values,
            endpoint="GET /crm/v2/tenant/{t}/customers (externalData)",
        )

    def find_customers_by_phone(self, phone: str) -> list[dict[str, Any]]:
        """``GET /crm/v2/tenant/{t}/customers?phone=&sort=+Id`` (first page: "by phone number of contacts";
        active customers only, ServiceTitan's default)."""
        body = (
            self.request_json(
                "GET",
                self.tenant_path("crm", "customers"),
                params={"phone": phone, "sort": "+Id", "page": 1, "pageSize": PAGE_SIZE},
                endpoint="GET /crm/v2/tenant/{t}/customers (phone)",
            )
            or {}
        )
        return list(body.get("data") or [])

    def find_customers_by_name(self, name: str) -> list[dict[str, Any]]:
        """``GET /crm/v2/tenant/{t}/customers?name=&sort=+Id`` (first page; ServiceTitan's matching rule for
        ``name`` is not documented: callers compare names themselves)."""
        body = (
            self.request_json(
                "GET",
                self.tenant_path("crm", "customers"),
                params={"name": name, "sort": "+Id", "page": 1, "pageSize": PAGE_SIZE},
                endpoint="GET /crm/v2/tenant/{t}/customers (name)",
            )
            or {}
        )
        return list(body.get("data") or [])

    def create_customer(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /crm/v2/tenant/{t}/customers`` (``CreateCustomerRequest``: ``name``, bill-to ``address``,
        ``locations[]`` required; ``contacts``, ``externalData``) -> ``CreatedCustomerResponse`` with the new
        ``locations[].id``. A possibly-sent create is resolved by its externalData marker first; the
        customer found that way has no ``locations`` key (read them with :meth:`list_locations`)."""
        key, value = _marker_of(payload)
        return self._post_once(
            self.tenant_path("crm", "customers"),
            payload,
            lambda: self.find_customers_by_marker(key, [value]).get(value) if key else None,
            endpoint="POST /crm/v2/tenant/{t}/customers",
        )

    def update_customer(self, customer_id: int | str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /crm/v2/tenant/{t}/customers/{id}`` (``UpdateCustomerRequest``, e.g. ``{name}``)."""
        return (
            self.request_json(
                "PATCH",
                self.tenant_path("crm", f"customers/{int(customer_id)}"),
                json=dict(payload),
                endpoint="PATCH /crm/v2/tenant/{t}/customers/{id}",
            )
            or {}
        )

    def list_locations(self, customer_id: int | str) -> list[dict[str, Any]]:
        """``GET /crm/v2/tenant/{t}/locations?customerId=&sort=+Id`` (active locations, every page)."""
        return list(
            self._list(
                self.tenant_path("crm", "locations"),
                {"customerId": int(customer_id), "sort": "+Id"},
                endpoint="GET /crm/v2/tenant/{t}/locations",
            )
        )

    # ------------------------------------------------------------------ read-back (customer import)
    def iter_all_customers(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """``GET /crm/v2/tenant/{t}/customers?sort=+Id&page=&pageSize=`` while ``hasMore`` (active customers,
        ServiceTitan's default). ``CustomerResponse`` has no email or phone: see :meth:`iter_customer_contacts`.
        Spec: tenant-crm-v2.yml ``Customers_GetList``, ``PaginatedResponse_Of_Crm.V2.Customers.CustomerResponse``."""
        return self._list(
            self.tenant_path("crm", "customers"),
            {"sort": "+Id"},
            page_size=page_size,
            endpoint="GET /crm/v2/tenant/{t}/customers (list)",
        )

    def iter_customer_contacts(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every customer contact: ``GET /crm/v2/tenant/{t}/customers/contacts?modifiedOnOrAfter=2000-01-01T00:00:00Z``
        (one date bound is required; this one covers every contact), items ``{id, type, value, memo, customerId,
        modifiedOn, phoneSettings}``; the only way to read customers' emails and phones in bulk.
        Spec: tenant-crm-v2.yml ``Customers_GetModifiedContactsList``."""
        return self._list(
            self.tenant_path("crm", "customers/contacts"),
            {"modifiedOnOrAfter": "2000-01-01T00:00:00Z"},
            page_size=page_size,
            endpoint="GET /crm/v2/tenant/{t}/customers/contacts",
        )

    def iter_all_locations(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """``GET /crm/v2/tenant/{t}/locations?sort=+Id`` every page (active locations; ``customerId`` on each).
        Spec: tenant-crm-v2.yml ``Locations_GetList``."""
        return self._list(
            self.tenant_path("crm", "locations"),
            {"sort": "+Id"},
            page_size=page_size,
            endpoint="GET /crm/v2/tenant/{t}/locations (list)",
        )

    def create_location(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /crm/v2/tenant/{t}/locations`` (``CreateLocationRequest``: ``name``, ``address``,
        ``customerId``). Only used for a matched customer that has no active location."""
        return (
            self.request_json(
                "POST",
                self.tenant_path("crm", "locations"),
                json=dict(payload),
                endpoint="POST /crm/v2/tenant/{t}/locations",
            )
            or {}
        )

    # ------------------------------------------------------------------ jobs
    def find_jobs_by_marker(self, key: str, values: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``GET /jpm/v2/tenant/{t}/jobs?externalDataApplicationGuid=&externalDataKey=&externalDataValues=``
        (chunks of 25, every page); returns marker value -> job."""
        return self._by_marker(
            self.tenant_path("jpm", "jobs"), key, values, endpoint="GET /jpm/v2/tenant/{t}/jobs (externalData)"
        )

    def get_jobs(self, job_ids: Iterable[int | str]) -> dict[str, dict[str, Any]]:
        """Jobs by id: ``GET /jpm/v2/tenant/{t}/jobs?ids=1,2,...`` ("Perform lookup by multiple IDs (maximum
        50)", tenant-jpm-v2.yml ``Jobs_GetList``), every page.
        Returns id -> job; ids ServiceTitan does not return do not exist (or are not visible to the app)."""
        wanted = list(dict.fromkeys(str(int(i)) for i in job_ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), IDS_PER_CALL):
            chunk = wanted[start : start + IDS_PER_CALL]
            # The guid makes ServiceTitan return this app's externalData (the marker) with each job.
            params = {"ids": ",".join(chunk), "externalDataApplicationGuid": self.application_guid}
            for job in self._list(
                self.tenant_path("jpm", "jobs"), params, endpoint="GET /jpm/v2/tenant/{t}/jobs (ids)"
            ):
                if str(job.get("id")) in chunk:
                    found[str(job["id"])] = job
        return found

    def find_all_jobs_by_marker(self, key: str, values: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """As :meth:`find_jobs_by_marker`, but every job per marker value (the reconciliation's duplicate check)."""
        return self._all_by_marker(
            self.tenant_path("jpm", "jobs"), key, values, endpoint="GET /jpm/v2/tenant/{t}/jobs (externalData)"
        )

    def create_job(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /jpm/v2/tenant/{t}/jobs`` (``JobCreateRequest``: ``customerId, locationId,
        businessUnitId, jobTypeId, priority, campaignId, appointments[{start, end}]`` required;
        ``summary`` (HTML), ``customFields``, ``externalData``) -> ``JobResponse``. A possibly-sent
        create is resolved by its externalData marker before it is sent again."""
        key, value = _marker_of(payload)
        return self._post_once(
            self.tenant_path("jpm", "jobs"),
            payload,
            lambda: self.find_jobs_by_marker(key, [value]).get(value) if key else None,
            endpoint="POST /jpm/v2/tenant/{t}/jobs",
        )

    def update_job(self, job_id: int | str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /jpm/v2/tenant/{t}/jobs/{id}`` (``UpdateJobRequest``, e.g. ``{summary, customFields}``;
        externalData is left out so the marker stays)."""
        return (
            self.request_json(
                "PATCH",
                self.tenant_path("jpm", f"jobs/{int(job_id)}"),
                json=dict(payload),
                endpoint="PATCH /jpm/v2/tenant/{t}/jobs/{id}",
            )
            or {}
        )

    # ------------------------------------------------------------------ reference data
    def _get_or_none(self, path: str, endpoint: str) -> dict[str, Any] | None:
        try:
            return self.request_json("GET", path, endpoint=endpoint) or {}
        except BadRecordError as exc:
            if exc.status == 404:
                return None
            raise

    def get_business_unit(self, unit_id: int) -> dict[str, Any] | None:
        """``GET /settings/v2/tenant/{t}/business-units/{id}``; ``None`` when it does not exist."""
        return self._get_or_none(
            self.tenant_path("settings", f"business-units/{int(unit_id)}"),
            "GET /settings/v2/tenant/{t}/business-units/{id}",
        )

    def get_job_type(self, job_type_id: int) -> dict[str, Any] | None:
        """``GET /jpm/v2/tenant/{t}/job-types/{id}``; ``None`` when it does not exist."""
        return self._get_or_none(
            self.tenant_path("jpm", f"job-types/{int(job_type_id)}"), "GET /jpm/v2/tenant/{t}/job-types/{id}"
        )

    def get_campaign(self, campaign_id: int) -> dict[str, Any] | None:
        """``GET /marketing/v2/tenant/{t}/campaigns/{id}``; ``None`` when it does not exist."""
        return self._get_or_none(
            self.tenant_path("marketing", f"campaigns/{int(campaign_id)}"),
            "GET /marketing/v2/tenant/{t}/campaigns/{id}",
        )

    def list_references(self, key: str) -> list[dict[str, Any]]:
        """The tenant's active items a job default ``key`` (:data:`JOB_REFERENCES`) is chosen from, every page:
        ``GET /settings/v2/tenant/{t}/business-units``, ``GET /jpm/v2/tenant/{t}/job-types`` or
        ``GET /marketing/v2/tenant/{t}/campaigns``, each with ``active=True``."""
        module, resource = next(r[3] for r in JOB_REFERENCES if r[0] == key)
        path = self.tenant_path(module, resource)
        return list(self._list(path, {"active": "True"}, endpoint=f"GET /{module}/v2/tenant/{{t}}/{resource}"))

    def fetch_account_identity(self) -> str:
        """The tenant id, as confirmed by the API.

        ServiceTitan's tenant APIs have no "which tenant am I" endpoint (none in tenant-crm/jpm/settings v2,
        https://developer.servicetitan.io/apis/); a token is issued per tenant and a tenant-scoped call
        for any other tenant answers 403. So the identity is the configured tenant id, accepted only
        after one tenant-scoped read (``GET /crm/v2/tenant/{t}/customers?pageSize=1``) succeeded.
        """
        self.check_access()
        return self.tenant

    def check_access(self) -> str:
        """``GET /crm/v2/tenant/{t}/customers?pageSize=1`` (token, app key, tenant and CRM scope)."""
        self.check_config()
        self.request(
            "GET",
            self.tenant_path("crm", "customers"),
            params={"page": 1, "pageSize": 1},
            endpoint="GET /crm/v2/tenant/{t}/customers",
        )
        return f"Connected to ServiceTitan tenant {self.tenant} ({self.environment}; customers readable)"


def external_values(item: Mapping[str, Any], key: str) -> list[str]:
    """The values of ``key`` in a response's ``externalData`` list (``[{key, value}]``)."""
    entries = item.get("externalData") or []
    return [str(e.get("value")) for e in entries if isinstance(e, Mapping) and e.get("key") == key]


def _marker_of(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The first externalData ``(key, value)`` of a create request (the sync's marker)."""
    entries = (payload.get("externalData") or {}).get("externalData") or []
    if entries:
        return str(entries[0]["key"]), str(entries[0]["value"])
    return None, None


def _problem_text(body: Mapping[str, Any]) -> str:
    """``title - field: message; ...`` from an RFC 7807 body, or ``error: description`` from an OAuth one."""
    if "error" in body and "title" not in body:
        return ": ".join(str(p) for p in (body.get("error"), body.get("error_description")) if p)
    details = []
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        for field, messages in list(errors.items())[:5]:
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            details.append(f"{field}: {text}" if field else text)
    title = str(body.get("title") or "")
    if title and details:
        return f"{title} - {'; '.join(details)}"
    return title or "; ".join(details)


__all__ = [
    "DEFAULT_APPLICATION_GUID",
    "HOSTS",
    "REQUIRED_JOB_SETTINGS",
    "JobDefaults",
    "JobSettings",
    "ServiceTitanHook",
    "choose_reference",
    "parse_job_settings",
    "ServiceTitanSettings",
    "external_values",
    "parse_job_defaults",
]
