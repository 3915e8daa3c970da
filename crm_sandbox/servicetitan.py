"""ServiceTitan v2 emulation under ``/servicetitan`` (auth host and API host in one).

Vendor facts used (https://developer.servicetitan.io/docs/oauth20,
https://developer.servicetitan.io/docs/get-going-first-api-call and ServiceTitan's v2 OpenAPI exports
``tenant-*-v2.yml``, https://github.com/compwright/servicetitan/tree/d86908e/spec):

* ``POST /connect/token`` form ``grant_type=client_credentials, client_id, client_secret`` ->
  ``{access_token, expires_in: 900, token_type: "Bearer", scope}``; no refresh tokens.
* Every API call needs ``Authorization: Bearer <token>`` and ``ST-App-Key``; paths are
  ``/{module}/v2/tenant/{tenant}/...`` and the token only works for its own tenant.
* ``/crm/v2/tenant/{t}/customers`` (GET list with ``ids, name, phone, active, page, pageSize, includeTotal,
  sort, externalDataApplicationGuid, externalDataKey, externalDataValues``; POST
  ``CreateCustomerRequest`` -> ``CreatedCustomerResponse`` with location and contact ids),
  ``/customers/{id}`` (GET, PATCH), ``/customers/contacts`` (GET, every customer's contacts modified in a
  date range: ``Customers_GetModifiedContactsList``), ``/crm/v2/tenant/{t}/locations`` (GET by ``customerId``,
  POST),
  ``/jpm/v2/tenant/{t}/jobs`` (GET list incl. the externalData filters, POST ``JobCreateRequest``),
  ``/jobs/{id}`` (GET, PATCH), ``/jpm/v2/tenant/{t}/job-types/{id}``,
  ``/settings/v2/tenant/{t}/business-units/{id}``, ``/marketing/v2/tenant/{t}/campaigns/{id}``.
* Lists answer ``{page, pageSize, hasMore, totalCount, data}`` (``totalCount`` with ``includeTotal``).
* ``externalData`` is stored per ``applicationGuid`` and answered only for the guid a request names.
* Errors: RFC 7807 ``ApiErrorResponse`` ``{type, title, status, traceId, errors: {field: [..]}, data}``.
* 60 requests per second per app per tenant (account option ``per_second``).

Sandbox choices (UNCONFIRMED vendor behaviour): the 429 body is an RFC 7807 problem and carries
``Retry-After: 1``; a missing/wrong ``ST-App-Key`` is a 401 problem, a token used for another tenant a
403 problem; token errors are ``{"error": "invalid_client" | "unsupported_grant_type"}`` with 400;
``name`` filters by case-insensitive substring, ``phone`` by digits of the customer's phone contacts;
priorities are Low, Normal, High, Urgent; validation error keys are the request's JSON paths. Reference
data (business units, job types, campaigns) comes from the account options of the same names
(defaults: 1001, 2001, 3001): a list of ids, or of ``{"id", "name", "active"?}`` items; the lists
``GET /settings/v2/tenant/{t}/business-units``, ``/jpm/v2/tenant/{t}/job-types`` and
``/marketing/v2/tenant/{t}/campaigns`` answer them (``active``: ``True`` by default, ``False``, ``Any``;
``name``: case-insensitive substring, as the marketing spec says of campaigns).
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from crm_sandbox.common import (
    EMAIL_RE,
    INVALID_MARKER,
    AdminError,
    CrmAdapter,
    Ctx,
    VendorError,
    apply_fault,
    basic_auth,
    bearer,
    endpoint_key,
    fault_error,
    iso,
    json_response,
    oauth_error,
    open_request,
    read_form,
    read_json,
    sandbox_state,
)
from crm_sandbox.state import Account, Fault, Record, SlidingWindow, Table, phone_digits

CRM = "servicetitan"
PREFIX = "/servicetitan"
DEFAULT_TOKEN_TTL = 900
DEFAULT_PER_SECOND = 60
MAX_PAGE_SIZE = 5000
REFERENCE_DEFAULTS = {"business_units": [1001], "job_types": [2001], "campaigns": [3001]}
PRIORITIES = ("Low", "Normal", "High", "Urgent")
CONTACT_TYPES = ("Phone", "Email", "Fax", "MobilePhone")
PHONE_TYPES = ("Phone", "MobilePhone")
OBJECTS = ("customers", "locations", "jobs")
ADDRESS_REQUIRED = ("street", "city", "state", "zip", "country")
_PROBLEM_TYPES = {
    400: "https://tools.ietf.org/html/rfc7231#section-6.5.1",
    401: "https://tools.ietf.org/html/rfc7235#section-3.1",
    403: "https://tools.ietf.org/html/rfc7231#section-6.5.3",
    404: "https://tools.ietf.org/html/rfc7231#section-6.5.4",
    409: "https://tools.ietf.org/html/rfc7231#section-6.5.8",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
}


# --------------------------------------------------------------------------- errors


def _problem_body(status: int, title: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {
        "type": _PROBLEM_TYPES.get(status, "about:blank"),
        "title": title,
        "status": status,
        "traceId": uuid.uuid4().hex,
        "errors": errors or {},
        "data": {},
    }


def _problem(
    status: int, title: str, errors: dict[str, list[str]] | None = None, headers: dict[str, str] | None = None
) -> VendorError:
    return VendorError(status, _problem_body(status, title, errors), headers)


def _invalid(errors: dict[str, list[str]]) -> VendorError:
    return _problem(400, "One or more validation errors occurred.", errors)


def _not_found(what: str) -> VendorError:
    return _problem(404, f"{what} not found")


def _record_or_404(account: Account, obj: str, record_id: int) -> Record:
    """A customer or job by id, or the 404 problem naming it ("Customer not found")."""
    record = _table(account, obj).get(str(record_id))
    if record is None:
        raise _not_found({"customers": "Customer", "jobs": "Job"}[obj])
    return record


class _Errors(dict):
    """Validation errors by JSON path, ServiceTitan's ``errors`` object."""

    def add(self, path: str, message: str) -> None:
        self.setdefault(path, []).append(message)

    def text(self, path: str, value: Any, *, required: bool = False) -> None:
        """A string field: required, a string, and free of the sandbox's validation marker."""
        if value is None or value == "":
            if required:
                self.add(path, f"The {path.rsplit('.', 1)[-1]} field is required.")
            return
        if not isinstance(value, str):
            self.add(path, "The value must be a string.")
        elif INVALID_MARKER in value:
            self.add(path, f"The value '{value[:60]}' is not valid.")

    def address(self, path: str, value: Any) -> None:
        if not isinstance(value, dict):
            self.add(path, "The address field is required.")
            return
        for part in ADDRESS_REQUIRED:
            self.text(f"{path}.{part}", value.get(part), required=True)
        self.text(f"{path}.unit", value.get("unit"))

    def contacts(self, path: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            self.add(path, "The contacts field must be an array.")
            return
        for i, contact in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(contact, dict) or contact.get("type") not in CONTACT_TYPES:
                self.add(f"{where}.type", f"The type must be one of {', '.join(CONTACT_TYPES)}.")
                continue
            self.text(f"{where}.value", contact.get("value"), required=True)
            self.text(f"{where}.memo", contact.get("memo"))
            if (
                contact["type"] == "Email"
                and isinstance(contact.get("value"), str)
                and not EMAIL_RE.match(contact["value"])
            ):
                self.add(f"{where}.value", "The value is not a valid e-mail address.")

    def external(self, path: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.add(path, "externalData must be an object.")
            return
        try:
            uuid.UUID(str(value.get("applicationGuid")))
        except ValueError:
            self.add(f"{path}.applicationGuid", "The applicationGuid field must be a GUID.")
        items = value.get("externalData")
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("key"), str) and isinstance(i.get("value"), str) for i in items
        ):
            self.add(f"{path}.externalData", "externalData must be a list of {key, value} strings.")

    def custom_fields(self, path: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            self.add(path, "customFields must be an array.")
            return
        for i, item in enumerate(value):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("typeId"), int)
                or isinstance(item.get("typeId"), bool)
            ):
                self.add(f"{path}[{i}].typeId", "The typeId field is required.")
            else:
                self.text(f"{path}[{i}].value", item.get("value"))

    def raise_if_any(self) -> None:
        if self:
            raise _invalid(dict(self))


