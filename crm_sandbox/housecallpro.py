"""Housecall Pro public API emulation under ``/housecallpro`` (mirrors ``https://api.housecallpro.com``).

Vendor facts used (https://docs.housecallpro.com/docs/housecall-public-api and its OpenAPI export
``housecall.v1.yaml``, https://github.com/ryrychu/trinityplumbing-housecallpro/blob/2a2bca4/housecall.v1.yaml):

* Auth: ``Authorization: Token <api key>`` (not ``Bearer``); company API keys do not expire,
  so there is no token endpoint and ``expire-tokens`` expires nothing.
* Lists: ``page`` (1-based, default 1), ``page_size`` (default 10); answer ``{page, page_size,
  total_pages, total_items, <items>}``.
* ``GET/POST /customers`` (``q`` search; create needs one of first_name, last_name, email,
  mobile_number, home_number, work_number; 201 ``Customer`` with ``addresses[].id``),
  ``GET/PUT /customers/{id}``, ``POST /customers/{id}/addresses`` (street, city, state, zip,
  country required; 200 ``Address``).
* ``POST /jobs`` (customer_id and address_id required; ``notes``, ``tags``, ``schedule``,
  ``job_fields.job_type_id``; 201 ``Job`` with ``notes[{id, content}]``), ``GET /jobs``
  (``customer_id`` filter, ``sort_by``, ``sort_direction``), ``GET /jobs/{id}``,
  ``POST /jobs/{id}/notes`` ``{content}`` (201 ``Note``), ``DELETE /jobs/{id}/notes/{note_id}``,
  ``GET /job_fields/job_types`` (``name`` filter). ``work_status`` is read-only: there is no
  route that completes a job, as in the public API.
* Errors: ``{"error": {"message": ...}}`` (404, 422) and the 422 variant
  ``{"errors": {"field": ["is missing"]}}`` (used here for ``AddressCreate``); 401 ``{"message"}``.

Sandbox choices (UNCONFIRMED vendor behaviour): ``q`` matches whole values through indexes
(email, phone digits of mobile/home/work numbers, full name, first or last name), not Housecall
Pro's fuzzy free text; ``page_size`` is capped at 100; the rate limit is a rolling
``requests_per_minute`` (default 120) answered with 429 ``{"error": {"message"}}`` and a
``Retry-After`` header in seconds; a note longer than ``note_limit`` (default 10,000)
characters is refused with 422; a ``mobile_number`` / ``home_number`` / ``work_number`` that is not a
North American number with its area code (no area code, foreign, "ext 12") is refused with 400
"Mobile number is invalid" (as users saw Housecall Pro answer, issue 15); ids look like ``cus_<hex>``,
``adr_<hex>``, ``job_<hex>``.
"""

from __future__ import annotations

import math
import re
import secrets
import time
import uuid
from collections import deque
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from crm_sandbox.common import (
    EMAIL_RE,
    AdminError,
    CrmAdapter,
    Ctx,
    VendorError,
    bearer,
    fault_error,
    iso,
    open_request,
    poisoned_fields,
    read_json,
)
from crm_sandbox.state import Account, Fault, Record, Table

CRM = "housecallpro"
DEFAULT_PER_MINUTE = 120
DEFAULT_NOTE_LIMIT = 10_000
MAX_PAGE_SIZE = 100
CUSTOMER_TEXT = (
    "first_name",
    "last_name",
    "email",
    "company",
    "mobile_number",
    "home_number",
    "work_number",
    "lead_source",
    "notes",
)
PHONES = ("mobile_number", "home_number", "work_number")
ADDRESS_FIELDS = ("street", "street_line_2", "city", "state", "zip", "country")
ADDRESS_REQUIRED = ("street", "city", "state", "zip", "country")
OBJECTS = ("customers", "jobs", "job_types")


# --------------------------------------------------------------------------- errors


def _error(status: int, message: str) -> VendorError:
    return VendorError(status, {"error": {"message": message}})


def _invalid(message: str) -> VendorError:
    return _error(422, message)


def _not_found(what: str) -> VendorError:
    return _error(404, f"{what} not found")


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request, lambda message: _error(400, message))
    if not isinstance(body, dict):
        raise _error(400, "Request body must be a JSON object")
    return body


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a string")
    return value


def _poisoned(values: dict[str, Any]) -> None:
    bad = poisoned_fields(values)
    if bad:
        raise _invalid(f"{bad[0]} is invalid")


