"""HubSpot CRM v3 emulation under ``/hubspot`` (mirrors ``https://api.hubapi.com``).

Vendor facts used (https://developers.hubspot.com/docs/api-reference/latest/crm/objects/contacts/guide,
https://developers.hubspot.com/docs/api-reference/crm-notes-v3/guide and HubSpot's OpenAPI specs,
https://github.com/HubSpot/HubSpot-public-api-spec-collection):

* Auth: ``Authorization: Bearer`` with a private-app (static) token, or OAuth access
  tokens from ``POST /oauth/v3/token`` (form body, ``grant_type=refresh_token``) that live
  30 min (``expires_in`` 1800); the deprecated v1 ``/oauth/v1/token`` is still served (same
  form) so a caller of it shows in the stats (``by_endpoint``). v3 refuses parameters in the query.
* Objects: ``/crm/v3/objects/{objectType}`` list/create/read/update/archive, ``batch/*``
  (≤100 inputs), ``search`` (filterGroups OR-ed, filters AND-ed, ``limit`` ≤200, 10,000
  results max); 201 ``SimplePublicObject``; batch 207 ``BatchResponse*WithErrors``
  ``{status, results, numErrors, errors[StandardError]}``; upsert results carry ``new``.
* Contacts: at least one of email/firstname/lastname; email is the unique identifier,
  duplicate create -> 409 ``CONFLICT`` "Contact already exists. Existing ID: <id>".
  ``idProperty`` may be email or a property with ``hasUniqueValue``.
* Notes: ``hs_timestamp`` required, ``hs_note_body`` ≤ 65,536 chars, association type
  202 = note -> contact (``HUBSPOT_DEFINED``).
* Properties: ``GET|POST /crm/v3/properties/{objectType}``, ``GET|DELETE .../{propertyName}`` (archive,
  204); writing an unknown property is a 400 ``VALIDATION_ERROR`` with ``PROPERTY_DOESNT_EXIST``.
* Limits: ten-secondly rolling window per account (190/10 s Professional), daily quota
  (625,000), search 5 requests/s and exempt from the ten-secondly window; headers
  ``X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds`` (daily ones only for
  static tokens; none on search); 429 ``{errorType: RATE_LIMIT, policyName}``, no Retry-After.
* Errors: ``{status: "error", message, correlationId, category, context?, errors?}``.

The daily quota is a rolling 24 h window here (HubSpot resets it at midnight).

Sandbox choices (UNCONFIRMED vendor wording): the account option ``refuse_unique_notes`` refuses a notes
property with ``hasUniqueValue`` (400 VALIDATION_ERROR; whether HubSpot allows one is unconfirmed); a
duplicate value of a custom unique
property is a 400 VALIDATION_ERROR naming the existing id; batch/create of a contact
whose email exists (or repeats in the batch) fails the whole batch with 409 CONFLICT.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from crm_sandbox.common import (
    EMAIL_RE,
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
    open_request,
    poisoned_fields,
    read_form,
    read_json,
    sandbox_state,
)
from crm_sandbox.state import (
    Account,
    BucketCounter,
    Fault,
    Record,
    SlidingWindow,
    Table,
    fold,
    phone_digits,
)

CRM = "hubspot"
MAX_BATCH = 100
MAX_NOTE_BODY = 65_536
SEARCH_MAX_LIMIT = 200
SEARCH_MAX_RESULTS = 10_000
SEARCH_MAX_GROUPS = 6
LIST_MAX_LIMIT = 100
NOTE_TO_CONTACT = 202
DEFAULT_TOKEN_TTL = 1800
DEFAULT_TEN_SECONDLY = 190
DEFAULT_DAILY = 625_000
DEFAULT_SEARCH_PER_SECOND = 5

OBJECT_ALIASES = {
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
    "notes": "notes",
    "note": "notes",
    "0-46": "notes",
}
SINGULAR = {"contacts": "contact", "notes": "note"}
BASE_OUTPUT = ("hs_object_id", "createdate", "lastmodifieddate")
DEFAULT_OUTPUT = {"contacts": ("email", "firstname", "lastname"), "notes": ()}
#: Contact properties indexed for O(1) search by phone digits.
PHONE_INDEXES = {"phone": "phone", "mobilephone": "phone"}

AUTH_MISSING = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


@dataclass(frozen=True)
class PropertyDef:
    """A HubSpot property definition (the subset the Properties API answers with)."""

    name: str
    label: str
    type: str = "string"
    fieldType: str = "text"
    groupName: str = "contactinformation"
    hasUniqueValue: bool = False
    readOnly: bool = False

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["modificationMetadata"] = {"readOnlyValue": out.pop("readOnly"), "archivable": True}
        return out


def _defaults(group: str, specs: Iterable[tuple[str, str, str, str]]) -> dict[str, PropertyDef]:
    common = [
        ("hs_object_id", "Record ID", "number", "number"),
        ("createdate", "Create Date", "datetime", "date"),
        ("lastmodifieddate", "Last Modified Date", "datetime", "date"),
    ]
    defs = {n: PropertyDef(n, label, t, ft, group) for n, label, t, ft in specs}
    for n, label, t, ft in common:
        defs[n] = PropertyDef(n, label, t, ft, group, readOnly=n != "createdate")
    return defs


DEFAULT_PROPERTIES: dict[str, dict[str, PropertyDef]] = {
    "contacts": _defaults(
        "contactinformation",
        [
            ("email", "Email", "string", "text"),
            ("firstname", "First Name", "string", "text"),
            ("lastname", "Last Name", "string", "text"),
            ("phone", "Phone Number", "string", "phonenumber"),
            ("mobilephone", "Mobile Phone Number", "string", "phonenumber"),
            ("address", "Street Address", "string", "text"),
            ("city", "City", "string", "text"),
            ("state", "State/Region", "string", "text"),
            ("zip", "Postal Code", "string", "text"),
            ("country", "Country/Region", "string", "text"),
            ("company", "Company Name", "string", "text"),
        ],
    ),
    "notes": _defaults(
        "notes",
        [
            ("hs_timestamp", "Activity date", "datetime", "date"),
            ("hs_note_body", "Note body", "string", "html"),
            ("hubspot_owner_id", "Activity assigned to", "enumeration", "select"),
            ("hs_attachment_ids", "Attached file IDs", "enumeration", "checkbox"),
        ],
    ),
}


# --------------------------------------------------------------------------- errors


def _error(status: int, category: str, message: str, **extra: Any) -> VendorError:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update({k: v for k, v in extra.items() if v is not None})
    return VendorError(status, body)


def _invalid(message: str, **extra: Any) -> VendorError:
    return _error(400, "VALIDATION_ERROR", message, **extra)


def _rate_limited(policy: str) -> dict[str, Any]:
    message = {
        "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        "SECONDLY": "You have reached your secondly limit.",
        "DAILY": "You have reached your daily limit.",
    }[policy]
    return {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
    }


@dataclass
class Problem:
    """One thing wrong with one input; ``prop`` marks a property-value problem."""

    category: str
    message: str
    code: str | None = None
    prop: str | None = None
    context: dict[str, list[str]] = field(default_factory=dict)

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.code:
            out["code"] = self.code
        context = dict(self.context)
        if self.prop:
            context.setdefault("propertyName", [self.prop])
        if context:
            out["context"] = context
        return out


def _prop_problem(name: str, code: str, message: str) -> Problem:
    return Problem("VALIDATION_ERROR", message, code, prop=name)


def _summary(problems: list[Problem]) -> tuple[int, str, str]:
    """HTTP status, category and message for a set of problems (validation wins)."""
    validation = [p for p in problems if p.category == "VALIDATION_ERROR"]
    if validation:
        props = [p for p in validation if p.prop]
        if len(props) == len(validation):
            listed = [{"isValid": False, "message": p.message, "error": p.code, "name": p.prop} for p in props]
            return (
                400,
                "VALIDATION_ERROR",
                "Property values were not valid: " + json.dumps(listed, separators=(",", ":")),
            )
        return 400, "VALIDATION_ERROR", validation[0].message
    first = problems[0]
    return (409 if first.category == "CONFLICT" else 404), first.category, first.message


def _failure(problems: list[Problem]) -> VendorError:
    """A whole-request error built from problems (single create, batch create)."""
    status, category, message = _summary(problems)
    errors = [p.detail() for p in problems] if category == "VALIDATION_ERROR" or len(problems) > 1 else None
    return _error(status, category, message, errors=errors)


def _standard_error(problems: list[Problem], trace: str | None, input_id: str | None) -> dict[str, Any]:
    """One ``StandardError`` entry of a 207 batch answer."""
    _, category, message = _summary(problems)
    context: dict[str, list[str]] = {}
    if trace:
        context["objectWriteTraceId"] = [trace]
    if input_id is not None:
        context["ids"] = [input_id]
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": context,
        "errors": [p.detail() for p in problems],
        "links": {},
    }


# --------------------------------------------------------------------------- schema & records


def _object(object_type: str) -> str:
    obj = OBJECT_ALIASES.get(object_type.lower())
    if obj is None:
        raise _invalid(f"Unable to infer object type from: {object_type}")
    return obj


def _defs(account: Account, obj: str) -> dict[str, PropertyDef]:
    """Default plus custom (Properties API) definitions, cached per account."""
    key = ("hs_defs", obj)
    defs = account.runtime.get(key)
    if defs is None:
        defs = dict(DEFAULT_PROPERTIES[obj])
        for raw in account.meta.get("properties", {}).get(obj, []):
            defs[raw["name"]] = PropertyDef(**{k: raw[k] for k in PropertyDef.__dataclass_fields__ if k in raw})
        account.runtime[key] = defs
    return defs


def _unique_props(obj: str, defs: dict[str, PropertyDef]) -> list[str]:
    names = ["email"] if obj == "contacts" else []
    return names + [d.name for d in defs.values() if d.hasUniqueValue]


def _normalizer(defn: PropertyDef | None) -> Callable[[Any], str | None]:
    return phone_digits if defn is not None and defn.fieldType == "phonenumber" else fold


def _table(account: Account, obj: str) -> Table:
    return account.tables[obj]


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _coerce(defs: dict[str, PropertyDef], raw: Any) -> tuple[dict[str, str], list[Problem]]:
    """Known, writable properties as strings (HubSpot stores every value as a string)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [Problem("VALIDATION_ERROR", "properties must be a JSON object")]
    props: dict[str, str] = {}
    problems: list[Problem] = []
    for name, value in raw.items():
        defn = defs.get(name)
        if defn is None:
            problems.append(_prop_problem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
        elif defn.readOnly:
            problems.append(
                _prop_problem(name, "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
            )
        elif isinstance(value, (dict, list)):
            problems.append(
                _prop_problem(name, "INVALID_VALUE", f'Property "{name}" must be a string, number or boolean')
            )
        else:
            props[name] = _stringify(value)
    return props, problems


def _timestamp(value: str) -> str | None:
    """``hs_timestamp`` as ISO-8601 (epoch milliseconds or ISO accepted); ``None`` if invalid."""
    try:
        if value.isdigit():
            return iso(int(value) / 1000.0)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment.timestamp())


def _check_values(obj: str, props: dict[str, str], merged: dict[str, str], creating: bool) -> list[Problem]:
    """Record-level rules (mutates ``props`` to normalise ``hs_timestamp``)."""
    problems: list[Problem] = [
        _prop_problem(name, "INVALID_VALUE", f"Property value for {name} is not valid")
        for name in poisoned_fields(props)
    ]
    email = props.get("email")
    if email and not EMAIL_RE.match(email):
        problems.append(_prop_problem("email", "INVALID_EMAIL", f"Email address {email} is invalid"))
    if obj == "contacts":
        if creating and not any(merged.get(k) for k in ("email", "firstname", "lastname")):
            problems.append(
                Problem(
                    "VALIDATION_ERROR",
                    "A contact needs at least one of the properties email, firstname or lastname",
                    "REQUIRED_PROPERTY",
                    context={"propertyName": ["email", "firstname", "lastname"]},
                )
            )
    elif obj == "notes":
        body = props.get("hs_note_body")
        if body is not None and len(body) > MAX_NOTE_BODY:
            problems.append(
                _prop_problem(
                    "hs_note_body",
                    "INVALID_LENGTH",
                    f"hs_note_body is {len(body)} characters; the maximum is {MAX_NOTE_BODY}",
                )
            )
        stamp = props.get("hs_timestamp")
        if stamp:
            normalised = _timestamp(stamp)
            if normalised is None:
                problems.append(_prop_problem("hs_timestamp", "INVALID_DATE", f"{stamp} is not a valid date-time"))
            else:
                props["hs_timestamp"] = merged["hs_timestamp"] = normalised
        if creating and not merged.get("hs_timestamp"):
            problems.append(
                _prop_problem("hs_timestamp", "REQUIRED_PROPERTY", "Missing required property hs_timestamp")
            )
    return problems


def _conflicts(
    obj: str,
    table: Table,
    defs: dict[str, PropertyDef],
    merged: dict[str, str],
    self_id: str | None,
    pending: dict[tuple[str, str], str] | None = None,
) -> list[Problem]:
    """Unique-value clashes with stored records (and with earlier inputs via ``pending``)."""
    problems: list[Problem] = []
    for name in _unique_props(obj, defs):
        value = merged.get(name)
        if not value:
            continue
        other = table.lookup_one(name, value)
        if other == self_id:
            other = None
        if other is None and pending is not None:
            key = (name, fold(value) or "")
            if key in pending:
                problems.append(
                    Problem(
                        "CONFLICT" if name == "email" else "VALIDATION_ERROR",
                        f"Duplicate value '{value}' for unique property '{name}' in batch input",
                        "DUPLICATE_IN_BATCH",
                        prop=name,
                    )
                )
                continue
            pending[key] = value
        if other is None:
            continue
        if name == "email":
            problems.append(
                Problem(
                    "CONFLICT",
                    f"Contact already exists. Existing ID: {other}",
                    "CONTACT_EXISTS",
                    context={"existingId": [other]},
                )
            )
        else:
            problems.append(
                _prop_problem(
                    name,
                    "INVALID_UNIQUE_VALUE",
                    f"A {SINGULAR[obj]} with the value '{value}' already exists for the unique "
                    f"property '{name}'. Existing ID: {other}",
                )
            )
    return problems


def _associations(account: Account, obj: str, raw: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Validated create-time associations (only note -> contact, type 202, is emulated)."""
    if not raw:
        return [], []
    if not isinstance(raw, list):
        return [], [Problem("VALIDATION_ERROR", "associations must be a list")]
    stored: list[dict[str, Any]] = []
    problems: list[Problem] = []
    contacts = _table(account, "contacts")
    for item in raw:
        to_id = str(((item or {}).get("to") or {}).get("id", ""))
        types = (item or {}).get("types") or []
        supported = (
            obj == "notes"
            and types
            and all(
                t.get("associationCategory") == "HUBSPOT_DEFINED"
                and int(t.get("associationTypeId", -1)) == NOTE_TO_CONTACT
                for t in types
            )
        )
        if not supported:
            problems.append(
                Problem(
                    "VALIDATION_ERROR",
                    f"Unsupported association types {types} for {obj} "
                    f"(the sandbox emulates HUBSPOT_DEFINED {NOTE_TO_CONTACT} note -> contact)",
                    "INVALID_ASSOCIATION",
                )
            )
        elif contacts.get(to_id) is None:
            problems.append(
                Problem(
                    "VALIDATION_ERROR",
                    f"One or more associations are invalid: contact {to_id} does not exist",
                    "INVALID_ASSOCIATION",
                    context={"toObjectId": [to_id]},
                )
            )
        else:
            stored.append({"to": {"id": to_id}, "types": [dict(t) for t in types]})
    return stored, problems


def _create(
    account: Account,
    table: Table,
    props: dict[str, str],
    associations: list[dict[str, Any]],
    now: float,
    record_id: str | None = None,
) -> Record:
    rid = record_id or str(account.next_seq())
    stamp = iso(now)
    fields = {**props, "hs_object_id": rid, "createdate": props.get("createdate") or stamp, "lastmodifieddate": stamp}
    record: Record = {"id": rid, "fields": fields, "createdAt": stamp, "updatedAt": stamp}
    if associations:
        record["associations"] = associations
    table.put(record)
    return record


def _update(table: Table, record: Record, props: dict[str, str], now: float) -> Record:
    stamp = iso(now)
    updated = {**record, "fields": {**record["fields"], **props, "lastmodifieddate": stamp}, "updatedAt": stamp}
    table.put(updated)
    return updated


def _output_props(obj: str, defs: dict[str, PropertyDef], requested: Iterable[str] | None) -> list[str]:
    names = list(DEFAULT_OUTPUT[obj]) if requested is None else [n for n in requested if n in defs]
    return names + [b for b in BASE_OUTPUT if b not in names]


def _render(
    record: Record,
    props: list[str] | None = None,
    *,
    trace: str | None = None,
    new: bool | None = None,
    associations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``SimplePublicObject`` (all stored properties when ``props`` is None)."""
    fields = record["fields"]
    properties = dict(fields) if props is None else {p: fields.get(p) for p in props}
    out: dict[str, Any] = {
        "id": record["id"],
        "properties": properties,
        "createdAt": record["createdAt"],
        "updatedAt": record["updatedAt"],
        "archived": False,
    }
    if new is not None:
        out["new"] = new
    if trace:
        out["objectWriteTraceId"] = trace
    if associations:
        out["associations"] = associations
    return out


def _association_view(account: Account, obj: str, record: Record, wanted: list[str]) -> dict[str, Any]:
    """``associations`` of a read (note <-> contact only)."""
    out: dict[str, Any] = {}
    if obj == "notes" and "contacts" in wanted:
        ids = [a["to"]["id"] for a in record.get("associations", [])]
        if ids:
            out["contacts"] = {"results": [{"id": i, "type": "note_to_contact"} for i in ids]}
    elif obj == "contacts" and "notes" in wanted:
        ids = [
            n["id"]
            for n in _table(account, "notes")
            if any(a["to"]["id"] == record["id"] for a in n.get("associations", []))
        ]
        if ids:
            out["notes"] = {"results": [{"id": i, "type": "contact_to_note"} for i in ids]}
    return out


def _csv_params(request: Request, name: str) -> list[str] | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    return [v.strip() for raw in values for v in raw.split(",") if v.strip()]


def _int_param(raw: Any, name: str, default: int, maximum: int | None = None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _invalid(f"{name} must be an integer") from None
    if value < 0 or (maximum is not None and value > maximum):
        raise _invalid(f"{name} must be between 0 and {maximum}" if maximum else f"{name} must not be negative")
    return value


def _inputs(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise _invalid("Request body must be an object with an inputs array")
    inputs = body["inputs"]
    if len(inputs) > MAX_BATCH:
        raise _invalid(
            f"Batch input limit exceeded: {len(inputs)} inputs, at most {MAX_BATCH} are allowed per batch",
            errors=[
                {
                    "message": f"inputs has {len(inputs)} items; maximum is {MAX_BATCH}",
                    "context": {"maxInputs": [str(MAX_BATCH)]},
                }
            ],
        )
    if not all(isinstance(i, dict) for i in inputs):
        raise _invalid("Every input must be a JSON object")
    return inputs


def _no_duplicates(keys: list[str]) -> None:
    seen: set[str] = set()
    dups: set[str] = set()
    for key in keys:
        (dups if key in seen else seen).add(key)
    if dups:
        raise _invalid(f"Duplicate IDs found in batch input: {sorted(dups)}. IDs must be unique")


def _finder(
    table: Table, obj: str, defs: dict[str, PropertyDef], id_prop: str | None
) -> Callable[[str], Record | None]:
    """Look-up by record id, or by ``idProperty`` (email or a unique property)."""
    if not id_prop or id_prop == "hs_object_id":
        return table.get
    if id_prop not in defs:
        raise _invalid(f'Property "{id_prop}" does not exist')
    if id_prop not in _unique_props(obj, defs):
        raise _invalid(
            f"idProperty {id_prop} is not a unique identifier property (use email or a property with "
            "hasUniqueValue=true)"
        )
    return lambda value: table.get(table.lookup_one(id_prop, value) or "")


def _bad_json(message: str) -> VendorError:
    return _invalid(message)


async def _body(request: Request) -> Any:
    return await read_json(request, _bad_json)


# --------------------------------------------------------------------------- adapter


class HubSpotAdapter(CrmAdapter):
    """Accounts are HubSpot portals; tokens, limits and admin seeding."""

    crm = CRM
    settings = frozenset(
        {
            "enabled",
            "token_ttl_seconds",
            "ten_secondly",
            "daily",
            "search_per_second",
            "portal_id",
            "refuse_unique_notes",
        }
    )
    numeric_settings = settings - {"enabled", "refuse_unique_notes"}

    def identity(self, credentials: dict[str, Any]) -> tuple[list[str], list[str]]:
        token = credentials.get("accessToken")
        oauth = [credentials.get(k) for k in ("clientId", "clientSecret", "refreshToken")]
        has_oauth = all(isinstance(v, str) and v for v in oauth)
        if not (isinstance(token, str) and token) and not has_oauth:
            raise ValueError("HubSpot credentials need accessToken and/or clientId, clientSecret and refreshToken")
        keys = [f"refresh:{oauth[2]}"] if has_oauth else []
        return keys, [token] if isinstance(token, str) and token else []

    def prepare(self, account: Account) -> None:
        account.table("contacts", {"email": "ci", **PHONE_INDEXES})
        account.table("notes")
        for obj in ("contacts", "notes"):
            for defn in _defs(account, obj).values():
                if defn.hasUniqueValue:
                    account.table(obj).add_index(defn.name, "phone" if defn.fieldType == "phonenumber" else "ci")

    def unauthorized(self, reason: str) -> VendorError:
        if reason == "expired":
            return _error(401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired.")
        return _error(401, "INVALID_AUTHENTICATION", AUTH_MISSING)

    def fault_error(self, fault: Fault) -> VendorError:
        return fault_error(fault, _rate_limited("TEN_SECONDLY_ROLLING"))

    def admit(self, ctx: Ctx, kind: str) -> float:
        account = ctx.account
        if account.setting("enabled", True) is False:
            return 0.0
        now, wall = time.monotonic(), time.time()
        runtime = account.runtime
        daily = runtime.setdefault("hs_daily", BucketCounter())
        daily_max = int(account.setting("daily", DEFAULT_DAILY))
        if kind == "search":
            window = runtime.get("hs_search")
            if window is None:
                limit = int(account.setting("search_per_second", DEFAULT_SEARCH_PER_SECOND))
                window = runtime["hs_search"] = SlidingWindow(limit, 1.0)
            if daily.total(wall) >= daily_max:
                raise VendorError(429, _rate_limited("DAILY"))
            if not window.try_acquire(now):
                raise VendorError(429, _rate_limited("SECONDLY"))
            daily.add(wall)
            return 0.0
        window = runtime.get("hs_ten")
        if window is None:
            window = runtime["hs_ten"] = SlidingWindow(int(account.setting("ten_secondly", DEFAULT_TEN_SECONDLY)), 10.0)
        used_today = daily.total(wall)
        allowed_today = used_today < daily_max
        allowed = allowed_today and window.try_acquire(now)
        if allowed:
            daily.add(wall)
            used_today += 1
        headers = ctx.headers
        headers["X-HubSpot-RateLimit-Max"] = str(window.limit)
        headers["X-HubSpot-RateLimit-Remaining"] = str(window.remaining(now))
        headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
        token = ctx.state.tokens.get((CRM, ctx.token or ""))
        if token is not None and token.kind == "static":
            headers["X-HubSpot-RateLimit-Daily"] = str(daily_max)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, daily_max - used_today))
        if not allowed_today:
            raise VendorError(429, _rate_limited("DAILY"))
        if not allowed:
            raise VendorError(429, _rate_limited("TEN_SECONDLY_ROLLING"))
        return 0.0

    def seed(self, account: Account, obj: str, body: dict[str, Any]) -> Record:
        raw = (
            body.get("properties")
            if "properties" in body
            else {k: v for k, v in body.items() if k not in ("id", "associations")}
        )
        if not isinstance(raw, dict):
            raise AdminError(400, "properties must be an object")
        props = {k: _stringify(v) for k, v in raw.items() if k not in BASE_OUTPUT or k == "createdate"}
        table = _table(account, obj)
        rid = str(body["id"]) if body.get("id") is not None else None
        if rid is not None and table.get(rid) is not None:
            raise AdminError(409, f"{obj} {rid} already exists")
        clashes = _conflicts(obj, table, _defs(account, obj), props, None)
        if clashes:
            raise AdminError(409, clashes[0].message)
        return _create(account, table, props, list(body.get("associations") or []), time.time(), rid)

    def export(self, account: Account, obj: str, record: Record) -> dict[str, Any]:
        out = _render(record)
        out["associations"] = record.get("associations", [])
        return out

    def objects(self, account: Account) -> list[str]:
        return ["contacts", "notes"]

    def object_name(self, account: Account, obj: str) -> str | None:
        return OBJECT_ALIASES.get(obj.lower())


ADAPTER = HubSpotAdapter()
router = APIRouter(prefix="/hubspot", tags=["hubspot"])
HubSpotAdapter.router = router


async def _api(request: Request) -> Ctx:
    return await open_request(request, ADAPTER, bearer(request))


async def _search_api(request: Request) -> Ctx:
    return await open_request(request, ADAPTER, bearer(request), kind="search")


# --------------------------------------------------------------------------- OAuth


def _oauth_error(status: str, message: str) -> VendorError:
    return VendorError(400, {"status": status, "message": message, "correlationId": str(uuid.uuid4())})


@router.post("/oauth/v1/token")
@router.post("/oauth/v3/token")
async def oauth_token(request: Request) -> Any:
    """Refresh-token grant: a new access token valid for the portal's ``token_ttl_seconds``."""
    await apply_fault(request, ADAPTER, None, exempt=True)
    if request.url.path.endswith("/v3/token") and request.query_params:
        # v3 takes every parameter in the body (the v3 guide): a query-string secret is refused.
        raise _oauth_error("BAD_REQUEST", "v3 token parameters belong in the form body, not the query")
    form = await read_form(request)
    if form.get("grant_type") != "refresh_token":
        raise _oauth_error("BAD_GRANT_TYPE", "the sandbox supports grant_type=refresh_token only")
    state = sandbox_state(request)
    refresh = form.get("refresh_token", "")
    with state.lock:
        account = next(
            (a for a in state.accounts_of(CRM) if refresh and a.credentials.get("refreshToken") == refresh), None
        )
        if account is None:
            raise _oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
        if form.get("client_id") != account.credentials.get("clientId"):
            raise _oauth_error("BAD_CLIENT_ID", "missing or invalid client_id")
        if form.get("client_secret") != account.credentials.get("clientSecret"):
            raise _oauth_error("BAD_CLIENT_SECRET", "missing or invalid client_secret")
        ttl = int(account.setting("token_ttl_seconds", DEFAULT_TOKEN_TTL))
        token = state.issue_token(account, "CO" + secrets.token_urlsafe(32), ttl)
        account.stats.by_endpoint[endpoint_key(request)] += 1
    return json_response(
        {"token_type": "bearer", "refresh_token": refresh, "access_token": token.value, "expires_in": ttl}
    )


# --------------------------------------------------------------------------- account


@router.get("/account-info/v3/details")
async def account_details(ctx: Ctx = Depends(_api)) -> Any:
    """The portal the token belongs to (HubSpot's account information API): ``portalId`` is stable per
    sandbox account (``options.portal_id`` sets it)."""
    with ctx.state.lock:
        portal = int(ctx.account.setting("portal_id") or ctx.account.fixed_number("portal_id"))
    return ctx.reply(
        {
            "portalId": portal,
            "accountType": "STANDARD",
            "timeZone": "US/Central",
            "companyCurrency": "USD",
            "additionalCurrencies": [],
            "utcOffset": "-06:00",
            "utcOffsetMilliseconds": -21600000,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }
    )


# --------------------------------------------------------------------------- objects


@router.get("/crm/v3/objects/{objectType}")
async def list_objects(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """Page through records in creation order; ``paging.next.after`` is an opaque cursor."""
    obj = _object(objectType)
    query = ctx.request.query_params
    limit = _int_param(query.get("limit"), "limit", 10, LIST_MAX_LIMIT)
    after = _int_param(query.get("after"), "after", 0)
    wanted = _csv_params(ctx.request, "associations") or []
    with ctx.state.lock:
        defs = _defs(ctx.account, obj)
        props = _output_props(obj, defs, _csv_params(ctx.request, "properties"))
        records = list(_table(ctx.account, obj))
        page = records[after : after + limit]
        results = [_render(r, props, associations=_association_view(ctx.account, obj, r, wanted)) for r in page]
    body: dict[str, Any] = {"results": results}
    if after + limit < len(records):
        nxt = str(after + limit)
        body["paging"] = {"next": {"after": nxt, "link": f"{ctx.request.url.path}?after={nxt}"}}
    return ctx.reply(body)


@router.post("/crm/v3/objects/{objectType}")
async def create_object(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """Create one record -> 201 SimplePublicObject; 409 CONFLICT on a duplicate contact email."""
    obj = _object(objectType)
    body = await _body(ctx.request)
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    with ctx.state.lock:
        account = ctx.account
        defs, table = _defs(account, obj), _table(account, obj)
        props, problems = _coerce(defs, body.get("properties"))
        problems += _check_values(obj, props, props, creating=True)
        associations, assoc_problems = _associations(account, obj, body.get("associations"))
        problems += assoc_problems + _conflicts(obj, table, defs, props, None)
        if problems:
            raise _failure(problems)
        record = _create(account, table, props, associations, time.time())
        return ctx.reply(_render(record), 201)


@router.get("/crm/v3/objects/{objectType}/{objectId}")
async def read_object(objectType: str, objectId: str, ctx: Ctx = Depends(_api)) -> Any:
    obj = _object(objectType)
    with ctx.state.lock:
        defs = _defs(ctx.account, obj)
        id_prop = ctx.request.query_params.get("idProperty")
        find = _finder(_table(ctx.account, obj), obj, defs, id_prop)
        record = find(objectId)
        if record is None and not id_prop:  # a merged-away id reads as the record it was merged into
            record = find(ctx.account.meta.get("hubspot_merged_into", {}).get(objectId, ""))
        if record is None:
            raise _error(404, "OBJECT_NOT_FOUND", "resource not found")
        props = _output_props(obj, defs, _csv_params(ctx.request, "properties"))
        wanted = _csv_params(ctx.request, "associations") or []
        return ctx.reply(_render(record, props, associations=_association_view(ctx.account, obj, record, wanted)))


@router.post("/crm/v3/objects/{objectType}/merge")
async def merge_objects(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """Merge ``objectIdToMerge`` into ``primaryObjectId`` (``PublicMergeInput``) -> 200 the merged record.

    Vendor facts (contacts v3 spec ``post-/crm/v3/objects/contacts/merge_merge``; knowledge.hubspot.com
    "merge records"): both ids are required, a merge cannot be undone, the merged-away record's activities
    and associations (notes) move to the primary. Sandbox choices (UNCONFIRMED details): contacts only; the
    primary keeps its id and its non-empty values, empty ones are filled from the other record; the other
    record's different email goes to ``hs_additional_emails``; ``hs_merged_object_ids`` lists merged ids; the
    merged-away id disappears from lists and searches, and a read by it answers with the primary (a redirect).
    """
    obj = _object(objectType)
    body = await _body(ctx.request)
    if obj != "contacts":
        raise _invalid(f"The sandbox emulates merges of contacts only, not {obj}")
    ids = [body.get(k) if isinstance(body, dict) else None for k in ("primaryObjectId", "objectIdToMerge")]
    if any(isinstance(v, bool) or not isinstance(v, (str, int)) or not str(v).strip() for v in ids):
        raise _invalid("primaryObjectId and objectIdToMerge are required strings")
    primary, other = (str(v).strip() for v in ids)
    if primary == other:
        raise _invalid(f"Cannot merge object {primary} with itself")
    with ctx.state.lock:
        account = ctx.account
        table = _table(account, obj)
        keep, gone = table.get(primary), table.get(other)
        if keep is None or gone is None:
            raise _error(404, "OBJECT_NOT_FOUND", f"Object not found: {primary if keep is None else other}")
        fields = {k: v for k, v in gone["fields"].items() if k not in BASE_OUTPUT and k != "createdate"}
        fields.update({k: v for k, v in keep["fields"].items() if v not in (None, "")})
        kept_email, other_email = fold(keep["fields"].get("email")), fold(gone["fields"].get("email"))
        if kept_email and other_email and kept_email != other_email:
            extra = [e for e in (keep["fields"].get("hs_additional_emails") or "").split(";") if e]
            fields["hs_additional_emails"] = ";".join([*extra, gone["fields"]["email"]])
        merged_ids = [i for i in (keep["fields"].get("hs_merged_object_ids") or "").split(";") if i]
        fields["hs_merged_object_ids"] = ";".join([*merged_ids, other])
        table.remove(other)  # first: its unique values are free for the primary
        merged = _update(table, keep, fields, time.time())
        notes = _table(account, "notes")
        for note in list(notes):
            links = note.get("associations") or []
            if any(a["to"]["id"] == other for a in links):
                moved = [{**a, "to": {"id": primary}} if a["to"]["id"] == other else a for a in links]
                notes.put({**note, "associations": moved})
        redirects = account.meta.setdefault("hubspot_merged_into", {})
        for old, new in list(redirects.items()):
            if new == other:
                redirects[old] = primary
        redirects[other] = primary
        return ctx.reply(_render(merged))


@router.patch("/crm/v3/objects/{objectType}/{objectId}")
async def update_object(objectType: str, objectId: str, ctx: Ctx = Depends(_api)) -> Any:
    obj = _object(objectType)
    body = await _body(ctx.request)
    with ctx.state.lock:
        defs, table = _defs(ctx.account, obj), _table(ctx.account, obj)
        record = _finder(table, obj, defs, ctx.request.query_params.get("idProperty"))(objectId)
        if record is None:
            raise _error(404, "OBJECT_NOT_FOUND", "resource not found")
        props, problems = _coerce(defs, (body or {}).get("properties") if isinstance(body, dict) else body)
        merged = {**record["fields"], **props}
        problems += _check_values(obj, props, merged, creating=False) + _conflicts(
            obj, table, defs, merged, record["id"]
        )
        if problems:
            raise _failure(problems)
        return ctx.reply(_render(_update(table, record, props, time.time())))


@router.delete("/crm/v3/objects/{objectType}/{objectId}")
async def archive_object(objectType: str, objectId: str, ctx: Ctx = Depends(_api)) -> Any:
    obj = _object(objectType)
    with ctx.state.lock:
        _table(ctx.account, obj).remove(objectId)
    return ctx.no_content()


@router.post("/crm/v3/objects/{objectType}/batch/create")
async def batch_create(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """All-or-nothing: any invalid input fails the batch (400, or 409 for email clashes)."""
    obj = _object(objectType)
    inputs = _inputs(await _body(ctx.request))
    started = iso()
    with ctx.state.lock:
        account = ctx.account
        defs, table = _defs(account, obj), _table(account, obj)
        planned: list[tuple[dict[str, str], list[dict[str, Any]], str | None]] = []
        problems: list[Problem] = []
        pending: dict[tuple[str, str], str] = {}
        for item in inputs:
            trace = item.get("objectWriteTraceId")
            props, found = _coerce(defs, item.get("properties"))
            found += _check_values(obj, props, props, creating=True)
            associations, assoc_problems = _associations(account, obj, item.get("associations"))
            found += assoc_problems + _conflicts(obj, table, defs, props, None, pending)
            for problem in found:
                if trace:
                    problem.context.setdefault("objectWriteTraceId", [trace])
            problems += found
            planned.append((props, associations, trace))
        if problems:
            raise _failure(problems)
        now = time.time()
        results = [_render(_create(account, table, p, a, now), trace=t) for p, a, t in planned]
    return ctx.reply({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso()}, 201)


@router.post("/crm/v3/objects/{objectType}/batch/upsert")
async def batch_upsert(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """Create or update by ``idProperty``; 200, or 207 with per-input errors (input order kept)."""
    obj = _object(objectType)
    inputs = _inputs(await _body(ctx.request))
    started = iso()
    with ctx.state.lock:
        account = ctx.account
        defs, table = _defs(account, obj), _table(account, obj)
        for item in inputs:
            id_prop = item.get("idProperty")
            if not id_prop or item.get("id") in (None, ""):
                raise _invalid("Every upsert input needs idProperty and id")
            if id_prop == "hs_object_id":
                raise _invalid("Upsert needs a unique idProperty (email or a property with hasUniqueValue=true)")
            _finder(table, obj, defs, id_prop)
        _no_duplicates([f"{i['idProperty']}:{_normalizer(defs.get(i['idProperty']))(i['id'])}" for i in inputs])
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        now = time.time()
        for item in inputs:
            id_prop, id_value, trace = item["idProperty"], _stringify(item["id"]), item.get("objectWriteTraceId")
            existing = table.get(table.lookup_one(id_prop, id_value) or "")
            props, problems = _coerce(defs, item.get("properties"))
            if existing is None:
                props.setdefault(id_prop, id_value)
            merged = {**(existing["fields"] if existing else {}), **props}
            problems += _check_values(obj, props, merged, creating=existing is None)
            problems += _conflicts(obj, table, defs, merged, existing["id"] if existing else None)
            if problems:
                errors.append(_standard_error(problems, trace, id_value))
            elif existing is None:
                results.append(_render(_create(account, table, props, [], now), trace=trace, new=True))
            else:
                results.append(_render(_update(table, existing, props, now), trace=trace, new=False))
    return ctx.reply(_batch_body(results, errors, started), 207 if errors else 200)


def _batch_body(results: list[dict[str, Any]], errors: list[dict[str, Any]], started: str) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso()}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    return body


@router.post("/crm/v3/objects/{objectType}/batch/read")
async def batch_read(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """Read by id or ``idProperty``; missing ids -> 207 with one OBJECT_NOT_FOUND error."""
    obj = _object(objectType)
    body = await _body(ctx.request)
    inputs = _inputs(body)
    started = iso()
    with ctx.state.lock:
        defs = _defs(ctx.account, obj)
        find = _finder(_table(ctx.account, obj), obj, defs, body.get("idProperty"))
        props = _output_props(obj, defs, body.get("properties") if isinstance(body.get("properties"), list) else None)
        results, missing = [], []
        for item in inputs:
            record = find(_stringify(item.get("id")))
            if record is None:
                missing.append(_stringify(item.get("id")))
            else:
                results.append(_render(record, props))
    errors = []
    if missing:
        errors.append(
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {SINGULAR[obj].upper()} objects, they may be deleted or not exist. "
                "Check that ids are valid.",
                "context": {"ids": missing},
                "errors": [],
                "links": {},
            }
        )
    return ctx.reply(_batch_body(results, errors, started), 207 if errors else 200)


@router.post("/crm/v3/objects/{objectType}/batch/update")
async def batch_update(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """Update by id (or ``idProperty``); 200, or 207 with per-input errors."""
    obj = _object(objectType)
    inputs = _inputs(await _body(ctx.request))
    started = iso()
    with ctx.state.lock:
        defs, table = _defs(ctx.account, obj), _table(ctx.account, obj)
        finders = [_finder(table, obj, defs, item.get("idProperty")) for item in inputs]
        _no_duplicates([f"{i.get('idProperty') or ''}:{fold(i.get('id'))}" for i in inputs])
        results, errors = [], []
        now = time.time()
        for item, find in zip(inputs, finders, strict=True):
            input_id, trace = _stringify(item.get("id")), item.get("objectWriteTraceId")
            record = find(input_id)
            if record is None:
                errors.append(
                    _standard_error([Problem("OBJECT_NOT_FOUND", f"Object {input_id} was not found")], trace, input_id)
                )
                continue
            props, problems = _coerce(defs, item.get("properties"))
            merged = {**record["fields"], **props}
            problems += _check_values(obj, props, merged, creating=False) + _conflicts(
                obj, table, defs, merged, record["id"]
            )
            if problems:
                errors.append(_standard_error(problems, trace, input_id))
            else:
                results.append(_render(_update(table, record, props, now), trace=trace))
    return ctx.reply(_batch_body(results, errors, started), 207 if errors else 200)


@router.post("/crm/v3/objects/{objectType}/batch/archive")
async def batch_archive(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    obj = _object(objectType)
    inputs = _inputs(await _body(ctx.request))
    with ctx.state.lock:
        table = _table(ctx.account, obj)
        for item in inputs:
            table.remove(_stringify(item.get("id")))
    return ctx.no_content()


# --------------------------------------------------------------------------- search

Matcher = Callable[[dict[str, str]], bool]


def _filter(defs: dict[str, PropertyDef], raw: Any) -> tuple[Matcher, str | None, list[str] | None]:
    """A predicate for one filter, plus ``(property, values)`` when an index can answer it."""
    if not isinstance(raw, dict):
        raise _invalid("Each filter must be an object")
    name, op = raw.get("propertyName"), str(raw.get("operator", "")).upper()
    if name not in defs:
        raise _invalid(
            f'Property "{name}" does not exist',
            errors=[{"message": f"Unknown property {name}", "context": {"propertyName": [str(name)]}}],
        )
    norm = _normalizer(defs[name])
    if op in ("EQ", "NEQ"):
        if "value" not in raw:
            raise _invalid(f"Operator {op} needs a value")
        target = norm(_stringify(raw["value"]))
        if op == "EQ":
            return (lambda f: norm(f.get(name)) == target), name, [_stringify(raw["value"])]
        return (lambda f: norm(f.get(name)) != target), None, None
    if op in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list):
            raise _invalid(f"Operator {op} needs values")
        targets = {norm(_stringify(v)) for v in values}
        if op == "IN":
            return (lambda f: norm(f.get(name)) in targets), name, [_stringify(v) for v in values]
        return (lambda f: norm(f.get(name)) not in targets), None, None
    if op == "HAS_PROPERTY":
        return (lambda f: bool(f.get(name))), None, None
    if op == "NOT_HAS_PROPERTY":
        return (lambda f: not f.get(name)), None, None
    if op == "CONTAINS_TOKEN":
        token = (fold(raw.get("value")) or "").strip("*")
        return (lambda f: token in (fold(f.get(name)) or "")), None, None
    raise _invalid(
        f"Unsupported operator {op!r} (sandbox supports EQ, NEQ, IN, NOT_IN, HAS_PROPERTY, "
        "NOT_HAS_PROPERTY, CONTAINS_TOKEN)"
    )


def _search_ids(table: Table, defs: dict[str, PropertyDef], groups: list[Any], text: str | None) -> list[str]:
    """Ids matching any group (all filters of a group), using indexes where possible."""
    compiled: list[list[Matcher]] = []
    candidates: set[str] | None = set()
    for group in groups:
        filters = (group or {}).get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise _invalid("Each filterGroup needs a filters array")
        matchers, group_ids = [], None
        for raw in filters:
            matcher, prop, values = _filter(defs, raw)
            matchers.append(matcher)
            if prop is not None and table.is_indexed(prop) and candidates is not None:
                hits = {i for v in values or [] for i in table.lookup(prop, v)}
                group_ids = hits if group_ids is None else group_ids & hits
        compiled.append(matchers)
        if group_ids is None or candidates is None:
            candidates = None
        else:
            candidates |= group_ids
    pool = table.records.keys() if candidates is None or not compiled else table.ordered(candidates)
    needle = fold(text) if text else None
    ids = []
    for rid in pool:
        fields = table.records[rid]["fields"]
        if compiled and not any(all(m(fields) for m in ms) for ms in compiled):
            continue
        if needle and not any(needle in (fold(v) or "") for v in fields.values()):
            continue
        ids.append(rid)
    return ids


def _sort(table: Table, ids: list[str], sorts: Any) -> list[str]:
    for spec in reversed(sorts or []):
        if isinstance(spec, str):
            name, descending = spec.lstrip("-"), spec.startswith("-")
        elif isinstance(spec, dict):
            name, descending = spec.get("propertyName", ""), str(spec.get("direction", "")).upper() == "DESCENDING"
        else:
            raise _invalid("sorts must be strings or {propertyName, direction} objects")
        ids.sort(key=lambda i: fold(table.records[i]["fields"].get(name)) or "", reverse=descending)
    return ids


@router.post("/crm/v3/objects/{objectType}/search")
async def search(objectType: str, ctx: Ctx = Depends(_search_api)) -> Any:
    """CRM search: email case-insensitive, phone numbers compared by digits; 5/s per account."""
    obj = _object(objectType)
    body = await _body(ctx.request)
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list) or len(groups) > SEARCH_MAX_GROUPS:
        raise _invalid(f"filterGroups must be a list of at most {SEARCH_MAX_GROUPS} groups")
    limit = _int_param(body.get("limit"), "limit", 10, SEARCH_MAX_LIMIT)
    after = _int_param(body.get("after"), "after", 0)
    if after + limit > SEARCH_MAX_RESULTS:
        raise _invalid(f"Search can page through at most {SEARCH_MAX_RESULTS} results")
    with ctx.state.lock:
        defs, table = _defs(ctx.account, obj), _table(ctx.account, obj)
        ids = _sort(table, _search_ids(table, defs, groups, body.get("query")), body.get("sorts"))
        props = _output_props(obj, defs, body.get("properties") if isinstance(body.get("properties"), list) else None)
        results = [_render(table.records[i], props) for i in ids[after : after + limit]]
    out: dict[str, Any] = {"total": len(ids), "results": results}
    if after + limit < len(ids):
        out["paging"] = {"next": {"after": str(after + limit)}}
    return json_response(out)


# --------------------------------------------------------------------------- properties


PROPERTY_TYPES = {"string", "number", "date", "datetime", "enumeration", "bool", "phone_number"}


@router.get("/crm/v3/properties/{objectType}")
async def list_properties(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    obj = _object(objectType)
    with ctx.state.lock:
        return ctx.reply({"results": [d.to_json() for d in _defs(ctx.account, obj).values()]})


@router.get("/crm/v3/properties/{objectType}/{propertyName}")
async def read_property(objectType: str, propertyName: str, ctx: Ctx = Depends(_api)) -> Any:
    obj = _object(objectType)
    with ctx.state.lock:
        defn = _defs(ctx.account, obj).get(propertyName)
    if defn is None:
        raise _error(404, "OBJECT_NOT_FOUND", f"Unable to find property {propertyName} for {obj}")
    return ctx.reply(defn.to_json())


@router.delete("/crm/v3/properties/{objectType}/{propertyName}")
async def archive_property(objectType: str, propertyName: str, ctx: Ctx = Depends(_api)) -> Any:
    """Archive (delete) a custom property: 204; a default or unknown property is a 404 / 400. Records keep
    their stored values, unreadable and unwritable by that name until it is defined again."""
    obj = _object(objectType)
    with ctx.state.lock:
        account = ctx.account
        custom = account.meta.setdefault("properties", {}).setdefault(obj, [])
        if propertyName in DEFAULT_PROPERTIES[obj]:
            raise _invalid(f"{propertyName} is a HubSpot-defined property and cannot be archived")
        if not any(raw["name"] == propertyName for raw in custom):
            raise _error(404, "OBJECT_NOT_FOUND", f"Unable to find property {propertyName} for {obj}")
        custom[:] = [raw for raw in custom if raw["name"] != propertyName]
        account.runtime.pop(("hs_defs", obj), None)
    return ctx.no_content()


@router.post("/crm/v3/properties/{objectType}")
async def create_property(objectType: str, ctx: Ctx = Depends(_api)) -> Any:
    """Define a custom property; ``hasUniqueValue`` makes it enforced and usable as idProperty."""
    obj = _object(objectType)
    body = await _body(ctx.request)
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        raise _invalid(f"Missing required fields: {missing}", errors=[{"message": f"{k} is required"} for k in missing])
    name = str(body["name"])
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name != name.lower():
        raise _invalid(f"Property name {name!r} must be lowercase letters, digits and underscores")
    if body["type"] not in PROPERTY_TYPES:
        raise _invalid(f"Unknown property type {body['type']!r}")
    defn = PropertyDef(
        name,
        str(body["label"]),
        str(body["type"]),
        str(body["fieldType"]),
        str(body["groupName"]),
        bool(body.get("hasUniqueValue", False)),
    )
    with ctx.state.lock:
        account = ctx.account
        if name in _defs(account, obj):
            raise _error(409, "CONFLICT", f"Property named '{name}' already exists.")
        if defn.hasUniqueValue and obj == "notes" and account.setting("refuse_unique_notes"):
            # Whether HubSpot allows hasUniqueValue on notes is unconfirmed: this account says no.
            raise _invalid(f"hasUniqueValue is not supported for properties of {obj}")
        account.meta.setdefault("properties", {}).setdefault(obj, []).append(asdict(defn))
        account.runtime.pop(("hs_defs", obj), None)
        if defn.hasUniqueValue:
            _table(account, obj).add_index(name, "phone" if defn.fieldType == "phonenumber" else "ci")
    out = defn.to_json()
    out["createdAt"] = out["updatedAt"] = iso()
    return ctx.reply(out, 201)
