"""FieldEdge hook: customers and leads through FieldEdge's Open API (Azure API Management + Gobo OAuth2).

Vendor facts this module relies on (each method's docstring names its endpoint; the pages are
FieldEdge's Open API portal, https://docs.gravitee-fe.dev/):

* Auth (member guide, https://docs.gravitee-fe.dev/member-authentication-guide-1981868m0 and
  https://fieldedge-global-dev-apimanagement.developer.azure-api.net/docs/authentication-for-members):
  ``POST <Gobo>/oauth/token`` with the JSON body ``{client_id, client_secret, target_id,
  grant_type: "client_credentials"}`` returns a JWT ``access_token``; APIs are then called
  "through Azure APIM using the JWT token" (``Authorization: Bearer``). ``target_id`` is the
  FieldEdge Tenant ID. The production token endpoint ``https://fieldedge.withgobo.com/oauth/token``
  (with ``target_id`` required) is from compwright/oauth2-fieldedge ``src/ProviderFactory.php``
  (``TOKEN_ENDPOINT``) and ``src/ClientCredentialsWithTargetId.php``; that library's v3.0.0
  (2026-08-24) dropped the legacy ``https://api.fieldedge.com/token`` API-key flow.
* Customers (https://docs.gravitee-fe.dev/customer-1981961m0,
  https://docs.gravitee-fe.dev/search-customers-by-phone-email-or-first-name-28355557e0,
  https://docs.gravitee-fe.dev/creates-a-new-customer-28355556e0):
  ``GET /v1/customers/search?phone=&email=&firstName=`` "retrieves customers that match one or
  more of the provided search criteria" -> 200 ``{"customers": [...]}`` or **204** when none;
  ``POST /v1/customers`` -> 201 ``{"data": {"customerId", "createdAt"}}``; ``PUT
  /v1/customers/{customerId}``; ``GET /v1/customers/{customerId}``. No external-id field and no
  documented de-duplication on create.
* Leads (https://docs.gravitee-fe.dev/creates-a-new-lead-with-customer-details-appointment-preferences-and-service-information-28355560e0,
  https://docs.gravitee-fe.dev/fetches-lead-details-based-on-the-provided-lead-identifier-28355561e0):
  ``POST /v1/leads`` (client-supplied ``trackingId``, ``source``, ``customer{...}``,
  ``appointment{...}``) -> 201 with a lead id; ``GET /v1/leads/{leadId}`` -> 200 ``{"data":
  {leadId, trackingId, status, ...}}`` or 204. There is no lead update. Work orders are
  retrieve-by-id only (https://docs-dev.fieldedge.com/dev/retrieve-customers-by-phone-email-or-first-name-32803946e0),
  so a visit can only land as a lead.
* Errors: the reference lists 400 "Invalid input", 401, 500 (body shapes not published). Azure
  APIM's own answers are ``{"statusCode", "message"}``: its rate-limit policy answers 429 with a
  ``Retry-After`` header ("Rate limit is exceeded. Try again in N seconds.") and its quota policy
  403 "Out of call volume quota"
  (https://learn.microsoft.com/en-us/azure/api-management/rate-limit-policy,
  https://learn.microsoft.com/microsoft-cloud/dev/dev-proxy/concepts/implement-rate-limiting-azure-api-management).

UNCONFIRMED, and therefore kept in the marked block of constants below (each overridable): the
production API host, the token lifetime, any published rate limit, an APIM subscription-key
header, and the lead look-up by ``trackingId`` (the public reference documents only
``GET /v1/leads/{leadId}``; see :meth:`FieldEdgeHook.find_leads`).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from crm_hooks.auth import ClientCredentials, is_token_request, jwt_expiry
from crm_hooks.base import CrmHook, json_body
from crm_hooks.crm_settings import CrmSettings, SettingsReader
from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    ConfigurationError,
    CrmError,
    QuotaExhaustedError,
    RetryableError,
)
from crm_hooks.phones import to_e164
from crm_hooks.rate_limit import RateLimit

# =============================================================================================
# Hosts, paths and unpublished numbers: the ONE place they are defined.
# FieldEdge publishes only its dev hosts; every production value marked UNCONFIRMED is a best
# reading of public material, overridable per integration (credentials.baseUrl / authUrl,
# crmSettings.rateLimitPer10s / tokenSeconds).
# =============================================================================================
#: API base (APIM). Dev reference: https://dev.api.fieldedge.com/leads/v1/... .
#: UNCONFIRMED for production: set credentials.baseUrl (e.g. https://dev.api.fieldedge.com/leads).
DEFAULT_BASE_URL = "https://api.fieldedge.com/leads"
#: Gobo identity provider; the token endpoint is DEFAULT_AUTH_URL + TOKEN_PATH. Production value
#: from compwright/oauth2-fieldedge; dev: https://dev.marketplace.fieldedge.com (credentials.authUrl).
DEFAULT_AUTH_URL = "https://fieldedge.withgobo.com"
TOKEN_PATH = "/oauth/token"
CUSTOMERS_PATH = "/v1/customers"
CUSTOMER_SEARCH_PATH = "/v1/customers/search"
LEADS_PATH = "/v1/leads"
#: UNCONFIRMED: the marker look-up ``GET {LEADS_PATH}?trackingId=<visit key>``. The public
#: reference has no lead search; a 404/405 here stops the integration with an explanation.
LEAD_TRACKING_PARAM = "trackingId"
LOOKUP_REFUSED_MESSAGE = (
    f"fieldedge: the API did not accept the lead look-up GET {LEADS_PATH}?{LEAD_TRACKING_PARAM}= ({{status}}), "
    "so the sync cannot ask FieldEdge whether an interrupted attempt already created a lead (crmSettings.leadLookup)"
)


class LeadLookupRefusedError(ConfigurationError):
    """FieldEdge refuses ``GET /v1/leads?trackingId=`` (UNCONFIRMED endpoint): the sync's own records decide."""


