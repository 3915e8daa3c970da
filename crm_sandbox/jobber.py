"""Jobber GraphQL emulation under ``/jobber/api`` (mirrors ``https://api.getjobber.com/api``).

Vendor facts used (Jobber Developer Center, https://developer.getjobber.com/docs/ : queries and mutations,
rate limits, refresh token rotation, changelog; the schema as Jobber's app template introspected it at
version 2022-03-10, https://github.com/GetJobber/Jobber-AppTemplate-RailsAPI/blob/0456ed1/db/schema.json,
plus the changelog's later changes):

* One endpoint, ``POST /api/graphql``, JSON only, ``Authorization: Bearer <JWT>`` and the
  ``X-JOBBER-GRAPHQL-VERSION`` header; an invalid or expired token answers HTTP 401
  ("invalid_request"). GraphQL errors come with HTTP 200: ``errors[]`` (``message``,
  ``locations``, ``path``, ``extensions``) and, for mutations, ``userErrors {message, path}``.
* OAuth: ``POST /api/oauth/token`` (form) ``grant_type=refresh_token, client_id,
  client_secret, refresh_token`` -> ``{access_token, refresh_token, expires_at}``; the
  access token is a JWT whose ``exp`` claim is its expiry (default 60 minutes). Refresh
  token rotation (default ON): every refresh returns a new refresh token and, for apps
  created after 2024-01-02, the previous one is invalid at once ("The provided refresh
  token is not valid").
* Limits per app/account: a DDoS guard of 2,500 requests per 300 s (HTTP 429), and a
  leaky-bucket query-cost budget, ``maximumAvailable`` 10,000 points restored at 500 per
  second, reported on every response in ``extensions.cost``; a request whose
  ``requestedQueryCost`` exceeds ``currentlyAvailable`` gets HTTP 200 with
  ``errors: [{message: "Throttled", extensions: {code: "THROTTLED"}}]`` and costs nothing.
  Cost: every field 1, ``edges``/``nodes``/``node`` 0, a connection's nodes multiplied by
  ``first`` (100 when omitted); ``actualQueryCost`` counts what was returned.
* Operations: ``account``, ``client(id)``, ``clients(searchTerm, filter, first, after)``,
  ``job(id)``, ``jobs(searchTerm, filter{createdAt}, first, after)``, ``property(id)``,
  ``properties(filter{clientId})``; mutations ``clientCreate``, ``clientEdit``,
  ``propertyCreate``, ``jobCreate`` (``propertyId``, ``invoicing`` and ``scheduling``
  required), ``jobEdit``, ``jobClose``. A job's client is its property's client.
  ``PropertyAttributes.address`` is required since 2023-08-18.

Sandbox choices (UNCONFIRMED vendor behaviour, kept here in one place):

* ``searchTerm`` matching: case-insensitive, every word of the term must equal a word of
  the record (client: names, email addresses, phone digits; job: title words, job number);
  phone terms compare by digits, whatever the stored format.
* The text of validation ``userErrors`` ("Instructions is invalid"), the 401 / 429 /
  token-error bodies, and a 400 for a request without ``X-JOBBER-GRAPHQL-VERSION``.
* Several aliased mutations in one document run in order; each has its own ``userErrors``.
* Every answer reports ``extensions.versioning.version`` (the requested version; the account option
  ``oldest_api_version`` upgrades an older one to it, with a ``warning``, as Jobber does for a removed one).
* EncodedIds are base64 of a number (as live ids are); ids are unique across object types.

Parsing and validating a request is :mod:`crm_sandbox.graphql` (no fragments, directives or
subscriptions: a request using anything else gets a graphql-ruby-shaped validation error, as an
unknown field does on the real API); this module holds the schema of the operations above, the
query-cost rule, the executor and the resolvers.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

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
from crm_sandbox.graphql import (
    GraphQLError,
    InputProblem,
    Operation,
    Schema,
    Selection,
    base_type,
    is_list,
    parse,
    parse_datetime,
    resolve_vars,
)
from crm_sandbox.state import Account, Fault, Record, SlidingWindow, Table, phone_digits

CRM = "jobber"
DEFAULT_TOKEN_TTL = 3600
DEFAULT_REQUESTS_PER_5MIN = 2500
DEFAULT_COST_MAX = 10_000
DEFAULT_RESTORE_RATE = 500
DEFAULT_PAGE = 100
MAX_PAGE = 100
DOCS_RATE_LIMITS = "https://developer.getjobber.com/docs/using_jobbers_api/api_rate_limits"
OBJECTS = ("clients", "properties", "jobs")


# =========================================================================== schema (the subset emulated)

SCALARS = {"String", "Int", "Float", "Boolean", "ID", "EncodedId", "ISO8601Date", "ISO8601DateTime", "ISO8601Time"}
ENUMS: dict[str, set[str]] = {
    "EmailDescription": {"MAIN", "WORK", "PERSONAL", "OTHER"},
    "PhoneNumberDescription": {"MAIN", "WORK", "MOBILE", "HOME", "FAX", "OTHER"},
    "ClientTitle": {"MR", "MS", "MRS", "MISS", "DR"},
    "BillingStrategy": {"FIXED_PRICE", "VISIT_BASED"},
    "BillingFrequencyEnum": {"ON_COMPLETION", "PERIODIC", "PER_VISIT", "NEVER"},
    "IncompleteVisitDecisionEnum": {"DESTROY_ALL", "COMPLETE_PAST_DESTROY_FUTURE"},
    "DurationUnit": {"DAYS", "WEEKS", "MONTHS", "YEARS"},
    "JobStatusTypeEnum": {
        "requires_invoicing",
        "archived",
        "late",
        "today",
        "upcoming",
        "action_required",
        "on_hold",
        "unscheduled",
        "active",
    },
    "JobTypeTypeEnum": {"ONE_OFF", "RECURRING"},
}

INPUTS: dict[str, dict[str, str]] = {
    "AddressAttributes": {
        "street1": "String",
        "street2": "String",
        "city": "String",
        "province": "String",
        "postalCode": "String",
        "country": "String",
    },
    "PhoneNumberCreateAttributes": {
        "description": "PhoneNumberDescription",
        "number": "String",
        "smsAllowed": "Boolean",
        "primary": "Boolean",
    },
    "EmailCreateAttributes": {"description": "EmailDescription", "address": "String", "primary": "Boolean"},
    "PropertyAttributes": {"address": "AddressAttributes!"},
    "ClientCreateInput": {
        "title": "ClientTitle",
        "firstName": "String",
        "lastName": "String",
        "companyName": "String",
        "isCompany": "Boolean",
        "phones": "[PhoneNumberCreateAttributes!]",
        "emails": "[EmailCreateAttributes!]",
        "properties": "[PropertyAttributes!]",
        "billingAddress": "AddressAttributes",
    },
    "ClientEditInput": {
        "title": "ClientTitle",
        "firstName": "String",
        "lastName": "String",
        "companyName": "String",
        "isCompany": "Boolean",
        "phonesToAdd": "[PhoneNumberCreateAttributes!]",
        "phonesToDelete": "[EncodedId!]",
        "emailsToAdd": "[EmailCreateAttributes!]",
        "emailsToDelete": "[EncodedId!]",
        "billingAddress": "AddressAttributes",
    },
    "PropertyCreateInput": {"properties": "[PropertyAttributes!]"},
    "TimeframeAttributes": {"startAt": "ISO8601Date", "durationUnits": "DurationUnit", "durationValue": "Int"},
    "JobSchedulingAttributes": {
        "createVisits": "Boolean!",
        "notifyTeam": "Boolean!",
        "assignedTo": "[EncodedId!]",
        "startTime": "ISO8601Time",
        "endTime": "ISO8601Time",
    },
    "JobInvoicingAttributes": {"invoicingType": "BillingStrategy!", "invoicingSchedule": "BillingFrequencyEnum!"},
    "JobCreateAttributes": {
        "propertyId": "EncodedId!",
        "quoteId": "EncodedId",
        "requestId": "EncodedId",
        "title": "String",
        "jobNumber": "Int",
        "instructions": "String",
        "timeframe": "TimeframeAttributes",
        "scheduling": "JobSchedulingAttributes!",
        "invoicing": "JobInvoicingAttributes!",
    },
    "JobEditInput": {
        "jobNumber": "Int",
        "title": "String",
        "instructions": "String",
        "timeframe": "TimeframeAttributes",
        "scheduling": "JobSchedulingAttributes",
        "invoicing": "JobInvoicingAttributes",
    },
    "JobCloseInput": {"modifyIncompleteVisitsBy": "IncompleteVisitDecisionEnum!"},
    "Iso8601DateTimeRangeInput": {"before": "ISO8601DateTime", "after": "ISO8601DateTime", "eq": "ISO8601DateTime"},
    "ClientFilterAttributes": {
        "isCompany": "Boolean",
        "isLead": "Boolean",
        "isArchived": "Boolean",
        "updatedAt": "Iso8601DateTimeRangeInput",
        "createdAt": "Iso8601DateTimeRangeInput",
    },
    "JobFilterAttributes": {
        "createdAt": "Iso8601DateTimeRangeInput",
        "startAt": "Iso8601DateTimeRangeInput",
        "status": "JobStatusTypeEnum",
    },
    "PropertiesFilterAttributes": {"clientId": "EncodedId"},
}

_PAGING = {"first": "Int", "after": "String", "last": "Int", "before": "String"}


def _connection(node: str) -> dict[str, str]:
    return {"nodes": f"[{node}!]!", "edges": f"[{node}Edge!]", "pageInfo": "PageInfo!", "totalCount": "Int!"}


_ADDRESS = {
    "street1": "String",
    "street2": "String",
    "city": "String",
    "province": "String",
    "postalCode": "String",
    "country": "String",
}

OUTPUTS: dict[str, dict[str, str]] = {
    "Query": {
        "account": "Account",
        "client": "Client",
        "clients": "ClientConnection!",
        "job": "Job",
        "jobs": "JobConnection!",
        "property": "Property",
        "properties": "PropertyConnection!",
    },
    "Mutation": {
        "clientCreate": "ClientCreatePayload!",
        "clientEdit": "ClientEditPayload!",
        "propertyCreate": "PropertyCreatePayload!",
        "jobCreate": "JobCreatePayload!",
        "jobEdit": "JobEditPayload!",
        "jobClose": "JobClosePayload!",
    },
    "Account": {"id": "EncodedId!", "name": "String!"},
    "Client": {
        "id": "EncodedId!",
        "firstName": "String!",
        "lastName": "String!",
        "name": "String!",
        "companyName": "String",
        "isCompany": "Boolean!",
        "isArchived": "Boolean!",
        "title": "String",
        "emails": "[Email!]!",
        "phones": "[ClientPhoneNumber!]!",
        "billingAddress": "ClientAddress",
        "properties": "[Property!]!",
        "clientProperties": "PropertyConnection!",
        "jobs": "JobConnection!",
        "createdAt": "ISO8601DateTime!",
        "updatedAt": "ISO8601DateTime!",
        "jobberWebUri": "String!",
    },
    "Email": {"id": "EncodedId!", "address": "String!", "description": "String!", "primary": "Boolean!"},
    "ClientPhoneNumber": {
        "id": "EncodedId!",
        "number": "String!",
        "description": "String!",
        "primary": "Boolean!",
        "smsAllowed": "Boolean!",
    },
    "ClientAddress": dict(_ADDRESS),
    "PropertyAddress": dict(_ADDRESS),
    "Property": {
        "id": "EncodedId!",
        "address": "PropertyAddress!",
        **_ADDRESS,
        "client": "Client",
        "jobs": "JobConnection!",
        "jobberWebUri": "String!",
    },
    "Job": {
        "id": "EncodedId!",
        "jobNumber": "Int!",
        "title": "String",
        "instructions": "String",
        "jobStatus": "JobStatusTypeEnum!",
        "createdAt": "ISO8601DateTime!",
        "updatedAt": "ISO8601DateTime!",
        "startAt": "ISO8601DateTime",
        "completedAt": "ISO8601DateTime",
        "client": "Client!",
        "property": "Property!",
        "jobberWebUri": "String!",
    },
    "PageInfo": {
        "endCursor": "String",
        "startCursor": "String",
        "hasNextPage": "Boolean!",
        "hasPreviousPage": "Boolean!",
    },
    "MutationErrors": {"message": "String!", "path": "[String!]!"},
    "ClientCreatePayload": {"client": "Client", "userErrors": "[MutationErrors!]!"},
    "ClientEditPayload": {"client": "Client", "userErrors": "[MutationErrors!]!"},
    "PropertyCreatePayload": {"client": "Client", "properties": "[Property!]!", "userErrors": "[MutationErrors!]!"},
    "JobCreatePayload": {"job": "Job", "userErrors": "[MutationErrors!]!"},
    "JobEditPayload": {"job": "Job", "userErrors": "[MutationErrors!]!"},
    "JobClosePayload": {"job": "Job", "userErrors": "[MutationErrors!]!"},
}
for _node in ("Client", "Job", "Property"):
    OUTPUTS[f"{_node}Connection"] = _connection(_node)
    OUTPUTS[f"{_node}Edge"] = {"node": f"{_node}!", "cursor": "String!"}

ARGS: dict[tuple[str, str], dict[str, str]] = {
    ("Query", "client"): {"id": "EncodedId!"},
    ("Query", "job"): {"id": "EncodedId!"},
    ("Query", "property"): {"id": "EncodedId!"},
    ("Query", "clients"): {"searchTerm": "String", "filter": "ClientFilterAttributes", **_PAGING},
    ("Query", "jobs"): {"searchTerm": "String", "filter": "JobFilterAttributes", **_PAGING},
    ("Query", "properties"): {"searchTerm": "String", "filter": "PropertiesFilterAttributes", **_PAGING},
    ("Client", "clientProperties"): dict(_PAGING),
    ("Client", "jobs"): dict(_PAGING),
    ("Property", "jobs"): dict(_PAGING),
    ("Mutation", "clientCreate"): {"input": "ClientCreateInput!"},
    ("Mutation", "clientEdit"): {"clientId": "EncodedId!", "input": "ClientEditInput!"},
    ("Mutation", "propertyCreate"): {"clientId": "EncodedId!", "input": "PropertyCreateInput!"},
    ("Mutation", "jobCreate"): {"input": "JobCreateAttributes!"},
    ("Mutation", "jobEdit"): {"jobId": "EncodedId!", "input": "JobEditInput!"},
    ("Mutation", "jobClose"): {"jobId": "EncodedId!", "input": "JobCloseInput!"},
}

SCHEMA = Schema(scalars=SCALARS, enums=ENUMS, inputs=INPUTS, outputs=OUTPUTS, args=ARGS)


# =========================================================================== query cost


def _page(sel: Selection, variables: dict[str, Any]) -> int:
    for key in ("first", "last"):
        if key in sel.args:
            value = resolve_vars(sel.args[key], variables)
            if isinstance(value, int):
                return max(0, min(value, MAX_PAGE))
    return DEFAULT_PAGE


def requested_cost(selections: list[Selection], owner: str, variables: dict[str, Any]) -> int:
    """Jobber's rule: 1 per field, edges/nodes/node free, a connection's nodes times ``first`` (100)."""
    total = 0
    for sel in selections:
        if sel.name == "__typename":
            continue
        field_type = OUTPUTS[owner][sel.name]
        base = base_type(field_type)
        if base.endswith("Connection"):
            per_node = requested_cost([c for c in sel.children or [] if c.name in ("nodes", "edges")], base, variables)
            rest = [c for c in sel.children or [] if c.name not in ("nodes", "edges")]
            total += _page(sel, variables) * per_node + requested_cost(rest, base, variables)
        elif sel.name in ("nodes", "edges", "node"):
            total += requested_cost(sel.children or [], base, variables)
        elif base in OUTPUTS:
            total += 1 + requested_cost(sel.children or [], base, variables)
        else:
            total += 1
    return total


# =========================================================================== records


def encode_id(n: int) -> str:
    return base64.b64encode(str(n).encode()).decode()


def decode_id(value: Any) -> str | None:
    """The stored id for an EncodedId, or None when it is not one of ours."""
    if not isinstance(value, str) or not value:
        return None
    try:
        decoded = base64.b64decode(value.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return value if decoded.isdigit() else None


def _table(account: Account, obj: str) -> Table:
    return account.tables[obj]


_WORD_SPLIT = re.compile(r"[\s()\[\]{},;:\"'|]+")


def _words(text: Any) -> set[str]:
    return {w for w in _WORD_SPLIT.split(str(text or "").casefold()) if w}


_EXTENSION = re.compile(r"\s*(?:ext\.?|extension|x|#)\s*\d+\s*$", re.IGNORECASE)


def _client_words(fields: dict[str, Any]) -> set[str]:
    words = _words(fields.get("firstName")) | _words(fields.get("lastName")) | _words(fields.get("companyName"))
    words |= {str(e.get("address") or "").strip().casefold() for e in fields.get("emails") or [] if e.get("address")}
    words |= {
        d for p in fields.get("phones") or [] if (d := phone_digits(_EXTENSION.sub("", str(p.get("number") or ""))))
    }
    return words


def _job_words(fields: dict[str, Any]) -> set[str]:
    return _words(fields.get("title")) | {str(fields.get("jobNumber"))}


_WORD_FN: dict[str, Callable[[dict[str, Any]], set[str]]] = {"clients": _client_words, "jobs": _job_words}


def _word_index(account: Account, obj: str) -> dict[str, set[str]]:
    """word -> record ids, built lazily (runtime state is not persisted) and kept up to date by :func:`_put`."""
    key = ("jb_words", obj)
    index = account.runtime.get(key)
    if index is None:
        index = account.runtime[key] = {}
        for record in _table(account, obj):
            for word in _WORD_FN[obj](record["fields"]):
                index.setdefault(word, set()).add(record["id"])
    return index


def _put(account: Account, obj: str, record: Record) -> Record:
    table = _table(account, obj)
    words_of = _WORD_FN.get(obj)
    index = account.runtime.get(("jb_words", obj)) if words_of else None
    previous = table.put(record)
    if index is not None and words_of is not None:
        if previous is not None:
            for word in words_of(previous["fields"]):
                index.get(word, set()).discard(record["id"])
        for word in words_of(record["fields"]):
            index.setdefault(word, set()).add(record["id"])
    return record


def _term_words(term: str) -> list[str]:
    out = []
    for word in _words(term):
        digits = phone_digits(word) if re.fullmatch(r"\+?[\d().\-]{7,}", word) else None
        out.append(digits or word)
    return out


def _search(account: Account, obj: str, term: str | None) -> list[str] | None:
    """Ids whose words include every word of ``term`` (None: no search, everything)."""
    if term is None or not term.strip():
        return None
    index = _word_index(account, obj)
    ids: set[str] | None = None
    for word in _term_words(term):
        hits = index.get(word, set())
        ids = set(hits) if ids is None else ids & hits
    return _table(account, obj).ordered(ids or ())


def _new_record(account: Account, fields: dict[str, Any], now: float) -> Record:
    stamp = iso(now)
    return {"id": encode_id(account.next_seq()), "fields": fields, "createdAt": stamp, "updatedAt": stamp}


# --------------------------------------------------------------------------- views (what a selection reads)


def _address(fields: dict[str, Any] | None) -> dict[str, Any] | None:
    if fields is None:
        return None
    return {k: fields.get(k) or "" for k in _ADDRESS}


def _client_name(fields: dict[str, Any]) -> str:
    if fields.get("isCompany") and fields.get("companyName"):
        return str(fields["companyName"])
    name = " ".join(p for p in (fields.get("firstName"), fields.get("lastName")) if p)
    return name or str(fields.get("companyName") or "")


class View:
    """Lazily resolves the fields of one object for a selection."""

    def __init__(self, account: Account, type_name: str, record: Record | dict[str, Any]) -> None:
        self.account = account
        self.type = type_name
        self.record = record

    def get(self, name: str, args: dict[str, Any]) -> Any:
        resolver = getattr(self, f"_{self.type}_{name}", None)
        if resolver is not None:
            return resolver(args)
        fields = self.record.get("fields", self.record)
        if name in ("id", "createdAt", "updatedAt") and name in self.record:
            return self.record[name]
        return fields.get(name)

    # Account
    def _Account_name(self, args: dict[str, Any]) -> Any:
        return self.record.get("name")

    # Client
    def _Client_name(self, args: dict[str, Any]) -> Any:
        return _client_name(self.record["fields"])

    def _Client_firstName(self, args: dict[str, Any]) -> Any:
        return self.record["fields"].get("firstName") or ""

    def _Client_lastName(self, args: dict[str, Any]) -> Any:
        return self.record["fields"].get("lastName") or ""

    def _Client_isCompany(self, args: dict[str, Any]) -> Any:
        return bool(self.record["fields"].get("isCompany"))

    def _Client_isArchived(self, args: dict[str, Any]) -> Any:
        return bool(self.record["fields"].get("isArchived"))

    def _Client_emails(self, args: dict[str, Any]) -> Any:
        return [View(self.account, "Email", e) for e in self.record["fields"].get("emails") or []]

    def _Client_phones(self, args: dict[str, Any]) -> Any:
        return [View(self.account, "ClientPhoneNumber", p) for p in self.record["fields"].get("phones") or []]

    def _Client_billingAddress(self, args: dict[str, Any]) -> Any:
        addr = self.record["fields"].get("billingAddress")
        return View(self.account, "ClientAddress", _address(addr)) if addr else None

    def _client_properties(self) -> list[Record]:
        table = _table(self.account, "properties")
        return [table.records[i] for i in table.lookup("clientId", self.record["id"])]

    def _Client_properties(self, args: dict[str, Any]) -> Any:
        return [View(self.account, "Property", p) for p in self._client_properties()]

    def _Client_clientProperties(self, args: dict[str, Any]) -> Any:
        return Page(self.account, "Property", [p["id"] for p in self._client_properties()], args)

    def _Client_jobs(self, args: dict[str, Any]) -> Any:
        return Page(self.account, "Job", _table(self.account, "jobs").lookup("clientId", self.record["id"]), args)

    def _Client_jobberWebUri(self, args: dict[str, Any]) -> Any:
        return f"https://secure.getjobber.com/clients/{base64.b64decode(self.record['id']).decode()}"

    # Property
    def _Property_address(self, args: dict[str, Any]) -> Any:
        return View(self.account, "PropertyAddress", _address(self.record["fields"]))

    def _Property_client(self, args: dict[str, Any]) -> Any:
        client = _table(self.account, "clients").get(self.record["fields"].get("clientId") or "")
        return View(self.account, "Client", client) if client else None

    def _Property_jobs(self, args: dict[str, Any]) -> Any:
        return Page(self.account, "Job", _table(self.account, "jobs").lookup("propertyId", self.record["id"]), args)

    def _Property_jobberWebUri(self, args: dict[str, Any]) -> Any:
        return f"https://secure.getjobber.com/properties/{base64.b64decode(self.record['id']).decode()}"

    # Job
    def _Job_client(self, args: dict[str, Any]) -> Any:
        return View(self.account, "Client", _table(self.account, "clients").records[self.record["fields"]["clientId"]])

    def _Job_property(self, args: dict[str, Any]) -> Any:
        return View(
            self.account, "Property", _table(self.account, "properties").records[self.record["fields"]["propertyId"]]
        )

    def _Job_jobberWebUri(self, args: dict[str, Any]) -> Any:
        return f"https://secure.getjobber.com/work_orders/{base64.b64decode(self.record['id']).decode()}"


class Page:
    """A Relay connection over record ids; ``after`` cursors are opaque offsets."""

    def __init__(self, account: Account, node_type: str, ids: list[str], args: dict[str, Any]) -> None:
        table = _table(account, {"Client": "clients", "Job": "jobs", "Property": "properties"}[node_type])
        first = args.get("first")
        if first is not None and first < 0:
            raise FieldError("Argument 'first' on Field must be a non-negative integer")
        size = min(first if first is not None else DEFAULT_PAGE, MAX_PAGE)
        start = _cursor_offset(args.get("after"))
        self.total = len(ids)
        self.slice = ids[start : start + size]
        self.start = start
        self.more = start + size < len(ids)
        self.nodes = [View(account, node_type, table.records[i]) for i in self.slice]


def _cursor(offset: int) -> str:
    return base64.b64encode(f"cursor:{offset}".encode()).decode()


def _cursor_offset(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        text = base64.b64decode(str(cursor).encode(), validate=True).decode()
        if text.startswith("cursor:"):
            return int(text[7:]) + 1
    except (ValueError, UnicodeDecodeError):
        pass
    raise FieldError(f"Invalid cursor {cursor!r}")


class FieldError(Exception):
    """An execution error in one field: ``errors[]`` entry with a path, the field null."""


# =========================================================================== executor


@dataclass
class Execution:
    account: Account
    variables: dict[str, Any]
    now: float
    errors: list[dict[str, Any]] = field(default_factory=list)
    cost: int = 0


def execute(ex: Execution, op: Operation) -> dict[str, Any] | None:
    root = "Mutation" if op.kind == "mutation" else "Query"
    data: dict[str, Any] | None = {}
    for sel in op.selections:  # mutations run serially, in document order
        if sel.name == "__typename":
            data[sel.key] = root
            continue
        ex.cost += 1 if not base_type(OUTPUTS[root][sel.name]).endswith("Connection") else 0
        try:
            value = ROOT_RESOLVERS[sel.name](ex, _args(ex, root, sel))
            projected = _project(ex, OUTPUTS[root][sel.name], value, sel, [sel.key])
        except FieldError as exc:
            ex.errors.append(
                {"message": str(exc), "locations": [{"line": sel.line, "column": sel.column}], "path": [sel.key]}
            )
            projected = None
        if projected is None and OUTPUTS[root][sel.name].endswith("!"):
            data = None  # a null non-null root field nulls the whole response data
        elif data is not None:
            data[sel.key] = projected
    return data


def _args(ex: Execution, owner: str, sel: Selection) -> dict[str, Any]:
    declared = ARGS.get((owner, sel.name), {})
    out = {}
    for name, raw in sel.args.items():
        value = resolve_vars(raw, ex.variables)
        try:
            out[name] = SCHEMA.coerce(value, declared[name], [])
        except InputProblem as exc:
            raise FieldError(f"Argument '{name}' on Field '{sel.name}' has an invalid value ({exc.problem})") from None
    return out


def _project(ex: Execution, type_text: str, value: Any, sel: Selection, path: list[Any]) -> Any:
    if value is None:
        return None
    base = base_type(type_text)
    if isinstance(value, Page):
        out: dict[str, Any] = {}
        for child in sel.children or []:
            if child.name == "nodes":
                out[child.key] = [
                    _project_object(ex, n, child.children or [], path + [child.key, i])
                    for i, n in enumerate(value.nodes)
                ]
            elif child.name == "edges":
                out[child.key] = [
                    _project_edge(ex, value, i, n, child, path + [child.key, i]) for i, n in enumerate(value.nodes)
                ]
            elif child.name == "pageInfo":
                info = {
                    "endCursor": _cursor(value.start + len(value.slice) - 1) if value.slice else None,
                    "startCursor": _cursor(value.start) if value.slice else None,
                    "hasNextPage": value.more,
                    "hasPreviousPage": value.start > 0,
                }
                ex.cost += 1
                out[child.key] = _project_object(
                    ex, View(ex.account, "PageInfo", info), child.children or [], path + [child.key]
                )
            elif child.name == "totalCount":
                ex.cost += 1
                out[child.key] = value.total
            elif child.name == "__typename":
                out[child.key] = base
        return out
    if is_list(type_text):
        return [_project(ex, type_text.rstrip("!")[1:-1], v, sel, path + [i]) for i, v in enumerate(value)]
    if isinstance(value, View):
        return _project_object(ex, value, sel.children or [], path)
    return value


def _project_edge(ex: Execution, page: Page, i: int, node: View, sel: Selection, path: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in sel.children or []:
        if child.name == "node":
            out[child.key] = _project_object(ex, node, child.children or [], path + [child.key])
        elif child.name == "cursor":
            ex.cost += 1
            out[child.key] = _cursor(page.start + i)
    return out


def _project_object(ex: Execution, view: View, selections: list[Selection], path: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sel in selections:
        if sel.name == "__typename":
            out[sel.key] = view.type
            continue
        field_type = OUTPUTS[view.type][sel.name]
        value = view.get(sel.name, _args(ex, view.type, sel) if sel.args else {})
        if not base_type(field_type).endswith("Connection"):
            ex.cost += 1
        out[sel.key] = _project(ex, field_type, value, sel, path + [sel.key])
    return out


# --------------------------------------------------------------------------- root resolvers


def _range_ok(stamp: str, spec: dict[str, Any] | None) -> bool:
    if not spec:
        return True
    moment = parse_datetime(stamp)
    if moment is None:
        return False
    if spec.get("eq") and moment != parse_datetime(spec["eq"]):
        return False
    if spec.get("after") and moment <= parse_datetime(spec["after"]):
        return False
    return not (spec.get("before") and moment >= parse_datetime(spec["before"]))


def _recently_updated(table: Table, ids: Iterable[str]) -> list[str]:
    """Jobber lists "recently updated" records first; ties keep creation order."""
    ordered = table.ordered(ids)
    return sorted(ordered, key=lambda i: table.records[i]["updatedAt"], reverse=True)


def _q_account(ex: Execution, args: dict[str, Any]) -> Any:
    name = ex.account.setting("account_name") or ex.account.name
    return View(ex.account, "Account", {"id": ex.account.meta["jb_account_id"], "name": name})


def _by_id(obj: str, type_name: str) -> Callable[[Execution, dict[str, Any]], Any]:
    def resolve(ex: Execution, args: dict[str, Any]) -> Any:
        record = _table(ex.account, obj).get(decode_id(args.get("id")) or "")
        return View(ex.account, type_name, record) if record else None

    return resolve


def _q_clients(ex: Execution, args: dict[str, Any]) -> Any:
    table = _table(ex.account, "clients")
    ids = _search(ex.account, "clients", args.get("searchTerm"))
    pool = list(table.records) if ids is None else ids
    spec = args.get("filter") or {}
    keep = []
    for rid in pool:
        record = table.records[rid]
        f = record["fields"]
        if spec.get("isArchived") is not None and bool(f.get("isArchived")) != spec["isArchived"]:
            continue
        if spec.get("isCompany") is not None and bool(f.get("isCompany")) != spec["isCompany"]:
            continue
        if not _range_ok(record["createdAt"], spec.get("createdAt")) or not _range_ok(
            record["updatedAt"], spec.get("updatedAt")
        ):
            continue
        keep.append(rid)
    return Page(ex.account, "Client", _recently_updated(table, keep), args)


def _q_jobs(ex: Execution, args: dict[str, Any]) -> Any:
    table = _table(ex.account, "jobs")
    ids = _search(ex.account, "jobs", args.get("searchTerm"))
    pool = list(table.records) if ids is None else ids
    spec = args.get("filter") or {}
    keep = [
        rid
        for rid in pool
        if _range_ok(table.records[rid]["createdAt"], spec.get("createdAt"))
        and (not spec.get("status") or table.records[rid]["fields"].get("jobStatus") == spec["status"])
    ]
    return Page(ex.account, "Job", _recently_updated(table, keep), args)


def _q_properties(ex: Execution, args: dict[str, Any]) -> Any:
    table = _table(ex.account, "properties")
    client = decode_id((args.get("filter") or {}).get("clientId"))
    ids = table.lookup("clientId", client) if client else list(table.records)
    return Page(ex.account, "Property", ids, args)


# --------------------------------------------------------------------------- mutations

_LABELS = {
    "firstName": "First name",
    "lastName": "Last name",
    "companyName": "Company name",
    "title": "Title",
    "instructions": "Instructions",
    "address": "Email address",
    "number": "Phone number",
    "street1": "Street 1",
    "street2": "Street 2",
    "city": "City",
    "province": "Province",
    "postalCode": "Postal code",
    "country": "Country",
}


def _user_error(message: str, path: list[str]) -> dict[str, Any]:
    return {"message": message, "path": path}


def _poisoned(values: dict[str, Any], path: list[str]) -> list[dict[str, Any]]:
    return [_user_error(f"{_LABELS.get(name, name)} is invalid", path + [name]) for name in poisoned_fields(values)]


def _address_problems(address: dict[str, Any] | None, path: list[str]) -> list[dict[str, Any]]:
    if not address:
        return []
    problems = _poisoned(address, path)
    if not any(str(address.get(k) or "").strip() for k in _ADDRESS):
        problems.append(_user_error("Address can't be blank", path))
    return problems


def _emails(
    raw: list[dict[str, Any]] | None, path: list[str], ex: Execution
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out, problems = [], []
    for i, item in enumerate(raw or []):
        address = str(item.get("address") or "").strip()
        problems += _poisoned(item, path + [str(i)])
        if not address or not EMAIL_RE.match(address):
            problems.append(_user_error("Email address is invalid", path + [str(i), "address"]))
        out.append(
            {
                "id": encode_id(ex.account.next_seq()),
                "address": address,
                "description": item.get("description") or "MAIN",
                "primary": bool(item.get("primary")),
            }
        )
    return out, problems


def _phones(
    raw: list[dict[str, Any]] | None, path: list[str], ex: Execution
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out, problems = [], []
    for i, item in enumerate(raw or []):
        number = str(item.get("number") or "").strip()
        problems += _poisoned(item, path + [str(i)])
        if not phone_digits(number):
            problems.append(_user_error("Phone number can't be blank", path + [str(i), "number"]))
        out.append(
            {
                "id": encode_id(ex.account.next_seq()),
                "number": number,
                "description": item.get("description") or "MAIN",
                "primary": bool(item.get("primary")),
                "smsAllowed": bool(item.get("smsAllowed")),
            }
        )
    return out, problems


def _payload(type_name: str, **values: Any) -> View:
    return View(None, type_name, {"fields": values})  # type: ignore[arg-type]


def _new_property(ex: Execution, client_id: str, address: dict[str, Any]) -> Record:
    fields = {"clientId": client_id, **{k: address.get(k) for k in _ADDRESS}}
    return _put(ex.account, "properties", _new_record(ex.account, fields, ex.now))


def _m_client_create(ex: Execution, args: dict[str, Any]) -> Any:
    data = args["input"]
    problems = _poisoned({k: data.get(k) for k in ("firstName", "lastName", "companyName")}, ["input"])
    emails, p = _emails(data.get("emails"), ["input", "emails"], ex)
    problems += p
    phones, p = _phones(data.get("phones"), ["input", "phones"], ex)
    problems += p
    for i, prop in enumerate(data.get("properties") or []):
        problems += _address_problems(prop.get("address"), ["input", "properties", str(i), "address"])
    problems += _address_problems(data.get("billingAddress"), ["input", "billingAddress"])
    if not any(str(data.get(k) or "").strip() for k in ("firstName", "lastName", "companyName")):
        problems.append(_user_error("Client needs a first name, last name or company name", ["input"]))
    if problems:
        return _payload(
            "ClientCreatePayload", client=None, userErrors=[_payload("MutationErrors", **e) for e in problems]
        )
    fields = {k: data.get(k) for k in ("title", "firstName", "lastName", "companyName", "isCompany")}
    fields.update(emails=emails, phones=phones, billingAddress=data.get("billingAddress"), isArchived=False)
    client = _put(ex.account, "clients", _new_record(ex.account, fields, ex.now))
    for prop in data.get("properties") or []:
        _new_property(ex, client["id"], prop["address"])
    return _payload("ClientCreatePayload", client=View(ex.account, "Client", client), userErrors=[])


def _m_client_edit(ex: Execution, args: dict[str, Any]) -> Any:
    table = _table(ex.account, "clients")
    record = table.get(decode_id(args["clientId"]) or "")
    if record is None:
        return _payload(
            "ClientEditPayload",
            client=None,
            userErrors=[_payload("MutationErrors", message="Client not found", path=["clientId"])],
        )
    data = args["input"]
    problems = _poisoned({k: data.get(k) for k in ("firstName", "lastName", "companyName")}, ["input"])
    new_emails, p = _emails(data.get("emailsToAdd"), ["input", "emailsToAdd"], ex)
    problems += p
    new_phones, p = _phones(data.get("phonesToAdd"), ["input", "phonesToAdd"], ex)
    problems += p
    problems += _address_problems(data.get("billingAddress"), ["input", "billingAddress"])
    if problems:
        return _payload(
            "ClientEditPayload", client=None, userErrors=[_payload("MutationErrors", **e) for e in problems]
        )
    fields = dict(record["fields"])
    for key in ("title", "firstName", "lastName", "companyName", "isCompany", "billingAddress"):
        if key in data and data[key] is not None:
            fields[key] = data[key]
    drop_emails, drop_phones = set(data.get("emailsToDelete") or []), set(data.get("phonesToDelete") or [])
    fields["emails"] = [e for e in fields.get("emails") or [] if e["id"] not in drop_emails] + new_emails
    fields["phones"] = [p for p in fields.get("phones") or [] if p["id"] not in drop_phones] + new_phones
    updated = _put(ex.account, "clients", {**record, "fields": fields, "updatedAt": iso(ex.now)})
    return _payload("ClientEditPayload", client=View(ex.account, "Client", updated), userErrors=[])


def _m_property_create(ex: Execution, args: dict[str, Any]) -> Any:
    client = _table(ex.account, "clients").get(decode_id(args["clientId"]) or "")
    if client is None:
        return _payload(
            "PropertyCreatePayload",
            client=None,
            properties=[],
            userErrors=[_payload("MutationErrors", message="Client not found", path=["clientId"])],
        )
    items = args["input"].get("properties") or []
    problems = []
    for i, prop in enumerate(items):
        problems += _address_problems(prop.get("address"), ["input", "properties", str(i), "address"])
    if problems or not items:
        problems = problems or [_user_error("Properties can't be blank", ["input", "properties"])]
        return _payload(
            "PropertyCreatePayload",
            client=None,
            properties=[],
            userErrors=[_payload("MutationErrors", **e) for e in problems],
        )
    created = [_new_property(ex, client["id"], prop["address"]) for prop in items]
    return _payload(
        "PropertyCreatePayload",
        client=View(ex.account, "Client", client),
        properties=[View(ex.account, "Property", p) for p in created],
        userErrors=[],
    )


def _job_text_problems(data: dict[str, Any]) -> list[dict[str, Any]]:
    return _poisoned({k: data.get(k) for k in ("title", "instructions")}, ["input"])


def _m_job_create(ex: Execution, args: dict[str, Any]) -> Any:
    data = args["input"]
    prop = _table(ex.account, "properties").get(decode_id(data["propertyId"]) or "")
    problems = _job_text_problems(data)
    if prop is None:
        problems.append(_user_error("Property not found", ["propertyId"]))
    if problems:
        return _payload("JobCreatePayload", job=None, userErrors=[_payload("MutationErrors", **e) for e in problems])
    account = ex.account
    number = int(account.meta.get("jb_job_number", 0)) + 1
    if data.get("jobNumber") is not None:
        number = data["jobNumber"]
        if _table(account, "jobs").lookup("jobNumber", str(number)):
            return _payload(
                "JobCreatePayload",
                job=None,
                userErrors=[
                    _payload("MutationErrors", message="Job number has already been taken", path=["input", "jobNumber"])
                ],
            )
    account.meta["jb_job_number"] = max(number, int(account.meta.get("jb_job_number", 0)))
    timeframe = data.get("timeframe") or {}
    start = timeframe.get("startAt")
    fields = {
        "jobNumber": number,
        "title": data.get("title"),
        "instructions": data.get("instructions"),
        "propertyId": prop["id"],
        "clientId": prop["fields"]["clientId"],
        "jobStatus": _status(start, bool(data["scheduling"]["createVisits"]), ex.now),
        "startAt": f"{start}T00:00:00Z" if start else None,
        "completedAt": None,
        "invoicing": data["invoicing"],
        "scheduling": data["scheduling"],
    }
    job = _put(account, "jobs", _new_record(account, fields, ex.now))
    return _payload("JobCreatePayload", job=View(account, "Job", job), userErrors=[])


def _status(start: str | None, visits: bool, now: float) -> str:
    """The status a new job shows: no visits -> action_required; else by its visit date."""
    if not visits:
        return "action_required"
    today = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    if not start or start == today:
        return "today"
    return "late" if start < today else "upcoming"


def _job_for(ex: Execution, args: dict[str, Any], payload: str) -> tuple[Record | None, Any]:
    record = _table(ex.account, "jobs").get(decode_id(args["jobId"]) or "")
    if record is None:
        return None, _payload(
            payload, job=None, userErrors=[_payload("MutationErrors", message="Job not found", path=["jobId"])]
        )
    return record, None


def _m_job_edit(ex: Execution, args: dict[str, Any]) -> Any:
    record, missing = _job_for(ex, args, "JobEditPayload")
    if record is None:
        return missing
    data = args["input"]
    problems = _job_text_problems(data)
    if problems:
        return _payload("JobEditPayload", job=None, userErrors=[_payload("MutationErrors", **e) for e in problems])
    fields = dict(record["fields"])
    for key in ("title", "instructions", "jobNumber", "invoicing", "scheduling"):
        if data.get(key) is not None:
            fields[key] = data[key]
    updated = _put(ex.account, "jobs", {**record, "fields": fields, "updatedAt": iso(ex.now)})
    return _payload("JobEditPayload", job=View(ex.account, "Job", updated), userErrors=[])


def _m_job_close(ex: Execution, args: dict[str, Any]) -> Any:
    record, missing = _job_for(ex, args, "JobClosePayload")
    if record is None:
        return missing
    if record["fields"].get("jobStatus") == "archived":
        return _payload(
            "JobClosePayload",
            job=None,
            userErrors=[_payload("MutationErrors", message="Job is already closed", path=["jobId"])],
        )
    fields = {**record["fields"], "jobStatus": "archived", "completedAt": iso(ex.now)}
    updated = _put(ex.account, "jobs", {**record, "fields": fields, "updatedAt": iso(ex.now)})
    return _payload("JobClosePayload", job=View(ex.account, "Job", updated), userErrors=[])


ROOT_RESOLVERS: dict[str, Callable[[Execution, dict[str, Any]], Any]] = {
    "account": _q_account,
    "client": _by_id("clients", "Client"),
    "clients": _q_clients,
    "job": _by_id("jobs", "Job"),
    "jobs": _q_jobs,
    "property": _by_id("properties", "Property"),
    "properties": _q_properties,
    "clientCreate": _m_client_create,
    "clientEdit": _m_client_edit,
    "propertyCreate": _m_property_create,
    "jobCreate": _m_job_create,
    "jobEdit": _m_job_edit,
    "jobClose": _m_job_close,
}


# =========================================================================== adapter


def _auth_error(description: str) -> VendorError:
    return VendorError(
        401,
        {"error": "invalid_request", "error_description": description},
        {"WWW-Authenticate": f'Bearer realm="Jobber", error="invalid_token", error_description="{description}"'},
    )


def _too_many() -> dict[str, Any]:
    return {"error": "Too Many Requests", "message": "Retry later"}


def _jwt(account: Account, ttl: float) -> tuple[str, float]:
    """A JWT-shaped access token (Jobber's are JWTs whose ``exp`` claim is the expiry)."""
    expires_at = time.time() + ttl

    claims = {
        "iss": "sandbox-jobber",
        "sub": account.name,
        "exp": int(expires_at),
        "iat": int(time.time()),
        "jti": secrets.token_hex(8),
    }
    header = jwt_segment({"alg": "HS256", "typ": "JWT"})
    return f"{header}.{jwt_segment(claims)}.{secrets.token_urlsafe(24)}", expires_at


class JobberAdapter(CrmAdapter):
    """Accounts are Jobber accounts with one app installed (OAuth, rotating refresh tokens)."""

    crm = CRM
    settings = frozenset(
        {
            "enabled",
            "token_ttl_seconds",
            "requests_per_5min",
            "query_cost_max",
            "restore_rate",
            "rotate_refresh_tokens",
            "account_name",
            "oldest_api_version",
        }
    )
    numeric_settings = frozenset({"token_ttl_seconds", "requests_per_5min", "query_cost_max", "restore_rate"})

    def identity(self, credentials: dict[str, Any]) -> tuple[list[str], list[str]]:
        oauth = [credentials.get(k) for k in ("clientId", "clientSecret", "refreshToken")]
        bare = [credentials.get(k) for k in ("apiKey", "accessToken") if credentials.get(k)]
        if not all(isinstance(v, str) and v for v in oauth) and not bare:
            raise ValueError(
                "Jobber credentials need clientId, clientSecret and refreshToken (OAuth), "
                "or a bare access token as apiKey/accessToken"
            )
        if not all(isinstance(v, str) for v in bare):
            raise ValueError("apiKey/accessToken must be strings")
        keys = [f"refresh:{oauth[2]}"] if all(oauth) else []
        keys += [f"token:{t}" for t in bare]
        # Bare tokens are issued in prepare(): they expire like real Jobber access tokens.
        return keys, []

    def prepare(self, account: Account) -> None:
        account.table("clients")
        account.table("properties", {"clientId": "ci"})
        account.table("jobs", {"clientId": "ci", "propertyId": "ci", "jobNumber": "ci"})
        registered = account.credentials.get("refreshToken")
        # A re-registration with the same refresh token keeps the rotated chain (its holder has moved on).
        if registered != account.meta.get("jb_registered_refresh"):
            account.meta["jb_registered_refresh"] = registered
            account.meta["jb_refresh_token"] = registered
        account.next_seq()  # still drawn, so record ids stay where they always were
        # Unique per account (two sandbox accounts of Jobber are two Jobber accounts): derived from the name.
        account.meta.setdefault("jb_account_id", encode_id(account.fixed_number("account_id")))
        ttl = float(account.setting("token_ttl_seconds", DEFAULT_TOKEN_TTL))
        # prepare() cannot reach the token store: bare tokens are issued on first use (_issue_bare_tokens).
        account.meta["jb_bare_pending"] = [
            account.credentials[k] for k in ("apiKey", "accessToken") if account.credentials.get(k)
        ]
        account.meta["jb_bare_ttl"] = ttl

    def unauthorized(self, reason: str) -> VendorError:
        return _auth_error("The access token expired" if reason == "expired" else "The access token is invalid")

    def fault_error(self, fault: Fault) -> VendorError:
        return fault_error(fault, _too_many())

    def admit(self, ctx: Ctx, kind: str) -> float:
        account = ctx.account
        if account.setting("enabled", True) is False:
            return 0.0
        window = account.runtime.get("jb_ddos")
        if window is None:
            window = account.runtime["jb_ddos"] = SlidingWindow(
                int(account.setting("requests_per_5min", DEFAULT_REQUESTS_PER_5MIN)), 300.0
            )
        if not window.try_acquire(time.monotonic()):
            raise VendorError(429, _too_many())
        return 0.0

    def seed(self, account: Account, obj: str, body: dict[str, Any]) -> Record:
        fields = {k: v for k, v in body.items() if k not in ("id", "createdAt", "updatedAt")}
        now = time.time()
        if obj == "clients":
            fields.setdefault("emails", [])
            fields.setdefault("phones", [])
            for i, e in enumerate(fields["emails"]):
                fields["emails"][i] = {
                    "id": encode_id(account.next_seq()),
                    "description": "MAIN",
                    "primary": i == 0,
                    **(e if isinstance(e, dict) else {"address": e}),
                }
            for i, p in enumerate(fields["phones"]):
                fields["phones"][i] = {
                    "id": encode_id(account.next_seq()),
                    "description": "MAIN",
                    "primary": i == 0,
                    "smsAllowed": False,
                    **(p if isinstance(p, dict) else {"number": p}),
                }
        elif obj == "properties":
            if _table(account, "clients").get(str(fields.get("clientId") or "")) is None:
                raise AdminError(400, "a property needs the clientId of an existing client")
        elif obj == "jobs":
            prop = _table(account, "properties").get(str(fields.get("propertyId") or ""))
            if prop is None:
                raise AdminError(400, "a job needs the propertyId of an existing property")
            number = int(account.meta.get("jb_job_number", 0)) + 1
            account.meta["jb_job_number"] = number
            fields = {"jobNumber": number, "jobStatus": "active", **fields, "clientId": prop["fields"]["clientId"]}
        record = _new_record(account, fields, now)
        if body.get("id") is not None:
            if decode_id(body["id"]) is None or _table(account, obj).get(body["id"]) is not None:
                raise AdminError(409, f"{obj} id {body['id']!r} is not a new EncodedId")
            record["id"] = body["id"]
        return _put(account, obj, record)

    def export(self, account: Account, obj: str, record: Record) -> dict[str, Any]:
        out = {
            "id": record["id"],
            **record["fields"],
            "createdAt": record["createdAt"],
            "updatedAt": record["updatedAt"],
        }
        if obj == "clients":
            out["name"] = _client_name(record["fields"])
            table = _table(account, "properties")
            out["propertyIds"] = table.lookup("clientId", record["id"])
        return out

    def objects(self, account: Account) -> list[str]:
        return list(OBJECTS)


ADAPTER = JobberAdapter()
router = APIRouter(prefix="/jobber/api", tags=["jobber"])
JobberAdapter.router = router


def _issue_bare_tokens(state: Any) -> None:
    """Bare tokens registered as apiKey/accessToken become issued, expiring tokens on first use
    (``meta`` is persisted, so a restart before that first use keeps them pending)."""
    with state.lock:
        for account in state.accounts_of(CRM):
            for value in account.meta.pop("jb_bare_pending", None) or []:
                state.issue_token(account, value, float(account.meta.get("jb_bare_ttl", DEFAULT_TOKEN_TTL)))


# --------------------------------------------------------------------------- OAuth


@router.post("/oauth/token")
async def oauth_token(request: Request) -> Any:
    """Refresh-token grant with rotation: the old refresh token dies when the new one is issued."""
    await apply_fault(request, ADAPTER, None, exempt=True)
    form = await read_form(request)
    if form.get("grant_type") != "refresh_token":
        raise oauth_error(400, "unsupported_grant_type", UNSUPPORTED_GRANT)
    state = sandbox_state(request)
    refresh = form.get("refresh_token", "")
    with state.lock:
        account = next(
            (a for a in state.accounts_of(CRM) if refresh and a.meta.get("jb_refresh_token") == refresh), None
        )
        client = next(
            (a for a in state.accounts_of(CRM) if a.credentials.get("clientId") == form.get("client_id")), None
        )
        if (
            client is None
            or form.get("client_secret") != client.credentials.get("clientSecret")
            or (account is not None and account.credentials.get("clientId") != form.get("client_id"))
        ):
            raise oauth_error(401, "invalid_client", INVALID_CLIENT)
        if account is None:
            raise oauth_error(400, "invalid_grant", "The provided refresh token is not valid.")
        ttl = float(account.setting("token_ttl_seconds", DEFAULT_TOKEN_TTL))
        access, expires_at = _jwt(account, ttl)
        state.issue_token(account, access, ttl)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_at": datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        if account.setting("rotate_refresh_tokens", True) is False:
            body["refresh_token"] = refresh
            body["warning"] = (
                "Refresh token rotation is off. This setting is required for apps to be published in "
                "the Jobber App Marketplace."
            )
        else:
            new_refresh = secrets.token_hex(16)
            account.meta["jb_refresh_token"] = new_refresh
            body["refresh_token"] = new_refresh
        account.stats.by_endpoint[endpoint_key(request)] += 1
    return json_response(body)


# --------------------------------------------------------------------------- GraphQL


def _bucket(account: Account) -> tuple[dict[str, float], float, float]:
    maximum = float(account.setting("query_cost_max", DEFAULT_COST_MAX))
    rate = float(account.setting("restore_rate", DEFAULT_RESTORE_RATE))
    bucket = account.runtime.get("jb_bucket")
    now = time.monotonic()
    if bucket is None:
        bucket = account.runtime["jb_bucket"] = {"available": maximum, "at": now}
    bucket["available"] = min(maximum, bucket["available"] + rate * (now - bucket["at"]))
    bucket["at"] = now
    return bucket, maximum, rate


def _cost_extension(requested: int, actual: int, account: Account) -> dict[str, Any]:
    bucket, maximum, rate = _bucket(account)
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": int(maximum),
            "currentlyAvailable": int(bucket["available"]),
            "restoreRate": int(rate),
        },
    }


