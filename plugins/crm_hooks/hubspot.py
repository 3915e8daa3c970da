"""HubSpot CRM hook: contacts, notes and properties through the v3 CRM API.

Vendor facts this module relies on (each method's docstring names its endpoint):

* Base URL ``https://api.hubapi.com``; paths ``/crm/v3/objects/{objectType}/...`` and
  ``/crm/v3/properties/{objectType}``
  (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts,
  https://developers.hubspot.com/docs/api/crm/properties; OpenAPI files in
  https://github.com/HubSpot/HubSpot-public-api-spec-collection, ``PublicApiSpecs/CRM``).
* Auth: a private-app ("static") token sent as ``Authorization: Bearer``, or OAuth with
  a refresh token: ``POST /oauth/v3/token`` (form body ``grant_type=refresh_token, client_id,
  client_secret, refresh_token``: v3 takes every parameter in the body, never the query)
  returns an access token that lives 30 minutes (``expires_in``)
  (https://developers.hubspot.com/docs/api-reference/auth-oauth-v3/guide,
  https://developers.hubspot.com/changelog/upcoming-expiration-of-oauth-access-tokens-is-changing).
  OAuth v1 is announced as deprecated on 2027-02-16 in favour of ``/oauth/v3/token``.
* Limits: 100 (Free/Starter) or 190 (Professional/Enterprise) requests per 10 s per
  private app, 110 per 10 s per portal for public OAuth apps, CRM search 5 requests/s per account,
  batches of at most 100 inputs
  (https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines.md,
  https://developers.hubspot.com/changelog/crm-search-api-rate-limit-increase).
  A 429 body carries ``policyName`` (``TEN_SECONDLY_ROLLING``, ``SECONDLY``, ``DAILY``);
  HubSpot sends no ``Retry-After``, and its own Node client waits 10 s / 1 s
  (``@hubspot/api-client`` ``RetryDecorator``).
* Errors: ``{"status": "error", "message", "correlationId", "category", "errors"?,
  "policyName"?, "errorType"?}``; a duplicate single create answers 409 ``CONFLICT``
  with ``"... Existing ID: <id>"``; batch calls answer 207 with ``results`` and
  ``errors`` (``StandardError``, ``context.objectWriteTraceId`` when the input set it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from crm_hooks.auth import Authenticator, RefreshToken, StaticToken, is_token_request
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
from crm_hooks.rate_limit import RateLimit, hubspot_window_exhausted

#: Object types and property names go into URL paths: allow only what HubSpot uses
#: (``contacts``, ``notes``, ``p_custom``, ``0-1``, ``2-123456``).
_OBJECT_TYPE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)", re.IGNORECASE)
#: Seconds to wait per 429 policy when HubSpot sends no Retry-After (as HubSpot's SDK does).
_POLICY_WAIT = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}
#: Default property group per standard object (``create_property``).
_DEFAULT_PROPERTY_GROUPS = {
    "contacts": "contactinformation",
    "companies": "companyinformation",
    "deals": "dealinformation",
    "tickets": "ticketinformation",
}
#: OAuth v3 token endpoint (v1 ``/oauth/v1/token`` is deprecated on 2027-02-16 and never called).
TOKEN_PATH = "/oauth/v3/token"


class HubSpotConflictError(BadRecordError):
    """HTTP 409 ``CONFLICT``: the record already exists.

    ``existing_id`` is the id parsed from HubSpot's message
    ``"Contact already exists. Existing ID: 123"`` (``None`` when the message has none).
    The message itself is kept (redacted) so callers can also read it.
    """

    def __init__(self, message: str, *, existing_id: str | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.existing_id = existing_id


@dataclass
class BatchOutcome:
    """The outcome of one batch create/update/upsert call (HTTP 200, 201 or 207).

    :ivar results: HubSpot's ``results`` (``SimplePublicObject``; upserts add ``new``).
    :ivar errors: HubSpot ``StandardError`` dicts for the inputs that failed; each has
        ``category``, ``message`` and ``context`` (``context.objectWriteTraceId`` is a
        one-element list when the caller set ``objectWriteTraceId`` on the input).
    """

    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def errors_by_trace_id(self) -> dict[str, dict[str, Any]]:
        """``objectWriteTraceId`` -> error, for errors whose context carries one."""
        out: dict[str, dict[str, Any]] = {}
        for error in self.errors:
            ids = (error.get("context") or {}).get("objectWriteTraceId") or []
            for trace_id in ids if isinstance(ids, list) else [ids]:
                out[str(trace_id)] = error
        return out


def _object_path(object_type: str) -> str:
    if not isinstance(object_type, str) or not _OBJECT_TYPE.match(object_type):
        raise ValueError(f"invalid HubSpot object type {object_type!r}")
    return object_type


#: Burst limit per 10 s of a private (single-account) app by the portal's tier: Free/Starter 100,
#: Professional/Enterprise 190, with the API limit increase add-on 250
#: (https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines.md).
PRIVATE_APP_PER_10S = {
    "free": 100.0,
    "starter": 100.0,
    "professional": 190.0,
    "enterprise": 190.0,
    "api_limit_increase": 250.0,
}
#: Private app, tier not set: Professional/Enterprise (the adaptive limiter learns a lower one from 429s).
DEFAULT_PER_10S = 190.0
#: Public (OAuth, marketplace) apps: 110 per 10 s per installing account, whatever its tier; the add-on does not
#: apply (same usage-guidelines page).
OAUTH_APP_PER_10S = 110.0
#: CRM search: 5 requests per second per account, on top of the burst limit
#: (https://developers.hubspot.com/changelog/crm-search-api-rate-limit-increase, usage guidelines).
SEARCH_PER_SECOND = 5.0


@dataclass(frozen=True)
class HubSpotSettings(CrmSettings):
    """``crmSettings`` the hook reads:

    * ``accountTier``: the portal's HubSpot tier, ``free``, ``starter``, ``professional``, ``enterprise`` or
      ``api_limit_increase`` (any case; another value is the default with a warning). It picks a private
      app's burst limit (:data:`PRIVATE_APP_PER_10S`; 190 when unset). An OAuth (public) app gets 110 per
      10 s whatever the tier.
    * ``rateLimitPer10s``: an admin-set burst limit per 10 s, 1..250, instead of the default (a ceiling:
      the adaptive limiter never goes above it).
    """

    #: the private-app limit: ``rateLimitPer10s`` if set, else the tier's
    rate_limit_per_10s: float | None = DEFAULT_PER_10S
    tier: str | None = None
    #: True when ``rateLimitPer10s`` was set (it then applies to OAuth apps too)
    admin_limit: bool = False

    @classmethod
    def read(cls, reader: SettingsReader) -> HubSpotSettings:
        tier = (reader.text("accountTier") or "").lower().replace(" ", "_") or None
        if tier is not None and tier not in PRIVATE_APP_PER_10S:
            reader.warnings["accountTier"] = (
                f"crmSettings.accountTier must be one of {', '.join(PRIVATE_APP_PER_10S)}, got {tier[:30]!r}: ignored"
            )
            tier = None
        default = PRIVATE_APP_PER_10S.get(tier or "", DEFAULT_PER_10S)
        admin = reader.number("rateLimitPer10s", default=None, minimum=1, maximum=250)
        return cls(rate_limit_per_10s=admin or default, tier=tier, admin_limit=admin is not None)

    def rate_limits(self, defaults: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
        """A private app's limits: ``default`` = ``rateLimitPer10s`` or the tier's per 10 s; ``search`` 5 / s."""
        return {"default": RateLimit(self.rate_limit_per_10s, 10.0), "search": defaults["search"]}

    def oauth_rate_limits(self, defaults: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
        """A public OAuth app's limits: 110 per 10 s per portal unless ``rateLimitPer10s`` is set; search 5 / s."""
        per_10s = self.rate_limit_per_10s if self.admin_limit else OAUTH_APP_PER_10S
        return {"default": RateLimit(per_10s, 10.0), "search": defaults["search"]}