# --------------------------------------------------------------------------- records & indexes


def _table(account: Account, obj: str) -> Table:
    return account.table(obj)


def _ext_map(raw: Any) -> dict[str, list[dict[str, str]]]:
    """A request's ``externalData`` as the stored ``{guid: [{key, value}]}``."""
    if not isinstance(raw, dict):
        return {}
    guid = str(uuid.UUID(str(raw["applicationGuid"])))
    return {guid: [{"key": i["key"], "value": i["value"]} for i in raw.get("externalData") or []]}


def _ext_index(account: Account, obj: str) -> dict[tuple[str, str, str], set[str]]:
    """``(guid, key, value) -> record ids``; built lazily, verified on read (records may change)."""
    key = ("st_ext", obj)
    index = account.runtime.get(key)
    if index is None:
        index = account.runtime[key] = {}
        for record in _table(account, obj):
            _index_ext(index, record)
    return index


def _index_ext(index: dict[tuple[str, str, str], set[str]], record: Record) -> None:
    for guid, items in (record["fields"].get("externalData") or {}).items():
        for item in items:
            index.setdefault((guid, item["key"], item["value"]), set()).add(record["id"])


def _phones(record: Record) -> set[str]:
    return {
        d
        for c in record["fields"].get("contacts") or []
        if c.get("type") in PHONE_TYPES
        for d in [phone_digits(c.get("value"))]
        if d
    }


def _phone_index(account: Account) -> dict[str, set[str]]:
    index = account.runtime.get("st_phone")
    if index is None:
        index = account.runtime["st_phone"] = {}
        for record in _table(account, "customers"):
            for digits in _phones(record):
                index.setdefault(digits, set()).add(record["id"])
    return index


def _store(account: Account, obj: str, record: Record) -> Record:
    """Put a record and keep the built indexes current (stale entries are filtered on read)."""
    _table(account, obj).put(record)
    index = account.runtime.get(("st_ext", obj))
    if index is not None:
        _index_ext(index, record)
    if obj == "customers" and "st_phone" in account.runtime:
        for digits in _phones(record):
            account.runtime["st_phone"].setdefault(digits, set()).add(record["id"])
    return record


