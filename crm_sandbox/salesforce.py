"""Salesforce REST emulation under ``/salesforce`` (login host and My Domain host in one).

Vendor facts used (Salesforce REST API Developer Guide,
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm and its sObject
Collections pages; simple-salesforce ``login.py``/``api.py``, https://github.com/simple-salesforce/simple-salesforce):

* ``POST /services/oauth2/token`` form: ``client_credentials`` (client id/secret in the
  form or HTTP Basic, as simple-salesforce sends them) and ``password`` (password with
  the security token appended). Answer ``{access_token, instance_url, id, token_type:
  "Bearer", issued_at, signature}``, where ``signature`` is Base64 HMAC-SHA256 of
  ``id + issued_at`` keyed by the client secret. OAuth errors ``{error, error_description}``.
* Data API ``/services/data/vXX.X/...``; expired/invalid token -> 401
  ``[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``.
* Error bodies are arrays ``[{message, errorCode, fields?}]``; sObject Collections answer
  200 with per-record ``{id, success, errors[{statusCode, message, fields}]}`` in input
  order, ≤200 records, ``allOrNone`` rolls everything back; upsert by an External ID field
  adds ``created``. Ids are 18 characters with the object's key prefix (001/003/500).
* SOQL ``query`` answers ``{totalSize, done, records[{attributes{type,url}, ...}],
  nextRecordsUrl}``; text comparisons ignore case.
* Every REST answer carries ``Sforce-Limit-Info: api-usage=<used>/<max>``; the daily
  allocation (100,000 base) exhausted -> **403** ``REQUEST_LIMIT_EXCEEDED`` (no 429, no
  Retry-After). Concurrency limits have no error of their own here: the optional
  ``per_second`` org limit delays requests server-side instead.

Paths in ``nextRecordsUrl`` and ``attributes.url`` are host-relative and include the
``/salesforce`` prefix, so ``scheme://host`` + path works exactly as with a real org.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from crm_sandbox import soql
from crm_sandbox.common import (
    EMAIL_RE,
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
    poisoned_fields,
    read_form,
    read_json,
    sandbox_state,
)
from crm_sandbox.state import (
    Account,
    BucketCounter,
    Fault,
    Journal,
    Pacer,
    Record,
    Table,
)

CRM = "salesforce"
PREFIX = "/salesforce"
DEFAULT_VERSION = "67.0"
SUPPORTED_VERSIONS = [f"{v}.0" for v in range(41, 68)]
DEFAULT_TOKEN_TTL = 7200
DEFAULT_DAILY = 100_000
MAX_COLLECTION = 200
QUERY_BATCH = 2000
MAX_CURSORS = 50
VERSION_RE = re.compile(r"^v\d{2,3}\.\d$")
KEY_PREFIXES = {"Account": "001", "Contact": "003", "Case": "500"}
EXTERNAL_ID_PREFIX = "RankItPro_"
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TEXT_TYPES = {"string", "textarea", "phone", "email", "picklist", "url"}

SESSION_INVALID = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
LIMIT_EXCEEDED = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


# --------------------------------------------------------------------------- ids


def _b62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out.rjust(width, "0")[-width:]


def _suffix(id15: str) -> str:
    """The 3-character case-safety suffix that makes a 15-character id 18 long."""
    out = ""
    for i in range(3):
        bits = sum(1 << j for j, ch in enumerate(id15[i * 5 : i * 5 + 5]) if "A" <= ch <= "Z")
        out += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return out


def make_id(prefix: str, seq: int) -> str:
    id15 = prefix + "8c0" + _b62(seq, 9)
    return id15 + _suffix(id15)


def to18(value: Any) -> str | None:
    """A 15- or 18-character id in its canonical 18-character form; ``None`` if not an id."""
    if not isinstance(value, str) or len(value) not in (15, 18) or not value.isalnum():
        return None
    return value[:15] + _suffix(value[:15])


def _fixed_id(prefix: str, seed: str) -> str:
    return make_id(prefix, int.from_bytes(hashlib.sha256(seed.encode()).digest()[:5], "big"))


def _sf_time(ts: float | None = None) -> str:
    return iso(ts).replace("Z", "+0000")


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class SfField:
    """One field as ``describe`` reports it."""

    name: str
    type: str = "string"
    length: int = 255
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    externalId: bool = False
    unique: bool = False
    referenceTo: tuple[str, ...] = ()
    defaultValue: str | None = None
    custom: bool = False

    @property
    def required(self) -> bool:
        return not self.nillable and self.createable and self.defaultValue is None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.name.removesuffix("__c").replace("_", " "),
            "type": self.type,
            "length": self.length,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "externalId": self.externalId,
            "unique": self.unique,
            "idLookup": self.externalId or self.name == "Id",
            "referenceTo": list(self.referenceTo),
            "defaultValue": self.defaultValue,
            "defaultedOnCreate": self.defaultValue is not None,
            "custom": self.custom,
        }


def _text(name: str, length: int = 255, type_: str = "string", **kw: Any) -> SfField:
    return SfField(name, type_, length, **kw)


def _ref(name: str, target: str) -> SfField:
    return SfField(name, "reference", 18, referenceTo=(target,))


def _ext(name: str) -> SfField:
    return SfField(name, "string", 255, externalId=True, unique=True, custom=True)


SYSTEM_FIELDS = (
    SfField("Id", "id", 18, nillable=False, createable=False, updateable=False),
    SfField("CreatedDate", "datetime", 0, nillable=False, createable=False, updateable=False),
    SfField("LastModifiedDate", "datetime", 0, nillable=False, createable=False, updateable=False),
)

BASE_FIELDS: dict[str, tuple[SfField, ...]] = {
    "Account": (
        _text("Name", nillable=False),
        _text("Phone", 40, "phone"),
        _text("BillingStreet", 255, "textarea"),
        _text("BillingCity", 40),
        _text("BillingState", 80),
        _text("BillingPostalCode", 20),
        _text("BillingCountry", 80),
        _text("Description", 32000, "textarea"),
        _ext("RankItPro_Customer_Key__c"),
    ),
    "Contact": (
        _ref("AccountId", "Account"),
        _text("FirstName", 40),
        _text("LastName", 80, nillable=False),
        # Read-only compound "Full Name", filterable in SOQL (Object Reference, Contact: Name).
        SfField("Name", "string", 121, createable=False, updateable=False),
        _text("Email", 80, "email"),
        _text("Phone", 40, "phone"),
        _text("MailingStreet", 255, "textarea"),
        _text("MailingCity", 40),
        _text("MailingState", 80),
        _text("MailingPostalCode", 20),
        _text("MailingCountry", 80),
        _ext("RankItPro_Customer_Key__c"),
    ),
    "Case": (
        _ref("AccountId", "Account"),
        _ref("ContactId", "Contact"),
        _text("Subject", 255),
        _text("Description", 32000, "textarea"),
        _text("Status", 40, "picklist", nillable=False, defaultValue="New"),
        _text("Origin", 40, "picklist"),
        _text("Priority", 40, "picklist"),
        _text("Type", 40, "picklist"),
        _ext("RankItPro_CheckIn_Key__c"),
    ),
}
#: Non-unique indexes for look-ups the hooks make (Email is matched case-insensitively).
EXTRA_INDEXES = {"Contact": ("Email",)}


@dataclass
class SObject:
    """An object's fields for one org (options applied), with case-insensitive names."""

    name: str
    fields: dict[str, SfField]
    by_lower: dict[str, str]

    def field(self, name: str) -> SfField | None:
        canonical = self.by_lower.get(name.lower())
        return self.fields[canonical] if canonical else None