def _versioning(account: Any, requested: str) -> dict[str, str]:
    """``extensions.versioning`` as Jobber reports it (api_versioning page): the version answered as; a
    version older than the account option ``oldest_api_version`` is upgraded to it, with a warning."""
    oldest = str(account.setting("oldest_api_version") or "")
    if oldest and requested < oldest:
        return {
            "version": oldest,
            "warning": f"API version {requested} has been removed; this request was upgraded to {oldest}. "
            "For more information: https://developer.getjobber.com/docs/using_jobbers_api/api_versioning",
        }
    return {"version": requested}


def _graphql_bad_request(message: str) -> VendorError:
    return VendorError(400, {"errors": [{"message": message}]})


@router.post("/graphql")
async def graphql(request: Request) -> Response:
    """Every operation: auth + DDoS guard (gate), parse, validate, cost check, execute."""
    state = sandbox_state(request)
    token = bearer(request)
    _issue_bare_tokens(state)
    ctx = await open_request(request, ADAPTER, token)
    version = request.headers.get("x-jobber-graphql-version", "").strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version):
        raise _graphql_bad_request(
            "The X-JOBBER-GRAPHQL-VERSION header is required (YYYY-MM-DD): "
            "https://developer.getjobber.com/docs/using_jobbers_api/api_versioning"
        )
    if "application/json" not in request.headers.get("content-type", ""):
        raise _graphql_bad_request("Requests must use the application/json content type")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _graphql_bad_request(f"Invalid JSON body: {exc}") from None
    versioning = _versioning(ctx.account, version)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return ctx.reply(
            {"errors": [{"message": "No query string was present"}], "extensions": {"versioning": versioning}}
        )
    account = ctx.account
    with state.lock:
        try:
            op = parse(body["query"])
            SCHEMA.validate(op)
            variables = SCHEMA.coerce_variables(op, body.get("variables"))
        except GraphQLError as exc:
            return ctx.reply(
                {
                    "errors": [exc.to_json()],
                    "extensions": {"cost": _cost_extension(0, 0, account), "versioning": versioning},
                }
            )
        requested = requested_cost(op.selections, "Mutation" if op.kind == "mutation" else "Query", variables)
        bucket, _, _ = _bucket(account)
        if account.setting("enabled", True) is not False and requested > bucket["available"]:
            account.stats.rate_limited += 1
            return ctx.reply(
                {
                    "errors": [
                        {"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": DOCS_RATE_LIMITS}}
                    ],
                    "extensions": {"cost": _cost_extension(requested, 0, account), "versioning": versioning},
                }
            )
        ex = Execution(account, variables, time.time())
        data = execute(ex, op)
        if account.setting("enabled", True) is not False:
            bucket["available"] = max(0.0, bucket["available"] - ex.cost)
        out: dict[str, Any] = {"data": data}
        if ex.errors:
            out["errors"] = ex.errors
        out["extensions"] = {"cost": _cost_extension(requested, ex.cost, account), "versioning": versioning}
    return ctx.reply(out)