def _new(account: Account, obj: str, fields: dict[str, Any], now: float) -> Record:
    rid = account.next_seq()
    stamp = iso(now)
    return _store(
        account,
        obj,
        {
            "id": str(rid),
            "fields": {**fields, "id": rid, "createdOn": stamp, "modifiedOn": stamp},
            "createdAt": stamp,
            "updatedAt": stamp,
        },
    )


def _changed(account: Account, obj: str, record: Record, changes: dict[str, Any], now: float) -> Record:
    stamp = iso(now)
    return _store(
        account, obj, {**record, "fields": {**record["fields"], **changes, "modifiedOn": stamp}, "updatedAt": stamp}
    )


def _ext_out(fields: dict[str, Any], guid: str | None) -> list[dict[str, str]] | None:
    if guid is None:
        return None
    return [dict(i) for i in (fields.get("externalData") or {}).get(guid, [])]


def _render(obj: str, record: Record, guid: str | None) -> dict[str, Any]:
    """The vendor's response shape (``CustomerResponse``, ``LocationResponse``, ``JobResponse``)."""
    f = record["fields"]
    hidden = {"externalData", "contacts", "appointments"}
    out = {k: v for k, v in f.items() if k not in hidden}
    out["externalData"] = _ext_out(f, guid)
    return out


def _render_contacts(record: Record) -> list[dict[str, Any]]:
    return [dict(c) for c in record["fields"].get("contacts") or []]


def _guid_param(request: Request) -> str | None:
    raw = request.query_params.get("externalDataApplicationGuid")
    if not raw:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise _invalid({"externalDataApplicationGuid": ["The value is not a valid GUID."]}) from None


def _int(
    raw: Any, name: str, default: int | None = None, *, minimum: int = 0, maximum: int | None = None
) -> int | None:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _invalid({name: [f"The value '{raw}' is not valid."]}) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise _invalid({name: [f"The field {name} must be between {minimum} and {maximum}."]})
    return value


def _ids_param(request: Request, name: str = "ids") -> set[int] | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    return {_int(v.strip(), name) for v in raw.split(",") if v.strip()}  # type: ignore[misc]


def _ext_candidates(request: Request, account: Account, obj: str, guid: str | None) -> set[str] | None:
    """Ids matching ``externalDataKey`` / ``externalDataValues`` (``None``: no such filter)."""
    key = request.query_params.get("externalDataKey")
    values = request.query_params.get("externalDataValues")
    if key is None and values is None:
        return None
    if guid is None:
        raise _invalid(
            {"externalDataApplicationGuid": ["externalDataApplicationGuid is required to filter by external data."]}
        )
    if not key:
        raise _invalid({"externalDataKey": ["externalDataKey is required with externalDataValues."]})
    table = _table(account, obj)
    index = _ext_index(account, obj)
    ids: set[str] = set()
    if values is None:
        for (g, k, _), found in index.items():
            if g == guid and k == key:
                ids |= found
    else:
        for value in (v for v in values.split(",") if v):
            ids |= index.get((guid, key, value), set())
    # verify against the current records (an update may have replaced the externalData)
    return {
        i
        for i in ids
        if (r := table.get(i)) is not None
        and any(
            e["key"] == key and (values is None or e["value"] in values.split(","))
            for e in (r["fields"].get("externalData") or {}).get(guid, [])
        )
    }


def _page(request: Request, table: Table, ids: list[str], render) -> dict[str, Any]:
    """A ``PaginatedResponse`` over ``ids`` (already filtered and sorted)."""
    query = request.query_params
    page = _int(query.get("page"), "page", 1, minimum=1)
    size = _int(query.get("pageSize"), "pageSize", 50, minimum=1, maximum=MAX_PAGE_SIZE)
    start = (page - 1) * size
    chunk = ids[start : start + size]
    body: dict[str, Any] = {
        "page": page,
        "pageSize": size,
        "hasMore": start + size < len(ids),
        "data": [render(table.records[i]) for i in chunk],
    }
    if str(query.get("includeTotal", "")).lower() == "true":
        body["totalCount"] = len(ids)
    return body


def _sorted(request: Request, table: Table, ids: set[str] | list[str]) -> list[str]:
    spec = request.query_params.get("sort") or "+Id"
    field = spec.lstrip("+- ")
    if field not in ("Id", "CreatedOn", "ModifiedOn"):
        message = f"Sorting by {field} is not supported. Available fields are: Id, ModifiedOn, CreatedOn."
        raise _invalid({"sort": [message]})
    name = {"Id": "id", "CreatedOn": "createdOn", "ModifiedOn": "modifiedOn"}[field]
    ordered = table.ordered(ids)
    ordered.sort(key=lambda i: table.records[i]["fields"].get(name) or 0, reverse=spec.startswith("-"))
    return ordered


def _active_filter(request: Request):
    value = (request.query_params.get("active") or "True").strip().lower()
    if value not in ("true", "false", "any"):
        raise _invalid({"active": ["Values: [True, Any, False]"]})
    return lambda f: value == "any" or bool(f.get("active", True)) == (value == "true")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- adapter


def _reference_item(value: Any) -> bool:
    if isinstance(value, dict):
        return (
            isinstance(value.get("id"), int)
            and isinstance(value.get("name"), str)
            and isinstance(value.get("active", True), bool)
        )
    return isinstance(value, int) and not isinstance(value, bool)