def _custom_field(raw: Any) -> SfField:
    if isinstance(raw, str):
        return SfField(raw, custom=True)
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        return SfField(
            raw["name"],
            str(raw.get("type", "string")),
            int(raw.get("length", 255)),
            externalId=bool(raw.get("externalId", False)),
            unique=bool(raw.get("unique", False)),
            custom=True,
        )
    raise ValueError(f"custom field must be a name or {{name, type?, length?, externalId?, unique?}}: {raw!r}")


def _build_schema(account: Account) -> dict[str, SObject]:
    custom = account.setting("custom_fields", {}) or {}
    drop_external = bool(account.setting("missing_external_ids", False))
    schema: dict[str, SObject] = {}
    for obj, base in BASE_FIELDS.items():
        fields = [*SYSTEM_FIELDS, *base, *(_custom_field(c) for c in custom.get(obj, []))]
        if drop_external:
            fields = [f for f in fields if not f.name.startswith(EXTERNAL_ID_PREFIX)]
        by_name = {f.name: f for f in fields}
        schema[obj] = SObject(obj, by_name, {n.lower(): n for n in by_name})
    return schema


def _schema(account: Account) -> dict[str, SObject]:
    schema = account.runtime.get("sf_schema")
    if schema is None:
        schema = account.runtime["sf_schema"] = _build_schema(account)
    return schema


def _sobject(account: Account, name: str) -> SObject | None:
    schema = _schema(account)
    for obj in schema:
        if obj.lower() == name.lower():
            return schema[obj]
    return None


# --------------------------------------------------------------------------- errors & rendering


def _api_error(status: int, code: str, message: str, fields: list[str] | None = None) -> VendorError:
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return VendorError(status, [item])


def _rec_error(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": fields or []}


def _failure(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"success": False, "errors": errors}


def _as_api_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]} for e in errors]


