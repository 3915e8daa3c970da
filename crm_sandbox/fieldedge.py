"""FieldEdge Open API emulation under ``/fieldedge`` (mirrors the Gobo token host and the APIM API host).

``/fieldedge/oauth/token`` stands for ``https://fieldedge.withgobo.com/oauth/token`` (dev:
``https://dev.marketplace.fieldedge.com/oauth/token``) and ``/fieldedge/leads/v1/...`` for
``https://dev.api.fieldedge.com/leads/v1/...``: point ``authUrl`` at ``<sandbox>/fieldedge`` and
``baseUrl`` at ``<sandbox>/fieldedge/leads``.

Vendor facts used (FieldEdge Open API pages, https://docs.gravitee-fe.dev/member-authentication-guide-1981868m0
and https://docs.gravitee-fe.dev/customer-1981961m0; :mod:`crm_hooks.fieldedge` names each page):

* Token: ``POST /oauth/token`` with JSON (or form) ``{grant_type: client_credentials, client_id,
  client_secret, target_id}`` -> ``{access_token: <JWT>, token_type: "Bearer", expires_in,
  created_at}``; OAuth errors ``{error, error_description}`` (RFC 6749 section 5.2; 401
  ``invalid_client``). Tokens live ``token_ttl_seconds`` (default 3600, UNCONFIRMED).
* APIM in front of the API: a missing, unknown or expired JWT -> 401 ``{statusCode, message}``;
  the rate-limit policy -> 429 + ``Retry-After`` + ``{statusCode: 429, message: "Rate limit is
  exceeded. Try again in N seconds."}`` (``rate_limit_calls`` per ``rate_limit_period`` seconds,
  sliding, default 100 per 10 s: FieldEdge publishes no number); the quota policy (optional
  ``daily_quota``) -> 403 "Out of call volume quota. ...".
* ``GET /v1/customers/search?phone=&email=&firstName=``: customers matching one or more of the
  criteria (email case-insensitive, phone by digits, first name case-insensitive) -> 200
  ``{"customers": [...]}`` with the documented fields, 204 when none, 400 without criteria.
* ``POST /v1/customers`` -> 201 ``{"data": {"customerId", "createdAt"}}``; ``PUT
  /v1/customers/{id}`` replaces the customer -> 200; ``GET /v1/customers/{id}`` -> 200
  ``{"data": {...}}`` or 204. Validation: first/last name 2-50 characters without digits; an
  email or a phone is required; ``lastName`` is required (see below); the email opt-in needs an
  email, the SMS opt-in a phone; no
  ``customerId`` on create; phones in international format. Phones are stored the way
  FieldEdge shows them (``+1-214-555-0198``). No de-duplication: creating twice stores two.
* ``POST /v1/leads`` -> 201 ``{"data": {"leadId", "createdAt"}}``; ``GET /v1/leads/{id}`` ->
  ``{"data": {leadId, trackingId, source, status: "InProcess", ...}}`` or 204. A lead with a
  ``trackingId`` already used is stored again (nothing documents de-duplication), which is what
  makes the sync's own marker look-up necessary.

Sandbox choices (UNCONFIRMED vendor behaviour): validation errors use ASP.NET's
ValidationProblemDetails ``{type, title, status, errors: {field: [..]}, traceId}`` (FieldEdge
documents only "400 Invalid input"); ``GET /v1/leads?trackingId=`` (the look-up the sync uses)
answers like the customer search, ``{"leads": [...]}`` or 204 (the account option ``refuse_lead_lookup``
answers it 404, as an API without it would); ``availabilityNotes`` is limited
to 4,000 characters; names are optional but validated when present; a lead for an existing
customer (``isExistingCustomer`` + ``customerRefId``) may omit the email and phone. ``lastName`` is
required on a customer create and on a lead for a new customer (FieldEdge answers ``400 lastName is
required``, as users saw it, issue 15; the customer page lists only its length).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request

from crm_sandbox.common import (
    EMAIL_RE,
    INVALID_CLIENT,
    UNSUPPORTED_GRANT,
    AdminError,
    CrmAdapter,
    Ctx,
    VendorError,
    apply_fault,
    bearer,
    endpoint_key,
    fault_error,
    iso,
    json_response,
    jwt_segment,
    oauth_error,
    open_request,
    poisoned_fields,
    read_form,
    sandbox_state,
)
from crm_sandbox.state import Account, BucketCounter, Fault, Record, SlidingWindow, phone_digits

CRM = "fieldedge"
PREFIX = "/fieldedge"
#: The APIM API suffix of FieldEdge's customer/lead API (dev: https://dev.api.fieldedge.com/leads).
API = "/leads/v1"
DEFAULT_TOKEN_TTL = 3600
DEFAULT_RATE_CALLS = 100
DEFAULT_RATE_PERIOD = 10
NOTES_LIMIT = 4_000
NAME_MIN, NAME_MAX = 2, 50
CONTACT_METHODS = ("Email", "Phone", "SMS")
_INTERNATIONAL_PHONE = re.compile(r"^\+[1-9]\d{7,14}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
#: Signs the sandbox's JWTs (they are opaque to the client; only their claims are read).
_JWT_KEY = secrets.token_bytes(32)

UNAUTHORIZED = {"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."}


# --------------------------------------------------------------------------- errors


def _problem(
    status: int, title: str, errors: dict[str, list[str]] | None = None, detail: str | None = None
) -> VendorError:
    body: dict[str, Any] = {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1"
        if status == 400
        else "https://tools.ietf.org/html/rfc9110#section-15.5.5",
        "title": title,
        "status": status,
        "traceId": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00",
    }
    if errors:
        body["errors"] = errors
    if detail:
        body["detail"] = detail
    return VendorError(status, body)


def _invalid(errors: dict[str, list[str]]) -> VendorError:
    return _problem(400, "One or more validation errors occurred.", errors)


def _rate_limited(seconds: float) -> dict[str, Any]:
    return {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {max(1, math.ceil(seconds))} seconds."}


# --------------------------------------------------------------------------- validation


def _add(errors: dict[str, list[str]], field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON as ``{"customer.address.city": ...}`` (for the poisoned-field check)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        return {f"{prefix}{i}": v for i, v in enumerate(value)} if prefix else {}
    return {prefix.rstrip("."): value}


def _check_name(errors: dict[str, list[str]], field: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not (NAME_MIN <= len(value.strip()) <= NAME_MAX):
        _add(errors, field, f"{field} must be between {NAME_MIN} and {NAME_MAX} characters.")
    elif re.search(r"\d", value):
        _add(errors, field, f"{field} must not contain numbers.")


def _check_contact(
    errors: dict[str, list[str]],
    prefix: str,
    email: Any,
    phone: Any,
    *,
    email_opt_in: Any = False,
    sms_opt_in: Any = False,
    phone_field: str = "phoneNumber",
    international: bool = True,
) -> None:
    if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email)):
        _add(errors, f"{prefix}email", "The email field is not a valid e-mail address.")
    if phone is not None:
        text = str(phone)
        ok = _INTERNATIONAL_PHONE.match(text) if international else len(re.sub(r"\D", "", text)) >= 7
        if not ok:
            _add(
                errors,
                f"{prefix}{phone_field}",
                "Phone number must be in international format, e.g. +14155552671."
                if international
                else "Phone number is not valid.",
            )
    if not email and not phone:
        _add(errors, f"{prefix}email", "Email is required when phone number is not provided.")
        _add(errors, f"{prefix}{phone_field}", "Phone number is required when email is not provided.")
    if email_opt_in is True and not email:
        _add(errors, f"{prefix}email", "Email is required when marketing email opt-in is true.")
    if sms_opt_in is True and not phone:
        _add(errors, f"{prefix}{phone_field}", "Phone number is required when marketing SMS opt-in is true.")


def _poison(errors: dict[str, list[str]], body: dict[str, Any]) -> None:
    for field in poisoned_fields(_flatten(body)):
        _add(errors, field, f"The value of {field} is not valid.")


def _customer_errors(body: Any, *, creating: bool) -> dict[str, list[str]]:
    if not isinstance(body, dict):
        return {"$": ["The request body must be a JSON object."]}
    errors: dict[str, list[str]] = {}
    if creating and body.get("customerId") not in (None, ""):
        _add(errors, "customerId", "Do not include customerId when creating a customer.")
    _check_name(errors, "firstName", body.get("firstName"))
    _check_name(errors, "lastName", body.get("lastName"))
    if creating and body.get("lastName") in (None, ""):
        _add(errors, "lastName", "lastName is required.")
    _check_contact(
        errors,
        "",
        body.get("email") or None,
        body.get("phoneNumber") or None,
        email_opt_in=body.get("marketingEmailOptIn"),
        sms_opt_in=body.get("marketingSmsOptIn"),
    )
    methods = body.get("preferredContactMethods")
    if methods is not None and (not isinstance(methods, list) or any(m not in CONTACT_METHODS for m in methods)):
        _add(errors, "preferredContactMethods", f"Allowed values: {', '.join(CONTACT_METHODS)}.")
    _poison(errors, body)
    return errors


def _lead_errors(account: Account, body: Any) -> dict[str, list[str]]:
    if not isinstance(body, dict):
        return {"$": ["The request body must be a JSON object."]}
    errors: dict[str, list[str]] = {}
    if body.get("trackingId") is not None and not isinstance(body["trackingId"], str):
        _add(errors, "trackingId", "trackingId must be a string.")
    customer = body.get("customer")
    if not isinstance(customer, dict):
        _add(errors, "customer", "The customer field is required.")
    else:
        _check_name(errors, "customer.firstName", customer.get("firstName"))
        _check_name(errors, "customer.lastName", customer.get("lastName"))
        ref = customer.get("customerRefId")
        existing = body.get("isExistingCustomer") is True and ref
        if not existing and customer.get("lastName") in (None, ""):
            _add(errors, "customer.lastName", "lastName is required.")
        if existing and account.tables["customers"].get(str(ref)) is None:
            _add(errors, "customer.customerRefId", f"Customer {ref} does not exist.")
        email, phone = customer.get("email") or None, customer.get("phone") or None
        if email or phone or not existing:
            # A lead for a known customer may leave the contact details to the customer record.
            _check_contact(
                errors,
                "customer.",
                email,
                phone,
                email_opt_in=customer.get("marketingEmailOptedIn"),
                phone_field="phone",
                international=False,
            )
    appointment = body.get("appointment")
    if appointment is not None:
        if not isinstance(appointment, dict):
            _add(errors, "appointment", "appointment must be an object.")
        else:
            if appointment.get("preferredDate") and not _DATE.match(str(appointment["preferredDate"])):
                _add(errors, "appointment.preferredDate", "preferredDate must be yyyy-MM-dd.")
            if appointment.get("preferredTime") and not _TIME.match(str(appointment["preferredTime"])):
                _add(errors, "appointment.preferredTime", "preferredTime must be HH:mm.")
            notes = appointment.get("availabilityNotes")
            if isinstance(notes, str) and len(notes) > NOTES_LIMIT:
                _add(
                    errors,
                    "appointment.availabilityNotes",
                    f"availabilityNotes must be at most {NOTES_LIMIT} characters.",
                )
    metadata = body.get("metaData")
    if metadata is not None and not isinstance(metadata, dict):
        _add(errors, "metaData", "metaData must be an object.")
    _poison(errors, body)
    return errors


# --------------------------------------------------------------------------- records


def _display_phone(raw: Any) -> str | None:
    """``+14155552671`` as FieldEdge shows it (``+1-415-555-2671``); other numbers unchanged."""
    if not raw:
        return None
    digits = re.sub(r"\D", "", str(raw))
    if len(digits) == 11 and digits.startswith("1"):
        return f"+1-{digits[1:4]}-{digits[4:7]}-{digits[7:]}"
    return str(raw)


def _customer_fields(body: dict[str, Any], created_at: str) -> dict[str, Any]:
    """A create/PUT body as the stored record (the search response's vocabulary)."""
    methods = body.get("preferredContactMethods") or []
    first, last, company = body.get("firstName"), body.get("lastName"), body.get("companyName")
    display = " ".join(p for p in (first, last) if p) or None
    if company:
        display = f"{display} - {company}" if display else company
    address = {k: body.get(k) for k in ("address1", "address2", "city", "state", "zip")}
    return {
        "firstName": first,
        "lastName": last,
        "companyName": company,
        "displayName": display,
        **address,
        **{f"billing{k[0].upper()}{k[1:]}": v for k, v in address.items()},
        "primaryPhone": _display_phone(body.get("phoneNumber")),
        "primaryEmail": body.get("email"),
        "contactOnPhone": "Phone" in methods,
        "contactOnSms": "SMS" in methods,
        "contactOnEmail": "Email" in methods,
        "marketingEmailOptIn": bool(body.get("marketingEmailOptIn")),
        "marketingSmsOptIn": bool(body.get("marketingSmsOptIn")),
        "createdAt": created_at,
    }


def _customer_view(record: Record) -> dict[str, Any]:
    return {"id": record["id"], **record["fields"]}


def _lead_view(record: Record) -> dict[str, Any]:
    return {"leadId": record["id"], **record["fields"]}


def _get_one(ctx: Ctx, obj: str, record_id: str, view: Callable[[Record], dict[str, Any]]) -> Any:
    """``GET /v1/<obj>/{id}``: 200 ``{"data": {...}}``, or 204 when there is no such record."""
    with ctx.state.lock:
        record = ctx.account.tables[obj].get(record_id)
        body = view(record) if record is not None else None
    return ctx.reply({"data": body}) if body is not None else ctx.no_content()


def _store_customer(account: Account, body: dict[str, Any], record_id: str | None = None) -> Record:
    stamp = iso()
    rid = record_id or str(uuid.uuid4())
    record: Record = {"id": rid, "fields": _customer_fields(body, stamp), "createdAt": stamp, "updatedAt": stamp}
    account.tables["customers"].put(record)
    return record


def _store_lead(account: Account, body: dict[str, Any], record_id: str | None = None) -> Record:
    stamp = iso()
    customer = dict(body.get("customer") or {})
    customer["customerId"] = customer.pop("customerRefId", None)
    fields = {
        "trackingId": body.get("trackingId"),
        "source": body.get("source"),
        "status": "InProcess",
        "preferredContactMethod": body.get("preferredContactMethod"),
        "isExistingCustomer": bool(body.get("isExistingCustomer")),
        "metaData": body.get("metaData") or {},
        "customer": customer,
        "appointment": body.get("appointment") or {},
        "createdAt": stamp,
    }
    record: Record = {"id": record_id or str(uuid.uuid4()), "fields": fields, "createdAt": stamp, "updatedAt": stamp}
    account.tables["leads"].put(record)
    return record


# --------------------------------------------------------------------------- adapter


class FieldEdgeAdapter(CrmAdapter):
    """Accounts are FieldEdge tenants (one app's client id + the tenant's target_id)."""

    crm = CRM
    settings = frozenset(
        {"enabled", "token_ttl_seconds", "rate_limit_calls", "rate_limit_period", "daily_quota", "refuse_lead_lookup"}
    )
    numeric_settings = settings - {"enabled", "refuse_lead_lookup"}

    def identity(self, credentials: dict[str, Any]) -> tuple[list[str], list[str]]:
        if not all(
            isinstance(credentials.get(k), str) and credentials[k] for k in ("clientId", "clientSecret", "targetId")
        ):
            raise ValueError("FieldEdge credentials need clientId, clientSecret and targetId")
        return [f"tenant:{credentials['clientId']}:{credentials['targetId']}"], []

    def prepare(self, account: Account) -> None:
        account.table("customers", {"primaryEmail": "ci", "primaryPhone": "phone", "firstName": "ci"})
        account.table("leads", {"trackingId": "ci"})

    def unauthorized(self, reason: str) -> VendorError:
        return VendorError(401, UNAUTHORIZED, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def fault_error(self, fault: Fault) -> VendorError:
        return fault_error(fault, _rate_limited(fault.retry_after or 1))

    def admit(self, ctx: Ctx, kind: str) -> float:
        """APIM policies: the daily quota (403), then the sliding rate limit (429 + Retry-After)."""
        account = ctx.account
        if account.setting("enabled", True) is False:
            return 0.0
        runtime = account.runtime
        quota = account.setting("daily_quota")
        if quota:
            counter = runtime.setdefault("fe_quota", BucketCounter())
            if counter.total(time.time()) >= int(quota):
                raise VendorError(
                    403,
                    {"statusCode": 403, "message": "Out of call volume quota. Quota will be replenished in 23:59:59."},
                )
            counter.add(time.time())
        period = float(account.setting("rate_limit_period", DEFAULT_RATE_PERIOD))
        window = runtime.get("fe_rate")
        if window is None:
            window = runtime["fe_rate"] = SlidingWindow(
                int(account.setting("rate_limit_calls", DEFAULT_RATE_CALLS)), period
            )
        if not window.try_acquire(time.monotonic()):
            wait = max(1, math.ceil(period))
            raise VendorError(429, _rate_limited(wait), {"Retry-After": str(wait)})
        return 0.0

    def seed(self, account: Account, obj: str, body: dict[str, Any]) -> Record:
        rid = str(body.get("id") or body.get("leadId") or body.get("customerId") or "") or None
        if rid is not None and account.tables[obj].get(rid) is not None:
            raise AdminError(409, f"{obj} {rid} already exists")
        if obj == "customers":
            # Accept the create body or the search-result vocabulary (primaryEmail / primaryPhone).
            raw = {
                **body,
                "email": body.get("email") or body.get("primaryEmail"),
                "phoneNumber": body.get("phoneNumber") or body.get("primaryPhone"),
            }
            return _store_customer(account, raw, rid)
        return _store_lead(account, body, rid)

    def export(self, account: Account, obj: str, record: Record) -> dict[str, Any]:
        return _customer_view(record) if obj == "customers" else _lead_view(record)

    def objects(self, account: Account) -> list[str]:
        return ["customers", "leads"]


ADAPTER = FieldEdgeAdapter()
router = APIRouter(prefix=PREFIX, tags=["fieldedge"])
FieldEdgeAdapter.router = router


async def _api(request: Request) -> Ctx:
    return await open_request(request, ADAPTER, bearer(request))


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise _invalid({"$": ["A non-empty request body is required."]})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _invalid({"$": ["The JSON value could not be converted."]}) from None


# --------------------------------------------------------------------------- token (Gobo)


def _jwt(claims: dict[str, Any]) -> str:
    signing = f"{jwt_segment({'alg': 'HS256', 'typ': 'JWT'})}.{jwt_segment(claims)}"
    signature = base64.urlsafe_b64encode(hmac.new(_JWT_KEY, signing.encode(), hashlib.sha256).digest())
    return f"{signing}.{signature.rstrip(b'=').decode()}"


@router.post("/oauth/token")
async def oauth_token(request: Request) -> Any:
    """Client credentials for one tenant: JSON (as FieldEdge documents) or form-encoded."""
    await apply_fault(request, ADAPTER, None, exempt=True)
    if "json" in request.headers.get("content-type", ""):
        try:
            params = json.loads(await request.body() or b"{}")
        except ValueError:
            raise oauth_error(400, "invalid_request", "The request body is not valid JSON.") from None
        params = params if isinstance(params, dict) else {}
    else:
        params = await read_form(request)
    if params.get("grant_type") != "client_credentials":
        raise oauth_error(400, "unsupported_grant_type", UNSUPPORTED_GRANT)
    client_id, client_secret, target_id = (
        str(params.get(k) or "") for k in ("client_id", "client_secret", "target_id")
    )
    if not target_id:
        raise oauth_error(400, "invalid_request", "The request is missing a required parameter: target_id.")
    state = sandbox_state(request)
    with state.lock:
        apps = [a for a in state.accounts_of(CRM) if client_id and a.credentials.get("clientId") == client_id]
        if not apps or not hmac.compare_digest(client_secret, str(apps[0].credentials.get("clientSecret"))):
            raise oauth_error(401, "invalid_client", INVALID_CLIENT)
        account = next((a for a in apps if a.credentials.get("targetId") == target_id), None)
        if account is None:
            raise oauth_error(400, "invalid_grant", "The app is not installed for this target_id.")
        ttl = float(account.setting("token_ttl_seconds", DEFAULT_TOKEN_TTL))
        now = int(time.time())
        value = _jwt(
            {
                "iss": "gobo",
                "sub": client_id,
                "target_id": target_id,
                "company_id": target_id,
                "iat": now,
                "exp": now + int(ttl),
                "jti": uuid.uuid4().hex,
            }
        )
        state.issue_token(account, value, ttl)
        account.stats.by_endpoint[endpoint_key(request)] += 1
    return json_response({"access_token": value, "token_type": "Bearer", "expires_in": int(ttl), "created_at": now})


# --------------------------------------------------------------------------- customers


@router.get(f"{API}/customers/search")
async def search_customers(ctx: Ctx = Depends(_api)) -> Any:
    query = ctx.request.query_params
    email, phone, first = (query.get(k) or None for k in ("email", "phone", "firstName"))
    if not (email or phone or first):
        raise _invalid({"query": ["Provide at least one of phone, email or firstName."]})
    with ctx.state.lock:
        table = ctx.account.tables["customers"]
        ids: set[str] = set()
        if email:
            ids.update(table.lookup("primaryEmail", email))
        if phone and phone_digits(phone):
            ids.update(table.lookup("primaryPhone", phone))
        if first:
            ids.update(table.lookup("firstName", first))
        found = [_customer_view(table.records[i]) for i in table.ordered(ids)]
    return ctx.reply({"customers": found}) if found else ctx.no_content()


@router.post(f"{API}/customers")
async def create_customer(ctx: Ctx = Depends(_api)) -> Any:
    body = await _json(ctx.request)
    errors = _customer_errors(body, creating=True)
    if errors:
        raise _invalid(errors)
    with ctx.state.lock:
        record = _store_customer(ctx.account, body)
    return ctx.reply({"data": {"customerId": record["id"], "createdAt": record["createdAt"]}}, 201)


@router.get(f"{API}/customers/{{customerId}}")
async def get_customer(customerId: str, ctx: Ctx = Depends(_api)) -> Any:
    return _get_one(ctx, "customers", customerId, _customer_view)


@router.put(f"{API}/customers/{{customerId}}")
async def update_customer(customerId: str, ctx: Ctx = Depends(_api)) -> Any:
    """PUT replaces the customer (fields left out are cleared), keeping its id and createdAt."""
    body = await _json(ctx.request)
    errors = _customer_errors(body, creating=False)
    if errors:
        raise _invalid(errors)
    with ctx.state.lock:
        table = ctx.account.tables["customers"]
        record = table.get(customerId)
        if record is None:
            raise _problem(404, "Not Found", detail=f"Customer {customerId} was not found.")
        stamp = iso()
        table.put({**record, "fields": _customer_fields(body, record["createdAt"]), "updatedAt": stamp})
    return ctx.reply({"data": {"customerId": customerId, "updatedAt": stamp}})


# --------------------------------------------------------------------------- leads


@router.post(f"{API}/leads")
async def create_lead(ctx: Ctx = Depends(_api)) -> Any:
    body = await _json(ctx.request)
    with ctx.state.lock:
        errors = _lead_errors(ctx.account, body)
        if errors:
            raise _invalid(errors)
        record = _store_lead(ctx.account, body)
    return ctx.reply({"data": {"leadId": record["id"], "createdAt": record["createdAt"]}}, 201)


@router.get(f"{API}/leads")
async def find_leads(ctx: Ctx = Depends(_api)) -> Any:
    """UNCONFIRMED emulation: leads by ``trackingId`` (see the module docstring)."""
    if ctx.account.setting("refuse_lead_lookup"):
        # Whether FieldEdge serves this look-up is unconfirmed: this account answers as if it did not.
        raise _problem(404, "Not Found")
    tracking_id = ctx.request.query_params.get("trackingId")
    if not tracking_id:
        raise _invalid({"trackingId": ["The trackingId field is required."]})
    with ctx.state.lock:
        table = ctx.account.tables["leads"]
        found = [_lead_view(table.records[i]) for i in table.lookup("trackingId", tracking_id)]
    return ctx.reply({"leads": found}) if found else ctx.no_content()


@router.get(f"{API}/leads/{{leadId}}")
async def get_lead(leadId: str, ctx: Ctx = Depends(_api)) -> Any:
    return _get_one(ctx, "leads", leadId, _lead_view)