class ServiceTitanAdapter(CrmAdapter):
    """Accounts are ServiceTitan tenants (one app key, one client id/secret each)."""

    crm = CRM
    settings = frozenset({"enabled", "token_ttl_seconds", "per_second", *REFERENCE_DEFAULTS})
    numeric_settings = frozenset({"token_ttl_seconds", "per_second"})

    def identity(self, credentials: dict[str, Any]) -> tuple[list[str], list[str]]:
        missing = [k for k in ("clientId", "clientSecret", "tenantId", "appKey") if not credentials.get(k)]
        if missing:
            raise ValueError(
                f"ServiceTitan credentials need clientId, clientSecret, tenantId and appKey "
                f"(missing {', '.join(missing)})"
            )
        if not str(credentials["tenantId"]).isdigit():
            raise ValueError("tenantId must be numeric")
        return [f"client:{credentials['clientId']}"], []

    def check_settings(self, settings: dict[str, Any]) -> None:
        super().check_settings(settings)
        for key in REFERENCE_DEFAULTS:
            value = settings.get(key)
            if value is not None and not (isinstance(value, list) and all(_reference_item(v) for v in value)):
                raise ValueError(f"{key} must be a list of integer ids or {{id, name, active?}} items")

    def prepare(self, account: Account) -> None:
        for obj in OBJECTS:
            account.table(obj)

    def unauthorized(self, reason: str) -> VendorError:
        return _problem(401, "Unauthorized" if reason != "expired" else "Unauthorized: the access token expired")

    def fault_error(self, fault: Fault) -> VendorError:
        return fault_error(fault, _problem_body(429, "Too Many Requests"))

    def admit(self, ctx: Ctx, kind: str) -> float:
        account = ctx.account
        if account.setting("enabled", True) is False:
            return 0.0
        limit = int(account.setting("per_second", DEFAULT_PER_SECOND) or DEFAULT_PER_SECOND)
        window = account.runtime.get("st_window")
        if window is None or window.limit != limit:
            window = account.runtime["st_window"] = SlidingWindow(limit, 1.0)
        if not window.try_acquire(time.monotonic()):
            raise _problem(429, "Too Many Requests", headers={"Retry-After": "1"})
        return 0.0

    def reference(self, account: Account, kind: str) -> list[int]:
        return [item["id"] for item in self.reference_items(account, kind)]

    def reference_items(self, account: Account, kind: str) -> list[dict[str, Any]]:
        """The account's reference items of ``kind`` as ``{id, name, active}`` (a bare id: "<What> <id>", active)."""
        what = {"business_units": "Business unit", "job_types": "Job type", "campaigns": "Campaign"}[kind]
        return [
            {"id": v, "name": f"{what} {v}", "active": True}
            if isinstance(v, int)
            else {"id": v["id"], "name": v["name"], "active": v.get("active", True)}
            for v in account.setting(kind, REFERENCE_DEFAULTS[kind]) or []
        ]

    def seed(self, account: Account, obj: str, body: dict[str, Any]) -> Record:
        """Insert a record as given (no validation); ``externalData`` in the request shape or stored shape."""
        fields = {k: v for k, v in body.items() if k not in ("id", "createdOn", "modifiedOn")}
        raw = fields.get("externalData")
        try:
            fields["externalData"] = (
                _ext_map(raw) if isinstance(raw, dict) and "applicationGuid" in raw else (raw or {})
            )
        except (KeyError, ValueError):
            raise AdminError(400, "externalData must be {applicationGuid, externalData: [{key, value}]}") from None
        fields.setdefault("active", True)
        if obj == "customers":
            fields.setdefault("contacts", [])
            fields["contacts"] = [{"id": account.next_seq(), **c} for c in fields["contacts"]]
        return _new(account, obj, fields, time.time())

    def export(self, account: Account, obj: str, record: Record) -> dict[str, Any]:
        """All fields; ``externalData`` flattened over every guid as ``[{applicationGuid, key, value}]``."""
        fields = dict(record["fields"])
        fields["externalData"] = [
            {"applicationGuid": g, **i} for g, items in (fields.get("externalData") or {}).items() for i in items
        ]
        return fields

    def objects(self, account: Account) -> list[str]:
        return list(OBJECTS)


ADAPTER = ServiceTitanAdapter()
router = APIRouter(prefix=PREFIX, tags=["servicetitan"])
ServiceTitanAdapter.router = router
CRM_PATH = "/crm/v2/tenant/{tenant}"
JPM_PATH = "/jpm/v2/tenant/{tenant}"


async def _api(request: Request, tenant: str) -> Ctx:
    """Bearer token, then the app key, then the tenant the token was issued for."""
    ctx = await open_request(request, ADAPTER, bearer(request))
    if request.headers.get("st-app-key") != str(ctx.account.credentials.get("appKey")):
        raise _problem(401, "Unauthorized: the ST-App-Key header is missing or invalid")
    if tenant != str(ctx.account.credentials.get("tenantId")):
        raise _problem(403, f"The application is not authorized to access tenant {tenant}")
    return ctx


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request, lambda message: _invalid({"": [message]}))
    if not isinstance(body, dict):
        raise _invalid({"": ["The request body must be a JSON object."]})
    return body