class HubSpotHook(CrmHook):
    """HubSpot (private app token or OAuth refresh token).

    Credentials (the app's keys): ``accessToken`` (private-app token, used as is), or
    ``refreshToken`` + ``clientId`` + ``clientSecret`` (OAuth; preferred when both are
    present); optional ``baseUrl`` (must be a HubSpot host or allowed by
    ``CRM_SYNC_ALLOWED_HOSTS``).

    Settings (``crmSettings``, :class:`HubSpotSettings`): ``accountTier`` and ``rateLimitPer10s``.

    Rate limits (:attr:`rate_limits`), by credential type: a private-app token gets its tier's burst limit,
    100 / 10 s on Free/Starter, 190 / 10 s on Professional/Enterprise (the default), 250 with the API limit
    increase; an OAuth (public app) gets 110 / 10 s per portal; CRM search 5 / s either way. Sources:
    https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines.md (burst limits per tier and
    for public apps), https://developers.hubspot.com/changelog/crm-search-api-rate-limit-increase (search; the
    5 / s figure is quoted from copies of the usage page: UNCONFIRMED on the live page). A 429 blocks the
    window only with ``X-HubSpot-RateLimit-Remaining: 0`` (:meth:`window_exhausted`).

    :param conn_id: see :class:`crm_hooks.base.CrmHook` (all arguments are the base's).
    """

    conn_type = "crm_hubspot"
    hook_name = "HubSpot (Rank It Pro sync)"
    default_conn_name = "crm_hubspot_default"
    crm_type = "hubspot"
    display_name = "HubSpot"
    report_colour = "#ff7a59"
    vendor_domains = ("hubapi.com", "hubspot.com")
    default_base_url = "https://api.hubapi.com"
    batch_size = 100
    #: Batch calls of one step sent at a time: a 429's ``Retry-After`` or a 5xx backoff holds up one call, not
    #: the step's others. A step is only a few calls here, so much of such a wait is still the sync's (3% 429 +
    #: 3% 503: 0.57 x the clean speed at 20,000 rows; README, Benchmarks).
    lanes = 4
    secret_keys = ("accessToken", "refreshToken", "clientSecret")
    #: Documented defaults; the instance's ``rate_limits`` applies ``rateLimitPer10s``.
    default_rate_limits: ClassVar[dict[str, RateLimit]] = {
        "default": RateLimit(DEFAULT_PER_10S, 10.0),
        "search": RateLimit(SEARCH_PER_SECOND, 1.0),
    }
    settings_class = HubSpotSettings

    @property
    def rate_limits(self) -> dict[str, RateLimit]:
        """The limits of this credential type (OAuth public app or private-app token, see the class docstring)."""
        if self.uses_oauth:
            return self.crm_settings.oauth_rate_limits(self.default_rate_limits)
        return self.crm_settings.rate_limits(self.default_rate_limits)

    # ------------------------------------------------------------------ config
    @classmethod
    def credentials_from_connection(cls, conn: Any) -> dict[str, Any]:
        """Connection -> app keys: password -> ``accessToken``; extra ``clientId``,
        ``clientSecret``, ``refreshToken``, ``baseUrl`` (plain or ``extra__crm_hubspot__`` prefixed)."""
        extra = conn.extra_dejson or {}
        creds: dict[str, Any] = {"accessToken": conn.password}
        for key in ("clientId", "clientSecret", "refreshToken", "baseUrl"):
            creds[key] = extra.get(key) or extra.get(f"extra__{cls.conn_type}__{key}")
        return {k: v for k, v in creds.items() if v not in (None, "")}

    @property
    def uses_oauth(self) -> bool:
        """True when a refresh token is configured (OAuth is then preferred)."""
        return self.cred("refreshToken") is not None

    def account_id(self) -> str:
        """A short non-secret fingerprint of the portal's credential (sha256, 12 hex).

        The refresh token (OAuth, one per installed portal) or the private-app token
        tells portals apart; the client id is the fallback.
        """
        basis = self.cred("refreshToken") or self.cred("accessToken") or self.cred("clientId") or ""
        return hashlib.sha256(str(basis).encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ auth
    def _check_auth_config(self) -> None:
        if self.uses_oauth:
            missing = [k for k in ("clientId", "clientSecret") if self.cred(k) is None]
            if missing:
                raise ConfigurationError(
                    f"hubspot: credentials are missing {', '.join(missing)} "
                    "(needed with refreshToken for the OAuth refresh flow)"
                )
        elif self.cred("accessToken") is None:
            raise ConfigurationError(
                "hubspot: credentials are missing accessToken (private app token) "
                "or refreshToken + clientId + clientSecret (OAuth)"
            )

    def authenticator(self) -> Authenticator:
        """OAuth refresh (:class:`~crm_hooks.auth.RefreshToken`): ``POST {baseUrl}/oauth/v3/token`` (form-encoded
        body ``grant_type=refresh_token, client_id, client_secret, refresh_token``, client credentials in the
        body, no Authorization header), answer ``{access_token, refresh_token, expires_in, token_type}``;
        access tokens live 30 minutes; HubSpot normally returns the same refresh token, a rotated one is stored.

        Source: https://developers.hubspot.com/docs/api-reference/auth-oauth-v3/guide ("make a URL-form encoded
        POST request to /oauth/v3/token ... In the request body, you'll specify the grant_type, ...";
        ``expires_in`` in seconds). The v3 answer's field names are taken to be v1's snake_case ones
        (the guide names ``expires_in``; the others: UNCONFIRMED). The project has no authorization-code
        exchange (the app's connection form stores the refresh token), so only the refresh grant moved.
        A private-app token is used as is (:class:`~crm_hooks.auth.StaticToken`: it does not expire).
        """
        self._check_auth_config()
        if not self.uses_oauth:
            return StaticToken(self, "accessToken")
        return RefreshToken(
            self, token_path=TOKEN_PATH, token_url=lambda: f"{self.base_url}{TOKEN_PATH}", default_seconds=1800
        )

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <private-app token or OAuth access token>``."""
        return {"Authorization": f"Bearer {self.access_token()}"}

    # ------------------------------------------------------------------ errors
    def window_exhausted(self, response: requests.Response) -> float | None:
        """``X-HubSpot-RateLimit-Remaining: 0``: the burst window is used up for
        ``-Interval-Milliseconds`` (:func:`crm_hooks.rate_limit.hubspot_window_exhausted`)."""
        return hubspot_window_exhausted(response.headers)

    def classify_error(self, response: requests.Response) -> CrmError:
        """Map HubSpot's error body to a typed error (message = category + message, redacted).

        401/403 -> :class:`BadCredentialsError` (403 usually means missing scopes);
        429 ``DAILY`` -> :class:`QuotaExhaustedError`, other 429 -> :class:`RateLimitedError`
        (``retry_after``: the header if any, else 10 s for ``TEN_SECONDLY_ROLLING`` and 1 s
        for ``SECONDLY``); 409 -> :class:`HubSpotConflictError` (``existing_id``);
        400/404 -> :class:`BadRecordError`; 423/477/5xx -> :class:`RetryableError`;
        a 4xx from the token endpoint -> :class:`BadCredentialsError`.
        """
        status = response.status_code
        body = json_body(response)
        body = body if isinstance(body, Mapping) else {}
        category = body.get("category") or body.get("status") or body.get("error")
        message = body.get("message") or body.get("error_description")
        if not isinstance(category, str) or category == "error":
            category = None
        if message is None and not body:
            message = (response.reason or "").strip() or None
        detail = self.redact(": ".join(str(p) for p in (category, message) if p) or f"HTTP {status}")
        text = f"hubspot HTTP {status}: {detail}"

        if is_token_request(response, TOKEN_PATH) and 400 <= status < 500 and status != 429:
            return BadCredentialsError(f"hubspot OAuth token refresh failed: {detail}", status=status, code=category)
        if status == 429:
            policy = str(body.get("policyName") or "").upper()
            if policy == "DAILY":
                return QuotaExhaustedError(text, status=status, code=policy)
            error = self.default_error(response, detail, code=policy or category)
            if isinstance(error, RateLimitedError) and error.retry_after is None:
                error.retry_after = _POLICY_WAIT.get(policy)
            return error
        if status == 409:
            match = _EXISTING_ID.search(str(message or ""))
            return HubSpotConflictError(
                text, status=status, code=category or "CONFLICT", existing_id=match.group(1) if match else None
            )
        if status == 477:  # portal migration in progress (community-documented): try later
            return RetryableError(text, status=status, code=category)
        return self.default_error(response, detail, code=category)

    # ------------------------------------------------------------------ properties
    def get_properties(self, object_type: str) -> list[dict[str, Any]]:
        """All properties of an object type: ``GET /crm/v3/properties/{objectType}``.

        https://developers.hubspot.com/docs/api/crm/properties
        """
        o = _object_path(object_type)
        body = self.request_json("GET", f"/crm/v3/properties/{o}", endpoint=f"GET /crm/v3/properties/{o}")
        return list((body or {}).get("results") or [])

    def create_property(
        self,
        object_type: str,
        name: str,
        label: str,
        *,
        unique: bool = False,
        type: str = "string",  # noqa: A002 - HubSpot's field name
        field_type: str = "text",
        group_name: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create a custom property: ``POST /crm/v3/properties/{objectType}``
        with ``{name, label, type, fieldType, groupName, hasUniqueValue}``.

        https://developers.hubspot.com/docs/api/crm/properties (type and fieldType are
        required; ``hasUniqueValue`` cannot be changed later).

        :param group_name: defaults to the object's standard group (``contactinformation``
            for contacts, ``companyinformation``, ...); for other objects (notes, custom
            objects) a group the object's existing properties already use, read with
            :meth:`get_properties` (one extra call), so the group is known to exist.
        :returns: the created property, or ``{}`` when it already exists (409).
        """
        o = _object_path(object_type)
        group = group_name or self._default_property_group(o)
        payload: dict[str, Any] = {
            "name": name,
            "label": label,
            "type": type,
            "fieldType": field_type,
            "groupName": group,
            "hasUniqueValue": bool(unique),
        }
        if description:
            payload["description"] = description
        try:
            return (
                self.request_json(
                    "POST", f"/crm/v3/properties/{o}", json=payload, endpoint=f"POST /crm/v3/properties/{o}"
                )
                or {}
            )
        except BadRecordError as exc:
            if exc.status == 409:
                return {}
            raise

    def _default_property_group(self, object_type: str) -> str:
        if object_type in _DEFAULT_PROPERTY_GROUPS:
            return _DEFAULT_PROPERTY_GROUPS[object_type]
        groups = [str(p["groupName"]) for p in self.get_properties(object_type) if p.get("groupName")]
        if not groups:
            singular = object_type[:-1] if object_type.endswith("s") else object_type
            return f"{singular}information"
        # prefer the object's own "<x>information" group, else the most used one
        informational = [g for g in groups if g.endswith("information")]
        pool = informational or groups
        return max(dict.fromkeys(pool), key=pool.count)

    # ------------------------------------------------------------------ objects
    def batch_read(
        self,
        object_type: str,
        ids: Iterable[str],
        *,
        id_property: str | None = None,
        properties: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Read objects by id or unique property: ``POST /crm/v3/objects/{objectType}/batch/read``.

        Sends ``{inputs: [{id}], properties, propertiesWithHistory: [], idProperty?}`` in
        chunks of 100. A 207 whose errors are ids that do not exist is normal: only the
        found objects are returned.
        https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/read-contacts
        """
        o = _object_path(object_type)
        id_list = [str(i) for i in ids]
        found: list[dict[str, Any]] = []
        for start in range(0, len(id_list), self.batch_size):
            payload: dict[str, Any] = {
                "inputs": [{"id": i} for i in id_list[start : start + self.batch_size]],
                "properties": list(properties),
                "propertiesWithHistory": [],
            }
            if id_property:
                payload["idProperty"] = id_property
            body = (
                self.request_json(
                    "POST",
                    f"/crm/v3/objects/{o}/batch/read",
                    json=payload,
                    params={"archived": "false"},
                    endpoint=f"POST /crm/v3/objects/{o}/batch/read",
                )
                or {}
            )
            found.extend(body.get("results") or [])
        return found

    def search(
        self,
        object_type: str,
        filter_groups: list[dict[str, Any]],
        *,
        properties: Sequence[str] = (),
        limit: int = 100,
        sorts: Sequence[Any] = (),
    ) -> list[dict[str, Any]]:
        """Search objects: ``POST /crm/v3/objects/{objectType}/search``, every page.

        Body ``{filterGroups, properties, limit, sorts, after?}``; pages follow
        ``paging.next.after``. Counts against the separate search limit (5/s), not the
        ten-secondly one. HubSpot's search index lags behind writes, and a query returns at
        most 10,000 results.
        https://developers.hubspot.com/docs/api/crm/search
        """
        o = _object_path(object_type)
        if not 1 <= int(limit) <= 200:
            raise ValueError("HubSpot search limit must be between 1 and 200")

        def fetch_page(after: Any) -> tuple[list[Any], Any]:
            payload: dict[str, Any] = {
                "filterGroups": filter_groups,
                "properties": list(properties),
                "limit": int(limit),
                "sorts": list(sorts),
            }
            if after:
                payload["after"] = str(after)
            body = (
                self.request_json(
                    "POST",
                    f"/crm/v3/objects/{o}/search",
                    json=payload,
                    limit="search",
                    endpoint=f"POST /crm/v3/objects/{o}/search",
                )
                or {}
            )
            next_after = ((body.get("paging") or {}).get("next") or {}).get("after")
            return list(body.get("results") or []), next_after

        return list(self.paginate(fetch_page))

    def iter_objects(
        self,
        object_type: str,
        *,
        properties: Sequence[str] = (),
        limit: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Every (unarchived) object, page by page: ``GET /crm/v3/objects/{objectType}``.

        Query ``limit`` (at most 100), ``after`` (``paging.next.after`` of the previous page),
        ``properties`` (comma-separated), ``archived=false``; counts against the ten-secondly limit.
        Lazy: a page is requested only when the previous one is consumed.
        Spec: HubSpot-public-api-spec-collection contacts v3 ``get-/crm/v3/objects/contacts_getPage``
        (https://github.com/HubSpot/HubSpot-public-api-spec-collection, ``PublicApiSpecs/CRM``);
        https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/get-contacts
        """
        o = _object_path(object_type)
        if not 1 <= int(limit) <= 100:
            raise ValueError("HubSpot list limit must be between 1 and 100")

        def fetch_page(after: Any) -> tuple[list[Any], Any]:
            params: dict[str, Any] = {"limit": int(limit), "archived": "false"}
            if properties:
                params["properties"] = ",".join(properties)
            if after:
                params["after"] = str(after)
            body = (
                self.request_json("GET", f"/crm/v3/objects/{o}", params=params, endpoint=f"GET /crm/v3/objects/{o}")
                or {}
            )
            next_after = ((body.get("paging") or {}).get("next") or {}).get("after")
            return list(body.get("results") or []), next_after

        return self.paginate(fetch_page)

    def _batch_write(self, operation: str, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        o = _object_path(object_type)
        inputs = list(inputs)
        if len(inputs) > self.batch_size:
            raise ValueError(f"HubSpot batch/{operation} takes at most {self.batch_size} inputs, got {len(inputs)}")
        if not inputs:
            return BatchOutcome()
        body = (
            self.request_json(
                "POST",
                f"/crm/v3/objects/{o}/batch/{operation}",
                json={"inputs": inputs},
                endpoint=f"POST /crm/v3/objects/{o}/batch/{operation}",
            )
            or {}
        )
        return BatchOutcome(results=list(body.get("results") or []), errors=list(body.get("errors") or []))

    def batch_upsert(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Create or update by unique property: ``POST /crm/v3/objects/{objectType}/batch/upsert``.

        ``inputs``: ``[{idProperty, id, properties, objectWriteTraceId?}]`` (at most 100;
        the caller chunks). Each result carries ``new: true|false``; a 207 lists failed
        inputs in ``errors``; a whole-batch 400/409 raises :class:`BadRecordError`.
        https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts
        """
        return self._batch_write("upsert", object_type, inputs)

    def batch_create(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Create objects: ``POST /crm/v3/objects/{objectType}/batch/create``.

        ``inputs``: ``[{properties, associations?, objectWriteTraceId?}]`` (at most 100),
        e.g. notes associated to contacts with type 202.
        https://developers.hubspot.com/docs/api-reference/crm-notes-v3/guide
        """
        return self._batch_write("create", object_type, inputs)

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Update objects: ``POST /crm/v3/objects/{objectType}/batch/update``.

        ``inputs``: ``[{id, idProperty?, properties, objectWriteTraceId?}]`` (at most 100).
        https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/update-contacts
        """
        return self._batch_write("update", object_type, inputs)

    def create_object(
        self,
        object_type: str,
        properties: Mapping[str, Any],
        associations: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create one object: ``POST /crm/v3/objects/{objectType}`` with ``{properties, associations}``.

        :raises HubSpotConflictError: 409, e.g. a contact with that email exists;
            ``.existing_id`` holds the id from ``"Existing ID: 123"``.
        https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/create-contact
        """
        o = _object_path(object_type)
        return (
            self.request_json(
                "POST",
                f"/crm/v3/objects/{o}",
                json={"properties": dict(properties), "associations": list(associations or [])},
                endpoint=f"POST /crm/v3/objects/{o}",
            )
            or {}
        )

    def merge_objects(self, object_type: str, primary_id: str, id_to_merge: str) -> dict[str, Any]:
        """Merge two records of one type: ``POST /crm/v3/objects/{objectType}/merge`` with
        ``{"primaryObjectId", "objectIdToMerge"}`` -> the merged record (``SimplePublicObject``).

        The record ``id_to_merge`` is folded into ``primary_id`` (its notes and other associations move to it)
        and cannot be separated again. The returned ``id`` is the merged record's: HubSpot's API reference shows
        no rule that it equals ``primary_id`` (a third-party integration guide says merged records get a new id:
        UNCONFIRMED), so callers use the returned id. Scope ``crm.objects.contacts.write`` for contacts.
        Not re-sent after a timeout or 5xx (only after a 429): the caller lists the customers again and merges
        what is still there.
        Spec: HubSpot contacts v3 ``post-/crm/v3/objects/contacts/merge_merge``, schema ``PublicMergeInput``
        (https://github.com/HubSpot/HubSpot-public-api-spec-collection, ``PublicApiSpecs/CRM/Contacts``);
        https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/basic/post-crm-v3-objects-contacts-merge
        """
        o = _object_path(object_type)
        return (
            self.request_json(
                "POST",
                f"/crm/v3/objects/{o}/merge",
                json={"primaryObjectId": str(primary_id), "objectIdToMerge": str(id_to_merge)},
                endpoint=f"POST /crm/v3/objects/{o}/merge",
                resend="never",  # a second send after a merge that went through answers 404: never blind
            )
            or {}
        )

    def fetch_account_identity(self) -> str:
        """The portal (hub) id: ``GET /account-info/v3/details`` -> ``portalId``.

        HubSpot's account information API answers for private-app and OAuth tokens alike
        (https://developers.hubspot.com/docs/api-reference/legacy/settings/account-information-api;
        for OAuth, ``GET /oauth/v1/access-tokens/{token}`` -> ``hub_id`` is the same number). The
        response shape is from HubSpot's public docs, not from a stored OpenAPI file: UNCONFIRMED.
        """
        self._check_auth_config()
        body = self.request_json("GET", "/account-info/v3/details", endpoint="GET /account-info/v3/details")
        portal = body.get("portalId") if isinstance(body, Mapping) else None
        return str(portal) if isinstance(portal, (int, str)) and not isinstance(portal, bool) else ""

    def check_access(self) -> str:
        """``GET /crm/v3/objects/contacts?limit=1`` (needs the contacts read scope)."""
        self._check_auth_config()
        self.request("GET", "/crm/v3/objects/contacts", params={"limit": 1}, endpoint="GET /crm/v3/objects/contacts")
        return "Connected to HubSpot (contacts readable)"


__all__ = ["BatchOutcome", "HubSpotConflictError", "HubSpotHook"]
