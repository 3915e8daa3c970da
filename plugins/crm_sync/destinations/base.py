"""What the sync engine needs from a CRM, whatever its API looks like.

A destination turns prepared check-ins into calls of one CRM hook: find existing
customers, create or update customers, and create, update or find visit records
(note, case, job, lead...). Each method takes a whole batch so that CRMs with
batch endpoints make one call per batch; the engine never loops per record.

Idempotency contract every destination keeps:

* ``create_customers`` is keyed by the sync's customer key and must not create a
  second record for a key it already created (upsert by an external id, or a
  lookup of the marker before create).
* ``find_visits`` finds visit records by the marker the sync writes on them
  (``PreparedCheckIn.visit_key``); the engine calls it (through :meth:`Destination.recover_visits`)
  for every row whose last attempt may have reached the CRM before it creates anything again.
* ``create_visits`` reports each record id it creates through ``progress`` as soon as the CRM
  returns it, before any further step for that record (a note, a close): the engine commits it to
  the ledger (``crm_intent``), so a crash at any point leaves the id where the next run looks first.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from crm_hooks.base import CrmHook, requests_sent
from crm_hooks.errors import BadRecordError, BudgetExhaustedError, ConfigurationError, CrmError, RetryableError
from crm_sync import field_rules
from crm_sync.models import Customer, PreparedCheckIn, RecordResult, SyncSettings
from crm_sync.quarantine import named_fields
from crm_sync.text import shorten

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class CustomerRef:
    """A customer in the CRM: its id, and its parent record where the CRM has one.

    ``email`` and ``name`` are what the record held when a lookup read it (the household rule and
    the adding of an email need them, :mod:`crm_sync.identity`): ``""`` read and empty, ``None``
    not known. They are not part of the ref's identity (equality, hashing).
    """

    crm_id: str
    parent_id: str | None = None
    email: str | None = field(default=None, compare=False)
    name: str | None = field(default=None, compare=False)

    @classmethod
    def read(cls, crm_id: str, parent_id: str | None = None, *, email: Any, names: Sequence[Any]) -> CustomerRef:
        """A ref for a record a lookup just read: its email (trimmed, lower-cased) and name parts as held."""
        name = " ".join(str(n).strip() for n in names if n and str(n).strip())
        return cls(crm_id, parent_id, email=str(email or "").strip().lower(), name=name)


#: ``create_visits``' report of created record ids: visit_key -> ids (``visit_id``, ``address_id``, ...);
#: the engine commits each call to the ledger's ``crm_intent`` before it returns (one transaction per call).
Progress = Callable[[Mapping[str, Mapping[str, str | None]]], None]


def no_progress(ids: Mapping[str, Mapping[str, str | None]]) -> None:
    """The ``progress`` of a caller that keeps no ledger (tests, the customer import)."""


@dataclass(frozen=True)
class RecoveredVisit:
    """A visit record an earlier, interrupted attempt wrote for a row: it stays with the customer it was
    written under (``customer_id``; None: not known, the row's resolved customer is assumed)."""

    crm_id: str
    customer_id: str | None = None


@dataclass(frozen=True)
class CrmCustomerRecord:
    """A customer as it exists in the CRM, read back by :meth:`Destination.iter_customers`.

    ``email`` and ``phone`` are raw as the CRM holds them (the caller normalises);
    ``sync_key`` is the sync's customer key when the record carries the sync's marker.
    """

    crm_id: str
    parent_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    sync_key: str | None = None


class ReadNotSupported(ConfigurationError):
    """The CRM's API offers no way to do this read (e.g. no endpoint that lists every customer)."""


class Destination(ABC):
    """Base class of the per-CRM destinations (one module each under ``crm_sync.destinations``)."""

    crm_type: ClassVar[str] = ""

    def __init__(self, hook: CrmHook, settings: SyncSettings):
        # The CRM's own settings (crmSettings) are the hook's: ``self.hook.crm_settings``.
        self.hook = hook
        self.settings = settings
        self.warnings: list[str] = []

    #: :meth:`match_customers` answers every key of every person of a batch in one call (Salesforce: one
    #: SOQL query with ``OR``): the engine asks once for all of them instead of once per key kind
    #: (emails, then phones, then names for the people still unresolved).
    one_lookup_for_all_keys: ClassVar[bool] = False

    #: Batches whose customer look-ups the engine reads ahead while it writes the current one
    #: (:mod:`crm_sync.lookahead`); 0: none. Worth it where reads have a limit of their own that writes
    #: leave idle (HubSpot's search); where one limit paces both, reads ahead only take writes' turns.
    lookahead_batches: ClassVar[int] = 0

    #: Batches whose visit creates the engine sends in threads while the next batch is prepared, claimed and
    #: its customers decided (:mod:`crm_sync.overlap`), so a create waiting out a 429 or the engine's own
    #: work between batches no longer leaves the limit idle; 0: none. Only for a destination whose visit
    #: creates make no record a later customer look-up could need (no address / location / property created
    #: with the visit: :meth:`IntegrationSync._remember_parents`) and share no state with its customer steps.
    overlap_visit_writes: ClassVar[int] = 0

    #: Rows per engine batch and per lane (:attr:`lanes`) for CRMs without batch endpoints (the destination
    #: loops per record; the ledger is still written per batch, not per row).
    per_record_batch: ClassVar[int] = 25

    @property
    def lanes(self) -> int:
        """Records a per-record loop writes at a time (:func:`per_record`): the hook's :attr:`~CrmHook.lanes`."""
        return self.hook.lanes

    #: A batch CRM whose steps send their batch calls in lanes (:meth:`batch_writes`): an engine batch holds
    #: one batch call's worth of rows per lane (HubSpot, Salesforce).
    batch_calls_in_lanes: ClassVar[bool] = False

    @property
    def batch_size(self) -> int:
        """Rows per engine batch: the CRM's batch call size (per lane with :attr:`batch_calls_in_lanes`), else
        :attr:`per_record_batch` per lane (a batch ends when its slowest lane does, so each lane needs enough
        records for a wait to be caught up)."""
        lanes = max(1, self.lanes)
        if self.hook.batch_size > 1:
            return self.hook.batch_size * (lanes if self.batch_calls_in_lanes else 1)
        return self.per_record_batch * lanes

    def batch_writes(
        self, items: Sequence[T], send: Callable[[Sequence[T]], dict[str, RecordResult]], key: Callable[[T], str]
    ) -> dict[str, RecordResult]:
        """A batch CRM's writes: calls of the hook's batch size (a refused record isolated:
        :func:`isolate_bad_records`), up to :attr:`lanes` at a time (:func:`in_chunks`)."""
        return in_chunks(
            list(chunked(items, self.hook.batch_size)),
            lambda chunk: isolate_bad_records(chunk, send, key, crm_type=self.crm_type),
            key,
            self.lanes,
        )

    def prepare(self, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run-start checks and setup (marker fields, custom field discovery). Warnings go to ``self.warnings``.

        ``facts``: the account facts an earlier run checked (:mod:`crm_sync.account_facts`), used without a
        CRM call; None: checked now (:meth:`check_facts`). Returns the facts used, for the engine to keep.
        """
        checked = dict(facts) if facts is not None else self.check_facts()
        self.use_facts(checked)
        return checked

    def check_facts(self) -> dict[str, Any]:
        """Ask the CRM what rarely changes in the account and the run needs (properties, fields, job
        defaults); JSON-able, never a secret. Default: nothing to ask."""
        return {}

    def use_facts(self, facts: Mapping[str, Any]) -> None:  # noqa: B027 - optional: most need no setup
        """Set up from ``facts`` (just checked or kept), without a CRM call; warnings go to ``self.warnings``."""

    def stale_fact(self, error: str | None) -> bool:
        """The CRM refused a write because a kept fact is wrong (a property or field missing, a job default
        inactive): the engine re-checks the facts once and sends the refused rows again. Default: never."""
        return False

    def account_identity(self) -> str:
        """The CRM account this destination writes into, as the CRM reports it (see
        :meth:`CrmHook.account_identity`); every stored CRM id is bound to it."""
        return self.hook.account_identity()

    @abstractmethod
    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        """Existing CRM customers for ``(match_key, customer)`` pairs; returns match_key -> ref for those found."""

    @abstractmethod
    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        """Create one customer per distinct ``customer_key``; returns customer_key -> result."""

    @abstractmethod
    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        """Update existing customers with the check-in's customer fields; returns crm_id -> result."""

    def add_emails(self, items: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
        """Give existing customers (found by phone or name) the person's email, only where the record has
        none; nothing else is written, the customer key the CRM holds least of all. Returns crm_id -> result.

        Default: the CRM offers no way to add one (nothing is sent; the customer map still knows the email).
        """
        return {}

    @abstractmethod
    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        """Visit records the sync already wrote for these rows; returns visit_key -> CRM id."""

    @abstractmethod
    def create_visits(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]], progress: Progress = no_progress
    ) -> dict[str, RecordResult]:
        """Create one visit record per row, attached to its customer; returns visit_key -> result.

        Record ids created before the last step of a row (a job before its note or close), and each record
        of a per-record CRM, are reported through ``progress`` as soon as the CRM returns them."""

    # ------------------------------------------------------------------ crash recovery
    #: The :meth:`read_visits` field that holds the sync's marker (:meth:`carries_marker`).
    marker_field: ClassVar[str] = "marker"

    def recover_visits(
        self,
        rows: Sequence[PreparedCheckIn],
        intents: Mapping[str, Mapping[str, str]],
        refs: Mapping[str, CustomerRef],
    ) -> dict[str, RecoveredVisit]:
        """Visit records earlier attempts wrote for rows whose outcome is unknown, whatever customer this run
        resolved them to; returns visit_key -> the record (which stays with the customer it was written under).

        ``intents``: visit_key -> the CRM ids the ledger recorded for the row (``crm_intent``); ``refs``:
        customer_key -> the customer this run resolved. First the recorded visit ids, read back
        (:meth:`confirm_visits`), then the marker search (:meth:`find_recorded_visits`); the unfinished
        step of every record found is completed (:meth:`complete_visits`).
        """
        recorded = [(r, intents[r.visit_key]["visit_id"]) for r in rows if intents.get(r.visit_key, {}).get("visit_id")]
        found = {
            key: visit if visit.customer_id else RecoveredVisit(visit.crm_id, intents[key].get("customer_id"))
            for key, visit in (self.confirm_visits(recorded) if recorded else {}).items()
        }  # a recorded visit went under the customer recorded with it
        rest = [r for r in rows if r.visit_key not in found]
        if rest:
            found.update(self.find_recorded_visits(rest, intents, refs))
        if found:
            self.complete_visits({r.visit_key: found[r.visit_key].crm_id for r in rows if r.visit_key in found})
        return found

    def confirm_visits(self, items: Sequence[tuple[PreparedCheckIn, str]]) -> dict[str, RecoveredVisit]:
        """The recorded visit ids that still exist and carry their row's marker (:meth:`read_visits`)."""
        read = self.read_visits([crm_id for _, crm_id in items])
        return {
            row.visit_key: RecoveredVisit(crm_id)
            for row, crm_id in items
            if crm_id in read and self.carries_marker(row, read[crm_id])
        }

    def carries_marker(self, row: PreparedCheckIn, fields: Mapping[str, Any]) -> bool:
        """A record read back by :meth:`read_visits` carries ``row``'s marker."""
        expected = self.visit_fields(row).get(self.marker_field)
        return expected is not None and fields.get(self.marker_field) == expected

    def find_recorded_visits(
        self,
        rows: Sequence[PreparedCheckIn],
        intents: Mapping[str, Mapping[str, str]],
        refs: Mapping[str, CustomerRef],
    ) -> dict[str, RecoveredVisit]:
        """:meth:`find_visits`, for CRMs whose marker search covers every customer: the record was written
        under the customer the ledger recorded before the create (when one was)."""
        return {
            key: RecoveredVisit(crm_id, intents.get(key, {}).get("customer_id"))
            for key, crm_id in self.find_visits(rows).items()
        }

    def complete_visits(self, visit_ids: Mapping[str, str]) -> None:  # noqa: B027 - most visits are one step
        """Finish the steps an interrupted attempt may have left undone on recovered records (visit_key -> id)."""

    @abstractmethod
    def update_visits(
        self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        """Update visit records (edited check-ins) by CRM id; returns visit_key -> result."""

    # ------------------------------------------------------------------ read-back (import, reconciliation)
    def iter_customers(self, page_size: int | None = None) -> Iterator[CrmCustomerRecord]:
        """Every customer in the CRM, page by page (the CRM's list/search endpoint, its largest page)."""
        raise NotImplementedError(f"{self.crm_type}: iter_customers is not implemented")

    def read_visits(self, crm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The visit records with these CRM ids as they are now (batched reads where the CRM has them).

        Returns crm_id -> the record's fields that the sync writes; an id missing from
        the result does not exist in the CRM any more.
        """
        raise NotImplementedError(f"{self.crm_type}: read_visits is not implemented")

    #: The CRM itself refuses a second visit record with one marker (a unique property / External ID field):
    #: two visit records for one check-in cannot exist, so the reconciliation does not look for them.
    unique_visit_marker: bool = False

    def find_visit_records(self, visit_keys: Sequence[str]) -> dict[str, list[str]]:
        """Every visit record carrying each marker (visit_key -> CRM ids), to find two records for one check-in."""
        raise NotImplementedError(f"{self.crm_type}: find_visit_records is not implemented")

    def visit_fields(self, row: PreparedCheckIn) -> dict[str, Any]:
        """The fields of ``row``'s visit record as the sync writes them, keyed and shaped as :meth:`read_visits`
        returns them, so the reconciliation can tell drift (a CRM record edited behind the sync's back)."""
        raise NotImplementedError(f"{self.crm_type}: visit_fields is not implemented")

    # ------------------------------------------------------------------ merging duplicates (crm_merge_duplicates)
    #: The CRM's API merges two customers into one (:meth:`merge_customers`); where it cannot, the merge DAG
    #: lists the duplicates for a person to merge in the CRM. Salesforce merges Contacts only through the SOAP
    #: API's ``merge()`` (or Apex), not REST (developer.salesforce.com ``sforce_api_calls_merge``); ServiceTitan
    #: (CRM v2 spec: only a read-only ``mergedToId``), Housecall Pro (v1 spec), Jobber (2022-03-10 schema
    #: excerpt) and FieldEdge (no public spec; UNCONFIRMED) document no merge call.
    can_merge_customers: ClassVar[bool] = False

    def merge_customers(self, survivor_id: str, merged_id: str) -> str:
        """Merge the customer ``merged_id`` into ``survivor_id`` in the CRM (its visit records move with it);
        returns the merged customer's id as the CRM reports it (it may be a new one)."""
        raise NotImplementedError(f"{self.crm_type}: the CRM's API has no customer merge")

    def close(self) -> None:
        self.hook.close()


def _row_of(item: Any) -> PreparedCheckIn | None:
    """The check-in an item of a destination call carries (alone or in a tuple with refs / ids)."""
    if isinstance(item, PreparedCheckIn):
        return item
    if isinstance(item, tuple):
        return next((part for part in item if isinstance(part, PreparedCheckIn)), None)
    return None


def refusal(crm_type: str, item: Any, exc: BadRecordError) -> tuple[bool, str]:
    """After the CRM refused ``item`` alone: whether to send it once more without the refused fields
    (each optional per :mod:`crm_sync.field_rules`, and the row had a value to leave out; the row's
    customer loses them and its warnings say so), and the reason to quarantine it with otherwise, which
    names the refused fields (a required one said so)."""
    reason = str(exc)
    if exc.status in (404, 409, 410):
        return False, reason
    refused = field_rules.refused_fields(crm_type, reason)
    if not refused:
        return False, reason
    required = [r for r in refused if r.required]
    names = [r.crm_names[0] if r.crm_names else r.attr for r in (required or refused)]
    row = _row_of(item)
    rules = field_rules.rules_for(crm_type)
    if required or row is None or rules is None:
        return False, reason + named_fields(names) + (" (a required field)" if required else "")
    if field_rules.without_fields(row, refused, rules.label, shorten(reason, 200)):
        return True, reason
    return False, reason + named_fields(names)


def isolate_bad_records(
    items: Sequence[T],
    send: Callable[[Sequence[T]], dict[str, RecordResult]],
    key: Callable[[T], str],
    *,
    crm_type: str = "",
    _retried: bool = False,
) -> dict[str, RecordResult]:
    """Send ``items``; when the CRM refuses the whole batch for one bad record, split and retry.

    Batch endpoints that are all-or-nothing (HubSpot batch create) answer 400/409
    for the batch. Halving until the refused record stands alone lands every
    good record and quarantines only the bad one, at the cost of about
    ``2 * log2(n)`` extra calls per bad record. A record refused alone for an optional field is sent
    once more without it (:func:`refusal`; only with ``crm_type``).
    """
    if not items:
        return {}
    try:
        results = send(items)
    except BadRecordError as exc:
        if len(items) == 1:
            again, reason = refusal(crm_type, items[0], exc) if crm_type and not _retried else (False, str(exc))
            if again:
                return isolate_bad_records(items, send, key, crm_type=crm_type, _retried=True)
            return {key(items[0]): RecordResult(key=key(items[0]), error=reason)}
        mid = len(items) // 2
        log.info("batch of %d refused (%s); splitting to isolate the record", len(items), exc.code or exc.status)
        return {
            **isolate_bad_records(items[:mid], send, key, crm_type=crm_type),
            **isolate_bad_records(items[mid:], send, key, crm_type=crm_type),
        }
    if not crm_type or _retried:
        return results
    # A batch answered per record (HubSpot's multi-status): the records refused for an optional field go
    # once more without it, the rest of the batch is not sent again.
    again: list[T] = []
    for item in items:
        res = results.get(key(item))
        if res is None or res.ok or res.kind or res.uncertain or res.not_sent or not res.error:
            continue
        resend, reason = refusal(crm_type, item, BadRecordError(res.error))
        if resend:
            again.append(item)
        else:
            res.error = reason
    if again:
        results.update(isolate_bad_records(again, send, key, crm_type=crm_type, _retried=True))
    return results


def read_each(crm_ids: Sequence[str], get_one: Callable[[str], dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """``get_one(id)`` per id, for CRMs without a batch read; an id the CRM answers 404 (or nothing) for is
    left out of the result: it does not exist any more. Other errors propagate."""
    found: dict[str, dict[str, Any]] = {}
    for crm_id in dict.fromkeys(str(i) for i in crm_ids):
        try:
            record = get_one(crm_id)
        except BadRecordError as exc:
            if exc.status in (404, 410):
                continue
            raise
        if record:
            found[crm_id] = record
    return found


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (a CRM's per-call limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def distinct_customers(rows: Sequence[PreparedCheckIn]) -> list[PreparedCheckIn]:
    """One row per customer key (the newest check-in of a customer carries its latest data)."""
    return list({r.customer_key: r for r in rows}.values())


def per_record(
    items: Sequence[T],
    send_one: Callable[[T], RecordResult],
    key: Callable[[T], str],
    progress: Progress | None = None,
    *,
    crm_type: str = "",
    lanes: int = 1,
) -> dict[str, RecordResult]:
    """Write ``items`` one call each, for CRMs without batch endpoints, up to ``lanes`` at a time.

    A refused record (:class:`BadRecordError`) is that record's error only; refused for an optional
    field it is sent once more without it first (:func:`refusal`; only with ``crm_type``). A transient
    failure that outlived the hook's retries ends the loop: that record and the ones not
    yet sent come back ``uncertain``, so the engine keeps them ``in_flight`` and the next
    run looks their markers up before writing again. What was written stays recorded.
    The time budget (:class:`BudgetExhaustedError`, raised before a request is sent) ends the
    loop too: the records not started come back ``not_sent`` and simply wait for the next run; a
    record whose write had already sent a request (a job, then its note) is ``uncertain``.
    ``progress`` (visit writes) is told each created record's id before the next record is sent.

    **Lanes.** A 429 is waited out (``Retry-After``) and a 5xx backed off inside the call that drew it: one
    call at a time, every such wait stops the whole sync (3% of answers 429 with ``Retry-After: 1`` cut
    ServiceTitan to 0.3 x its clean throughput). With ``lanes`` > 1 the records are written by that many
    threads, so one record's wait leaves the others going; the rate limiter (shared, thread-safe) still
    holds the pace. The records of one customer (:func:`lane_of`) stay in one lane, in order, so a
    customer's address or property is never created twice by two lanes at once.
    """
    results: dict[str, RecordResult] = {}
    stopped: list[BaseException] = []  # the error that ended the loop (the first one)
    stop = threading.Event()

    def write(item: T) -> None:
        sent_before = requests_sent()
        try:
            try:
                result = results[key(item)] = send_one(item)
            except BadRecordError as exc:
                again, reason = refusal(crm_type, item, exc) if crm_type else (False, str(exc))
                if not again:
                    raise BadRecordError(reason, status=exc.status, code=exc.code) from None
                result = results[key(item)] = send_one(item)
            if progress is not None and result.ok and result.crm_id:
                progress({key(item): {"visit_id": result.crm_id}})
        except BadRecordError as exc:
            results[key(item)] = RecordResult(key(item), error=str(exc))
        except RetryableError as exc:
            results[key(item)] = RecordResult(key(item), error=str(exc), uncertain=True)
            stopped.append(exc)
            stop.set()
        except BudgetExhaustedError as exc:
            started = requests_sent() != sent_before
            results[key(item)] = RecordResult(key(item), error=str(exc), not_sent=not started, uncertain=started)
            stopped.append(exc)
            stop.set()

    def write_lane(lane: Sequence[T]) -> None:
        try:
            for item in lane:
                if stop.is_set():
                    return
                write(item)
        except BaseException:
            stop.set()  # an integration-stopping error: the other lanes end after their current record
            raise

    if lanes <= 1 or len(items) <= 1:
        write_lane(items)
    else:
        groups = list(_lanes(items, key))
        with ThreadPoolExecutor(max_workers=min(lanes, len(groups)), thread_name_prefix="crm-lane") as pool:
            lanes_done = [pool.submit(write_lane, group) for group in groups]
        errors = [e for done in lanes_done if (e := done.exception()) is not None]
        if errors:
            if not isinstance(errors[0], CrmError) or not any(r.crm_id for r in results.values()):
                raise errors[0]
            # An integration-stopping error (credentials, quota) after another lane wrote: raised, it would
            # make the engine mark the whole batch pending and forget what landed; the rest comes back
            # uncertain instead (looked up before anything is sent again), and the next batch stops the run.
            stopped.insert(0, RetryableError(f"stopped after earlier writes of this batch: {errors[0]}"))
    if stopped:
        exc = stopped[0]
        for rest in items:
            if key(rest) not in results:
                # A transient failure: the rest may be retried only after a look-up (as before lanes); the
                # budget: they were never started and wait for the next run.
                budget = isinstance(exc, BudgetExhaustedError)
                results[key(rest)] = RecordResult(key(rest), error=str(exc), not_sent=budget, uncertain=not budget)
    return results


def in_lanes(fn: Callable[[T], Any], items: Sequence[T], lanes: int) -> list[Any]:
    """``[fn(item) for item in items]``, up to ``lanes`` at a time (read calls of a per-record CRM: a
    search's 429 wait holds up that search, not the others). The first error is raised, after every call ended."""
    if lanes <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(lanes, len(items)), thread_name_prefix="crm-lane") as pool:
        return list(pool.map(fn, items))


def in_chunks(
    chunks: Sequence[Sequence[T]],
    send: Callable[[Sequence[T]], dict[str, RecordResult]],
    key: Callable[[T], str],
    lanes: int,
) -> dict[str, RecordResult]:
    """``send`` each chunk (a batch call, or a few calls) up to ``lanes`` at a time; the results of all.

    One chunk's 429 or 5xx wait holds up that chunk, not the step (the shared, locked limiter still sets the
    pace). A failure before any chunk landed is raised as usual (the engine decides for the whole batch);
    after one landed, the rest is not sent (chunks in flight in other lanes end) and the unsent and failed
    items come back ``uncertain``: what landed stays recorded, and the rest is looked up before anything is
    written again.
    """
    failed: list[CrmError] = []

    def send_chunk(chunk: Sequence[T]) -> dict[str, RecordResult] | None:
        if failed:
            return None
        try:
            return send(chunk)
        except CrmError as exc:
            failed.append(exc)
            return None

    landed = [out for out in in_lanes(send_chunk, chunks, lanes) if out is not None]
    if failed and not landed:
        raise failed[0]
    results: dict[str, RecordResult] = {}
    for out in landed:
        results.update(out)
    if failed:
        for chunk in chunks:
            for item in chunk:
                results.setdefault(key(item), RecordResult(key(item), error=str(failed[0]), uncertain=True))
    return results


def lane_of(item: Any, key: str) -> str:
    """The lane of a :func:`per_record` item: its customer (the CRM record when known, else the sync's key)."""
    ref = next((part for part in item if isinstance(part, CustomerRef)), None) if isinstance(item, tuple) else None
    if ref is not None:
        return "crm:" + ref.crm_id
    row = _row_of(item)
    return "key:" + row.customer_key if row is not None else key


def _lanes(items: Sequence[T], key: Callable[[T], str]) -> Iterator[list[T]]:
    """``items`` grouped by :func:`lane_of`, each group in the items' order, groups in first-seen order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(lane_of(item, key(item)), []).append(item)
    yield from groups.values()