# --------------------------------------------------------------------------- OAuth


@router.post("/connect/token")
async def connect_token(request: Request) -> Any:
    """Client-credentials grant: a bearer token for the tenant the client id belongs to."""
    await apply_fault(request, ADAPTER, None, exempt=True)
    form = await read_form(request)
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    basic = basic_auth(request)
    if basic is not None and not client_id:
        client_id, client_secret = basic
    if form.get("grant_type") != "client_credentials":
        raise oauth_error(400, "unsupported_grant_type")
    state = sandbox_state(request)
    with state.lock:
        account = next(
            (a for a in state.accounts_of(CRM) if client_id and a.credentials.get("clientId") == client_id), None
        )
        if account is None or client_secret != account.credentials.get("clientSecret"):
            raise oauth_error(400, "invalid_client")
        ttl = float(account.setting("token_ttl_seconds", DEFAULT_TOKEN_TTL))
        token = state.issue_token(account, "eyJ" + secrets.token_urlsafe(48), ttl)
        account.stats.by_endpoint[endpoint_key(request)] += 1
    return json_response(
        {
            "access_token": token.value,
            "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
            "token_type": "Bearer",
            "scope": "tn.crm.customers tn.jpm.jobs",
        }
    )


# --------------------------------------------------------------------------- customers


def _customer_out(guid: str | None):
    return lambda record: _render("customers", record, guid)


@router.get(CRM_PATH + "/customers")
async def list_customers(ctx: Ctx = Depends(_api)) -> Any:
    request = ctx.request
    query = request.query_params
    guid = _guid_param(request)
    with ctx.state.lock:
        account = ctx.account
        table = _table(account, "customers")
        candidates = _ext_candidates(request, account, "customers", guid)
        phone = phone_digits(query.get("phone")) if query.get("phone") else None
        if phone is not None:
            by_phone = _phone_index(account).get(phone, set())
            candidates = by_phone if candidates is None else candidates & by_phone
        pool = list(table.records) if candidates is None else list(candidates)
        active = _active_filter(request)
        ids = _ids_param(request)
        name = (query.get("name") or "").strip().casefold()
        kept = []
        for rid in pool:
            record = table.get(rid)
            if record is None:
                continue
            f = record["fields"]
            if not active(f) or (ids is not None and f["id"] not in ids):
                continue
            if name and name not in str(f.get("name") or "").casefold():
                continue
            if phone is not None and phone not in _phones(record):
                continue
            kept.append(rid)
        return ctx.reply(_page(request, table, _sorted(request, table, kept), _customer_out(guid)))


@router.get(CRM_PATH + "/customers/contacts")
async def list_modified_contacts(ctx: Ctx = Depends(_api)) -> Any:
    """``Customers_GetModifiedContactsList``: every customer's contacts modified in a date range (one bound
    required), paged like the other lists; items ``{modifiedOn, phoneSettings, id, type, value, memo,
    customerId}``. Registered before ``/customers/{customer_id}`` so the path is not read as an id."""
    query = ctx.request.query_params
    before, after = query.get("modifiedBefore"), query.get("modifiedOnOrAfter")
    if not before and not after:
        raise _invalid({"modifiedBefore": ["Either modifiedBefore or modifiedOnOrAfter parameter must be specified"]})
    with ctx.state.lock:
        table = _table(ctx.account, "customers")
        items = []
        for rid in table.ordered(list(table.records)):
            f = table.records[rid]["fields"]
            stamp = str(f.get("modifiedOn") or "")
            if (before and not stamp < before) or (after and not stamp >= after):
                continue
            for c in f.get("contacts") or []:
                phone = {"phoneNumber": c["value"], "doNotText": False} if c.get("type") in PHONE_TYPES else None
                items.append(
                    {
                        "modifiedOn": stamp,
                        "phoneSettings": phone,
                        "id": c.get("id"),
                        "type": c.get("type"),
                        "value": c.get("value"),
                        "memo": c.get("memo"),
                        "customerId": f["id"],
                    }
                )
        page = _int(query.get("page"), "page", 1, minimum=1)
        size = _int(query.get("pageSize"), "pageSize", 50, minimum=1, maximum=MAX_PAGE_SIZE)
        start = (page - 1) * size
        body: dict[str, Any] = {
            "page": page,
            "pageSize": size,
            "hasMore": start + size < len(items),
            "data": items[start : start + size],
        }
        if str(query.get("includeTotal", "")).lower() == "true":
            body["totalCount"] = len(items)
    return ctx.reply(body)


def _check_customer(body: dict[str, Any]) -> None:
    errors = _Errors()
    errors.text("name", body.get("name"), required=True)
    errors.address("address", body.get("address"))
    locations = body.get("locations")
    if not isinstance(locations, list) or not locations:
        errors.add("locations", "The locations field is required.")
    else:
        for i, loc in enumerate(locations):
            if not isinstance(loc, dict):
                errors.add(f"locations[{i}]", "A location must be an object.")
                continue
            errors.text(f"locations[{i}].name", loc.get("name"), required=True)
            errors.address(f"locations[{i}].address", loc.get("address"))
            errors.contacts(f"locations[{i}].contacts", loc.get("contacts"))
            errors.external(f"locations[{i}].externalData", loc.get("externalData"))
    if body.get("type") not in (None, "Residential", "Commercial"):
        errors.add("type", "The type must be Residential or Commercial.")
    errors.contacts("contacts", body.get("contacts"))
    errors.custom_fields("customFields", body.get("customFields"))
    errors.external("externalData", body.get("externalData"))
    errors.raise_if_any()


