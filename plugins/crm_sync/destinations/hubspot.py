"""Check-ins into HubSpot: contacts for customers, a note associated to the contact for each visit.

Calls per 100 check-ins (HubSpot's batch size): one batch read by email, at most
one search for phones (the search endpoint has its own, lower limit), one batch
upsert for new customers, one batch create for the notes. Repeat customers come
from the customer map and cost nothing. An engine batch holds 100 rows per lane
(:attr:`~crm_hooks.hubspot.HubSpotHook.lanes`): each step's batch calls go out
that many at a time (:func:`~crm_sync.destinations.base.in_chunks`), so one
call's 429 wait does not stop the others.

Idempotency: contacts are upserted by ``email`` (HubSpot's unique identifier) or,
without an email, by the unique custom property ``rankitpro_customer_key``; each
note carries the unique property ``rankitpro_checkin_key`` (the visit key), by
which an uncertain earlier attempt is looked up before anything is created.
Both properties are created at run start if the portal lacks them.

Fallback (chosen at run start from HubSpot's answer): whether HubSpot accepts ``hasUniqueValue`` on a
notes property is unconfirmed. When the create with it is refused (or the portal's marker property has
no unique value), the marker property is created without it, the run warns, and notes are found by
the marker with a search (``POST /crm/v3/objects/notes/search``, ``IN`` the visit keys) both for
uncertain rows and *before every create*: a note is created only for keys the search does not find.
HubSpot's search index lags writes by seconds, so a note written moments before a crash may be
missed by an immediate retry (the ledger keeps such a row ``in_flight`` and the next run looks again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from crm_hooks.errors import BadRecordError
from crm_hooks.hubspot import BatchOutcome, HubSpotHook
from crm_sync.contacts import to_e164
from crm_sync.destinations.base import (
    CrmCustomerRecord,
    CustomerRef,
    Destination,
    Progress,
    chunked,
    distinct_customers,
    in_chunks,
    in_lanes,
    isolate_bad_records,
    no_progress,
)
from crm_sync.mapping import hubspot as mapping
from crm_sync.match_key import MatchKey, MatchKind
from crm_sync.models import Customer, PreparedCheckIn, RecordResult
from crm_sync.quarantine import named_fields

CUSTOMER_KEY_PROPERTY = "rankitpro_customer_key"
VISIT_KEY_PROPERTY = mapping.VISIT_KEY_PROPERTY
NOTE_TO_CONTACT = 202  # HUBSPOT_DEFINED association type note -> contact
SEARCH_VALUES_PER_CALL = 100
#: What a lookup reads of a contact: the household rule and the adding of an email need email and name.
READ_PROPERTIES = ["email", "firstname", "lastname"]
NAME_GROUPS_PER_SEARCH = 5
#: The run warning when the notes marker property cannot be unique (the search-before-create fallback).
NON_UNIQUE_MARKER_WARNING = (
    "hubspot: the note property rankitpro_checkin_key is not unique (HubSpot refused hasUniqueValue on "
    "notes): each note is looked up by a search before it is created (exactly once kept; about one extra "
    "search call per batch)"
)
#: The properties the sync creates: HubSpot refusing a write for one of them missing means it was deleted.
_OWN_PROPERTIES = (CUSTOMER_KEY_PROPERTY, VISIT_KEY_PROPERTY)
log = logging.getLogger(__name__)
T = TypeVar("T")


class HubSpotDestination(Destination):
    crm_type = "hubspot"
    marker_field = VISIT_KEY_PROPERTY
    batch_calls_in_lanes = True
    #: Its searches (5 / s of their own, the bound of a sync) go on while a batch writes or waits out a 429.
    lookahead_batches = 8
    overlap_visit_writes = 2  # a note is created alone: nothing a customer look-up reads
    hook: HubSpotHook

    def check_facts(self) -> dict[str, Any]:
        """Create the sync's marker properties if missing (``GET /crm/v3/properties/contacts`` and ``/notes``,
        ``POST`` for a missing one); the facts: whether the notes marker is unique, and which properties
        named by ``customFieldMapping`` exist on notes."""
        contact_props = {p["name"] for p in self.hook.get_properties("contacts")}
        if CUSTOMER_KEY_PROPERTY not in contact_props:
            self.hook.create_property("contacts", CUSTOMER_KEY_PROPERTY, "Rank It Pro customer key", unique=True)
        note_defs = {p["name"]: p for p in self.hook.get_properties("notes")}
        marker = note_defs.get(VISIT_KEY_PROPERTY)
        if marker is None:
            marker = self._create_visit_marker()
        wanted = set(self.settings.custom_field_mapping.values())
        return {
            # A property answered without the flag is taken as unique (HubSpot's Property always carries it).
            "unique_visit_marker": marker.get("hasUniqueValue") is not False,
            "note_properties": sorted(p for p in note_defs if p in wanted),
        }

    def use_facts(self, facts: Mapping[str, Any]) -> None:
        """Learn the notes marker's kind and the note properties for custom fields."""
        self.unique_visit_marker = bool(facts.get("unique_visit_marker", True))
        if not self.unique_visit_marker:
            self.warnings.append(NON_UNIQUE_MARKER_WARNING)
        self.note_properties = set(facts.get("note_properties") or ()) | {VISIT_KEY_PROPERTY}
        for field, prop in self.settings.custom_field_mapping.items():
            if prop not in self.note_properties:
                self.warnings.append(
                    f"customFieldMapping: HubSpot note property '{prop}' (for {field}) does not "
                    "exist in this portal; the field is not sent"
                )

    def stale_fact(self, error: str | None) -> bool:
        """HubSpot answered that one of the sync's properties does not exist (deleted since it was checked)."""
        text = error or ""
        return any(f'"{p}" does not exist' in text or f"'{p}' does not exist" in text for p in _OWN_PROPERTIES) or (
            "PROPERTY_DOESNT_EXIST" in text and any(p in text for p in _OWN_PROPERTIES)
        )

    def _create_visit_marker(self) -> dict[str, Any]:
        """Create the notes marker property unique; when HubSpot refuses ``hasUniqueValue`` there (a 400),
        create it without (the caller then searches before each create). Returns the property as created."""
        label = "Rank It Pro check-in key"
        try:
            created = self.hook.create_property("notes", VISIT_KEY_PROPERTY, label, unique=True)
        except BadRecordError as exc:
            if exc.status != 400:
                raise
            log.warning("hubspot: unique notes property refused (%s); creating it without hasUniqueValue", exc)
            created = self.hook.create_property("notes", VISIT_KEY_PROPERTY, label, unique=False)
            return created or {"hasUniqueValue": False}
        if not created:  # 409: another run created it meanwhile; read what it made
            created = next((p for p in self.hook.get_properties("notes") if p["name"] == VISIT_KEY_PROPERTY), {})
        return created

    # ------------------------------------------------------------------ reads in lanes
    def _read_by(
        self, object_type: str, id_property: str, values: Sequence[str], properties: list[str]
    ) -> list[dict[str, Any]]:
        """The records whose ``id_property`` is one of ``values``: ``batch/read``, 100 values a call, up to
        :attr:`lanes` calls at a time."""
        return [
            obj
            for objs in in_lanes(
                lambda chunk: list(
                    self.hook.batch_read(object_type, chunk, id_property=id_property, properties=properties)
                ),
                list(chunked(values, self.hook.batch_size)),
                self.lanes,
            )
            for obj in objs
        ]

    def _search_each(
        self,
        object_type: str,
        chunks: Sequence[Sequence[T]],
        groups_of: Callable[[Sequence[T]], list[dict[str, Any]]],
        properties: list[str],
    ) -> list[tuple[Sequence[T], list[dict[str, Any]]]]:
        """One search per chunk (its ``filterGroups`` from ``groups_of``), up to :attr:`lanes` at a time (the
        search limit, shared, sets the pace): each chunk with what its search found."""
        found = in_lanes(
            lambda chunk: list(self.hook.search(object_type, groups_of(chunk), properties=properties)),
            chunks,
            self.lanes,
        )
        return list(zip(chunks, found, strict=True))

    # ------------------------------------------------------------------ customers
    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        found: dict[str, CustomerRef] = {}
        parsed = [(MatchKey.parse(k), k, c) for k, c in wanted]
        emails = sorted({key.value for key, _, _ in parsed if key.kind == MatchKind.EMAIL})
        phones = sorted({key.value for key, _, _ in parsed if key.kind == MatchKind.PHONE})
        names = [(k, c) for key, k, c in parsed if key.kind == MatchKind.NAME]
        for obj in self._read_by("contacts", "email", emails, READ_PROPERTIES):
            email = (obj.get("properties", {}).get("email") or "").strip().lower()
            found.setdefault(str(MatchKey.email(email)), _ref(obj))

        def phones_in(chunk: Sequence[str]) -> list[dict[str, Any]]:
            return [{"filters": [{"propertyName": "phone", "operator": "IN", "values": chunk}]}]

        phone_chunks = list(chunked(phones, SEARCH_VALUES_PER_CALL))
        for chunk, objs in self._search_each("contacts", phone_chunks, phones_in, ["phone", *READ_PROPERTIES]):
            for obj in objs:
                e164 = to_e164(obj.get("properties", {}).get("phone"))
                if e164 in chunk:
                    found.setdefault(str(MatchKey.phone(e164)), _ref(obj))

        def names_of(chunk: Sequence[tuple[str, Customer]]) -> list[dict[str, Any]]:
            return [
                {
                    "filters": [
                        {"propertyName": "firstname", "operator": "EQ", "value": c.first_name or ""},
                        {"propertyName": "lastname", "operator": "EQ", "value": c.last_name or ""},
                    ]
                }
                for _, c in chunk
            ]

        name_chunks = list(chunked(names, NAME_GROUPS_PER_SEARCH))
        for chunk, objs in self._search_each("contacts", name_chunks, names_of, READ_PROPERTIES):
            wanted_keys = {k for k, _ in chunk}
            for obj in objs:
                props = obj.get("properties", {})
                name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p).lower()
                key = str(MatchKey(MatchKind.NAME, name))
                if key in wanted_keys:
                    found.setdefault(key, _ref(obj))
        return found

    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        """Batch upsert: by email when there is one, else by the sync's customer key."""
        return self.batch_writes(distinct_customers(rows), self._upsert_contacts, lambda r: r.customer_key)

    def _upsert_contacts(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        inputs = []
        by_identity: dict[str, str] = {}
        for row in rows:
            props = mapping.contact_properties(row.customer)
            if row.customer.email:
                inputs.append(
                    {
                        "idProperty": "email",
                        "id": row.customer.email,
                        "properties": props,
                        "objectWriteTraceId": row.customer_key,
                    }
                )
                by_identity[str(MatchKey.email(row.customer.email))] = row.customer_key
            else:
                props[CUSTOMER_KEY_PROPERTY] = row.customer_key
                inputs.append(
                    {
                        "idProperty": CUSTOMER_KEY_PROPERTY,
                        "id": row.customer_key,
                        "properties": props,
                        "objectWriteTraceId": row.customer_key,
                    }
                )
                by_identity[f"key:{row.customer_key}"] = row.customer_key
        outcome = self.hook.batch_upsert("contacts", inputs)
        results: dict[str, RecordResult] = {}
        for obj in outcome.results:
            props = obj.get("properties", {})
            email = (props.get("email") or "").strip().lower()
            ckey = by_identity.get(str(MatchKey.email(email))) or by_identity.get(
                f"key:{props.get(CUSTOMER_KEY_PROPERTY)}"
            )
            if ckey:
                results[ckey] = RecordResult(ckey, crm_id=str(obj["id"]), created=bool(obj.get("new")))
        for error in outcome.errors:
            for ckey in _trace_ids(error):
                results[ckey] = RecordResult(ckey, error=_error_text(error))
        return results

    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        def send(part: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
            # Email is the contact's identity in HubSpot: never rewritten by an update.
            inputs = [
                {
                    "id": ref.crm_id,
                    "properties": {k: v for k, v in mapping.contact_properties(row.customer).items() if k != "email"},
                }
                for ref, row in part
            ]
            return _by_crm_id(self.hook.batch_update("contacts", inputs))

        return self.batch_writes(items, send, lambda item: item[0].crm_id)

    def add_emails(self, items: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
        """Contacts read by id (``POST /crm/v3/objects/contacts/batch/read``), then ``batch/update`` of
        ``email`` for those without one. ``rankitpro_customer_key`` is not touched: the contact keeps its key."""

        def send(part: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
            return _by_crm_id(
                self.hook.batch_update(
                    "contacts", [{"id": ref.crm_id, "properties": {"email": email}} for ref, email in part]
                )
            )

        def read_then_update(chunk: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
            held = {
                str(o["id"]): (o.get("properties") or {}).get("email")
                for o in self.hook.batch_read("contacts", [ref.crm_id for ref, _ in chunk], properties=["email"])
            }
            results: dict[str, RecordResult] = {}
            for ref, _ in chunk:
                if ref.crm_id not in held:
                    results[ref.crm_id] = RecordResult(ref.crm_id, error=f"HubSpot contact {ref.crm_id} not found")
                elif held[ref.crm_id]:
                    results[ref.crm_id] = RecordResult(ref.crm_id, crm_id=ref.crm_id)  # has one: left alone
            todo = [(ref, email) for ref, email in chunk if ref.crm_id in held and not held[ref.crm_id]]
            results.update(isolate_bad_records(todo, send, lambda item: item[0].crm_id))
            return results

        chunks = list(chunked(items, self.hook.batch_size))
        return in_chunks(chunks, read_then_update, lambda item: item[0].crm_id, self.lanes)

    # ------------------------------------------------------------------ visits
    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        keys = [r.visit_key for r in rows]
        if not self.unique_visit_marker:  # batch/read by idProperty needs a unique property: search instead
            return {key: ids[0] for key, ids in self.find_visit_records(keys).items()}
        found: dict[str, str] = {}
        for obj in self._read_by("notes", VISIT_KEY_PROPERTY, keys, [VISIT_KEY_PROPERTY]):
            key = obj.get("properties", {}).get(VISIT_KEY_PROPERTY)
            if key:
                found[key] = str(obj["id"])
        return found

    def find_visit_records(self, visit_keys: Sequence[str]) -> dict[str, list[str]]:
        """Every note carrying each marker: ``POST /crm/v3/objects/notes/search`` with
        ``rankitpro_checkin_key IN`` (100 keys per search); the lowest id first."""
        found: dict[str, list[str]] = {}

        def markers_in(chunk: Sequence[str]) -> list[dict[str, Any]]:
            return [{"filters": [{"propertyName": VISIT_KEY_PROPERTY, "operator": "IN", "values": chunk}]}]

        chunks = list(chunked(list(dict.fromkeys(visit_keys)), SEARCH_VALUES_PER_CALL))
        for chunk, objs in self._search_each("notes", chunks, markers_in, [VISIT_KEY_PROPERTY]):
            for obj in objs:
                key = (obj.get("properties") or {}).get(VISIT_KEY_PROPERTY)
                if key in chunk:
                    found.setdefault(key, []).append(str(obj["id"]))
        return {k: sorted(v, key=lambda i: (len(i), i)) for k, v in found.items()}

    def _note(self, row: PreparedCheckIn) -> dict[str, str]:
        props, warnings = mapping.note_properties(row, self.settings.custom_field_mapping, self.note_properties)
        row.warnings.extend(w for w in warnings if w not in row.warnings)
        return props

    def create_visits(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]], progress: Progress = no_progress
    ) -> dict[str, RecordResult]:
        def send(part: Sequence[tuple[PreparedCheckIn, CustomerRef | None]]) -> dict[str, RecordResult]:
            inputs = []
            for row, ref in part:
                note = {"properties": self._note(row), "objectWriteTraceId": row.visit_key}
                if ref is not None:
                    note["associations"] = [
                        {
                            "to": {"id": ref.crm_id},
                            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}],
                        }
                    ]
                inputs.append(note)
            outcome = self.hook.batch_create("notes", inputs)
            out: dict[str, RecordResult] = {}
            for obj in outcome.results:
                key = obj.get("properties", {}).get(VISIT_KEY_PROPERTY)
                if key:
                    out[key] = RecordResult(key, crm_id=str(obj["id"]), created=True)
            for error in outcome.errors:
                for key in _trace_ids(error):
                    out[key] = RecordResult(key, error=_error_text(error))
            return out

        results: dict[str, RecordResult] = {}
        if not self.unique_visit_marker:
            # HubSpot will not refuse a second note with the marker: search first, create only what is absent.
            for key, crm_id in self.find_visits([row for row, _ in items]).items():
                results[key] = RecordResult(key, crm_id=crm_id)
            items = [item for item in items if item[0].visit_key not in results]
        results.update(self.batch_writes(items, send, lambda item: item[0].visit_key))
        # A refused create may be a note an earlier attempt already wrote (unique key): look it up.
        refused = [row for row, _ in items if not results.get(row.visit_key, RecordResult("")).ok]
        for key, crm_id in (self.find_visits(refused) if refused else {}).items():
            results[key] = RecordResult(key, crm_id=crm_id)
        return results

    def update_visits(
        self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        by_id = {crm_id: row.visit_key for row, crm_id, _ in items}

        def send(part: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]) -> dict[str, RecordResult]:
            outcome = self.hook.batch_update(
                "notes", [{"id": crm_id, "properties": self._note(row)} for row, crm_id, _ in part]
            )
            out = {
                by_id[str(o["id"])]: RecordResult(by_id[str(o["id"])], crm_id=str(o["id"]))
                for o in outcome.results
                if str(o["id"]) in by_id
            }
            for error in outcome.errors:
                for crm_id in (error.get("context") or {}).get("ids", []):
                    if str(crm_id) in by_id:
                        out[by_id[str(crm_id)]] = RecordResult(by_id[str(crm_id)], error=_error_text(error))
            return out

        return self.batch_writes(items, send, lambda item: item[0].visit_key)

    # ------------------------------------------------------------------ read-back
    def iter_customers(self, page_size: int | None = None) -> Iterator[CrmCustomerRecord]:
        """Every contact (``GET /crm/v3/objects/contacts``, 100 per page, ``after`` cursor)."""
        props = ["email", "phone", "firstname", "lastname", CUSTOMER_KEY_PROPERTY]
        for obj in self.hook.iter_objects("contacts", properties=props, limit=min(page_size or 100, 100)):
            p = obj.get("properties") or {}
            name = " ".join(v for v in (p.get("firstname"), p.get("lastname")) if v) or None
            yield CrmCustomerRecord(
                crm_id=str(obj["id"]),
                name=name,
                email=p.get("email") or None,
                phone=p.get("phone") or None,
                sync_key=p.get(CUSTOMER_KEY_PROPERTY) or None,
            )

    can_merge_customers = True

    def merge_customers(self, survivor_id: str, merged_id: str) -> str:
        """``POST /crm/v3/objects/contacts/merge`` (:meth:`HubSpotHook.merge_objects`): the merged contact's
        notes move to the survivor; returns the id HubSpot answers with."""
        body = self.hook.merge_objects("contacts", survivor_id, merged_id)
        return str(body.get("id") or survivor_id)

    #: rankitpro_checkin_key is a unique note property (False in the search-before-create fallback: prepare)
    unique_visit_marker = True

    #: The note properties the sync owns and the reconciliation compares (custom fields are left out).
    READ_BACK_PROPERTIES = ("hs_note_body", "hs_timestamp", VISIT_KEY_PROPERTY)

    def read_visits(self, crm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Notes by id: ``POST /crm/v3/objects/notes/batch/read`` (100 ids per call, ``archived=false``).

        Ids HubSpot does not know come back as a 207 ``OBJECT_NOT_FOUND`` error and are simply absent
        here (= missing in the CRM). Spec: HubSpot notes v3 ``post-/crm/v3/objects/notes/batch/read``
        (https://github.com/HubSpot/HubSpot-public-api-spec-collection, ``PublicApiSpecs/CRM/Notes``);
        https://developers.hubspot.com/docs/api-reference/crm-notes-v3/batch/post-crm-v3-objects-notes-batch-read
        """
        found: dict[str, dict[str, Any]] = {}
        for obj in self.hook.batch_read("notes", list(dict.fromkeys(crm_ids)), properties=self.READ_BACK_PROPERTIES):
            props = obj.get("properties") or {}
            found[str(obj["id"])] = {k: props.get(k) for k in self.READ_BACK_PROPERTIES}
        return found

    def visit_fields(self, row: PreparedCheckIn) -> dict[str, Any]:
        props, _ = mapping.note_properties(row, {}, None)
        return {k: props.get(k) for k in self.READ_BACK_PROPERTIES}


def _by_crm_id(outcome: BatchOutcome) -> dict[str, RecordResult]:
    """A ``batch/update`` answer as results by record id: each updated record, and each id an error names."""
    out = {str(o["id"]): RecordResult(str(o["id"]), crm_id=str(o["id"])) for o in outcome.results}
    for error in outcome.errors:
        for crm_id in (error.get("context") or {}).get("ids", []):
            out[str(crm_id)] = RecordResult(str(crm_id), error=_error_text(error))
    return out


def _ref(obj: dict[str, Any]) -> CustomerRef:
    props = obj.get("properties") or {}
    return CustomerRef.read(
        str(obj["id"]), email=props.get("email"), names=(props.get("firstname"), props.get("lastname"))
    )


def _trace_ids(error: dict) -> list[str]:
    return list((error.get("context") or {}).get("objectWriteTraceId", []))


def _error_text(error: dict) -> str:
    """The reason of a refused record; names the refused properties when HubSpot does
    (``errors[].context.propertyName`` of a ``StandardError``)."""
    category = error.get("category") or "ERROR"
    fields = named_fields(
        name
        for detail in error.get("errors") or []
        if isinstance(detail, dict)
        for name in (detail.get("context") or {}).get("propertyName") or []
    )
    return f"HubSpot {category}{fields}: {str(error.get('message') or '')[:300]}"