ROLLED_BACK = _rec_error(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


def _render(obj: SObject, record: Record, version: str, names: list[str] | None = None) -> dict[str, Any]:
    fields = record["fields"]
    out: dict[str, Any] = {
        "attributes": {"type": obj.name, "url": f"{PREFIX}/services/data/{version}/sobjects/{obj.name}/{record['id']}"}
    }
    for name in names if names is not None else obj.fields:
        out[name] = fields.get(name)
    return out


# --------------------------------------------------------------------------- validation & writes


def _validate(
    account: Account, obj: SObject, raw: dict[str, Any], existing: Record | None, skip: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Canonical field values and record errors for an insert (``existing`` None) or update."""
    creating = existing is None
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for key, value in raw.items():
        if key == "attributes" or key.lower() in skip:
            continue
        fld = obj.field(key)
        if fld is None:
            errors.append(_rec_error("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", [key]))
            continue
        if not (fld.createable if creating else fld.updateable):
            errors.append(
                _rec_error(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {fld.name}. Please check the security settings "
                    "of this field and verify that it is read/write for your profile or permission set.",
                    [fld.name],
                )
            )
            continue
        if isinstance(value, (dict, list)):
            errors.append(
                _rec_error(
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of {fld.type} from a JSON object or array for field {fld.name}",
                    [fld.name],
                )
            )
            continue
        if value is not None and (fld.type in TEXT_TYPES or fld.type == "reference"):
            value = str(value) if not isinstance(value, bool) else str(value).lower()
        values[fld.name] = None if value == "" else value
    for name in poisoned_fields(values):
        errors.append(
            _rec_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", f"{name}: value rejected by a validation rule", [name])
        )
    for name, value in values.items():
        fld = obj.fields[name]
        if value is None:
            continue
        if fld.type in TEXT_TYPES and fld.length and len(value) > fld.length:
            errors.append(
                _rec_error(
                    "STRING_TOO_LONG",
                    f"{name}: data value too large: {value[:20]}... (max length={fld.length})",
                    [name],
                )
            )
        elif fld.type == "email" and not EMAIL_RE.match(value):
            errors.append(_rec_error("INVALID_EMAIL_ADDRESS", f"{name}: invalid email address: {value}", [name]))
        elif fld.type == "reference":
            ref = to18(value)
            targets = [t for t in fld.referenceTo if ref and ref.startswith(KEY_PREFIXES.get(t, "-"))]
            if ref is None or not targets:
                errors.append(
                    _rec_error("FIELD_INTEGRITY_EXCEPTION", f"{name}: id value of incorrect type: {value}", [name])
                )
            elif not any(account.tables[t].get(ref) for t in targets):
                errors.append(_rec_error("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {value}", [name]))
            else:
                values[name] = ref
    merged = {**(existing["fields"] if existing else {}), **values}
    if creating:
        for fld in obj.fields.values():
            if fld.defaultValue is not None and merged.get(fld.name) is None:
                values[fld.name] = merged[fld.name] = fld.defaultValue
    missing = [f.name for f in obj.fields.values() if f.required and merged.get(f.name) is None]
    if missing:
        errors.append(
            _rec_error("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        )
    table = account.tables[obj.name]
    for fld in obj.fields.values():
        value = values.get(fld.name)
        if fld.unique and value is not None:
            other = table.lookup_one(fld.name, value)
            if other is not None and (existing is None or other != existing["id"]):
                errors.append(
                    _rec_error(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {fld.name} duplicates value on record with id: {other}",
                        [fld.name],
                    )
                )
    return values, errors


def _derived(obj: SObject, fields: dict[str, Any]) -> dict[str, Any]:
    """Fields Salesforce computes: a Contact's ``Name`` is its first and last name."""
    if obj.name == "Contact":
        fields["Name"] = " ".join(str(fields[k]) for k in ("FirstName", "LastName") if fields.get(k)) or None
    return fields


def _insert(
    account: Account, obj: SObject, values: dict[str, Any], journal: Journal | None = None, record_id: str | None = None
) -> Record:
    rid = record_id or make_id(KEY_PREFIXES[obj.name], account.next_seq())
    now = time.time()
    stamp = _sf_time(now)
    record: Record = {
        "id": rid,
        "fields": _derived(obj, {"Id": rid, **values, "CreatedDate": stamp, "LastModifiedDate": stamp}),
        "createdAt": iso(now),
        "updatedAt": iso(now),
    }
    table = account.tables[obj.name]
    if journal is None:
        table.put(record)
    else:
        journal.put(table, record)
    return record


def _modify(account: Account, obj: SObject, record: Record, values: dict[str, Any], journal: Journal) -> Record:
    now = time.time()
    updated = {
        **record,
        "fields": _derived(obj, {**record["fields"], **values, "LastModifiedDate": _sf_time(now)}),
        "updatedAt": iso(now),
    }
    journal.put(account.tables[obj.name], updated)
    return updated


def _find(account: Account, obj: SObject, record_id: Any) -> Record | None:
    rid = to18(record_id)
    return account.tables[obj.name].get(rid) if rid else None


def _run(
    records: list[dict[str, Any]], all_or_none: bool, op: Callable[[int, dict[str, Any], Journal], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Apply ``op(index, record, journal)`` per record; with ``allOrNone`` and any failure, undo all."""
    journal = Journal()
    results = [op(i, rec, journal) for i, rec in enumerate(records)]
    if all_or_none and any(not r["success"] for r in results):
        journal.rollback()
        results = [r if not r["success"] else _failure([ROLLED_BACK]) for r in results]
    return results


def _collection(body: Any) -> tuple[bool, list[dict[str, Any]]]:
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise _api_error(400, "JSON_PARSER_ERROR", "Request body must be an object with a records array")
    records = body["records"]
    if len(records) > MAX_COLLECTION:
        raise _api_error(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
        )
    if not all(isinstance(r, dict) for r in records):
        raise _api_error(400, "JSON_PARSER_ERROR", "Every record must be a JSON object")
    return bool(body.get("allOrNone", False)), records


def _record_type(account: Account, record: dict[str, Any]) -> SObject | None:
    name = (record.get("attributes") or {}).get("type")
    return _sobject(account, name) if isinstance(name, str) else None


def _bad_json(message: str) -> VendorError:
    return _api_error(400, "JSON_PARSER_ERROR", message)


# --------------------------------------------------------------------------- adapter


class SalesforceAdapter(CrmAdapter):
    """Accounts are Salesforce orgs; tokens, API allocation and admin seeding."""

    crm = CRM
    settings = frozenset(
        {"enabled", "token_ttl_seconds", "daily_api_requests", "per_second", "custom_fields", "missing_external_ids"}
    )
    numeric_settings = frozenset({"token_ttl_seconds", "daily_api_requests", "per_second"})

    def identity(self, credentials: dict[str, Any]) -> tuple[list[str], list[str]]:
        if not all(isinstance(credentials.get(k), str) and credentials[k] for k in ("clientId", "clientSecret")):
            raise ValueError(
                "Salesforce credentials need clientId and clientSecret (plus username, password and "
                "securityToken for the password flow)"
            )
        if "username" in credentials and not isinstance(credentials.get("password"), str):
            raise ValueError("Salesforce password flow needs password (and securityToken, possibly empty)")
        return [f"client:{credentials['clientId']}"], []

    def check_settings(self, settings: dict[str, Any]) -> None:
        super().check_settings(settings)
        custom = settings.get("custom_fields") or {}
        if not isinstance(custom, dict):
            raise ValueError("custom_fields must map an object name to a list of fields")
        for obj, fields in custom.items():
            if obj not in BASE_FIELDS:
                raise ValueError(f"custom_fields: unknown object {obj!r} (known: {sorted(BASE_FIELDS)})")
            if not isinstance(fields, list):
                raise ValueError(f"custom_fields.{obj} must be a list")
            for raw in fields:
                _custom_field(raw)

    def prepare(self, account: Account) -> None:
        account.runtime.pop("sf_schema", None)
        schema = _schema(account)
        for obj, sobj in schema.items():
            indexes = {f.name: "ci" for f in sobj.fields.values() if f.unique or f.externalId}
            indexes.update({name: "ci" for name in EXTRA_INDEXES.get(obj, ())})
            account.table(obj, indexes)
        account.meta.setdefault("org_id", _fixed_id("00D", "org:" + account.name))
        account.meta.setdefault("user_id", _fixed_id("005", "user:" + account.name))

    def unauthorized(self, reason: str) -> VendorError:
        return VendorError(401, SESSION_INVALID)

    def fault_error(self, fault: Fault) -> VendorError:
        return fault_error(fault, LIMIT_EXCEEDED)

    def admit(self, ctx: Ctx, kind: str) -> float:
        account = ctx.account
        if account.setting("enabled", True) is False:
            return 0.0
        wall = time.time()
        counter = account.runtime.setdefault("sf_daily", BucketCounter())
        allocation = int(account.setting("daily_api_requests", DEFAULT_DAILY))
        used = counter.total(wall)
        if used >= allocation:
            ctx.headers["Sforce-Limit-Info"] = f"api-usage={used}/{allocation}"
            raise VendorError(403, LIMIT_EXCEEDED)
        counter.add(wall)
        ctx.headers["Sforce-Limit-Info"] = f"api-usage={used + 1}/{allocation}"
        per_second = account.setting("per_second")
        if not per_second:
            return 0.0
        pacer = account.runtime.get("sf_pacer")
        if pacer is None or pacer.per_second != int(per_second):
            pacer = account.runtime["sf_pacer"] = Pacer(int(per_second))
        return pacer.reserve(time.monotonic())

    def seed(self, account: Account, obj: str, body: dict[str, Any]) -> Record:
        sobj = _schema(account)[obj]
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes" or key.lower() == "id":
                continue
            fld = sobj.field(key)
            if fld is None or not fld.createable:
                raise AdminError(400, f"{sobj.name} has no writable field {key!r}")
            values[fld.name] = to18(value) if fld.type == "reference" and value else value
        for fld in sobj.fields.values():
            if fld.defaultValue is not None and values.get(fld.name) is None:
                values[fld.name] = fld.defaultValue
        record_id = None
        given = next((v for k, v in body.items() if k.lower() == "id"), None)
        if given is not None:
            record_id = to18(given)
            if record_id is None or not record_id.startswith(KEY_PREFIXES[sobj.name]):
                raise AdminError(400, f"{given!r} is not a {sobj.name} id (prefix {KEY_PREFIXES[sobj.name]})")
            if account.tables[sobj.name].get(record_id):
                raise AdminError(409, f"{sobj.name} {record_id} already exists")
        table = account.tables[sobj.name]
        for fld in sobj.fields.values():
            if fld.unique and values.get(fld.name) is not None and table.lookup_one(fld.name, values[fld.name]):
                raise AdminError(409, f"duplicate value for {fld.name}: {values[fld.name]}")
        return _insert(account, sobj, values, record_id=record_id)

    def export(self, account: Account, obj: str, record: Record) -> dict[str, Any]:
        sobj = _sobject(account, obj)
        if sobj is None:
            return {"attributes": {"type": obj}, **record["fields"]}
        return _render(sobj, record, f"v{DEFAULT_VERSION}")

    def objects(self, account: Account) -> list[str]:
        return list(BASE_FIELDS)

    def object_name(self, account: Account, obj: str) -> str | None:
        sobj = _sobject(account, obj)
        return sobj.name if sobj else None

    def record_key(self, record_id: str) -> str:
        return to18(record_id) or record_id


ADAPTER = SalesforceAdapter()
router = APIRouter(prefix=PREFIX, tags=["salesforce"])
SalesforceAdapter.router = router
DATA = "/services/data/{version}"


async def _api(request: Request, version: str) -> Ctx:
    if not VERSION_RE.match(version):
        raise VendorError(404, NOT_FOUND)
    return await open_request(request, ADAPTER, bearer(request, ("bearer", "oauth")))


def _object_or_404(ctx: Ctx, name: str) -> SObject:
    sobj = _sobject(ctx.account, name)
    if sobj is None:
        raise VendorError(404, NOT_FOUND)
    return sobj


# --------------------------------------------------------------------------- OAuth


@router.post("/services/oauth2/token")
async def oauth_token(request: Request) -> Any:
    """Client-credentials or username-password flow for a registered org."""
    await apply_fault(request, ADAPTER, None, exempt=True)
    form = await read_form(request)
    grant = form.get("grant_type")
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    basic = basic_auth(request)
    if basic is not None and not client_id:
        client_id, client_secret = basic
    if grant not in ("client_credentials", "password"):
        raise oauth_error(400, "unsupported_grant_type", "grant type not supported")
    state = sandbox_state(request)
    with state.lock:
        account = next(
            (a for a in state.accounts_of(CRM) if client_id and a.credentials.get("clientId") == client_id), None
        )
        if account is None:
            raise oauth_error(400, "invalid_client_id", "client identifier invalid")
        creds = account.credentials
        if client_secret != creds.get("clientSecret"):
            raise oauth_error(400, "invalid_client", "invalid client credentials")
        if grant == "password":
            expected = f"{creds.get('password', '')}{creds.get('securityToken', '')}"
            if (
                not creds.get("username")
                or form.get("username") != creds["username"]
                or form.get("password") != expected
            ):
                raise oauth_error(400, "invalid_grant", "authentication failure")
        ttl = float(account.setting("token_ttl_seconds", DEFAULT_TOKEN_TTL))
        org_id, user_id = account.meta["org_id"], account.meta["user_id"]
        token = state.issue_token(account, f"{org_id[:15]}!{secrets.token_urlsafe(48)}", ttl)
        account.stats.by_endpoint[endpoint_key(request)] += 1
    instance = str(request.base_url).rstrip("/") + PREFIX
    identity = f"{instance}/id/{org_id}/{user_id}"
    issued_at = str(int(time.time() * 1000))
    digest = hmac.new(str(creds["clientSecret"]).encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    body = {
        "access_token": token.value,
        "instance_url": instance,
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": base64.b64encode(digest).decode(),
    }
    if grant == "client_credentials":
        body["scope"] = "api"
    return json_response(body)


# --------------------------------------------------------------------------- metadata


@router.get("/services/data")
async def versions(request: Request) -> Any:
    return json_response(
        [{"label": f"v{v}", "url": f"{PREFIX}/services/data/v{v}", "version": v} for v in SUPPORTED_VERSIONS]
    )


@router.get(DATA + "/limits")
async def limits(version: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        allocation = int(ctx.account.setting("daily_api_requests", DEFAULT_DAILY))
        used = ctx.account.runtime.setdefault("sf_daily", BucketCounter()).total(time.time())
    return ctx.reply(
        {
            "DailyApiRequests": {"Max": allocation, "Remaining": max(0, allocation - used)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        }
    )


def _describe_object(sobj: SObject, version: str, full: bool) -> dict[str, Any]:
    base = f"{PREFIX}/services/data/{version}/sobjects/{sobj.name}"
    out: dict[str, Any] = {
        "name": sobj.name,
        "label": sobj.name,
        "keyPrefix": KEY_PREFIXES[sobj.name],
        "custom": False,
        "createable": True,
        "updateable": True,
        "deletable": True,
        "queryable": True,
        "urls": {"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"},
    }
    if full:
        out["fields"] = [f.to_json() for f in sobj.fields.values()]
    return out


@router.get(DATA + "/sobjects")
async def describe_global(version: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        objects = [_describe_object(s, version, False) for s in _schema(ctx.account).values()]
    return ctx.reply({"encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION, "sobjects": objects})


@router.get(DATA + "/sobjects/{sobject}/describe")
async def describe(version: str, sobject: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        return ctx.reply(_describe_object(_object_or_404(ctx, sobject), version, True))


# --------------------------------------------------------------------------- single records


@router.post(DATA + "/sobjects/{sobject}")
async def create_record(version: str, sobject: str, ctx: Ctx = Depends(_api)) -> Any:
    body = await read_json(ctx.request, _bad_json)
    if not isinstance(body, dict):
        raise _bad_json("Request body must be a JSON object")
    with ctx.state.lock:
        sobj = _object_or_404(ctx, sobject)
        if any(k.lower() == "id" for k in body):
            raise _api_error(400, "INVALID_FIELD", "Record ID: cannot specify Id in an insert call", ["Id"])
        values, errors = _validate(ctx.account, sobj, body, None)
        if errors:
            raise VendorError(400, _as_api_errors(errors))
        record = _insert(ctx.account, sobj, values)
    return ctx.reply({"id": record["id"], "success": True, "errors": []}, 201)


@router.get(DATA + "/sobjects/{sobject}/{record_id}")
async def read_record(version: str, sobject: str, record_id: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        sobj = _object_or_404(ctx, sobject)
        record = _find(ctx.account, sobj, record_id)
        if record is None:
            raise VendorError(404, NOT_FOUND)
        wanted = ctx.request.query_params.get("fields")
        names = None
        if wanted:
            names = [sobj.by_lower.get(n.strip().lower(), n.strip()) for n in wanted.split(",") if n.strip()]
            unknown = [n for n in names if n not in sobj.fields]
            if unknown:
                raise _api_error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobj.name}")
        return ctx.reply(_render(sobj, record, version, names))


@router.patch(DATA + "/sobjects/{sobject}/{record_id}")
async def update_record(version: str, sobject: str, record_id: str, ctx: Ctx = Depends(_api)) -> Any:
    body = await read_json(ctx.request, _bad_json)
    if not isinstance(body, dict):
        raise _bad_json("Request body must be a JSON object")
    with ctx.state.lock:
        sobj = _object_or_404(ctx, sobject)
        record = _find(ctx.account, sobj, record_id)
        if record is None:
            raise VendorError(404, NOT_FOUND)
        values, errors = _validate(ctx.account, sobj, body, record, skip=("id",))
        if errors:
            raise VendorError(400, _as_api_errors(errors))
        _modify(ctx.account, sobj, record, values, Journal())
    return ctx.no_content()


@router.delete(DATA + "/sobjects/{sobject}/{record_id}")
async def delete_record(version: str, sobject: str, record_id: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        sobj = _object_or_404(ctx, sobject)
        record = _find(ctx.account, sobj, record_id)
        if record is None:
            raise VendorError(404, NOT_FOUND)
        ctx.account.tables[sobj.name].remove(record["id"])
    return ctx.no_content()


def _external_field(sobj: SObject, name: str) -> str:
    fld = sobj.field(name)
    if fld is None:
        raise _api_error(
            400, "INVALID_FIELD", f"Provided external ID field does not exist or is not accessible: {name}"
        )
    if not fld.externalId and fld.name != "Id":
        raise _api_error(400, "INVALID_FIELD", f"Field {fld.name} is not an external ID field on {sobj.name}")
    return fld.name


def _upsert_one(
    account: Account, sobj: SObject, field_name: str, key: Any, raw: dict[str, Any], journal: Journal
) -> dict[str, Any]:
    """Insert or update the record whose external id ``field_name`` equals ``key``."""
    table: Table = account.tables[sobj.name]
    existing = table.get(table.lookup_one(field_name, key) or "")
    raw = {k: v for k, v in raw.items() if k.lower() not in ("id", field_name.lower())}
    if existing is None:
        raw[field_name] = key
    values, errors = _validate(account, sobj, raw, existing)
    if errors:
        return _failure(errors)
    if existing is None:
        record = _insert(account, sobj, values, journal)
    else:
        record = _modify(account, sobj, existing, values, journal)
    return {"id": record["id"], "success": True, "errors": [], "created": existing is None}


@router.patch(DATA + "/sobjects/{sobject}/{field}/{value}")
async def upsert_record(version: str, sobject: str, field: str, value: str, ctx: Ctx = Depends(_api)) -> Any:
    """Upsert one record by external id: 201 created / 200 updated."""
    body = await read_json(ctx.request, _bad_json)
    if not isinstance(body, dict):
        raise _bad_json("Request body must be a JSON object")
    with ctx.state.lock:
        sobj = _object_or_404(ctx, sobject)
        name = _external_field(sobj, field)
        result = _upsert_one(ctx.account, sobj, name, value, body, Journal())
    if not result["success"]:
        raise VendorError(400, _as_api_errors(result["errors"]))
    return ctx.reply(result, 201 if result["created"] else 200)


# --------------------------------------------------------------------------- collections


@router.post(DATA + "/composite/sobjects")
async def collection_create(version: str, ctx: Ctx = Depends(_api)) -> Any:
    """Create up to 200 records (mixed types); per-record results in input order."""
    all_or_none, records = _collection(await read_json(ctx.request, _bad_json))

    def create(_i: int, raw: dict[str, Any], journal: Journal) -> dict[str, Any]:
        sobj = _record_type(ctx.account, raw)
        if sobj is None:
            return _failure([_rec_error("INVALID_TYPE", "attributes.type must name a supported sObject")])
        if any(k.lower() == "id" for k in raw):
            return _failure([_rec_error("INVALID_FIELD", "Record ID: cannot specify Id in an insert call", ["Id"])])
        values, errors = _validate(ctx.account, sobj, raw, None)
        if errors:
            return _failure(errors)
        return {"id": _insert(ctx.account, sobj, values, journal)["id"], "success": True, "errors": []}

    with ctx.state.lock:
        results = _run(records, all_or_none, create)
    return ctx.reply(results)


@router.patch(DATA + "/composite/sobjects")
async def collection_update(version: str, ctx: Ctx = Depends(_api)) -> Any:
    """Update up to 200 records by Id; per-record results in input order."""
    all_or_none, records = _collection(await read_json(ctx.request, _bad_json))

    def update(_i: int, raw: dict[str, Any], journal: Journal) -> dict[str, Any]:
        sobj = _record_type(ctx.account, raw)
        if sobj is None:
            return _failure([_rec_error("INVALID_TYPE", "attributes.type must name a supported sObject")])
        given = next((v for k, v in raw.items() if k.lower() == "id"), None)
        if not given:
            return _failure([_rec_error("MISSING_ARGUMENT", "Id not specified in an update call")])
        rid = to18(given)
        if rid is None or not rid.startswith(KEY_PREFIXES[sobj.name]):
            return _failure(
                [_rec_error("MALFORMED_ID", f"{sobj.name} ID: id value of incorrect type: {given}", ["Id"])]
            )
        record = ctx.account.tables[sobj.name].get(rid)
        if record is None:
            return _failure([_rec_error("ENTITY_IS_DELETED", "entity is deleted")])
        values, errors = _validate(ctx.account, sobj, raw, record, skip=("id",))
        if errors:
            return _failure(errors)
        return {"id": _modify(ctx.account, sobj, record, values, journal)["id"], "success": True, "errors": []}

    with ctx.state.lock:
        results = _run(records, all_or_none, update)
    return ctx.reply(results)


@router.patch(DATA + "/composite/sobjects/{sobject}/{field}")
async def collection_upsert(version: str, sobject: str, field: str, ctx: Ctx = Depends(_api)) -> Any:
    """Upsert up to 200 records of one type by an External ID field; ``created`` per record."""
    all_or_none, records = _collection(await read_json(ctx.request, _bad_json))
    with ctx.state.lock:
        sobj = _object_or_404(ctx, sobject)
        name = _external_field(sobj, field)
        keys = [next((v for k, v in r.items() if k.lower() == name.lower()), None) for r in records]
        folded = [str(k).casefold() if k not in (None, "") else None for k in keys]
        duplicated = {k for k in folded if k is not None and folded.count(k) > 1}

        def upsert(index: int, raw: dict[str, Any], journal: Journal) -> dict[str, Any]:
            key, fkey = keys[index], folded[index]
            declared = _record_type(ctx.account, raw)
            if (raw.get("attributes") or {}).get("type") and declared is not sobj:
                return _failure([_rec_error("INVALID_TYPE", f"All records must be of type {sobj.name}")])
            if fkey is None:
                return _failure([_rec_error("MISSING_ARGUMENT", f"{name} not specified", [name])])
            if fkey in duplicated:
                return _failure(
                    [_rec_error("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {key}", [name])]
                )
            return _upsert_one(ctx.account, sobj, name, key, raw, journal)

        results = _run(records, all_or_none, upsert)
    return ctx.reply(results)


# --------------------------------------------------------------------------- SOQL


def _canonical(expr: soql.Expr | None, sobj: SObject) -> None:
    if isinstance(expr, soql.Cond):
        expr.field = sobj.by_lower[expr.field.lower()]
    elif isinstance(expr, soql.BoolOp):
        for item in expr.items:
            _canonical(item, sobj)


def _candidates(expr: soql.Expr | None, table: Table) -> set[str] | None:
    """Record ids an index can narrow the query to (``None``: scan everything)."""
    if isinstance(expr, soql.Cond):
        if expr.negate or expr.op not in ("=", "IN"):
            return None
        if expr.field == "Id":
            return {rid for v in expr.values if (rid := to18(v)) and rid in table.records}
        if table.is_indexed(expr.field):
            return {rid for v in expr.values for rid in table.lookup(expr.field, v)}
        return None
    if isinstance(expr, soql.BoolOp):
        parts = [_candidates(item, table) for item in expr.items]
        if expr.op == "OR":
            return None if any(p is None for p in parts) else set().union(*parts)
        known = [p for p in parts if p is not None]
        return set.intersection(*known) if known else None
    return None


def _norm_for(sobj: SObject) -> Callable[[str, Any], Any]:
    def norm(name: str, value: Any) -> Any:
        if value is None or value == "":
            return None
        if sobj.fields[name].type in ("id", "reference"):
            return to18(value) or value
        return soql.comparable(value)

    return norm


def _batch_size(request: Request) -> int:
    match = re.search(r"batchSize=(\d+)", request.headers.get("sforce-query-options", ""))
    return min(QUERY_BATCH, max(200, int(match.group(1)))) if match else QUERY_BATCH


def _page(
    ctx: Ctx, version: str, rows: list[dict[str, Any]], total: int, batch: int, offset: int, locator: str | None
) -> Any:
    end = offset + batch
    body: dict[str, Any] = {"totalSize": total, "done": end >= len(rows), "records": rows[offset:end]}
    cursors: OrderedDict[str, tuple[list[dict[str, Any]], int]] = ctx.account.runtime.setdefault(
        "sf_cursors", OrderedDict()
    )
    if end < len(rows):
        if locator is None:
            locator = "01g" + "8c0" + _b62(secrets.randbits(53), 12)
            cursors[locator] = (rows, batch)
            while len(cursors) > MAX_CURSORS:
                cursors.popitem(last=False)
        body["nextRecordsUrl"] = f"{PREFIX}/services/data/{version}/query/{locator}-{end}"
    elif locator is not None:
        cursors.pop(locator, None)
    return ctx.reply(body)


@router.get(DATA + "/query")
@router.get(DATA + "/queryAll")
async def query(version: str, ctx: Ctx = Depends(_api)) -> Any:
    """Run a SOQL query from the supported subset (see :mod:`crm_sandbox.soql`)."""
    text = ctx.request.query_params.get("q", "")
    try:
        parsed = soql.parse(text)
    except soql.SoqlError as exc:
        raise _api_error(400, "MALFORMED_QUERY", f"\n{text}\n{exc}") from None
    with ctx.state.lock:
        sobj = _sobject(ctx.account, parsed.sobject)
        if sobj is None:
            raise _api_error(
                400,
                "INVALID_TYPE",
                f"\n{text}\nsObject type '{parsed.sobject}' is not supported. If you "
                "are attempting to use a custom object, be sure to append the '__c' after the entity name.",
            )
        for name in parsed.referenced_fields():
            if name.lower() not in sobj.by_lower:
                raise _api_error(
                    400,
                    "INVALID_FIELD",
                    f"\n{text}\nNo such column '{name}' on entity '{sobj.name}'. If "
                    "you are attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name.",
                )
        fields = [sobj.by_lower[n.lower()] for n in parsed.fields]
        _canonical(parsed.where, sobj)
        table = ctx.account.tables[sobj.name]
        norm = _norm_for(sobj)
        predicate = soql.compile_expr(parsed.where, norm)
        candidates = _candidates(parsed.where, table)
        pool = table.records.keys() if candidates is None else table.ordered(candidates)
        matched = [table.records[rid] for rid in pool if predicate(table.records[rid]["fields"])]
        for name, descending in reversed(parsed.order_by):
            canonical = sobj.by_lower[name.lower()]
            present = [r for r in matched if norm(canonical, r["fields"].get(canonical)) is not None]
            absent = [r for r in matched if norm(canonical, r["fields"].get(canonical)) is None]
            present.sort(key=lambda r: norm(canonical, r["fields"][canonical]), reverse=descending)
            matched = present + absent
        if parsed.limit is not None:
            matched = matched[: parsed.limit]
        rows = [_render(sobj, r, version, fields) for r in matched]
        return _page(ctx, version, rows, len(rows), _batch_size(ctx.request), 0, None)


@router.get(DATA + "/query/{cursor}")
async def query_more(version: str, cursor: str, ctx: Ctx = Depends(_api)) -> Any:
    """Next page of a query (``nextRecordsUrl``)."""
    locator, _, offset = cursor.rpartition("-")
    with ctx.state.lock:
        entry = ctx.account.runtime.get("sf_cursors", {}).get(locator)
        if entry is None or not offset.isdigit():
            raise _api_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        rows, batch = entry
        return _page(ctx, version, rows, len(rows), batch, int(offset), locator)


# --------------------------------------------------------------------------- Bulk API 2.0 ingest
# https://developer.salesforce.com/docs/platform/api-asynch/guide/walkthrough-upsert.html: create a job (JSON),
# PUT the CSV to .../batches (201, no body), PATCH {"state": "UploadComplete"}, poll GET until JobComplete,
# then successfulResults (sf__Id, sf__Created + fields), failedResults (sf__Id, sf__Error + fields) and
# unprocessedrecords (fields) as CSV. Here the job is processed when it is closed (the close answers
# UploadComplete, the next GET JobComplete); each row goes through the Collections upsert's validation, so
# the invalid marker fails exactly that row. An empty cell leaves a field unchanged, #N/A sets it to null.

BULK_OPERATIONS = ("insert", "upsert")
BULK_JOB_PREFIX = "750"


def _bulk_error(status: int, message: str, code: str = "INVALIDJOB") -> VendorError:
    return VendorError(status, [{"errorCode": code, "message": message}])


def _bulk_jobs(account: Account) -> dict[str, dict[str, Any]]:
    return account.runtime.setdefault("sf_bulk_jobs", {})


def _bulk_job(ctx: Ctx, job_id: str) -> dict[str, Any]:
    job = _bulk_jobs(ctx.account).get(to18(job_id) or "")
    if job is None:
        raise VendorError(404, NOT_FOUND)
    return job


def _job_info(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _csv_reply(ctx: Ctx, columns: list[str], rows: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return Response(out.getvalue(), status_code=200, media_type="text/csv", headers=ctx.headers)


def _process_bulk_job(account: Account, job: dict[str, Any]) -> None:
    sobj = _sobject(account, job["object"])
    assert sobj is not None
    ext = job.get("externalIdFieldName")
    for row in job["_rows"]:
        raw = {k: (None if v == "#N/A" else v) for k, v in row.items() if v != ""}
        if job["operation"] == "upsert":
            key = next((v for k, v in raw.items() if k.lower() == ext.lower()), None)
            if key in (None, ""):
                result = _failure([_rec_error("MISSING_ARGUMENT", f"{ext} not specified", [ext])])
            else:
                result = _upsert_one(account, sobj, ext, key, raw, Journal())
        else:
            values, errors = _validate(account, sobj, raw, None)
            result = (
                _failure(errors)
                if errors
                else {"id": _insert(account, sobj, values)["id"], "success": True, "errors": [], "created": True}
            )
        if result["success"]:
            job["_ok"].append({"sf__Id": result["id"], "sf__Created": "true" if result["created"] else "false", **row})
        else:
            error = "; ".join(f"{e['statusCode']}:{e['message']}:{','.join(e['fields'])} --" for e in result["errors"])
            job["_failed"].append({"sf__Id": "", "sf__Error": error, **row})
    job["numberRecordsProcessed"] = len(job["_rows"])
    job["numberRecordsFailed"] = len(job["_failed"])
    job["_rows"] = []


@router.post(DATA + "/jobs/ingest")
async def bulk_create_job(version: str, ctx: Ctx = Depends(_api)) -> Any:
    body = await read_json(ctx.request, _bad_json)
    if not isinstance(body, dict):
        raise _bad_json("Request body must be a JSON object")
    operation, name = body.get("operation"), body.get("object")
    if operation not in BULK_OPERATIONS:
        raise _bulk_error(400, f"operation must be one of {', '.join(BULK_OPERATIONS)} in this sandbox")
    if (
        (body.get("contentType") or "CSV") != "CSV"
        or (body.get("columnDelimiter") or "COMMA") != "COMMA"
        or (body.get("lineEnding") or "LF") != "LF"
    ):
        raise _bulk_error(400, "this sandbox accepts contentType CSV, columnDelimiter COMMA, lineEnding LF")
    with ctx.state.lock:
        sobj = _sobject(ctx.account, str(name or ""))
        if sobj is None:
            raise _bulk_error(400, f"sObject type '{name}' is not supported", "INVALIDENTITY")
        ext = None
        if operation == "upsert":
            ext = _external_field(sobj, str(body.get("externalIdFieldName") or ""))
        job_id = make_id(BULK_JOB_PREFIX, ctx.account.next_seq())
        stamp = iso().replace("Z", "+0000")
        job = {
            "id": job_id,
            "operation": operation,
            "object": sobj.name,
            "createdById": ctx.account.meta["user_id"],
            "createdDate": stamp,
            "systemModstamp": stamp,
            "state": "Open",
            "externalIdFieldName": ext,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version.lstrip("v")),
            "contentUrl": f"services/data/{version}/jobs/ingest/{job_id}/batches",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": 0,
            "numberRecordsFailed": 0,
            "retries": 0,
            "totalProcessingTime": 0,
            "_columns": [],
            "_rows": [],
            "_ok": [],
            "_failed": [],
            "_uploads": 0,
        }
        if ext is None:
            job.pop("externalIdFieldName")
        _bulk_jobs(ctx.account)[job_id] = job
        return ctx.reply(_job_info(job))


@router.put(DATA + "/jobs/ingest/{job_id}/batches")
async def bulk_upload(version: str, job_id: str, ctx: Ctx = Depends(_api)) -> Any:
    if not ctx.request.headers.get("content-type", "").lower().startswith("text/csv"):
        raise _bulk_error(400, "Content-Type must be text/csv", "INVALIDREQUEST")
    text = (await ctx.request.body()).decode("utf-8-sig")
    with ctx.state.lock:
        job = _bulk_job(ctx, job_id)
        if job["state"] != "Open":
            raise _bulk_error(
                409, f"Job {job['id']} is {job['state']}: data can only be uploaded to an Open job", "INVALIDJOBSTATE"
            )
        reader = csv.DictReader(io.StringIO(text))
        job["_columns"] = job["_columns"] or list(reader.fieldnames or [])
        job["_rows"].extend(reader)
        job["_uploads"] += 1
    return Response(status_code=201, headers=ctx.headers)


@router.patch(DATA + "/jobs/ingest/{job_id}")
async def bulk_set_state(version: str, job_id: str, ctx: Ctx = Depends(_api)) -> Any:
    body = await read_json(ctx.request, _bad_json)
    state = body.get("state") if isinstance(body, dict) else None
    if state not in ("UploadComplete", "Aborted"):
        raise _bulk_error(400, "state must be UploadComplete or Aborted", "INVALIDREQUEST")
    with ctx.state.lock:
        job = _bulk_job(ctx, job_id)
        if job["state"] in ("JobComplete", "Failed", "Aborted") or (
            state == "UploadComplete" and job["state"] != "Open"
        ):
            raise _bulk_error(409, f"Job {job['id']} is {job['state']}", "INVALIDJOBSTATE")
        if state == "Aborted":
            job["state"] = "Aborted"
            return ctx.reply(_job_info(job))
        sobj = _sobject(ctx.account, job["object"])
        unknown = [c for c in job["_columns"] if sobj is None or sobj.field(c) is None]
        if not job["_uploads"]:
            job.update(state="Failed", errorMessage="InvalidBatch : no data was uploaded")
        elif unknown:
            # A header Salesforce cannot map fails the whole job; its rows stay unprocessed.
            job.update(state="Failed", errorMessage=f"InvalidBatch : Field name not found : {unknown[0]}")
        else:
            _process_bulk_job(ctx.account, job)
            job["state"] = "JobComplete"
        job["systemModstamp"] = iso().replace("Z", "+0000")
        # The close itself answers UploadComplete; processing shows on the next GET.
        return ctx.reply({**_job_info(job), "state": "UploadComplete"})


@router.get(DATA + "/jobs/ingest/{job_id}")
async def bulk_job_info(version: str, job_id: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        return ctx.reply(_job_info(_bulk_job(ctx, job_id)))


@router.get(DATA + "/jobs/ingest/{job_id}/{kind}")
async def bulk_results(version: str, job_id: str, kind: str, ctx: Ctx = Depends(_api)) -> Any:
    with ctx.state.lock:
        job = _bulk_job(ctx, job_id)
        if job["state"] not in ("JobComplete", "Failed", "Aborted"):
            raise _bulk_error(
                409, f"Job {job['id']} is {job['state']}: results are available once it ends", "INVALIDJOBSTATE"
            )
        columns = job["_columns"]
        if kind == "successfulResults":
            return _csv_reply(ctx, ["sf__Id", "sf__Created", *columns], job["_ok"])
        if kind == "failedResults":
            return _csv_reply(ctx, ["sf__Id", "sf__Error", *columns], job["_failed"])
        if kind == "unprocessedrecords":
            return _csv_reply(ctx, columns, job["_rows"])
    raise VendorError(404, NOT_FOUND)