def _with_ids(account: Account, contacts: Any) -> list[dict[str, Any]]:
    return [
        {"id": account.next_seq(), "type": c["type"], "value": c["value"], "memo": c.get("memo")}
        for c in contacts or []
    ]


@router.post(CRM_PATH + "/customers")
async def create_customer(ctx: Ctx = Depends(_api)) -> Any:
    """``CreateCustomerRequest`` -> ``CreatedCustomerResponse`` (customer, locations, contacts, with ids)."""
    body = await _body(ctx.request)
    _check_customer(body)
    guid = body["externalData"]["applicationGuid"] if isinstance(body.get("externalData"), dict) else None
    now = time.time()
    with ctx.state.lock:
        account = ctx.account
        customer = _new(
            account,
            "customers",
            {
                "active": True,
                "name": body["name"],
                "type": body.get("type") or "Residential",
                "address": dict(body["address"]),
                "customFields": list(body.get("customFields") or []),
                "balance": 0,
                "doNotMail": bool(body.get("doNotMail")),
                "doNotService": bool(body.get("doNotService")),
                "createdById": 0,
                "mergedToId": None,
                "contacts": _with_ids(account, body.get("contacts")),
                "externalData": _ext_map(body.get("externalData")),
            },
            now,
        )
        locations = []
        for loc in body["locations"]:
            locations.append(
                _new(
                    account,
                    "locations",
                    {
                        "customerId": customer["fields"]["id"],
                        "active": True,
                        "name": loc["name"],
                        "address": dict(loc["address"]),
                        "customFields": list(loc.get("customFields") or []),
                        "createdById": 0,
                        "mergedToId": None,
                        "taxZoneId": None,
                        "contacts": _with_ids(account, loc.get("contacts")),
                        "externalData": _ext_map(loc.get("externalData")),
                    },
                    now,
                )
            )
        out = _render("customers", customer, str(uuid.UUID(guid)) if guid else None)
        out["locations"] = [{**_render("locations", loc, None), "contacts": _render_contacts(loc)} for loc in locations]
        out["contacts"] = _render_contacts(customer)
    return ctx.reply(out)


@router.get(CRM_PATH + "/customers/{customer_id}")
async def read_customer(customer_id: int, ctx: Ctx = Depends(_api)) -> Any:
    guid = _guid_param(ctx.request)
    with ctx.state.lock:
        return ctx.reply(_render("customers", _record_or_404(ctx.account, "customers", customer_id), guid))


@router.patch(CRM_PATH + "/customers/{customer_id}")
async def update_customer(customer_id: int, ctx: Ctx = Depends(_api)) -> Any:
    """``UpdateCustomerRequest`` (name, type, address, customFields, flags, externalData replaced for its guid)."""
    body = await _body(ctx.request)
    errors = _Errors()
    if "name" in body:
        errors.text("name", body["name"], required=True)
    if "address" in body:
        errors.address("address", body["address"])
    errors.custom_fields("customFields", body.get("customFields"))
    errors.external("externalData", body.get("externalData"))
    errors.raise_if_any()
    with ctx.state.lock:
        account = ctx.account
        record = _record_or_404(account, "customers", customer_id)
        changes = {
            k: body[k]
            for k in ("name", "type", "address", "customFields", "doNotMail", "doNotService", "active")
            if k in body
        }
        guid = None
        if isinstance(body.get("externalData"), dict):
            ext = _ext_map(body["externalData"])
            guid = next(iter(ext))
            changes["externalData"] = {**(record["fields"].get("externalData") or {}), **ext}
        updated = _changed(account, "customers", record, changes, time.time())
        return ctx.reply(_render("customers", updated, guid or _guid_param(ctx.request)))


# --------------------------------------------------------------------------- locations


@router.get(CRM_PATH + "/locations")
async def list_locations(ctx: Ctx = Depends(_api)) -> Any:
    request = ctx.request
    customer_id = _int(request.query_params.get("customerId"), "customerId")
    ids = _ids_param(request)
    active = _active_filter(request)
    guid = _guid_param(request)
    with ctx.state.lock:
        table = _table(ctx.account, "locations")
        kept = [
            rid
            for rid, r in table.records.items()
            if active(r["fields"])
            and (customer_id is None or r["fields"].get("customerId") == customer_id)
            and (ids is None or r["fields"]["id"] in ids)
        ]
        return ctx.reply(
            _page(request, table, _sorted(request, table, kept), lambda record: _render("locations", record, guid))
        )