#: Azure APIM's default subscription-key header, sent only when credentials.subscriptionKey is
#: set (whether FieldEdge's APIM products require one is UNCONFIRMED).
SUBSCRIPTION_KEY_HEADER = "Ocp-Apim-Subscription-Key"
#: UNCONFIRMED: FieldEdge publishes no rate limit (its APIM rate-limit policy counts calls per
#: renewal period); client-side pace per rolling 10 s (crmSettings.rateLimitPer10s).
DEFAULT_REQUESTS_PER_10S = 100.0
#: UNCONFIRMED: token lifetime when the response has neither expires_in nor a JWT exp claim.
DEFAULT_TOKEN_SECONDS = 3600.0
#: A lead's ``leadSource`` unless ``crmSettings.leadSource`` names another.
DEFAULT_LEAD_SOURCE = "rankitpro"
#: The company's time zone unless ``crmSettings.timezone`` names another.
DEFAULT_ZONE = ZoneInfo("UTC")
# =============================================================================================

#: Keys of FieldEdge's Open API (OAuth2 client credentials + tenant).
OAUTH_KEYS = ("clientId", "clientSecret", "targetId")
#: What the Rank It Pro form collected for FieldEdge's retired API (kept only to explain).
LEGACY_KEYS = ("apiKey", "username", "password")
_PATH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")


def record_email(record: Mapping[str, Any]) -> str | None:
    """A FieldEdge customer's email, lower-cased (``primaryEmail`` in search results)."""
    value = str(record.get("primaryEmail") or record.get("email") or "").strip().lower()
    return value or None


def record_phone(record: Mapping[str, Any]) -> str | None:
    """A FieldEdge customer's phone as E.164 (FieldEdge shows e.g. ``+1-214-555-0198``)."""
    return to_e164(record.get("primaryPhone") or record.get("phoneNumber") or record.get("phone"))


def record_id(record: Mapping[str, Any], *keys: str) -> str | None:
    """The first present id among ``keys`` (``id`` in search results, ``customerId`` elsewhere)."""
    for key in keys:
        if record.get(key) not in (None, ""):
            return str(record[key])
    return None


