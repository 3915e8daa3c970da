"""Check-ins into FieldEdge: a customer for the customer, a lead (service request) for each visit.

FieldEdge's Open API has no batch endpoints and no way to create or complete a work
order, so every record is one call (:func:`per_record`) and a visit becomes a lead.

Calls per check-in: a customer already in the customer map costs nothing, so a new check-in
of a repeat customer is **1 call** (``POST /v1/leads``). A customer the map does not know
costs one search (email and phone in the same query: FieldEdge returns customers matching
"one or more" of the criteria, and one answer settles both keys), then either a create or,
when found and changed, a ``PUT`` built from the search result (no extra read): 3 calls
with the lead. A mapped customer whose details changed since costs ``GET`` + ``PUT`` once
(PUT replaces the record, so it is read first). Tokens are cached for their lifetime.

Idempotency:

* **Customers** carry no external id at FieldEdge. The engine searches every match key before
  it asks for a create, and the customer is created with exactly those keys (email, phone,
  name), so an attempt interrupted after the create finds that customer on the next run.
  A create whose outcome is unknown (5xx, timeout) is looked up by email/phone before it is
  sent again (:meth:`FieldEdgeHook.create_customer`).
* **Leads** carry the visit key in ``trackingId`` (a documented, client-supplied field that
  ``GET /v1/leads/{id}`` echoes) and in ``metaData.rankitproCheckInKey``. :meth:`find_visits`
  asks ``GET /v1/leads?trackingId=<key>``, one call per row whose previous attempt may have
  reached FieldEdge (rows left ``in_flight`` / ``failed``; never for new rows). That look-up is
  UNCONFIRMED (the public reference documents only the get-by-id). If FieldEdge refuses it (404/405/501),
  the run falls back to the sync's own records and says so in its warnings: a lead whose id the ledger
  holds (``crm_visit_id``) is never created again (the engine updates, which for FieldEdge sends
  nothing), and a row whose outcome is unknown (the worker died, or the create's answer was lost, after
  the request; at most one row per batch of 1) is not re-sent: it is quarantined ``unconfirmed_write``
  with the ``trackingId`` to look for in FieldEdge (requeue it if the lead is not there). With
  ``crmSettings.leadLookup`` false no look-up is tried and such rows are re-sent (a crash can then leave
  a duplicate lead). The ledger has no per-row intent record before a create (``crm_intent``, planned):
  with batches of one row, the in_flight claim is that record.
* Leads cannot be updated through the API: an edited check-in updates the customer only and
  keeps its first lead (a warning says so).

Settings (``crmSettings``): ``timezone`` (IANA name for the lead's date/time, default UTC),
``leadSource`` (lead ``source``, default ``rankitpro``), ``leadLookup`` (default true), and
the hook's ``rateLimitPer10s`` / ``tokenSeconds``. ``customFieldMapping`` targets are lead
``metaData`` keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from crm_hooks.errors import (
    BadCredentialsError,
    ConfigurationError,
    QuotaExhaustedError,
    RetryableError,
)
from crm_hooks.fieldedge import FieldEdgeHook, LeadLookupRefusedError, record_email, record_id, record_phone
from crm_sync.destinations.base import (
    CrmCustomerRecord,
    CustomerRef,
    Destination,
    Progress,
    ReadNotSupported,
    RecoveredVisit,
    distinct_customers,
    in_lanes,
    no_progress,
    per_record,
    read_each,
)
from crm_sync.mapping import fieldedge as mapping
from crm_sync.match_key import MatchKey
from crm_sync.models import Customer, PreparedCheckIn, RecordResult
from crm_sync.quarantine import QuarantineKind

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Remembered search answers per run (bounded: a long run forgets and searches again).
MAX_REMEMBERED = 20_000
#: The run warning when FieldEdge refuses the lead look-up (the sync's own records decide instead).
LOOKUP_FALLBACK_WARNING = (
    "fieldedge: FieldEdge refused the lead look-up GET /v1/leads?trackingId=: the sync relies on its own record "
    "of created leads (a lead is never created twice); a row whose lead may have been written before an "
    "interruption is quarantined (unconfirmed_write) instead of being sent again"
)


class FieldEdgeDestination(Destination):
    crm_type = "fieldedge"
    marker_field = "trackingId"
    hook: FieldEdgeHook
    #: The ledger knows which leads of a batch were being sent (:data:`SENDS_MARKED`, :data:`SENDING`), so an
    #: interruption leaves at most one row per lane whose outcome is unknown (what the look-up fallback holds
    #: back), whatever the batch size.

    def __init__(self, hook: FieldEdgeHook, settings: Any):
        super().__init__(hook, settings)
        #: match key -> customer found (None: searched, not there) since the last write
        self._known: dict[str, CustomerRef | None] = {}
        #: customer id -> the record a search returned (the base of a PUT)
        self._records: dict[str, dict[str, Any]] = {}
        self._warned_update = False
        #: visit keys whose earlier attempt may have created a lead that no look-up can confirm (fallback)
        self._unresolved: set[str] = set()

    def use_facts(self, facts: Mapping[str, Any]) -> None:
        """Check credentials and hosts (no request) and read the lead settings."""
        self.hook.validate()
        options = self.hook.crm_settings
        options.require("timezone")
        if not options.lead_lookup:
            self.warnings.append(
                "fieldedge: crmSettings.leadLookup is off: a row interrupted after its lead was "
                "sent is sent again, which can leave a duplicate lead"
            )

    # ------------------------------------------------------------------ customers
    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        """One ``GET /v1/customers/search`` per customer not answered yet (email + phone together)."""
        if len(self._known) > MAX_REMEMBERED:
            self._known.clear()
            self._records.clear()
        todo = [(key, customer) for key, customer in wanted if key not in self._known]
        in_lanes(lambda item: self._search(*item), todo, self.lanes)
        return {key: ref for key, _ in wanted if (ref := self._known.get(key)) is not None}

    def _search(self, key: str, customer: Customer) -> None:
        kind = MatchKey.parse(key).kind
        if kind in ("email", "phone"):
            covered = [
                str(k)
                for k in (
                    MatchKey.email(customer.email) if customer.email else None,
                    MatchKey.phone(customer.phone) if customer.phone else None,
                )
                if k
            ]
            criteria = {"email": customer.email, "phone": customer.phone}
        elif kind == "name" and customer.first_name:
            covered, criteria = [key], {"first_name": customer.first_name}
        else:
            # A name without a first name cannot be searched (FieldEdge searches first names).
            self._known[key] = None
            return
        if key not in covered:
            covered.append(key)
        hits: dict[str, CustomerRef] = {}
        for record in self.hook.search_customers(**criteria):
            crm_id = record_id(record, "id", "customerId")
            if crm_id is None:
                continue
            self._records[crm_id] = record
            for found_key in _record_keys(record):
                if found_key in covered:
                    hits.setdefault(
                        found_key,
                        CustomerRef.read(
                            crm_id, email=record_email(record), names=(record.get("firstName"), record.get("lastName"))
                        ),
                    )
        for k in covered:
            self._known[k] = hits.get(k) or self._known.get(k)

    def _forget_misses(self) -> None:
        """After a write, "not in FieldEdge" may no longer be true."""
        self._known = {k: v for k, v in self._known.items() if v is not None}

    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        """``POST /v1/customers`` per distinct customer key (the engine searched every key first)."""
        self._forget_misses()

        def send(row: PreparedCheckIn) -> RecordResult:
            payload, warnings, error = mapping.customer_payload(row.customer)
            _warn(row, warnings)
            if error:  # neither email nor phone: nothing FieldEdge can know this customer by
                return RecordResult(row.customer_key, error=error, kind=QuarantineKind.NO_IDENTITY)
            crm_id = self.hook.create_customer(payload)
            for key in row.match_keys:
                self._known[key] = CustomerRef(crm_id)
            return RecordResult(row.customer_key, crm_id=crm_id, created=True)

        return self._each(distinct_customers(rows), send, lambda r: r.customer_key)

    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        """``PUT /v1/customers/{id}`` when the check-in changes what FieldEdge holds.

        The body starts from the record a search just returned, else from ``GET /v1/customers/{id}``
        (PUT replaces the customer: fields the check-in lacks are kept as they are).
        """

        def send(item: tuple[CustomerRef, PreparedCheckIn]) -> RecordResult:
            ref, row = item
            record = self._records.get(ref.crm_id) or self.hook.get_customer(ref.crm_id)
            if record is None:
                return RecordResult(ref.crm_id, error=f"FieldEdge has no customer {ref.crm_id} any more")
            payload, warnings = mapping.customer_update(record, row.customer)
            _warn(row, warnings)
            if payload is not None:
                self.hook.update_customer(ref.crm_id, payload)
                self._records.pop(ref.crm_id, None)
            return RecordResult(ref.crm_id, crm_id=ref.crm_id)

        results = self._each(items, send, lambda item: item[0].crm_id)
        self._forget_misses()
        return results

    def add_emails(self, items: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
        """``PUT /v1/customers/{id}`` with the record as FieldEdge holds it plus the email, for customers
        without one (:meth:`update_customers` with a customer that has only the email)."""
        todo = []
        for ref, email in items:
            record = self._records.get(ref.crm_id) or self.hook.get_customer(ref.crm_id)
            if record is not None and not record_email(record):
                self._records[ref.crm_id] = record
                todo.append((ref, PreparedCheckIn(0, 0, "", Customer(email=email), None, [])))
        return self.update_customers(todo) if todo else {}

    # ------------------------------------------------------------------ visits (leads)
    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        """Leads by ``trackingId`` (one look-up per row whose last attempt may have written one)."""
        if not self.hook.crm_settings.lead_lookup:
            return {}
        found: dict[str, str] = {}
        for row in rows:
            try:
                leads = self.hook.find_leads(row.visit_key)
            except LeadLookupRefusedError:
                self._lookup_refused()
                self._unresolved.add(row.visit_key)
                continue
            for lead in leads:
                lead_id = record_id(lead, "leadId", "id")
                if lead_id:
                    found[row.visit_key] = lead_id
                    break
        return found

    def _lookup_refused(self) -> None:
        """FieldEdge refused the look-up: warn once (the run summary collects the destination's warnings)."""
        if LOOKUP_FALLBACK_WARNING not in self.warnings:
            log.warning("%s", LOOKUP_FALLBACK_WARNING)
            self.warnings.append(LOOKUP_FALLBACK_WARNING)

    def create_visits(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]], progress: Progress = no_progress
    ) -> dict[str, RecordResult]:
        """``POST /v1/leads`` per check-in, for its customer."""

        def send(item: tuple[PreparedCheckIn, CustomerRef | None]) -> RecordResult:
            row, ref = item
            if row.visit_key in self._unresolved:
                return RecordResult(
                    row.visit_key,
                    error=f"an earlier attempt may have created this lead and FieldEdge refuses the look-up by "
                    f"trackingId: not sent again; look for a lead with trackingId {row.visit_key} in FieldEdge "
                    "and requeue the row only if there is none",
                    kind=QuarantineKind.UNCONFIRMED_WRITE,
                )
            options = self.hook.crm_settings
            payload, warnings = mapping.lead_payload(
                row,
                ref.crm_id if ref else None,
                self.settings.custom_field_mapping,
                source=options.lead_source,
                zone=options.zone,
            )
            _warn(row, warnings)
            progress({row.visit_key: {SENDING: "1"}})
            try:
                lead_id = self.hook.create_lead(payload, look_up=options.lead_lookup)
            finally:
                if self.hook.lead_lookup_refused:  # refused while resolving a lost answer (then not re-sent)
                    self._lookup_refused()
            return RecordResult(row.visit_key, crm_id=lead_id, created=True)

        progress({row.visit_key: {SENDS_MARKED: "1"} for row, _ in items})
        return self._each(items, send, lambda item: item[0].visit_key, progress)

    def find_recorded_visits(
        self,
        rows: Sequence[PreparedCheckIn],
        intents: Mapping[str, Mapping[str, str]],
        refs: Mapping[str, CustomerRef],
    ) -> dict[str, RecoveredVisit]:
        """Leads by ``trackingId``, only for rows whose lead may have been sent: an attempt that marked its
        sends and never marked this row's never sent it (no look-up, and none held back when FieldEdge refuses
        the look-up)."""
        maybe = [r for r in rows if not _never_sent(intents.get(r.visit_key) or {})]
        return super().find_recorded_visits(maybe, intents, refs) if maybe else {}

    def update_visits(
        self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        """No call: FieldEdge's Open API cannot update a lead, so the first lead stays as it was."""
        if items and not self._warned_update:
            log.warning(
                "fieldedge: leads cannot be updated through FieldEdge's Open API; %d edited check-in(s) "
                "keep their first lead (the customer is still updated)",
                len(items),
            )
            self._warned_update = True
        results: dict[str, RecordResult] = {}
        for row, lead_id, _ in items:
            note = f"FieldEdge leads cannot be updated through the Open API: lead {lead_id} keeps the first version"
            _warn(row, [note])
            results[row.visit_key] = RecordResult(row.visit_key, crm_id=lead_id)
        return results

    # ------------------------------------------------------------------ read-back
    def read_visits(self, crm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Leads one call each (the Open API has no batch read): ``GET /v1/leads/{leadId}``, 404 or 204 = gone
        (https://docs.gravitee-fe.dev/fetches-lead-details-based-on-the-provided-lead-identifier-28355561e0).
        Leads cannot be updated through the API, so only the sync's ``trackingId`` is compared: an edited
        check-in's lead legitimately keeps its first text."""
        return {
            lead_id: {"trackingId": lead.get("trackingId")}
            for lead_id, lead in read_each(crm_ids, self.hook.get_lead).items()
        }

    def iter_customers(self, page_size: int | None = None) -> Iterator[CrmCustomerRecord]:
        """FieldEdge's Open API cannot list customers: its Customer resource offers create, update, get by id,
        search by phone / email / first name (``GET /v1/customers/search``, a value required) and search by
        address, and nothing that pages through all of them
        (https://docs-dev.fieldedge.com/dev/retrieve-customers-by-phone-email-or-first-name-32803946e0, the
        API list on that page). Raised before any request; the sync keeps
        finding FieldEdge customers with that search, by email and phone, one customer at a time.
        """
        raise ReadNotSupported(
            "fieldedge: the FieldEdge Open API has no endpoint that lists customers (only "
            "searches by phone, email, first name or address), so existing customers cannot "
            "be imported; the sync still finds them by email and phone search"
        )
        yield  # pragma: no cover - makes this a generator, like the other destinations'

    def visit_fields(self, row: PreparedCheckIn) -> dict[str, Any]:
        return {"trackingId": row.visit_key}

    # ------------------------------------------------------------------ helpers
    def _each(
        self,
        items: Sequence[T],
        send_one: Callable[[T], RecordResult],
        key: Callable[[T], str],
        progress: Progress | None = None,
    ) -> dict[str, RecordResult]:
        """:func:`per_record`, where an integration-stopping error after a write leaves the rest
        ``uncertain``: raised, it would make the engine mark the whole batch ``pending``, and the
        records already written would never be looked up before being sent again."""
        wrote = False

        def guarded(item: T) -> RecordResult:
            nonlocal wrote
            try:
                result = send_one(item)
            except (BadCredentialsError, ConfigurationError, QuotaExhaustedError) as exc:
                if not wrote:
                    raise
                raise RetryableError(f"stopped after earlier writes of this batch: {exc}") from None
            wrote = wrote or result.crm_id is not None
            return result

        return per_record(items, guarded, key, progress, crm_type=self.crm_type, lanes=self.lanes)


#: ``crm_intent`` marks (:meth:`FieldEdgeDestination.create_visits`): the attempt marks every row of the batch
#: before the first lead, and each row right before its lead is sent.
SENDS_MARKED = "sends_marked"
SENDING = "sending"


def _never_sent(intent: Mapping[str, str]) -> bool:
    """The row's lead was certainly not sent by the attempt that recorded ``intent`` (an attempt from before
    the marks, or one interrupted before the batch's mark, may have: a look-up decides)."""
    return bool(intent.get(SENDS_MARKED)) and not intent.get(SENDING) and not intent.get("visit_id")


def _record_keys(record: dict[str, Any]) -> list[str]:
    """The sync's match keys a FieldEdge customer answers to (as :mod:`crm_sync.match_key` builds them)."""
    keys = []
    email, phone = record_email(record), record_phone(record)
    if email:
        keys.append(str(MatchKey.email(email)))
    if phone:
        keys.append(str(MatchKey.phone(phone)))
    name = " ".join(str(p) for p in (record.get("firstName"), record.get("lastName")) if p)
    if name.strip():
        keys.append(str(MatchKey.name(name)))
    return keys


def _warn(row: PreparedCheckIn, warnings: Sequence[str]) -> None:
    row.warnings.extend(w for w in warnings if w not in row.warnings)