@router.post(CRM_PATH + "/locations")
async def create_location(ctx: Ctx = Depends(_api)) -> Any:
    """``CreateLocationRequest`` (``name``, ``address``, ``customerId``) -> ``LocationResponse``."""
    body = await _body(ctx.request)
    errors = _Errors()
    errors.text("name", body.get("name"), required=True)
    errors.address("address", body.get("address"))
    if not isinstance(body.get("customerId"), int):
        errors.add("customerId", "The customerId field is required.")
    errors.contacts("contacts", body.get("contacts"))
    errors.external("externalData", body.get("externalData"))
    errors.raise_if_any()
    with ctx.state.lock:
        account = ctx.account
        _record_or_404(account, "customers", body["customerId"])
        record = _new(
            account,
            "locations",
            {
                "customerId": body["customerId"],
                "active": True,
                "name": body["name"],
                "address": dict(body["address"]),
                "customFields": [],
                "createdById": 0,
                "mergedToId": None,
                "taxZoneId": None,
                "contacts": _with_ids(account, body.get("contacts")),
                "externalData": _ext_map(body.get("externalData")),
            },
            time.time(),
        )
        return ctx.reply(_render("locations", record, None))


# --------------------------------------------------------------------------- jobs


def _check_job(account: Account, body: dict[str, Any]) -> None:
    errors = _Errors()
    ints = {k: body.get(k) for k in ("customerId", "locationId", "businessUnitId", "jobTypeId", "campaignId")}
    for key, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool):
            errors.add(key, f"The {key} field is required.")
    if isinstance(ints["customerId"], int):
        customer = _table(account, "customers").get(str(ints["customerId"]))
        if customer is None:
            errors.add("customerId", f"Customer {ints['customerId']} not found.")
        if isinstance(ints["locationId"], int):
            location = _table(account, "locations").get(str(ints["locationId"]))
            if location is None or location["fields"].get("customerId") != ints["customerId"]:
                errors.add("locationId", f"Location {ints['locationId']} not found for customer {ints['customerId']}.")
    for key, kind, what in (
        ("businessUnitId", "business_units", "Business unit"),
        ("jobTypeId", "job_types", "Job type"),
        ("campaignId", "campaigns", "Campaign"),
    ):
        if isinstance(ints[key], int) and ints[key] not in ADAPTER.reference(account, kind):
            errors.add(key, f"{what} {ints[key]} not found.")
    if body.get("priority") not in PRIORITIES:
        errors.add("priority", f"The priority must be one of {', '.join(PRIORITIES)}.")
    appointments = body.get("appointments")
    if not isinstance(appointments, list) or not appointments:
        errors.add("appointments", "The appointments field is required.")
    else:
        for i, appt in enumerate(appointments):
            start, end = (_parse_time(appt.get(k)) if isinstance(appt, dict) else None for k in ("start", "end"))
            if start is None or end is None:
                errors.add(f"appointments[{i}]", "start and end must be date-times (UTC).")
            elif end <= start:
                errors.add(f"appointments[{i}].end", "The end must be after the start.")
            techs = appt.get("technicianIds") if isinstance(appt, dict) else None
            if techs is not None and not (isinstance(techs, list) and all(isinstance(t, int) for t in techs)):
                errors.add(f"appointments[{i}].technicianIds", "technicianIds must be integers.")
    errors.text("summary", body.get("summary"))
    errors.custom_fields("customFields", body.get("customFields"))
    errors.external("externalData", body.get("externalData"))
    errors.raise_if_any()


@router.post(JPM_PATH + "/jobs")
async def create_job(ctx: Ctx = Depends(_api)) -> Any:
    """``JobCreateRequest`` -> ``JobResponse`` (status Scheduled, one appointment per request item)."""
    body = await _body(ctx.request)
    with ctx.state.lock:
        account = ctx.account
        _check_job(account, body)
        appointments = [{"id": account.next_seq(), **a} for a in body["appointments"]]
        guid = body["externalData"]["applicationGuid"] if isinstance(body.get("externalData"), dict) else None
        job = _new(
            account,
            "jobs",
            {
                "jobNumber": None,
                "customerId": body["customerId"],
                "locationId": body["locationId"],
                "jobStatus": "Scheduled",
                "completedOn": None,
                "businessUnitId": body["businessUnitId"],
                "jobTypeId": body["jobTypeId"],
                "priority": body["priority"],
                "campaignId": body["campaignId"],
                "summary": body.get("summary"),
                "customFields": list(body.get("customFields") or []),
                "appointmentCount": len(appointments),
                "firstAppointmentId": appointments[0]["id"],
                "lastAppointmentId": appointments[-1]["id"],
                "recallForId": None,
                "warrantyId": None,
                "noCharge": False,
                "notificationsEnabled": True,
                "createdById": 0,
                "tagTypeIds": list(body.get("tagTypeIds") or []),
                "appointments": appointments,
                "externalData": _ext_map(body.get("externalData")),
            },
            time.time(),
        )
        job = _store(account, "jobs", {**job, "fields": {**job["fields"], "jobNumber": str(job["fields"]["id"])}})
        return ctx.reply(_render("jobs", job, str(uuid.UUID(guid)) if guid else None))