_NANP = re.compile(r"^(?:\+?1)?[2-9]\d{2}[2-9]\d{6}$")


def _valid_phone(value: str) -> bool:
    """A North American number with its area code, formatted any way ("(512) 555-0100", "+15125550100");
    not a number without area code, a foreign number or one with an extension ("ext 12", "x12").
    UNCONFIRMED: Housecall Pro's answers as users saw them (issue 15), not in its spec."""
    if re.search(r"[A-Za-z]", value):
        return False
    return bool(_NANP.match(re.sub(r"[\s().\-]", "", value)))


# --------------------------------------------------------------------------- records


def _address(raw: Any, *, required: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _invalid("address must be an object")
    values = {k: _text(raw.get(k), k) for k in ADDRESS_FIELDS}
    if required:
        missing = [k for k in ADDRESS_REQUIRED if not values.get(k)]
        if missing:
            raise VendorError(422, {"errors": {k: ["is missing"] for k in missing}})
    _poisoned(values)
    return {"id": _new_id("adr"), "type": str(raw.get("type") or "service"), **values}


def _customer_fields(body: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """Validated ``CustomerCreate`` / ``CustomerUpdate`` values merged over ``current``."""
    values = {k: _text(body[k], k) for k in CUSTOMER_TEXT if k in body}
    _poisoned(values)
    if values.get("email") and not EMAIL_RE.match(values["email"]):
        raise _invalid(f"Email {values['email']} is invalid")
    for phone in PHONES:
        if values.get(phone) and not _valid_phone(values[phone]):
            raise _error(400, f"{phone.replace('_', ' ').capitalize()} is invalid")
    fields = {**(current or {}), **values}
    if "notifications_enabled" in body:
        fields["notifications_enabled"] = bool(body["notifications_enabled"])
    if "tags" in body:
        tags = body["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _invalid("tags must be an array of strings")
        _poisoned({f"tags[{i}]": t for i, t in enumerate(tags)})
        fields["tags"] = list(dict.fromkeys(tags))
    if current is None:
        if not any(fields.get(k) for k in ("first_name", "last_name", "email", *PHONES)):
            raise _invalid("One of first_name, last_name, email, mobile_number, home_number, work_number are required")
        raw = body.get("addresses") or []
        if not isinstance(raw, list):
            raise _invalid("addresses must be an array")
        fields["addresses"] = [_address(a, required=False) for a in raw]
        fields.setdefault("notifications_enabled", True)
        fields.setdefault("tags", [])
    name = " ".join(p for p in (fields.get("first_name"), fields.get("last_name")) if p)
    fields["full_name"] = name or None
    return fields


def _store(table: Table, fields: dict[str, Any], record: Record | None = None, prefix: str = "cus") -> Record:
    stamp = iso()
    if record is None:
        record = {"id": _new_id(prefix), "createdAt": stamp}
    stored = {**record, "fields": fields, "updatedAt": stamp}
    table.put(stored)
    return stored


def _render_customer(record: Record) -> dict[str, Any]:
    f = record["fields"]
    out = {
        "id": record["id"],
        **{k: f.get(k) for k in CUSTOMER_TEXT},
        "notifications_enabled": f.get("notifications_enabled", True),
        "tags": list(f.get("tags") or []),
        "addresses": [dict(a) for a in f.get("addresses") or []],
        "created_at": record["createdAt"],
        "updated_at": record["updatedAt"],
        "company_name": "Sandbox Pro",
        "company_id": "sandbox",
    }
    return out


def _job_types(account: Account) -> Table:
    return account.tables["job_types"]


def _render_job(account: Account, record: Record) -> dict[str, Any]:
    f = record["fields"]
    customer = account.tables["customers"].get(f["customer_id"])
    summary = _render_customer(customer) if customer else {"id": f["customer_id"]}
    summary.pop("addresses", None)
    address = next(
        (a for a in (customer or {}).get("fields", {}).get("addresses") or [] if a["id"] == f["address_id"]),
        {"id": f["address_id"]},
    )
    job_type = _job_types(account).get(f.get("job_type_id") or "")
    return {
        "id": record["id"],
        "invoice_number": f["invoice_number"],
        "description": f.get("description"),
        "customer": summary,
        "address": dict(address),
        "notes": [dict(n) for n in f.get("notes") or []],
        "work_status": f["work_status"],
        "work_timestamps": {"on_my_way_at": None, "started_at": None, "completed_at": None},
        "schedule": dict(f.get("schedule") or {"scheduled_start": None, "scheduled_end": None, "arrival_window": 0}),
        "total_amount": 0,
        "outstanding_balance": 0,
        "subtotal": 0,
        "assigned_employees": [],
        "tags": list(f.get("tags") or []),
        "lead_source": f.get("lead_source"),
        "job_fields": {
            "job_type": {"id": job_type["id"], "name": job_type["fields"]["name"]} if job_type else None,
            "business_unit": None,
        },
        "created_at": record["createdAt"],
        "updated_at": record["updatedAt"],
        "company_name": "Sandbox Pro",
        "company_id": "sandbox",
    }


def _render_job_type(record: Record) -> dict[str, Any]:
    return {"id": record["id"], "name": record["fields"]["name"]}


def _note(content: Any, limit: int, field: str = "content") -> dict[str, str]:
    if not isinstance(content, str) or not content.strip():
        raise _invalid(f"{field} is required")
    _poisoned({field: content})
    if len(content) > limit:
        raise _invalid(f"{field} is too long (maximum is {limit} characters)")
    return {"id": _new_id("nte"), "content": content}


def _schedule(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _invalid("schedule must be an object")
    out: dict[str, Any] = {}
    for key in ("scheduled_start", "scheduled_end"):
        value = raw.get(key)
        if value is None:
            continue
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise _invalid(f"{key} is not an ISO-8601 date-time") from None
        out[key] = value
    out["arrival_window"] = int(raw.get("arrival_window") or 0)
    return out if out.get("scheduled_start") else None


def _create_job(account: Account, body: dict[str, Any], limit: int) -> Record:
    customers, jobs = account.tables["customers"], account.tables["jobs"]
    for key in ("customer_id", "address_id"):
        if not body.get(key):
            raise _invalid(f"{key} is required")
    customer = customers.get(str(body["customer_id"]))
    if customer is None:
        raise _not_found("customer")
    address_id = str(body["address_id"])
    if not any(a["id"] == address_id for a in customer["fields"].get("addresses") or []):
        raise _invalid("address not found for this customer")
    notes = [_note(body["notes"], limit, "notes")] if body.get("notes") else []
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _invalid("tags must be an array of strings")
    _poisoned({f"tags[{i}]": t for i, t in enumerate(tags)})
    job_type_id = ((body.get("job_fields") or {}) if isinstance(body.get("job_fields"), dict) else {}).get(
        "job_type_id"
    )
    if job_type_id and _job_types(account).get(str(job_type_id)) is None:
        raise _invalid("job type not found")
    schedule = _schedule(body.get("schedule"))
    invoice = account.meta.get("hcp_invoice", 1000) + 1
    account.meta["hcp_invoice"] = invoice
    fields = {
        "customer_id": customer["id"],
        "address_id": address_id,
        "notes": notes,
        "tags": list(dict.fromkeys(tags)),
        "job_type_id": str(job_type_id) if job_type_id else None,
        "schedule": schedule,
        "work_status": "scheduled" if schedule else "needs scheduling",
        "invoice_number": str(body.get("invoice_number") or invoice),
        "description": None,
        "lead_source": body.get("lead_source"),
    }
    return _store(jobs, fields, prefix="job")


# --------------------------------------------------------------------------- paging


def _page_params(request: Request) -> tuple[int, int, bool]:
    query = request.query_params
    try:
        page = int(query.get("page") or 1)
        size = int(float(query.get("page_size") or 10))
    except ValueError:
        raise _invalid("page and page_size must be numbers") from None
    if page < 1 or size < 1:
        raise _invalid("page and page_size must be positive")
    direction = (query.get("sort_direction") or "desc").lower()
    if direction not in ("asc", "desc"):
        raise _invalid("sort_direction must be asc or desc")
    return page, min(size, MAX_PAGE_SIZE), direction == "desc"


def _paged(request: Request, table: Table, ids: list[str], key: str, render) -> dict[str, Any]:
    page, size, descending = _page_params(request)
    ordered = table.ordered(ids)
    if descending:
        ordered.reverse()
    chunk = ordered[(page - 1) * size : page * size]
    return {
        "page": page,
        "page_size": size,
        "total_pages": math.ceil(len(ordered) / size),
        "total_items": len(ordered),
        key: [render(table.records[i]) for i in chunk],
    }


def _search(table: Table, q: str) -> list[str]:
    q = q.strip()
    if not q:
        return list(table.records)
    fields = (
        ("email",)
        if "@" in q
        else (*PHONES,)
        if sum(c.isdigit() for c in q) >= 7
        else ("full_name", "first_name", "last_name")
    )
    return list({i for f in fields for i in table.lookup(f, q)})


# --------------------------------------------------------------------------- adapter


class HousecallProAdapter(CrmAdapter):
    """Accounts are Housecall Pro companies with one static API key each."""

    crm = CRM
    settings = frozenset({"enabled", "token_ttl_seconds", "requests_per_minute", "note_limit"})
    numeric_settings = settings - {"enabled"}

    def identity(self, credentials: dict[str, Any]) -> tuple[list[str], list[str]]:
        key = credentials.get("apiKey")
        if not isinstance(key, str) or not key:
            raise ValueError("Housecall Pro credentials need apiKey")
        return [], [key]

    def prepare(self, account: Account) -> None:
        account.table(
            "customers",
            {"email": "ci", "full_name": "ci", "first_name": "ci", "last_name": "ci", **{p: "phone" for p in PHONES}},
        )
        account.table("jobs", {"customer_id": "ci"})
        account.table("job_types", {"name": "ci"})

    def unauthorized(self, reason: str) -> VendorError:
        return VendorError(401, {"message": "Unauthorized"})

    def fault_error(self, fault: Fault) -> VendorError:
        return fault_error(fault, {"error": {"message": "Too many requests"}})

    def admit(self, ctx: Ctx, kind: str) -> float:
        account = ctx.account
        if account.setting("enabled", True) is False:
            return 0.0
        limit = int(account.setting("requests_per_minute", DEFAULT_PER_MINUTE) or 0)
        if limit <= 0:
            return 0.0
        now = time.monotonic()
        window: deque[float] = account.runtime.setdefault("hcp_minute", deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            wait = max(1, math.ceil(window[0] + 60.0 - now))
            raise VendorError(429, {"error": {"message": "Too many requests"}}, {"Retry-After": str(wait)})
        window.append(now)
        return 0.0

    def note_limit(self, account: Account) -> int:
        return int(account.setting("note_limit", DEFAULT_NOTE_LIMIT) or DEFAULT_NOTE_LIMIT)

    def seed(self, account: Account, obj: str, body: dict[str, Any]) -> Record:
        try:
            if obj == "customers":
                return _store(account.tables[obj], _customer_fields(body, None))
            if obj == "job_types":
                name = body.get("name")
                if not isinstance(name, str) or not name:
                    raise AdminError(400, "a job type needs a name")
                return _store(account.tables[obj], {"name": name}, prefix="jbt")
            return _create_job(account, body, self.note_limit(account))
        except VendorError as exc:
            raise AdminError(400, str(exc.body)) from None

    def export(self, account: Account, obj: str, record: Record) -> dict[str, Any]:
        if obj == "customers":
            return _render_customer(record)
        if obj == "jobs":
            return _render_job(account, record)
        return _render_job_type(record)

    def objects(self, account: Account) -> list[str]:
        return list(OBJECTS)


ADAPTER = HousecallProAdapter()
router = APIRouter(prefix="/housecallpro", tags=["housecallpro"])
HousecallProAdapter.router = router


async def _api(request: Request) -> Ctx:
    return await open_request(request, ADAPTER, bearer(request, schemes=("token",)))


def _customer(ctx: Ctx, customer_id: str) -> Record:
    record = ctx.account.tables["customers"].get(customer_id)
    if record is None:
        raise _not_found("customer")
    return record


def _job(ctx: Ctx, job_id: str) -> Record:
    record = ctx.account.tables["jobs"].get(job_id)
    if record is None:
        raise _not_found("job")
    return record


# --------------------------------------------------------------------------- company


@router.get("/company")
async def get_company(ctx: Ctx = Depends(_api)) -> Any:
    """The company the API key belongs to (``get-company``); ``id`` is stable per sandbox account."""
    company_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:housecallpro:{ctx.account.name}"))
    return ctx.reply(
        {
            "id": company_id,
            "name": ctx.account.name,
            "support_email": None,
            "phone_number": None,
            "time_zone": "America/Chicago",
        }
    )


# --------------------------------------------------------------------------- customers


@router.get("/customers")
async def list_customers(ctx: Ctx = Depends(_api)) -> Any:
    """Customers matching ``q`` (see the module docstring), newest first by default."""
    with ctx.state.lock:
        table = ctx.account.tables["customers"]
        ids = _search(table, ctx.request.query_params.get("q") or "")
        return ctx.reply(_paged(ctx.request, table, ids, "customers", _render_customer))


@router.post("/customers")
async def create_customer(ctx: Ctx = Depends(_api)) -> Any:
    body = await _body(ctx.request)
    with ctx.state.lock:
        record = _store(ctx.account.tables["customers"], _customer_fields(body, None))
        return ctx.reply(_render_customer(record), 201)


@router.get("/customers/{customer_id}")
async def read_customer(customer_id: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        return ctx.reply(_render_customer(_customer(ctx, customer_id)))


@router.put("/customers/{customer_id}")
async def update_customer(customer_id: str, ctx: Ctx = Depends(_api)) -> Any:
    body = await _body(ctx.request)
    with ctx.state.lock:
        record = _customer(ctx, customer_id)
        fields = _customer_fields(body, record["fields"])
        return ctx.reply(_render_customer(_store(ctx.account.tables["customers"], fields, record)))


@router.post("/customers/{customer_id}/addresses")
async def create_address(customer_id: str, ctx: Ctx = Depends(_api)) -> Any:
    body = await _body(ctx.request)
    with ctx.state.lock:
        record = _customer(ctx, customer_id)
        address = _address(body, required=True)
        fields = {**record["fields"], "addresses": [*(record["fields"].get("addresses") or []), address]}
        _store(ctx.account.tables["customers"], fields, record)
        return ctx.reply(dict(address))


# --------------------------------------------------------------------------- jobs


@router.get("/jobs")
async def list_jobs(ctx: Ctx = Depends(_api)) -> Any:
    """Jobs, optionally of one ``customer_id``; ``sort_by`` created_at (the sandbox's only order)."""
    sort_by = ctx.request.query_params.get("sort_by") or "created_at"
    if sort_by not in ("created_at", "updated_at", "invoice_number", "id", "description", "work_status"):
        raise _invalid(f"sort_by {sort_by} is not supported")
    with ctx.state.lock:
        table = ctx.account.tables["jobs"]
        customer_id = ctx.request.query_params.get("customer_id")
        ids = table.lookup("customer_id", customer_id) if customer_id else list(table.records)
        return ctx.reply(_paged(ctx.request, table, ids, "jobs", lambda r: _render_job(ctx.account, r)))


@router.post("/jobs")
async def create_job(ctx: Ctx = Depends(_api)) -> Any:
    body = await _body(ctx.request)
    with ctx.state.lock:
        record = _create_job(ctx.account, body, ADAPTER.note_limit(ctx.account))
        return ctx.reply(_render_job(ctx.account, record), 201)


@router.get("/jobs/{job_id}")
async def read_job(job_id: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        return ctx.reply(_render_job(ctx.account, _job(ctx, job_id)))


@router.post("/jobs/{job_id}/notes")
async def add_job_note(job_id: str, ctx: Ctx = Depends(_api)) -> Any:
    body = await _body(ctx.request)
    with ctx.state.lock:
        record = _job(ctx, job_id)
        note = _note(body.get("content"), ADAPTER.note_limit(ctx.account))
        fields = {**record["fields"], "notes": [*(record["fields"].get("notes") or []), note]}
        _store(ctx.account.tables["jobs"], fields, record)
        return ctx.reply(dict(note), 201)


@router.delete("/jobs/{job_id}/notes/{note_id}")
async def delete_job_note(job_id: str, note_id: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        record = _job(ctx, job_id)
        notes = record["fields"].get("notes") or []
        if not any(n["id"] == note_id for n in notes):
            raise _not_found("note")
        fields = {**record["fields"], "notes": [n for n in notes if n["id"] != note_id]}
        _store(ctx.account.tables["jobs"], fields, record)
    return Response(status_code=200, headers=ctx.headers)


@router.get("/job_fields/job_types")
async def list_job_types(ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        table = _job_types(ctx.account)
        name = ctx.request.query_params.get("name")
        ids = table.lookup("name", name) if name else list(table.records)
        return ctx.reply(_paged(ctx.request, table, ids, "job_types", _render_job_type))