def _data(body: Any) -> Any:
    """FieldEdge wraps single records in ``{"data": ...}``; accept a bare object too."""
    if isinstance(body, Mapping) and "data" in body:
        return body["data"]
    return body


def _path_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _PATH_ID.match(value):
        raise ValueError(f"invalid FieldEdge {what} {value!r}")
    return quote(value, safe="")


@dataclass(frozen=True)
class FieldEdgeSettings(CrmSettings):
    """``crmSettings``: ``rateLimitPer10s`` (1..300, default :data:`DEFAULT_REQUESTS_PER_10S`, UNCONFIRMED),
    ``tokenSeconds`` (token lifetime when FieldEdge states none, default :data:`DEFAULT_TOKEN_SECONDS`); for
    the destination ``timezone`` (an IANA name, default UTC; another value is an error when a run starts),
    ``leadSource`` (default :data:`DEFAULT_LEAD_SOURCE`) and ``leadLookup`` (default on: a lead whose send
    may have reached FieldEdge is looked up before it is sent again)."""

    rate_limit_per_10s: float | None = DEFAULT_REQUESTS_PER_10S
    token_seconds: float = DEFAULT_TOKEN_SECONDS
    zone: ZoneInfo = DEFAULT_ZONE
    lead_source: str = DEFAULT_LEAD_SOURCE
    lead_lookup: bool = True

    @classmethod
    def read(cls, reader: SettingsReader) -> FieldEdgeSettings:
        return cls(
            rate_limit_per_10s=reader.number(
                "rateLimitPer10s", default=DEFAULT_REQUESTS_PER_10S, minimum=1, maximum=300
            ),
            token_seconds=reader.lenient_float("tokenSeconds", DEFAULT_TOKEN_SECONDS),
            zone=_zone(reader),
            lead_source=reader.present("leadSource") or DEFAULT_LEAD_SOURCE,
            lead_lookup=reader.flag("leadLookup", default=True),
            errors=reader.errors,
        )

    def rate_limits(self, defaults: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
        """``default``: ``rateLimitPer10s`` per rolling 10 s; the Gobo token endpoint is not paced."""
        return {"default": RateLimit(self.rate_limit_per_10s, 10.0), "token": defaults["token"]}


def _zone(reader: SettingsReader) -> ZoneInfo:
    """``crmSettings.timezone`` (default UTC); a name that is no IANA time zone is UTC, refused."""
    name = str(reader.raw.get("timezone") or "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        reader.refuse(
            "timezone", f"fieldedge: crmSettings.timezone {name!r} is not an IANA time zone (e.g. America/Chicago)"
        )
        return DEFAULT_ZONE


class FieldEdgeHook(CrmHook):
    """FieldEdge Open API (OAuth2 client credentials for one tenant).

    Credentials (the app's keys): ``clientId``, ``clientSecret`` (the app in the FieldEdge
    Marketplace), ``targetId`` (the FieldEdge Tenant ID); optional ``subscriptionKey`` (an APIM
    subscription key, sent as ``Ocp-Apim-Subscription-Key``), ``baseUrl`` (API base, default
    :data:`DEFAULT_BASE_URL`), ``authUrl`` (token host, default :data:`DEFAULT_AUTH_URL`; a full
    ``.../oauth/token`` URL is accepted too). Overrides must be FieldEdge/Gobo hosts or allowed
    by ``CRM_SYNC_ALLOWED_HOSTS``. Rows holding only the older ``apiKey`` / ``username`` /
    ``password`` fail with a :class:`ConfigurationError` that says what FieldEdge needs now.

    Settings (``crmSettings``): ``rateLimitPer10s`` (1..300, default 100, UNCONFIRMED), ``tokenSeconds``
    (token lifetime when FieldEdge states none, default 3600).

    Creates are not idempotent at FieldEdge, so :meth:`create_customer` and :meth:`create_lead`
    never resend blindly: a failure that may have stored the record is resolved by looking the
    record up first (see :meth:`_create`).
    """

    conn_type = "crm_fieldedge"
    hook_name = "FieldEdge (Rank It Pro sync)"
    default_conn_name = "crm_fieldedge_default"
    crm_type = "fieldedge"
    display_name = "FieldEdge"
    report_colour = "#c2255c"
    vendor_domains = (
        "fieldedge.com",
        "fieldedge.withgobo.com",
        "fieldedge-staging.withgobo.com",
        "fieldedge-staging.withgobo.dev",
    )
    default_base_url = DEFAULT_BASE_URL
    batch_size = 1
    secret_keys = ("clientSecret", "subscriptionKey", "apiKey", "password")
    #: Per-record calls in lanes (``CrmHook.lanes``): a 429 or 5xx wait holds up one record, not the sync.
    lanes: ClassVar[int] = 4
    default_rate_limits: ClassVar[dict[str, RateLimit]] = {
        "default": RateLimit(DEFAULT_REQUESTS_PER_10S, 10.0),
        "token": RateLimit(None),
    }
    #: No published limit: calls are spaced evenly and the limiter learns the account's rate from 429s.
    limit_published = False
    settings_class = FieldEdgeSettings

    # ------------------------------------------------------------------ config
    @classmethod
    def credentials_from_connection(cls, conn: Any) -> dict[str, Any]:
        """Connection -> app keys: login -> ``clientId``, password -> ``clientSecret``; extra
        ``targetId``, ``subscriptionKey``, ``baseUrl``, ``authUrl`` (plain or ``extra__crm_fieldedge__`` prefixed)."""
        extra = conn.extra_dejson or {}
        creds: dict[str, Any] = {"clientId": conn.login, "clientSecret": conn.password}
        for key in ("targetId", "subscriptionKey", "baseUrl", "authUrl"):
            creds[key] = extra.get(key) or extra.get(f"extra__{cls.conn_type}__{key}")
        return {k: v for k, v in creds.items() if v not in (None, "")}

    def oauth_keys(self) -> tuple[str, str, str]:
        """``(clientId, clientSecret, targetId)``; no request is made.

        :raises ConfigurationError: naming the missing keys, or explaining that the older
            ``apiKey`` / ``username`` / ``password`` keys no longer reach FieldEdge.
        """
        missing = [k for k in OAUTH_KEYS if self.cred(k) is None]
        legacy = [k for k in LEGACY_KEYS if self.cred(k) is not None]
        if missing and legacy:
            raise ConfigurationError(
                f"fieldedge: the credentials hold {', '.join(legacy)} (FieldEdge's retired API, which the sync "
                "cannot use) but not " + ", ".join(missing) + ". FieldEdge's Open API needs clientId and "
                "clientSecret (from your app in the FieldEdge Marketplace) and targetId (your FieldEdge Tenant ID, "
                "shown in the FieldEdge web portal): add them to the FieldEdge integration's credentials"
            )
        client_id, client_secret, target_id = self.require(*OAUTH_KEYS)
        return str(client_id), str(client_secret), str(target_id)

    @property
    def token_url(self) -> str:
        """``authUrl`` (or :data:`DEFAULT_AUTH_URL`) + :data:`TOKEN_PATH`, after the allowed-hosts check."""
        base = self.override_url("authUrl", DEFAULT_AUTH_URL)
        return base if base.endswith(TOKEN_PATH) else f"{base}{TOKEN_PATH}"

    def validate(self) -> None:
        """Every check that needs no request: credential keys, then both hosts."""
        self.oauth_keys()
        self.base_url  # noqa: B018 - raises for a base URL that may not receive the token
        self.token_url  # noqa: B018

    def account_id(self) -> str:
        """A short non-secret fingerprint of client id + tenant (sha256, 12 hex)."""
        basis = f"{self.cred('clientId') or ''}|{self.cred('targetId') or ''}"
        return hashlib.sha256(basis.encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ auth
    def authenticator(self) -> ClientCredentials:
        """``POST {authUrl}/oauth/token`` with JSON ``{grant_type: "client_credentials", client_id,
        client_secret, target_id}`` (FieldEdge member authentication guide), not paced (``token`` limit).

        The lifetime is ``expires_in`` when given, else the JWT's ``exp`` claim, else
        ``crmSettings.tokenSeconds`` (default :data:`DEFAULT_TOKEN_SECONDS`).
        """
        return ClientCredentials(
            self,
            token_path=TOKEN_PATH,
            token_url=lambda: self.token_url,
            form=self._token_form,
            lifetime=self._token_lifetime,
            limit="token",
        )

    def _token_form(self) -> dict[str, Any]:
        client_id, client_secret, target_id = self.oauth_keys()
        return {
            "json": {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "target_id": target_id,
            }
        }

    def _token_lifetime(self, body: Mapping[str, Any], token: str) -> float:
        try:
            if body.get("expires_in") not in (None, ""):
                return float(body["expires_in"])
        except (TypeError, ValueError):
            pass
        expiry = jwt_expiry(token)
        if expiry is not None:
            return expiry - time.time()
        return self.crm_settings.token_seconds

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <JWT>``, plus the APIM subscription key when configured."""
        headers = {"Authorization": f"Bearer {self.access_token()}"}
        key = self.cred("subscriptionKey")
        if key:
            headers[SUBSCRIPTION_KEY_HEADER] = str(key)
        return headers

    # ------------------------------------------------------------------ errors
    def classify_error(self, response: requests.Response) -> CrmError:
        """Map FieldEdge / APIM / OAuth error bodies to typed errors (messages redacted).

        Token endpoint 4xx (OAuth ``{error, error_description}``) -> :class:`BadCredentialsError`;
        403 "quota" (APIM quota policy) -> :class:`QuotaExhaustedError`; 429 ->
        :class:`RateLimitedError` with APIM's ``Retry-After``; 401/403 ->
        :class:`BadCredentialsError` (a 401 refreshes the token once first); 400/404/409/422 ->
        :class:`BadRecordError`; 5xx -> :class:`RetryableError`.
        """
        status = response.status_code
        body = json_body(response)
        detail = self.redact(_error_detail(body) or (response.reason or "").strip() or f"HTTP {status}", limit=500)
        code = str(body.get("error")) if isinstance(body, Mapping) and body.get("error") else None
        if is_token_request(response, TOKEN_PATH) and status < 500 and status != 429:
            return BadCredentialsError(
                f"fieldedge OAuth token request failed (HTTP {status}): {detail}", status=status, code=code
            )
        if status == 403 and "quota" in detail.lower():
            return QuotaExhaustedError(f"fieldedge HTTP 403: {detail}", status=status, code="QUOTA")
        return self.default_error(response, detail, code=code)

    # ------------------------------------------------------------------ writes FieldEdge does not deduplicate
    def _create(
        self, path: str, payload: Mapping[str, Any], *, id_keys: tuple[str, ...], landed: Callable[[], str | None]
    ) -> str:
        """``POST`` a new record and return its id, never leaving two records behind.

        ``resend="after_lookup"`` (:meth:`CrmHook.send_write`): a 429 (APIM answers it before FieldEdge
        sees the request) is resent after its ``Retry-After``. A 5xx, a timeout, a dropped connection
        or a 2xx without an id may have stored the record: the next attempt first calls ``landed()``
        (a look-up by the sync's own marker) and returns the id found there instead of posting again.
        """

        def created_id(body: Any) -> str:
            data = _data(body)
            created = record_id(data, *id_keys) if isinstance(data, Mapping) else None
            if created is None:
                # Stored (2xx) but no id to refer to it: find it by its marker on the next attempt.
                raise RetryableError(f"fieldedge POST {path}: the response has no {id_keys[0]}")
            return created

        return self.request_json(
            "POST",
            path,
            json=dict(payload),
            endpoint=f"POST {path}",
            resend="after_lookup",
            lookup=lambda: landed() or None,
            parse=created_id,
        )

    # ------------------------------------------------------------------ customers
    def search_customers(
        self, *, email: str | None = None, phone: str | None = None, first_name: str | None = None
    ) -> list[dict[str, Any]]:
        """``GET /v1/customers/search?email=&phone=&firstName=`` -> the ``customers`` list.

        FieldEdge returns customers matching *one or more* of the given criteria, and 204 (here
        ``[]``) when none does. Phones go out as given (E.164 is FieldEdge's documented format).
        """
        params = {k: v for k, v in (("email", email), ("phone", phone), ("firstName", first_name)) if v}
        if not params:
            raise ValueError("FieldEdge customer search needs an email, a phone or a first name")
        body = self.request_json("GET", CUSTOMER_SEARCH_PATH, params=params, endpoint=f"GET {CUSTOMER_SEARCH_PATH}")
        if not isinstance(body, Mapping):
            return []
        items = body.get("customers")
        if items is None:
            items = _data(body)
        return [c for c in items or [] if isinstance(c, Mapping)] if isinstance(items, list) else []

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """``GET /v1/customers/{customerId}`` -> the customer, or None (204)."""
        path = f"{CUSTOMERS_PATH}/{_path_id(customer_id, 'customer id')}"
        record = _data(self.request_json("GET", path, endpoint=f"GET {CUSTOMERS_PATH}/{{customerId}}"))
        return dict(record) if isinstance(record, Mapping) else None

    def create_customer(self, payload: Mapping[str, Any]) -> str:
        """``POST /v1/customers`` -> the new ``customerId`` (201 ``{"data": {"customerId", "createdAt"}}``).

        ``payload``: ``{firstName, lastName, email, phoneNumber, preferredContactMethods, address1,
        city, state, zip, marketingEmailOptIn, marketingSmsOptIn}`` (no ``customerId``). After an
        ambiguous failure the customer is looked up by the payload's email / phone first.
        """
        email = str(payload.get("email") or "").strip().lower() or None
        phone = to_e164(payload.get("phoneNumber"))

        def landed() -> str | None:
            if not (email or phone):
                return None
            for record in self.search_customers(email=email, phone=phone):
                if (email and record_email(record) == email) or (phone and record_phone(record) == phone):
                    return record_id(record, "id", "customerId")
            return None

        return self._create(CUSTOMERS_PATH, payload, id_keys=("customerId", "id"), landed=landed)

    def update_customer(self, customer_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /v1/customers/{customerId}`` with the full customer body (idempotent, so retried)."""
        path = f"{CUSTOMERS_PATH}/{_path_id(customer_id, 'customer id')}"
        body = _data(
            self.request_json("PUT", path, json=dict(payload), endpoint=f"PUT {CUSTOMERS_PATH}/{{customerId}}")
        )
        return dict(body) if isinstance(body, Mapping) else {}

    # ------------------------------------------------------------------ leads
    def create_lead(self, payload: Mapping[str, Any], *, look_up: bool = True) -> str:
        """``POST /v1/leads`` -> the new lead id (``data.leadId``).

        After an ambiguous failure the lead is looked up by ``payload["trackingId"]``
        (:meth:`find_leads`) before another attempt; with ``look_up=False`` (the operator turned
        the UNCONFIRMED look-up off) it is resent, which may leave a duplicate lead.
        """
        tracking_id = payload.get("trackingId")

        def landed() -> str | None:
            if not look_up or not tracking_id:
                return None
            try:
                leads = self.find_leads(str(tracking_id))
            except LeadLookupRefusedError:
                # Unknown outcome and no way to look: never re-sent (the row stays in_flight, then is held).
                raise RetryableError(
                    f"fieldedge: lead {tracking_id} may have been created and FieldEdge refuses the look-up by "
                    "trackingId: not sent again"
                ) from None
            return record_id(leads[0], "leadId", "id") if leads else None

        return self._create(LEADS_PATH, payload, id_keys=("leadId", "id"), landed=landed)

    def get_lead(self, lead_id: str) -> dict[str, Any] | None:
        """``GET /v1/leads/{leadId}`` -> the lead (``data``), or None (204)."""
        path = f"{LEADS_PATH}/{_path_id(lead_id, 'lead id')}"
        record = _data(self.request_json("GET", path, endpoint=f"GET {LEADS_PATH}/{{leadId}}"))
        return dict(record) if isinstance(record, Mapping) else None

    #: FieldEdge refused ``GET /v1/leads?trackingId=`` during this hook's life (:class:`LeadLookupRefusedError`)
    lead_lookup_refused = False

    def find_leads(self, tracking_id: str) -> list[dict[str, Any]]:
        """Leads whose ``trackingId`` equals ``tracking_id``: ``GET /v1/leads?trackingId=...``.

        UNCONFIRMED endpoint (:data:`LEAD_TRACKING_PARAM`): FieldEdge documents ``trackingId`` on
        create and in ``GET /v1/leads/{leadId}``, but no search. The answer is read like the
        customer search: a list under ``leads`` (or ``data``), 204 for none; leads with another
        ``trackingId`` are ignored, so an endpoint that ignores the filter cannot mislead.

        :raises LeadLookupRefusedError: FieldEdge answers 404/405/501 (no such look-up on this API); remembered
            in :attr:`lead_lookup_refused` (the destination then falls back to the sync's own records).
        """
        if self.lead_lookup_refused:
            raise LeadLookupRefusedError(LOOKUP_REFUSED_MESSAGE.format(status="refused earlier in this run"))
        try:
            body = self.request_json(
                "GET",
                LEADS_PATH,
                params={LEAD_TRACKING_PARAM: tracking_id},
                endpoint=f"GET {LEADS_PATH}?{LEAD_TRACKING_PARAM}",
            )
        except BadRecordError as exc:
            if exc.status in (404, 405, 501):
                self.lead_lookup_refused = True
                raise LeadLookupRefusedError(
                    LOOKUP_REFUSED_MESSAGE.format(status=f"HTTP {exc.status}"), status=exc.status
                ) from None
            raise
        if not isinstance(body, Mapping):
            return []
        items = body.get("leads")
        if items is None:
            items = _data(body)
        if isinstance(items, Mapping):
            items = [items]
        return (
            [
                dict(lead)
                for lead in items or []
                if isinstance(lead, Mapping) and str(lead.get("trackingId") or "") == tracking_id
            ]
            if isinstance(items, list)
            else []
        )

    # ------------------------------------------------------------------ UI
    def fetch_account_identity(self) -> str:
        """The FieldEdge tenant (``target_id``) the token was issued for.

        The token endpoint issues a JWT only for a ``target_id`` the app is installed in (FieldEdge member
        authentication guide, https://docs.gravitee-fe.dev/member-authentication-guide-1981868m0); the
        Open API documents a Company resource but not its path or shape, so the configured tenant id,
        confirmed by a successful token request, is the identity. UNCONFIRMED: whether the JWT itself
        names the tenant (not relied on).
        """
        self.access_token()
        return self.oauth_keys()[2]

    def check_access(self) -> str:
        """Authenticate, then one customer search (``GET /v1/customers/search``; 204 is success)."""
        self.validate()
        self.search_customers(email="connection-test@rankitpro.invalid")
        return "Connected to FieldEdge (token issued for the tenant; customer search answered)"


def _error_detail(body: Any) -> str:
    """Readable text from OAuth ``{error, error_description}``, APIM ``{statusCode, message}``,
    RFC 7807 / ASP.NET ``{title, detail, errors: {field: [..]}}`` or a list of messages."""
    if isinstance(body, list):
        return "; ".join(_error_detail(item) if not isinstance(item, str) else item for item in body[:5])
    if not isinstance(body, Mapping):
        return ""
    parts: list[str] = []
    if isinstance(body.get("error"), str):
        parts.append(body["error"])
    for key in ("error_description", "message", "title", "detail"):
        if isinstance(body.get(key), str) and body[key] not in parts:
            parts.append(body[key])
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        parts += [
            f"{field}: {'; '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for field, msgs in list(errors.items())[:10]
        ]
    elif isinstance(errors, list):
        parts += [e if isinstance(e, str) else str((e or {}).get("message") or e) for e in errors[:10]]
    return parts[0] + (": " + "; ".join(parts[1:]) if len(parts) > 1 else "") if parts else ""


__all__ = [
    "DEFAULT_LEAD_SOURCE",
    "FieldEdgeHook",
    "FieldEdgeSettings",
    "LeadLookupRefusedError",
    "record_email",
    "record_id",
    "record_phone",
]