@router.get(JPM_PATH + "/jobs")
async def list_jobs(ctx: Ctx = Depends(_api)) -> Any:
    request = ctx.request
    query = request.query_params
    guid = _guid_param(request)
    ids = _ids_param(request)
    customer_id = _int(query.get("customerId"), "customerId")
    location_id = _int(query.get("locationId"), "locationId")
    status = query.get("jobStatus")
    with ctx.state.lock:
        table = _table(ctx.account, "jobs")
        candidates = _ext_candidates(request, ctx.account, "jobs", guid)
        pool = list(table.records) if candidates is None else list(candidates)
        kept = []
        for rid in pool:
            f = table.records[rid]["fields"] if rid in table.records else None
            if f is None or (ids is not None and f["id"] not in ids):
                continue
            if (
                (customer_id is not None and f["customerId"] != customer_id)
                or (location_id is not None and f["locationId"] != location_id)
                or (status and f["jobStatus"] != status)
            ):
                continue
            kept.append(rid)
        return ctx.reply(
            _page(request, table, _sorted(request, table, kept), lambda record: _render("jobs", record, guid))
        )


@router.get(JPM_PATH + "/jobs/{job_id}")
async def read_job(job_id: int, ctx: Ctx = Depends(_api)) -> Any:
    guid = _guid_param(ctx.request)
    with ctx.state.lock:
        return ctx.reply(_render("jobs", _record_or_404(ctx.account, "jobs", job_id), guid))


@router.patch(JPM_PATH + "/jobs/{job_id}")
async def update_job(job_id: int, ctx: Ctx = Depends(_api)) -> Any:
    """``UpdateJobRequest``: summary, priority, customFields, tagTypeIds; externalData replaced for its guid."""
    body = await _body(ctx.request)
    errors = _Errors()
    errors.text("summary", body.get("summary"))
    if "priority" in body and body["priority"] not in PRIORITIES:
        errors.add("priority", f"The priority must be one of {', '.join(PRIORITIES)}.")
    errors.custom_fields("customFields", body.get("customFields"))
    errors.external("externalData", body.get("externalData"))
    errors.raise_if_any()
    with ctx.state.lock:
        account = ctx.account
        record = _record_or_404(account, "jobs", job_id)
        changes = {k: body[k] for k in ("summary", "priority", "customFields", "tagTypeIds") if k in body}
        guid = None
        if isinstance(body.get("externalData"), dict):
            ext = _ext_map(body["externalData"])
            guid = next(iter(ext))
            changes["externalData"] = {**(record["fields"].get("externalData") or {}), **ext}
        updated = _changed(account, "jobs", record, changes, time.time())
        return ctx.reply(_render("jobs", updated, guid or _guid_param(ctx.request)))


# --------------------------------------------------------------------------- reference data


def _reference(ctx: Ctx, kind: str, item_id: int, what: str, extra: dict[str, Any]) -> Any:
    with ctx.state.lock:
        item = next((i for i in ADAPTER.reference_items(ctx.account, kind) if i["id"] == item_id), None)
        if item is None:
            raise _not_found(what)
    return ctx.reply({**item, "modifiedOn": iso(), **extra})


def _reference_list(ctx: Ctx, kind: str, extra: dict[str, Any]) -> Any:
    """A paged reference list: ``active`` (True by default | False | Any), ``name`` (substring), ``page``."""
    query = ctx.request.query_params
    active = (query.get("active") or "True").strip().lower()
    if active not in ("true", "false", "any"):
        raise _problem(400, "One or more validation errors occurred.", {"active": ["Values: True, Any, False"]})
    name = (query.get("name") or "").strip().lower()
    try:
        page, size = int(query.get("page") or 1), int(query.get("pageSize") or 50)
    except ValueError:
        raise _problem(400, "One or more validation errors occurred.", {"page": ["must be an integer"]}) from None
    with ctx.state.lock:
        items = [
            {**i, "modifiedOn": iso(), **extra}
            for i in ADAPTER.reference_items(ctx.account, kind)
            if (active == "any" or i["active"] == (active == "true")) and name in i["name"].lower()
        ]
    start = (max(page, 1) - 1) * max(size, 1)
    data = items[start : start + max(size, 1)]
    return ctx.reply({"page": page, "pageSize": size, "hasMore": start + len(data) < len(items), "data": data})


@router.get("/settings/v2/tenant/{tenant}/business-units")
async def business_units(ctx: Ctx = Depends(_api)) -> Any:
    return _reference_list(ctx, "business_units", {})


@router.get(JPM_PATH + "/job-types")
async def job_types(ctx: Ctx = Depends(_api)) -> Any:
    return _reference_list(ctx, "job_types", {"externalData": None})


@router.get("/marketing/v2/tenant/{tenant}/campaigns")
async def campaigns(ctx: Ctx = Depends(_api)) -> Any:
    return _reference_list(ctx, "campaigns", {"category": None})


@router.get("/settings/v2/tenant/{tenant}/business-units/{unit_id}")
async def business_unit(unit_id: int, ctx: Ctx = Depends(_api)) -> Any:
    return _reference(ctx, "business_units", unit_id, "Business unit", {"officialName": f"Business unit {unit_id}"})


@router.get(JPM_PATH + "/job-types/{job_type_id}")
async def job_type(job_type_id: int, ctx: Ctx = Depends(_api)) -> Any:
    return _reference(ctx, "job_types", job_type_id, "Job type", {"externalData": None})


@router.get("/marketing/v2/tenant/{tenant}/campaigns/{campaign_id}")
async def campaign(campaign_id: int, ctx: Ctx = Depends(_api)) -> Any:
    return _reference(ctx, "campaigns", campaign_id, "Campaign", {"category": None})
