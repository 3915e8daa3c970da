"""The sync of one company x CRM: extract, match or create customers, write visits, record every row.

Exactly once, step by step:

1. An advisory lock per company x CRM: two runs (a retry, a backfill) never sync
   the same integration at the same time.
2. Candidates come from :mod:`crm_sync.extract` (streamed, never ``fetchall``), read with the bound CRM
   account before any CRM call: a run with nothing to send ends there, with no token, no run-start check
   and no account identity (idle runs cost nothing); the first row that needs the CRM starts them.
3. Before any CRM call for a row, its ledger row is set ``in_flight`` with a new
   ``attempt_id`` and committed (the intent).
4. Customers: one person, one customer (:mod:`crm_sync.identity`): a batch's rows are grouped into
   people before the claim (every row of a person carries one customer key); each person is resolved
   by every key of every row, in the customer map first, then by the CRM's own lookup, then created
   once (idempotent by the sync's customer key). Each mapping is committed at once. Where the destination
   reads ahead (:mod:`crm_sync.lookahead`, HubSpot), the CRM's lookup may have been made in a thread while
   earlier batches were written, never for a key of a batch queued before: the decision is still made here.
5. Rows whose previous attempt was ``in_flight`` may already have a visit record
   in the CRM. Before the visit create call the engine commits the customer (and
   parent) it writes each visit under to the ledger (``crm_intent``), and the
   destination adds each created record id as soon as the CRM returns it; a re-run
   looks there first (:meth:`Destination.recover_visits`: the recorded id read back,
   the recorded customer's records, then the marker search), so recovery does not
   depend on which customer the re-run resolves. A recovered visit stays with the
   customer it was written under (a warning says so when that differs).
6. Every row ends ``synced``, ``quarantined`` (with a specific reason) or
   ``failed`` (transient; retried next run). A process killed at any point leaves
   rows ``in_flight``; the next run resolves them by step 5.
7. A time budget (:attr:`SyncOptions.deadline`, see :mod:`crm_sync.budget`) ends the run
   cleanly before Airflow's execution timeout would kill it: checked between batches, and
   the hook refuses any wait or request that would cross it. Rows whose request was never
   sent go back to ``pending``; the run is ``partial`` with a warning and a history entry.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    BudgetExhaustedError,
    ConfigurationError,
    CrmError,
    QuotaExhaustedError,
    RetryableError,
)
from crm_hooks.redaction import redact
from crm_sync import account_facts, extract, identity, rate_state
from crm_sync.clean import dumps_strict, storable_text
from crm_sync.contacts import split_name
from crm_sync.db import sql
from crm_sync.destinations import destination_for
from crm_sync.destinations.base import CustomerRef, Destination, Progress, RecoveredVisit
from crm_sync.field_rules import apply_field_rules
from crm_sync.history import write_back
from crm_sync.ledger import (
    UNCERTAIN,
    Ledger,
    LedgerStatus,
    intent_of,
    is_unchanged,
    outcome,
    status_when_stopped_unsent,
)
from crm_sync.lookahead import LookAhead, ReadAhead
from crm_sync.match_key import MatchKey, MatchKind
from crm_sync.models import Customer, PreparedCheckIn, RecordResult
from crm_sync.overlap import complete, run_overlapped
from crm_sync.prepare import prepare_check_in
from crm_sync.quarantine import QuarantineKind
from crm_sync.settings import parse_sync_settings

log = logging.getLogger(__name__)

#: Integration-level errors: nothing more can be sent for this company x CRM in this run.
STOPPING_ERRORS = (BadCredentialsError, ConfigurationError, QuotaExhaustedError)
MAX_CONSECUTIVE_FAILED_BATCHES = 3
#: Household decisions (:mod:`crm_sync.identity`) listed one per line in a run's warnings; the rest are counted.
IDENTITY_LINES = 20
#: rows per read while an incremental run looks for work before any CRM call (re-cut to the CRM's batch size)
PEEK_BATCH_SIZE = 500


@dataclass
class SyncOptions:
    """Knobs of one integration run (DAG params map onto these)."""

    batch_size: int | None = None  # default: the CRM's batch endpoint size
    lookback_days: int = 7  # window in which edited check-ins are detected
    rate_share: float = 1.0  # share of the CRM's rate limit this run may use
    max_attempts: int | None = None  # per request, before a transient error fails the rows
    #: nothing is sent and nothing in the ledger changes: the run counts what it would do (``result.report``)
    dry_run: bool = False
    #: a dated range (backfill): every check-in created in [created_from, created_to) instead of the
    #: incremental candidates; the integration's id horizon is not moved
    created_from: datetime | None = None
    created_to: datetime | None = None
    resync_quarantined: bool = False  # range runs: retry quarantined rows as if requeued
    #: ``time.monotonic()`` by which the run must stop (None: no budget). Checked between batches and
    #: before every CRM wait or request (:meth:`CrmHook.check_budget`); unsent rows stay pending.
    deadline: float | None = None


@dataclass
class IntegrationResult:
    """What one company x CRM run did; one row of ``crm_sync.runs``."""

    run_id: str
    company_id: int
    crm_type: str
    dag_id: str | None = None
    status: str = "success"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    seconds: float = 0.0
    candidates: int = 0
    unchanged: int = 0
    synced: int = 0
    customers_found: int = 0
    customers_created: int = 0
    customers_updated: int = 0
    visits_created: int = 0
    visits_updated: int = 0
    visits_recovered: int = 0
    quarantined: int = 0
    failed: int = 0
    api_calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    #: one person, one customer (crm_sync.identity): check-ins with different emails on one phone joined
    #: as one customer / kept apart, and customers found by phone or name that gained the person's email
    identity_merges: int = 0
    identity_splits: int = 0
    customers_completed: int = 0
    error: str | None = None
    quarantine_reasons: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the CRM account written into (as the CRM reports it) and, when this run met a change, the one before
    crm_account: str | None = None
    previous_crm_account: str | None = None
    #: dry runs only: counts per outcome and sample payloads (see :class:`DryRunReport`)
    report: dict[str, Any] | None = None

    def quarantine(self, kind: str, reason: str, check_in_id: int) -> None:
        self.quarantined += 1
        # ``reason`` comes redacted from IntegrationSync._text (redact first, cut after).
        entry = self.quarantine_reasons.setdefault(f"{kind}: {reason[:160]}", {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < 5:
            entry["examples"].append(check_in_id)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("report", None)
        row.pop("crm_account", None)
        row.pop("previous_crm_account", None)
        for name in ("identity_merges", "identity_splits", "customers_completed"):
            row.pop(name)  # in the run's warnings (crm_sync.runs has no columns for them)
        row["crm_type"], row["error"] = storable_text(row["crm_type"]), storable_text(row["error"])
        row["quarantine_reasons"] = dumps_strict(self.quarantine_reasons)
        row["warnings"] = dumps_strict(self.warnings[:50])
        return row


@dataclass
class DryRunReport:
    """What a run would do, row by row, without a CRM call or a ledger write.

    Customers are judged from ``crm_sync.customer_map`` only (a dry run asks the CRM
    nothing): a customer the map does not know counts as ``would_create_customers``
    (the real run looks it up in the CRM first and may find it).
    """

    SAMPLES: ClassVar[int] = 3
    counts: Counter = field(default_factory=Counter)
    invalid_reasons: Counter = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    customers_seen: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        outcomes = (
            "would_create_customers",
            "would_match_customers",
            "would_quarantine_no_match",
            "would_create_visits",
            "would_update_visits",
            "would_look_up_visits",
            "already_synced",
            "already_quarantined",
            "invalid",
        )
        return {
            "counts": {k: self.counts.get(k, 0) for k in outcomes},
            "invalid_reasons": dict(self.invalid_reasons.most_common(20)),
            "samples": self.samples,
        }

    def add_sample(self, item: PreparedCheckIn) -> None:
        if len(self.samples) >= self.SAMPLES or item.visit is None:
            return
        # The sync's normalised payload (what every CRM mapping starts from); never credentials.
        self.samples.append(
            {
                "check_in_id": item.check_in_id,
                "visit_key": item.visit_key,
                "match_keys": item.match_keys,
                "customer": {k: v for k, v in asdict(item.customer).items() if v is not None},
                "visit": {
                    "title": item.visit.title,
                    "job_type": item.visit.job_type,
                    "occurred_at": item.visit.occurred_at.isoformat(),
                    "body": item.visit.body[:300],
                    "photo_urls": list(item.visit.photo_urls[:3]),
                },
                "warnings": item.warnings[:5],
            }
        )


@dataclass
class _BatchState:
    """What the engine keeps of the batch it is working on, between its steps."""

    #: the batch's people (:meth:`IntegrationSync._group_people`)
    people: list[identity.Person] = field(default_factory=list)
    #: customer answers read ahead for this batch (its first resolution only)
    read_answers: dict[str, CustomerRef | None] = field(default_factory=dict)
    #: rows read again only because their customer changed (``crm_state``)
    state_retries: set[int] = field(default_factory=set)
    #: a visit write of this batch was about to go out, and the hook's call count then
    visit_writes_started: bool = False
    calls_before_visit_writes: int = 0
    #: the run's :attr:`IntegrationSync._facts_generation` this batch's writes were built with
    facts_generation: int = 0


class _Abandoned(Exception):
    """Thrown into a batch paused before its visits when the run ends there (:mod:`crm_sync.overlap`)."""


class _StopIntegration(Exception):
    """Internal: an integration-level error ended the run for this company x CRM."""


class _BudgetReached(Exception):
    """Internal: the run's time budget ended it cleanly; unsent rows are pending for the next run."""


class IntegrationSync:
    """Sync one company's check-ins into one CRM.

    :param engine: the Rank It Pro database.
    :param integration: the company's integration object from ``crm_integrations``.
    :param destination: the CRM destination; built from the integration when omitted.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        company_id: int,
        crm_type: str,
        integration: dict[str, Any],
        run_id: str,
        dag_id: str | None = None,
        options: SyncOptions | None = None,
        destination: Destination | None = None,
    ):
        self.engine = engine
        self.company_id = company_id
        self.crm_type = crm_type
        self.integration = integration
        self.options = options or SyncOptions()
        self.result = IntegrationResult(run_id=run_id, company_id=company_id, crm_type=crm_type, dag_id=dag_id)
        self.settings, warnings = parse_sync_settings(integration.get("syncSettings"))
        self.result.warnings.extend(warnings)
        self._destination = destination
        self._failed_batches_in_a_row = 0
        self._budget_hit = False
        self._in_use: Destination | None = None
        self._dry = DryRunReport() if self.options.dry_run else None
        #: the batch being worked on (two are under way where visit creates overlap: :mod:`crm_sync.overlap`)
        self._batch = _BatchState()
        #: the threads sending batches' visit creates, and the sends in flight (:meth:`_send_visits`)
        self._sender: ThreadPoolExecutor | None = None
        self._in_flight: set[Future[dict[str, RecordResult]]] = set()
        #: the learned rate limits were read for this run's CRM account (so they are written back at its end)
        self._rates_loaded = False
        #: CRM calls of this run by endpoint (the hook's ``stats.by_endpoint``; benchmarks read it)
        self.endpoint_calls: dict[str, int] = {}
        #: account facts kept between runs (crm_sync.account_facts); re-checked at most once per run
        self._facts_store = account_facts.AccountFacts(engine, company_id, crm_type)
        self._facts: dict[str, Any] | None = None
        self._facts_print = ""
        self._facts_rechecked = False
        self._facts_generation = 0  # how many times the facts were checked again in this run
        #: this company x CRM's ledger, bound to the CRM account of this run (crm_sync.accounts)
        self.ledger = Ledger(engine, company_id, crm_type)
        #: unchanged rows whose ledger fingerprint is not the one read (stored in bulk: :meth:`_unchanged`)
        self._stale_fps: list[PreparedCheckIn] = []

    # ------------------------------------------------------------------ entry point
    def run(self) -> IntegrationResult:
        if self._dry is not None:
            return self._dry_run()
        clock = time.monotonic()
        result = self.result
        completed = False
        destination: Destination | None = None
        pending: Generator[dict[str, Any]] | None = None
        lock_conn = self.engine.connect()
        try:
            if not self._try_lock(lock_conn):
                result.status = "skipped"
                result.error = "another sync of this company and CRM is running; skipped"
                return result
            ranged = self.options.created_from is not None
            # Recorded before any candidate is read: a row settled later is read by a later run, never skipped.
            settled_id = None if ranged else extract.settled_horizon(self.engine)
            peeked_account = self.ledger.load_account()
            self._in_use = self._destination  # an injected destination redacts; building one calls nothing
            pending = self._peek_for_work() if peeked_account is not None else None
            if peeked_account is not None and pending is None:
                # Idle: every candidate is unchanged or was quarantined without a CRM call. No token, no
                # prepare(), no account identity: credential health is the daily health task's (README).
                result.crm_account = peeked_account
            else:
                destination = self._destination or destination_for(
                    self.crm_type,
                    self.integration,
                    self.settings,
                    rate_share=self.options.rate_share,
                    max_attempts=self.options.max_attempts,
                    credentials_writer=self._credentials_writer(),
                )
                self._in_use = destination
                destination.hook.deadline = self.options.deadline
                result.warnings.extend(destination.hook.setting_warnings)
                self._start(destination, peeked_account)
                self._start_from_learned_rates(destination)
                batch_size = self.options.batch_size or destination.batch_size
                if pending is not None and self.ledger.crm_account == peeked_account:
                    batches = _rebatch(pending, batch_size)
                else:
                    # No binding before, or the CRM reports another account: the peek read the wrong
                    # account's rows; read this account's from the start (its first counts dropped).
                    if pending is not None:
                        pending.close()
                    self._reset_counts()
                    batches = self._batches(batch_size)
                with self._look_ahead(destination) as ahead, self._visit_sender(destination):
                    read_ahead = ahead.batches(batches) if ahead else ((b, None) for b in batches)
                    run_overlapped(
                        self._each_batch(destination, read_ahead),
                        self._abandon,
                        _StopIntegration,
                        in_flight=max(1, destination.overlap_visit_writes),
                    )
            if self._budget_hit:
                raise _BudgetReached()
            completed = True
            if settled_id is not None:
                extract.advance_integration(self.engine, self.company_id, self.crm_type, settled_id)
        except _StopIntegration:
            pass
        except (_BudgetReached, BudgetExhaustedError) as exc:
            # Run start (token, prepare) or between batches: nothing of an unfinished batch is claimed.
            self._budget_reached(exc if isinstance(exc, BudgetExhaustedError) else None)
        except STOPPING_ERRORS as exc:
            self._stop(exc)
        except RetryableError as exc:
            # The CRM stayed unreachable through every retry (at run start, or while streaming):
            # recorded and reported; the rows wait for the next run.
            result.error = f"CRM unavailable: {exc}"
        finally:
            if pending is not None:
                pending.close()  # a generator; a stop mid-run closes its cursor
            if destination is not None:
                # Warnings a destination decided during the run (a vendor fallback chosen from an answer).
                result.warnings.extend(w for w in destination.warnings if w not in result.warnings)
                stats = destination.hook.stats
                result.api_calls, result.retries, result.rate_limited = (
                    stats.api_calls,
                    stats.retries,
                    stats.rate_limited,
                )
                self.endpoint_calls = dict(stats.by_endpoint)
                self._keep_learned_rates(destination)
                destination.close()
            self._unlock(lock_conn)
            lock_conn.close()
            result.finished_at = datetime.now(UTC)
            result.seconds = round(time.monotonic() - clock, 3)
            if result.status != "skipped":
                result.status = self._final_status(completed)
                if self._budget_hit and result.status != "config_error":
                    result.status = "partial"  # cut short on purpose, not failed: the rest follows next run
            self._record()
        return result

    def _dry_run(self) -> IntegrationResult:
        """Count what :meth:`run` would do: no lock, no destination, no CRM call, no ledger write."""
        clock = time.monotonic()
        report, result = self._dry, self.result
        assert report is not None
        # No CRM call in a dry run: the account the live rows are bound to.
        result.crm_account = self.ledger.load_account()
        batch_size = self.options.batch_size or 500
        for rows in self._batches(batch_size):
            result.candidates += len(rows)
            ready: list[PreparedCheckIn] = []
            for row in rows:
                item = prepare_check_in(row, self.settings)
                status = row.get("ledger_status")
                if is_unchanged(row, item.source_hash):
                    result.unchanged += 1
                    report.counts["already_synced" if status == LedgerStatus.SYNCED else "already_quarantined"] += 1
                elif item.error:
                    report.counts["invalid"] += 1
                    report.invalid_reasons[item.error[:160]] += 1
                    result.quarantine(item.error_kind, item.error, item.check_in_id)
                else:
                    # in_flight: the last attempt may have landed; the real run looks the marker up first.
                    report.counts[
                        {
                            LedgerStatus.SYNCED: "would_update_visits",
                            LedgerStatus.IN_FLIGHT: "would_look_up_visits",
                        }.get(status, "would_create_visits")
                    ] += 1
                    report.add_sample(item)
                    ready.append(item)
            self._group_people(ready)  # one person, one customer: counted as the real run would
            if self.settings.sync_customers:
                mapped = self._map_lookup(sorted({k for r in ready for k in r.match_keys}))
                for item in ready:
                    if item.customer_key in report.customers_seen:
                        continue
                    report.customers_seen.add(item.customer_key)
                    if any(k in mapped for k in item.match_keys):
                        report.counts["would_match_customers"] += 1
                    elif self.settings.create_new_customers:
                        report.counts["would_create_customers"] += 1
                    else:
                        report.counts["would_quarantine_no_match"] += 1
        result.report = report.as_dict()
        # The counters of a real run stay zero; the reasons are kept for crm_sync.runs.
        result.quarantined = 0
        result.status = "dry_run"
        result.finished_at = datetime.now(UTC)
        result.seconds = round(time.monotonic() - clock, 3)
        self._record()
        return result

    # ------------------------------------------------------------------ batches
    def _batches(self, batch_size: int):
        """The rows this run looks at: a dated range (backfill) or the incremental candidates."""
        opts = self.options
        if opts.created_from is not None:
            return extract.iter_range_batches(
                self.engine,
                self.company_id,
                self.crm_type,
                created_from=opts.created_from,
                created_to=opts.created_to or datetime.now(UTC),
                batch_size=batch_size,
                resync_quarantined=opts.resync_quarantined,
                crm_account=self.ledger.crm_account,
            )
        return extract.iter_candidate_batches(
            self.engine,
            self.company_id,
            self.crm_type,
            batch_size=batch_size,
            lookback_days=opts.lookback_days,
            crm_account=self.ledger.crm_account,
        )

    def _peek_for_work(self) -> Generator[dict[str, Any]] | None:
        """Read candidates (the bound account's, no CRM call) until one needs the CRM.

        Rows before it are handled here as :meth:`_batch_steps` would: unchanged ones counted, rows
        without a usable identity quarantined (no CRM call either). Returns the rest of the stream,
        starting with that row (read once, never ``fetchall``), or None when the run has nothing to send.
        """
        result = self.result
        stream = self._batches(PEEK_BATCH_SIZE)
        rows = (row for batch in stream for row in batch)
        for row in rows:
            item = prepare_check_in(row, self.settings)
            unchanged = is_unchanged(row, item.source_hash)
            if item.error is None and not unchanged:
                self._store_fingerprints()
                return _resume(row, rows, stream)
            result.candidates += 1
            if unchanged:
                self._unchanged(row, item)
            else:
                self._quarantine_unsent(item)
        self._store_fingerprints()
        return None

    def _unchanged(self, row: Mapping[str, Any], item: PreparedCheckIn) -> None:
        """Count a row with nothing to do; note it when its ledger fingerprint is not the one read (discovery
        would find it edited every cycle: migration 0017)."""
        self.result.unchanged += 1
        if item.source_fp is not None and row.get("ledger_source_fp") != item.source_fp:
            self._stale_fps.append(item)
            if len(self._stale_fps) >= PEEK_BATCH_SIZE:
                self._store_fingerprints()

    def _store_fingerprints(self) -> None:
        if self._stale_fps:
            self.ledger.refresh_fingerprints(self._stale_fps)
            self._stale_fps = []

    def _reset_counts(self) -> None:
        """Forget what a peek counted: the run reads its candidates again (another account's)."""
        fresh = IntegrationResult(run_id="", company_id=0, crm_type="")
        for name in ("candidates", "unchanged", "quarantined", "quarantine_reasons"):
            setattr(self.result, name, getattr(fresh, name))

    def _look_ahead(self, destination: Destination) -> contextlib.AbstractContextManager[LookAhead | None]:
        """Customer reads :attr:`Destination.lookahead_batches` ahead (:mod:`crm_sync.lookahead`), or none."""
        if destination.lookahead_batches < 1 or not self.settings.sync_customers:
            return contextlib.nullcontext()
        return LookAhead(
            lambda rows: self._prepare_batch(destination, rows),
            lambda prepared, skip, cancelled: self._read_ahead(destination, prepared, skip, cancelled),
            destination.lookahead_batches,
        )

    def _prepare_batch(self, destination: Destination, rows: Sequence[dict[str, Any]]) -> ReadAhead:
        items = [apply_field_rules(destination.crm_type, prepare_check_in(row, self.settings)) for row in rows]
        sending = [
            i for row, i in zip(rows, items, strict=True) if not i.error and not is_unchanged(row, i.source_hash)
        ]
        return ReadAhead(items, sending)

    def _read_ahead(
        self, destination: Destination, prepared: ReadAhead, skip: frozenset[str], cancelled: threading.Event
    ) -> dict[str, CustomerRef | None]:
        """In a look-ahead thread: the CRM's answer for the keys of the people of ``prepared`` that neither the
        customer map nor ``skip`` has, asked in the order :meth:`_resolve_customers` asks (emails, then phones
        for the people still unresolved, then names; one key kind a call even where the destination could answer
        them together, :attr:`Destination.one_lookup_for_all_keys`: the engine then asks only for the keys
        without an answer). Reads only, nothing of the run's state is touched; a CRM
        error ends the reads (what was answered is kept) and is left to the engine to meet when it asks."""
        answers: dict[str, CustomerRef | None] = {}
        people, _ = identity.group_people(prepared.sending, self.settings.household_phone_rule)
        mapped = self._map_lookup(sorted({k for p in people for k in p.keys}))
        unresolved = [p for p in people if not any(k in mapped for k in p.keys)]
        try:
            for i in range(max((len(p.keys) for p in unresolved), default=0)):
                if cancelled.is_set():
                    break
                wanted = {p.keys[i]: p.customer for p in unresolved if len(p.keys) > i and p.keys[i] not in skip}
                hits = destination.match_customers(list(wanted.items())) if wanted else {}
                answers.update({k: hits.get(k) for k in wanted})
                unresolved = [p for p in unresolved if not (len(p.keys) > i and p.keys[i] in hits)]
        except CrmError as exc:
            log.info("reading customers ahead stopped (%s); the batch asks for the rest itself", type(exc).__name__)
        return answers

    def _each_batch(
        self, destination: Destination, batches: Iterator[tuple[list[dict[str, Any]], ReadAhead | None]]
    ) -> Iterator[Iterator[None]]:
        """The steps of each batch (:meth:`_batch_steps`), for :func:`crm_sync.overlap.run_overlapped`; none
        is begun once the time budget is reached."""
        for rows, read in batches:
            if self._budget_hit or (self.options.deadline is not None and time.monotonic() >= self.options.deadline):
                raise _BudgetReached()
            yield self._batch_steps(destination, rows, read)

    @contextlib.contextmanager
    def _visit_sender(self, destination: Destination) -> Iterator[None]:
        """The threads batches' visit creates go out in, where the destination overlaps them with the next batches
        (:attr:`Destination.overlap_visit_writes`); leaving waits for the sends in flight."""
        if not destination.overlap_visit_writes:
            yield
            return
        workers = destination.overlap_visit_writes
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crm-visit-writes") as self._sender:
            try:
                yield
            finally:
                self._sender = None

    def _abandon(self, steps: Iterator[None]) -> None:
        """End a batch paused before its visits: the run stops there (its rows are finished as not sent)."""
        with contextlib.suppress(StopIteration):
            steps.throw(_Abandoned())

    def _pause(self) -> Iterator[None]:
        """A pause in a batch's steps: another batch may run meanwhile; this batch's state is its own again after."""
        batch = self._batch
        try:
            yield
        finally:
            self._batch = batch

    def _batch_steps(
        self, destination: Destination, rows: Sequence[dict[str, Any]], ahead: ReadAhead | None = None
    ) -> Iterator[None]:
        """One batch: prepare, claim, customers, visits, finish. A generator (:mod:`crm_sync.overlap`): it pauses
        once its customers are decided (the batches before it are then completed, but up to
        :attr:`Destination.overlap_visit_writes` - 1 still sending) and, where the destination overlaps visit
        creates, while they are in flight (the next batch begins meanwhile)."""
        result = self.result
        result.candidates += len(rows)
        prepared: list[PreparedCheckIn] = []
        previous: dict[int, dict[str, Any]] = {}
        items = (ahead or self._prepare_batch(destination, rows)).items
        self._batch = batch = _BatchState(facts_generation=self._facts_generation)
        # Answers read ahead serve this batch's first resolution only: its own writes come after them.
        batch.read_answers = dict(ahead.answers) if ahead is not None else {}
        for row, item in zip(rows, items, strict=True):
            if is_unchanged(row, item.source_hash):
                self._unchanged(row, item)
                continue
            if item.error:
                self._quarantine_unsent(item)
                continue
            prepared.append(item)
            previous[item.check_in_id] = row
        self._store_fingerprints()
        if not prepared:
            return
        batch.state_retries = {i.check_in_id for i in prepared if previous[i.check_in_id].get("state_changed")}
        batch.people = self._group_people(prepared)  # before the claim: the ledger gets each person's key
        attempt_id = str(uuid.uuid4())
        self._claim(prepared, attempt_id)
        outcomes: dict[int, dict[str, Any]] = {}
        try:
            try:
                refs = self._resolve_customers(destination, prepared, outcomes) if self.settings.sync_customers else {}
                yield from self._pause()  # customers decided: the batches before complete, but those in flight
                yield from self._write_visits(destination, prepared, previous, refs, outcomes, attempt_id)
            except BadRecordError as exc:
                if not self._recheck_facts(destination, [str(exc)]):
                    raise
                self._send_again(destination, prepared, previous, outcomes, attempt_id)
            stale = [
                r
                for r in prepared
                if outcomes.get(r.check_in_id, {}).get("status") == LedgerStatus.QUARANTINED
                and destination.stale_fact(outcomes[r.check_in_id].get("last_error"))
            ]
            if stale and self._recheck_facts(destination, [outcomes[r.check_in_id]["last_error"] for r in stale]):
                self._send_again(destination, stale, previous, outcomes, attempt_id)
            self._failed_batches_in_a_row = 0
        except BudgetExhaustedError as exc:
            # Raised before a request is sent: did a visit request go out since visit writes began? (A read
            # ahead, or the next batch's call while this one's creates were in flight, counts as one too: the
            # rows are then looked up next run, never sent twice.)
            batch = self._batch
            sent = batch.visit_writes_started and destination.hook.stats.api_calls > batch.calls_before_visit_writes
            for item in prepared:
                status = status_when_stopped_unsent(previous[item.check_in_id].get("ledger_status"), sent=sent)
                outcomes.setdefault(item.check_in_id, self._outcome(status, kind="time_budget", error=str(exc)))
            self._finish(prepared, outcomes, attempt_id)
            self._budget_reached(exc)
            raise _StopIntegration() from None
        except STOPPING_ERRORS as exc:
            # Before any visit write nothing of this batch is uncertain: back to pending. Once visit
            # writes began (a per-record CRM, or a token refresh failing mid-batch), rows without an
            # outcome may be in the CRM: in_flight, so the next run looks them up first.
            unsent = LedgerStatus.IN_FLIGHT if self._batch.visit_writes_started else LedgerStatus.PENDING
            for item in prepared:
                outcomes.setdefault(item.check_in_id, self._outcome(unsent, kind="stopped", error=str(exc)))
            self._finish(prepared, outcomes, attempt_id)
            self._stop(exc)
            raise _StopIntegration() from None
        except _Abandoned:
            # The run stopped in the batch before, while this one's customers were decided: no visit write of
            # this batch went out (rows an earlier attempt left uncertain keep that status).
            for item in prepared:
                status = status_when_stopped_unsent(previous[item.check_in_id].get("ledger_status"), sent=False)
                error = "the run stopped before this batch's visits were written; sent next run"
                outcomes.setdefault(item.check_in_id, self._outcome(status, kind="stopped", error=error))
            self._finish(prepared, outcomes, attempt_id)
            raise _StopIntegration() from None
        except (RetryableError, BadRecordError) as exc:
            # A transient failure that outlived the retries, or a call the CRM refused as a whole:
            # rows whose visit call may have been sent stay in_flight (resolved by lookup next time),
            # the others are failed and retried next run.
            for item in prepared:
                kind = "transient" if isinstance(exc, RetryableError) else "crm_refused_batch"
                outcomes.setdefault(item.check_in_id, self._outcome(LedgerStatus.FAILED, kind=kind, error=str(exc)))
            self._failed_batches_in_a_row += 1
            if self._failed_batches_in_a_row >= MAX_CONSECUTIVE_FAILED_BATCHES:
                self._finish(prepared, outcomes, attempt_id)
                result.error = f"stopped after {MAX_CONSECUTIVE_FAILED_BATCHES} failed batches in a row: {exc}"
                raise _StopIntegration() from None
        self._finish(prepared, outcomes, attempt_id)

    def _send_again(
        self,
        destination: Destination,
        rows: list[PreparedCheckIn],
        previous: dict[int, dict[str, Any]],
        outcomes: dict[int, dict[str, Any]],
        attempt_id: str,
    ) -> None:
        """Rows the CRM refused for a stale account fact, sent once more after the re-check. They go as rows
        whose last attempt may have landed (the visit is looked up before any create): nothing twice."""
        self._batch.read_answers = {}  # read before this batch's first writes
        again = [r for r in rows if outcomes.get(r.check_in_id, {}).get("status") != LedgerStatus.SYNCED]
        for row in again:
            outcomes.pop(row.check_in_id, None)
            previous[row.check_in_id] = {**previous[row.check_in_id], "ledger_status": LedgerStatus.IN_FLIGHT}
        refs = self._resolve_customers(destination, again, outcomes) if self.settings.sync_customers else {}
        complete(self._write_visits(destination, again, previous, refs, outcomes, attempt_id))

    def _outcome(
        self,
        status: LedgerStatus,
        *,
        kind: str | None = None,
        error: str | None = None,
        customer_id: str | None = None,
        visit_id: str | None = None,
    ) -> dict[str, Any]:
        """One row's ledger outcome, its error redacted (:meth:`_text`)."""
        return outcome(status, kind=kind, error=self._text(error), customer_id=customer_id, visit_id=visit_id)

    def _text(self, text: str | None, limit: int | None = 2000) -> str | None:
        """Text the ledger and run rows can hold: every secret of the integration redacted first, then
        NUL and lone surrogates cleaned, then cut (cutting first could leave part of a secret behind)."""
        if text is None:
            return None
        if self._in_use is not None:
            redacted = self._in_use.hook.redact(text)
        else:  # no hook built (an idle run's peek): the integration's credential values
            creds = self.integration.get("credentials")
            redacted = redact(text, [str(v) for v in creds.values()] if isinstance(creds, dict) else [])
        cleaned = storable_text(redacted) or ""
        return cleaned if limit is None else cleaned[:limit]

    def _budget_reached(self, exc: BudgetExhaustedError | None) -> None:
        """Record a clean stop on the time budget: a warning and an error in the run row and the app's history."""
        self._budget_hit = True
        if self.result.error is None:
            self.result.error = (
                "time budget reached: the run stopped cleanly; rows not sent yet stay pending for the next run"
            )
            self.result.warnings.append(
                self._text(
                    f"stopped by the time budget ({exc})" if exc else "stopped by the time budget between batches"
                )
                or ""
            )

    # ------------------------------------------------------------------ customers
    def _resolve_customers(
        self, destination: Destination, rows: list[PreparedCheckIn], outcomes: dict[int, dict[str, Any]]
    ) -> dict[str, CustomerRef]:
        """customer_key -> CRM customer for every person of the batch; failures fill ``outcomes``.

        One person, one customer (:mod:`crm_sync.identity`): the rows are grouped into people first (every
        row of a person already carries the person's customer key, see :meth:`_group_people`), then each
        person is resolved by every key of every row, in order (emails, phones, names): the customer map,
        then the CRM's lookup, then one create from the person's merged customer. A hit by phone or name
        for a person with another email than the customer's is the household rule's call
        (:meth:`_accept`); a customer found without the person's email gains it (:meth:`_add_emails`).
        """
        result = self.result
        batch_people = self._batch.people
        people = (
            batch_people
            if {r.check_in_id for p in batch_people for r in p.rows} == {r.check_in_id for r in rows}
            else self._group_people(rows)
        )
        mapped = self._map_lookup(sorted({k for p in people for k in p.keys}))
        known = self._Known(self)
        refs: dict[str, CustomerRef] = {}
        via: dict[str, str] = {}  # customer_key -> the key it was found by
        split_from: dict[str, set[str]] = {}  # customer_key -> customer ids it was kept apart from
        unresolved: dict[str, identity.Person] = {}
        for person in people:
            for key in person.keys:
                if key not in mapped:
                    continue
                verdict = self._accept(person, key, mapped[key][0], known, final=False)
                if verdict is True:
                    refs[person.customer_key], via[person.customer_key] = mapped[key][0], key
                    break
                if verdict is False:
                    split_from.setdefault(person.customer_key, set()).add(mapped[key][0].crm_id)
            if person.customer_key not in refs:
                unresolved[person.customer_key] = person
        found_now: set[str] = set()
        if unresolved:
            # Try each key in order, asking the CRM only for people still unresolved.
            depth = max(len(p.keys) for p in unresolved.values())
            every: dict[str, CustomerRef] | None = None
            if destination.one_lookup_for_all_keys and depth > 1:
                # One lookup answers every key kind: asked once, then read in the same key order below.
                asked = {k: p.customer for p in unresolved.values() for k in p.keys}
                every = self._match(destination, list(asked.items()))
            for i in range(depth):
                wanted = [(p.keys[i], p.customer) for p in unresolved.values() if len(p.keys) > i]
                if not wanted:
                    continue
                hits = every if every is not None else self._match(destination, wanted)
                for ckey, person in list(unresolved.items()):
                    key = person.keys[i] if len(person.keys) > i else None
                    if key is None or key not in hits:
                        continue
                    if hits[key].crm_id in split_from.get(ckey, ()):
                        continue  # already kept apart from this customer (by the map's answer)
                    if self._accept(person, key, hits[key], known, final=True):
                        refs[ckey], via[ckey] = hits[key], key
                        found_now.add(ckey)
                        del unresolved[ckey]
                    else:
                        split_from.setdefault(ckey, set()).add(hits[key].crm_id)
            result.customers_found += len(found_now)
        created: set[str] = set()
        if unresolved:
            if self.settings.create_new_customers:
                outcome = destination.create_customers([p.representative() for p in unresolved.values()])
                stopped = next((res for res in outcome.values() if res.not_sent), None)
                if stopped is not None:
                    # No visit was written yet: the batch goes back to pending (customer creates are
                    # idempotent by the customer key, so the next run finds what was created here).
                    raise BudgetExhaustedError(stopped.error or "time budget reached")
                for ckey in unresolved:
                    res = outcome.get(ckey)
                    if res is not None and res.ok:
                        refs[ckey] = CustomerRef(res.crm_id, res.extra.get("parent_id"))
                        if res.created:
                            created.add(ckey)
                result.customers_created += len(created)
            for ckey, person in unresolved.items():
                if ckey in refs:
                    continue
                status = LedgerStatus.QUARANTINED
                if not self.settings.create_new_customers:
                    reason = (
                        "no existing customer in the CRM matches "
                        f"{', '.join(person.keys)} and createNewCustomers is off"
                    )
                    kind = "no_match"
                else:
                    res = outcome.get(ckey)
                    reason = res.error if res and res.error else "the CRM returned no customer id"
                    kind = (res.kind if res is not None else None) or QuarantineKind.CRM_REJECTED
                    if res is not None and res.uncertain:
                        # Customer creates are idempotent by the customer key: simply retried next run.
                        status, kind = LedgerStatus.FAILED, "transient"
                for r in person.rows:
                    outcomes[r.check_in_id] = self._outcome(status, kind=kind, error=reason)
        # Remember every key of every person, so a returning customer costs no lookup. A key already mapped
        # to another customer stays with it (a household's shared phone keeps pointing at its first owner).
        new_map: dict[str, tuple[CustomerRef, str | None, bool]] = {}
        for person in people:
            ref = refs.get(person.customer_key)
            if ref is None:
                continue
            payload = _customer_hash(person.representative()) if person.customer_key in created else None
            for key in person.keys:
                owner = mapped[key][0] if key in mapped else (new_map[key][0] if key in new_map else None)
                if owner is None or (owner.crm_id == ref.crm_id and owner != ref):
                    new_map[key] = (ref, payload, person.customer_key in created)
        # Emails first: what the map knew before this batch says whether a customer lacks one.
        self._add_emails(destination, people, refs, via, created, mapped, known)
        self._map_save(new_map)
        if self.settings.update_existing_customers:
            self._update_customers(destination, people, refs, mapped, created, outcomes)
        return refs

    def _match(self, destination: Destination, wanted: list[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        """:meth:`Destination.match_customers`, from what was read ahead for the keys it has an answer for."""
        ahead = self._batch.read_answers
        hits = {k: ref for k, _ in wanted if (ref := ahead.get(k)) is not None}
        asked = [(k, c) for k, c in wanted if k not in ahead]
        if asked:
            hits.update(destination.match_customers(asked))
        return hits

    class _Known:
        """What the sync itself knows of CRM customers, read on demand and once per customer: the emails the
        customer map holds for them, and the names on the check-ins synced to them (the ledger)."""

        def __init__(self, sync: IntegrationSync):
            self.sync = sync
            self.emails: dict[str, set[str]] = {}
            self.names: dict[str, set[str]] = {}

        def _load(self, crm_id: str) -> None:
            if crm_id not in self.emails:
                emails, names = self.sync._known_of([crm_id])
                self.emails[crm_id] = emails.get(crm_id, set())
                self.names[crm_id] = names.get(crm_id, set())

        def emails_of(self, crm_id: str) -> set[str]:
            self._load(crm_id)
            return self.emails[crm_id]

        def names_of(self, crm_id: str) -> set[str]:
            self._load(crm_id)
            return self.names[crm_id]

    def _accept(
        self, person: identity.Person, key: str, ref: CustomerRef, known: IntegrationSync._Known, *, final: bool
    ) -> bool | None:
        """Whether the customer ``ref`` found by ``key`` is ``person`` (None: ask the CRM, it knows the name).

        An email hit is the person. A phone or name hit is too, unless the customer has an email and the
        person only other ones: then ``householdPhoneRule`` decides, comparing the name the CRM gave, else the
        names on the check-ins synced to that customer (with neither, the map's answer waits for the CRM's;
        a customer without a known name is not "the same name"). Each such decision is reported.
        """
        if MatchKey.parse(key).kind == MatchKind.EMAIL or not person.emails:
            return True
        theirs = {ref.email} if ref.email else set() if ref.email == "" else known.emails_of(ref.crm_id)
        if not theirs or theirs & person.emails:
            return True
        names = {n for n in [identity.normalised_name_text(ref.name)] if n} or known.names_of(ref.crm_id)
        rule = self.settings.household_phone_rule
        if rule == "same_name" and not names and not final:
            return None  # the CRM's answer carries the name
        same = identity.same_person(person.emails, person.names, theirs, names, rule)
        why = "same name" if same and names & person.names else f"householdPhoneRule {rule}"
        self._identity_line(
            "merge" if same else "split",
            f"identity: {'joined' if same else 'kept'} check-ins "
            f"{', '.join(f'#{i}' for i in person.check_in_ids[:5])} "
            f"{'with' if same else 'apart from'} existing CRM customer {ref.crm_id} (different emails, shared "
            f"{identity.mask_key(key)}; {why})",
        )
        return same

    def _identity_line(self, kind: str, line: str) -> None:
        """Count a household decision; the first :data:`IDENTITY_LINES` become run warnings, the rest a count."""
        r = self.result
        if kind == "merge":
            r.identity_merges += 1
        else:
            r.identity_splits += 1
        if r.identity_merges + r.identity_splits <= IDENTITY_LINES:
            r.warnings.append(self._text(line) or "")

    def _group_people(self, rows: list[PreparedCheckIn]) -> list[identity.Person]:
        """The batch's people (:func:`crm_sync.identity.group_people`); every row gets its person's key
        before the ledger claim, so claim, visits and creates all use it. Decisions go to the run summary."""
        people, decisions = identity.group_people(rows, self.settings.household_phone_rule)
        for person in people:
            for row in person.rows:
                row.customer_key = person.customer_key
        for decision in decisions:
            self._identity_line(decision.kind, identity.describe(decision))
        return people

    def _add_emails(
        self,
        destination: Destination,
        people: list[identity.Person],
        refs: dict[str, CustomerRef],
        via: dict[str, str],
        created: set[str],
        mapped: dict[str, tuple[CustomerRef, str | None]],
        known: IntegrationSync._Known,
    ) -> None:
        """A customer found by phone or name that lacks the person's email gains it (whatever
        ``updateExistingCustomers`` says: it is how the next check-in with that email finds them). The
        customer keeps its key in the CRM; the destination adds the email only where the record has none."""
        todo: dict[str, tuple[CustomerRef, str]] = {}
        for person in people:
            ckey = person.customer_key
            ref = refs.get(ckey)
            if ref is None or ckey in created or ckey not in via or not person.customer.email:
                continue
            if MatchKey.parse(via[ckey]).kind == MatchKind.EMAIL:
                continue
            email_key = str(MatchKey.email(person.customer.email))
            if email_key in mapped or ref.email or known.emails_of(ref.crm_id):
                continue  # the customer has an email already (ours or another household member's)
            todo.setdefault(ref.crm_id, (ref, person.customer.email))
        if not todo:
            return
        results = destination.add_emails(list(todo.values()))
        for crm_id in todo:
            res = results.get(crm_id)
            if res is not None and res.ok:
                self.result.customers_completed += 1
            elif res is not None and res.not_sent:
                self._budget_hit = True
            elif res is not None and res.error:
                self.result.warnings.append(self._text(f"customer {crm_id}: email not added: {res.error}", 300) or "")

    def _update_customers(
        self,
        destination: Destination,
        people: list[identity.Person],
        refs: dict[str, CustomerRef],
        mapped: dict[str, tuple[CustomerRef, str | None]],
        created: set[str],
        outcomes: dict[int, dict[str, Any]],
    ) -> None:
        """Push changed customer fields (the person's merged customer) for customers that existed before this batch."""
        todo: dict[str, tuple[CustomerRef, PreparedCheckIn]] = {}
        for person in people:
            row = person.representative()
            ref = refs.get(row.customer_key)
            if ref is None or row.customer_key in created or row.check_in_id in outcomes:
                continue
            if row.check_in_id in self._batch.state_retries:
                continue  # an unchanged older check-in retried for the CRM's state: its data is not newer
            if mapped.get(row.customer_key, (None, None))[1] == _customer_hash(row):
                continue
            todo[ref.crm_id] = (ref, row)  # the newest person of a customer wins
        if not todo:
            return
        results = destination.update_customers(list(todo.values()))
        saved: dict[str, tuple[CustomerRef, str | None, bool]] = {}
        for crm_id, (ref, row) in todo.items():
            res = results.get(crm_id)
            if res is not None and res.ok:
                self.result.customers_updated += 1
                saved[row.customer_key] = (ref, _customer_hash(row), False)
            elif res is not None and res.not_sent:
                self._budget_hit = True  # not sent: retried next run (the hash still differs)
            elif res is not None and res.error:
                # The visit can still be recorded; the customer update problem is a warning.
                row.warnings.append(f"customer update refused by the CRM: {res.error[:200]}")
        self._map_save(saved)

    # ------------------------------------------------------------------ visits
    def _write_visits(
        self,
        destination: Destination,
        rows: list[PreparedCheckIn],
        previous: dict[int, dict[str, Any]],
        refs: dict[str, CustomerRef],
        outcomes: dict[int, dict[str, Any]],
        attempt_id: str | None = None,
    ) -> Iterator[None]:
        """The batch's visits: updated, recovered, created. Steps (:meth:`_batch_steps`): they pause while the
        creates are in flight (:meth:`_send_visits`)."""
        result = self.result
        ready = [r for r in rows if r.check_in_id not in outcomes]
        if not self.settings.sync_check_ins_as_jobs:
            for row in ready:
                ref = refs.get(row.customer_key)
                outcomes[row.check_in_id] = self._outcome(LedgerStatus.SYNCED, customer_id=ref.crm_id if ref else None)
                result.synced += 1
            return
        to_update = [r for r in ready if previous[r.check_in_id].get("crm_visit_id")]
        uncertain = [
            r for r in ready if r not in to_update and previous[r.check_in_id].get("ledger_status") in UNCERTAIN
        ]
        # What the earlier attempts of these rows recorded (crm_intent) is looked at first.
        intents = {r.visit_key: intent_of(previous[r.check_in_id]) for r in uncertain}
        found = destination.recover_visits(uncertain, intents, refs) if uncertain else {}
        to_create = [r for r in ready if r not in to_update and r.visit_key not in found]

        self._batch.visit_writes_started = bool(to_update or to_create)
        self._batch.calls_before_visit_writes = destination.hook.stats.api_calls
        if to_update:
            updated = destination.update_visits(
                [(r, previous[r.check_in_id]["crm_visit_id"], refs.get(r.customer_key)) for r in to_update]
            )
            self._apply(to_update, updated, refs, outcomes, counter="visits_updated")
        for row in ready:
            if row.visit_key in found:
                self._recovered(row, found[row.visit_key], refs.get(row.customer_key), outcomes)
        if to_create:
            yield from self._create_visits(destination, to_create, refs, outcomes, attempt_id)
            self._retry_cured(destination, to_create, refs, outcomes, attempt_id)

    def _create_visits(
        self,
        destination: Destination,
        rows: list[PreparedCheckIn],
        refs: dict[str, CustomerRef],
        outcomes: dict[int, dict[str, Any]],
        attempt_id: str | None,
    ) -> Iterator[None]:
        if attempt_id is not None:
            # Committed before the create call: where the visit goes, so a re-run that resolves the row to
            # another customer still looks there first (the destination adds each created id as it goes).
            self.ledger.record_intent(
                {
                    r.check_in_id: {"customer_id": ref.crm_id, "parent_id": ref.parent_id}
                    if (ref := refs.get(r.customer_key))
                    else {}
                    for r in rows
                },
                attempt_id,
                replace=True,
            )
        try:
            created = yield from self._send_visits(
                destination, [(r, refs.get(r.customer_key)) for r in rows], self._progress(rows, attempt_id)
            )
        except RetryableError as exc:
            # The request may have reached the CRM: keep in_flight, resolve by lookup next run.
            for r in rows:
                outcomes[r.check_in_id] = self._outcome(LedgerStatus.IN_FLIGHT, kind="transient", error=str(exc))
            raise
        self._apply(rows, created, refs, outcomes, counter="visits_created")

    def _send_visits(
        self,
        destination: Destination,
        items: list[tuple[PreparedCheckIn, CustomerRef | None]],
        progress: Progress,
    ) -> Generator[None, None, dict[str, RecordResult]]:
        """:meth:`Destination.create_visits`; where visit creates overlap, in the visit sender's thread, the steps
        pausing meanwhile (the next batch prepares, claims and decides its customers; a re-send run to its end
        with :func:`~crm_sync.overlap.complete` goes straight on). Its errors are raised here."""
        if self._sender is None:
            return destination.create_visits(items, progress)
        sending = self._sender.submit(destination.create_visits, items, progress)
        self._in_flight.add(sending)
        try:
            yield from self._pause()
            return sending.result()
        finally:
            self._in_flight.discard(sending)

    def _recovered(
        self,
        row: PreparedCheckIn,
        visit: RecoveredVisit,
        ref: CustomerRef | None,
        outcomes: dict[int, dict[str, Any]],
    ) -> None:
        """A visit an interrupted attempt wrote: synced, with the customer it was written under."""
        customer_id = visit.customer_id or (ref.crm_id if ref else None)
        if ref is not None and customer_id != ref.crm_id:
            # The record cannot be moved safely (and Housecall Pro cannot move jobs at all): it stays, and says so.
            message = (
                f"check-in {row.check_in_id}: its visit record {visit.crm_id}, written by an interrupted earlier "
                f"attempt under customer {customer_id}, was recovered there; this run resolved customer {ref.crm_id}"
            )
            row.warnings.append(message)
            self.result.warnings.append(self._text(message) or "")
        outcomes[row.check_in_id] = self._outcome(LedgerStatus.SYNCED, customer_id=customer_id, visit_id=visit.crm_id)
        self.result.visits_recovered += 1
        self.result.synced += 1

    def _progress(self, rows: list[PreparedCheckIn], attempt_id: str | None) -> Progress:
        """The ``progress`` callback of :meth:`Destination.create_visits`: created ids into the ledger at once."""
        by_key = {r.visit_key: r.check_in_id for r in rows}
        lock = threading.Lock()  # per-record CRMs write in lanes (threads): one ledger write at a time

        def record(ids: Mapping[str, Mapping[str, str | None]]) -> None:
            if attempt_id is not None:
                with lock:
                    self.ledger.record_intent({by_key[k]: v for k, v in ids.items() if k in by_key}, attempt_id)

        return record

    def _apply(
        self,
        rows: list[PreparedCheckIn],
        results: dict[str, RecordResult],
        refs: dict[str, CustomerRef],
        outcomes: dict[int, dict[str, Any]],
        *,
        counter: str,
    ) -> None:
        result = self.result
        for row in rows:
            res = results.get(row.visit_key)
            ref = refs.get(row.customer_key)
            if res is not None and res.ok:
                outcomes[row.check_in_id] = self._outcome(
                    LedgerStatus.SYNCED, customer_id=ref.crm_id if ref else None, visit_id=res.crm_id
                )
                setattr(result, counter, getattr(result, counter) + 1)
                result.synced += 1
            elif res is not None and res.not_sent:
                # A per-record loop stopped by the time budget before this record's request.
                self._budget_hit = True
                outcomes[row.check_in_id] = self._outcome(
                    LedgerStatus.PENDING, kind="time_budget", error=res.error, customer_id=ref.crm_id if ref else None
                )
            elif res is not None and res.uncertain:
                outcomes[row.check_in_id] = self._outcome(
                    LedgerStatus.IN_FLIGHT,
                    kind="transient",
                    error=res.error or "outcome unknown; resolved next run",
                    customer_id=ref.crm_id if ref else None,
                )
            else:
                reason = res.error if res is not None and res.error else "the CRM returned no record for this row"
                kind = (res.kind if res is not None else None) or QuarantineKind.CRM_REJECTED
                outcomes[row.check_in_id] = self._outcome(
                    LedgerStatus.QUARANTINED, kind=kind, error=reason, customer_id=ref.crm_id if ref else None
                )
        self._remember_parents(rows, results, refs)

    def _remember_parents(
        self, rows: list[PreparedCheckIn], results: dict[str, RecordResult], refs: dict[str, CustomerRef]
    ) -> None:
        """A customer the map knew without an address / location / property now has one (the visit went there):
        remember it, for this batch and in ``crm_sync.customer_map`` (whose ``updated_at`` moves with it, so
        the customer's ``crm_state`` rows are read again, see :mod:`crm_sync.quarantine`)."""
        gained: dict[str, tuple[CustomerRef, str | None, bool]] = {}
        for row in rows:
            res, ref = results.get(row.visit_key), refs.get(row.customer_key)
            parent = res.extra.get("parent_id") if res is not None and res.ok else None
            if ref is None or ref.parent_id or not parent:
                continue
            new_ref = CustomerRef(ref.crm_id, str(parent))
            for ckey, other in list(refs.items()):
                if other == ref:
                    refs[ckey] = new_ref
            for key in row.match_keys:
                gained[key] = (new_ref, None, False)
        self._map_save(gained)

    def _retry_cured(
        self,
        destination: Destination,
        rows: list[PreparedCheckIn],
        refs: dict[str, CustomerRef],
        outcomes: dict[int, dict[str, Any]],
        attempt_id: str | None = None,
    ) -> None:
        """Rows refused for the CRM's state (``crm_state``: nothing was sent for them) whose customer got a visit
        in the same call, e.g. from a later check-in that added the address: sent once more now."""
        landed = {
            refs[r.customer_key].crm_id
            for r in rows
            if r.customer_key in refs and outcomes[r.check_in_id]["status"] == LedgerStatus.SYNCED
        }
        again = [
            r
            for r in rows
            if r.customer_key in refs
            and refs[r.customer_key].crm_id in landed
            and outcomes[r.check_in_id]["status"] == LedgerStatus.QUARANTINED
            and outcomes[r.check_in_id]["error_kind"] == QuarantineKind.CRM_STATE
        ]
        if not again:
            return
        complete(self._create_visits(destination, again, refs, outcomes, attempt_id))

    # ------------------------------------------------------------------ ledger
    def _claim(self, rows: list[PreparedCheckIn], attempt_id: str) -> None:
        self.ledger.claim(rows, attempt_id, self.result.run_id)

    def _finish(self, rows: list[PreparedCheckIn], outcomes: dict[int, dict[str, Any]], attempt_id: str) -> None:
        """Count each row's outcome in the run's result, then write them all (:meth:`Ledger.finish`)."""
        final: dict[int, dict[str, Any]] = {}
        for row in rows:
            found = final[row.check_in_id] = outcomes.get(row.check_in_id) or self._outcome(
                LedgerStatus.FAILED, kind="transient", error="no outcome recorded for this row"
            )
            if found["status"] == LedgerStatus.QUARANTINED:
                self.result.quarantine(found["error_kind"], found["last_error"] or "", row.check_in_id)
            elif found["status"] in (LedgerStatus.FAILED, LedgerStatus.IN_FLIGHT):
                self.result.failed += 1
        self.ledger.finish(rows, final, attempt_id)

    def _quarantine_unsent(self, row: PreparedCheckIn) -> None:
        """A row without a usable identity or creation time: quarantined without any CRM call."""
        self.result.quarantine(row.error_kind, row.error or "", row.check_in_id)
        self.ledger.quarantine_unsent(row, self.result.run_id, kind=row.error_kind, error=self._text(row.error))

    def _map_lookup(self, keys: list[str]) -> dict[str, tuple[CustomerRef, str | None]]:
        if not keys:
            return {}
        with self.engine.connect() as conn:
            # Keys are stored cleaned (NUL, lone surrogates); look them up the same way, answer by the raw key.
            raw = {storable_text(k): k for k in keys}
            rows = conn.execute(
                sql("customer_map_lookup"),
                {
                    "company_id": self.company_id,
                    "crm_type": self.crm_type,
                    "keys": list(raw),
                    "crm_account": self.ledger.crm_account,
                },
            )
            return {
                raw.get(r.match_key, r.match_key): (CustomerRef(r.crm_customer_id, r.crm_parent_id), r.payload_hash)
                for r in rows
            }

    def _known_of(self, crm_ids: list[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """crm customer id -> the emails the customer map holds for it (``email:`` keys), and -> the
        normalised names on the check-ins synced to it (:func:`crm_sync.identity.normalised_name_text`)."""
        params = {
            "company_id": self.company_id,
            "crm_type": self.crm_type,
            "ids": crm_ids,
            "crm_account": self.ledger.crm_account,
        }
        emails: dict[str, set[str]] = {}
        names: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(sql("customer_map_emails"), params):
                emails.setdefault(r.crm_customer_id, set()).add(MatchKey.parse(r.match_key).value)
            for r in conn.execute(sql("customer_names_synced"), params):
                first, last, _ = split_name(r.customer_name)
                if name := identity.normalised_name_text(" ".join(p for p in (first, last) if p)):
                    names.setdefault(r.crm_customer_id, set()).add(name)
        return emails, names

    def _map_save(self, entries: dict[str, tuple[CustomerRef, str | None, bool]]) -> None:
        if not entries:
            return
        params = [
            {
                "company_id": self.company_id,
                "crm_type": self.crm_type,
                "match_key": storable_text(key),
                "crm_customer_id": ref.crm_id,
                "crm_parent_id": ref.parent_id,
                "payload_hash": payload,
                "created_by_sync": created,
                "crm_account": self.ledger.crm_account,
            }
            for key, (ref, payload, created) in entries.items()
        ]
        with self.engine.begin() as conn:
            conn.execute(sql("customer_map_upsert"), params)

    # ------------------------------------------------------------------ run bookkeeping
    def _stop(self, exc: CrmError) -> None:
        kind = {
            BadCredentialsError: "bad credentials",
            ConfigurationError: "configuration",
            QuotaExhaustedError: "CRM request quota exhausted",
        }.get(type(exc), type(exc).__name__)
        self.result.error = f"{kind}: {exc}"
        if isinstance(exc, ConfigurationError):
            self.result.status = "config_error"

    def _final_status(self, completed: bool) -> str:
        """The app's vocabulary: success, partial (some synced), failed (nothing synced)."""
        r = self.result
        if r.status in ("config_error", "dry_run"):
            return r.status
        if r.error or r.quarantined or r.failed or not completed:
            return "partial" if r.synced else "failed"
        return "success"

    def _record(self) -> None:
        r = self.result
        if r.identity_merges + r.identity_splits > IDENTITY_LINES:
            r.warnings.append(
                f"identity: {r.identity_merges + r.identity_splits - IDENTITY_LINES} more household decisions not "
                f"listed ({r.identity_merges} merged, {r.identity_splits} kept apart in this run)"
            )
        row = r.as_row()
        with self.engine.begin() as conn:
            run_row_id = conn.execute(sql("run_insert"), row).scalar()
            if r.crm_account is not None:
                conn.execute(
                    sql("run_set_account"),
                    {"id": run_row_id, "crm_account": r.crm_account, "previous_crm_account": r.previous_crm_account},
                )
        processed = r.synced + r.quarantined + r.failed
        errors = r.quarantined + r.failed
        # The app's history shows work done and problems; an idle run adds no entry (it would
        # push real entries out of the 100 kept) but still proves freshness via lastSyncedAt.
        if r.status in ("skipped", "dry_run"):
            return
        write_back(
            self.engine,
            self.company_id,
            self.crm_type,
            synced=r.synced,
            errors=errors + (1 if r.error and processed == 0 else 0),
            at=r.finished_at or datetime.now(UTC),
            set_last_synced=r.status in ("success", "partial"),
            add_history=processed > 0 or bool(r.error),
        )

    def _start_from_learned_rates(self, destination: Destination) -> None:
        """Start the hook's limiters from the rates earlier runs learned for this CRM account (no CRM call)."""
        if self.result.crm_account is None:
            return
        rates = rate_state.load(self.engine, self.company_id, self.crm_type, self.result.crm_account)
        destination.hook.start_from_learned(rates)
        self._rates_loaded = True

    def _keep_learned_rates(self, destination: Destination) -> None:
        """Keep what the limiters learned for the next run; a failure here never fails the run."""
        if not self._rates_loaded or self.result.crm_account is None:
            return
        try:
            rate_state.save(
                self.engine, self.company_id, self.crm_type, self.result.crm_account, destination.hook.learned_rates()
            )
        except Exception as exc:  # the sync's outcome is recorded anyway; the next run starts from the default
            log.warning("could not keep the learned rate limits: %s", type(exc).__name__)

    def _start(self, destination: Destination, bound: str | None) -> None:
        """Run start: :meth:`Destination.prepare` and the account binding.

        The account facts (:mod:`crm_sync.account_facts`) kept for the bound account, when fresh and read with
        this configuration, are used without a CRM call, the account identity included (the credentials are
        the ones it was read with: a reconnect changes them). Otherwise they are checked now and kept.
        """
        self._facts_print = account_facts.fingerprint(self.company_id, self.crm_type, self.integration)
        kept = self._facts_store.load(bound, self._facts_print) if bound is not None else None
        if kept is not None:
            destination.hook.assume_account_identity(bound)
        self._facts = destination.prepare(kept)
        self._facts_rechecked = kept is None
        self.result.warnings.extend(destination.warnings)
        self._bind_account(destination)
        if kept is None and self.result.crm_account is not None:
            self._facts_store.save(self.result.crm_account, self._facts_print, self._facts or {})

    def _recheck_facts(self, destination: Destination, errors: Sequence[str | None]) -> bool:
        """The CRM refused a write because a kept fact is wrong (:meth:`Destination.stale_fact`): forget the
        kept facts, check them again (once per run) and keep the new ones. True when the refused rows may be
        sent once more."""
        if not any(destination.stale_fact(e) for e in errors):
            return False
        if self._facts_generation > self._batch.facts_generation:
            # Checked again since this batch's writes were built (by a later batch, while these were in flight).
            self._batch.facts_generation = self._facts_generation
            return True
        if self._facts_rechecked:
            return False
        self._facts_rechecked = True
        futures.wait(list(self._in_flight))  # the facts change under no visit send
        self._facts_generation += 1
        self._batch.facts_generation = self._facts_generation
        account = self.result.crm_account
        if account is not None:
            self._facts_store.invalidate(account)
        before = len(destination.warnings)
        self._facts = destination.prepare(None)
        self.result.warnings.extend(w for w in destination.warnings[before:] if w not in self.result.warnings)
        self.result.warnings.append(
            f"{self.crm_type}: the CRM refused a write for an account fact the sync had kept (a property, field "
            "or job default changed since it was checked): checked again, and the refused rows sent once more"
        )
        if account is not None:
            self._facts_store.save(account, self._facts_print, self._facts or {})
        return True

    def _bind_account(self, destination: Destination) -> None:
        """Bind this run to the CRM account the destination reaches (:mod:`crm_sync.accounts`).

        After a change (the company reconnected to another portal / org / tenant), the new account is
        treated as a first sync: its customers are indexed before anything is matched or created, and the
        run says so in its warnings and run row (once: later runs of the new account are ordinary).
        """
        from crm_sync.customer_import import ensure_customer_index

        binding = self.ledger.bind(destination.account_identity())
        self.result.crm_account = binding.account
        if not binding.changed:
            return
        self.result.previous_crm_account = binding.previous
        self.result.warnings.append(binding.change_message())
        self.ledger.mark_change_reported()
        ensure_customer_index(
            self.engine,
            self.company_id,
            self.crm_type,
            self.integration,
            destination=destination,
            run_id=self.result.run_id,
            dag_id=self.result.dag_id,
        )

    def _credentials_writer(self):
        from crm_sync.integrations import credentials_writer

        return credentials_writer(self.engine, self.company_id, self.crm_type)

    def _try_lock(self, conn: sa.Connection) -> bool:
        got = conn.execute(
            sa.text("SELECT pg_try_advisory_lock(hashtext(:crm), :company)"),
            {"crm": self.crm_type, "company": self.company_id},
        ).scalar()
        conn.commit()
        return bool(got)

    def _unlock(self, conn: sa.Connection) -> None:
        try:
            conn.execute(
                sa.text("SELECT pg_advisory_unlock(hashtext(:crm), :company)"),
                {"crm": self.crm_type, "company": self.company_id},
            )
            conn.commit()
        except Exception:  # the connection is closed right after; the lock dies with it
            log.debug("advisory unlock failed", exc_info=True)


def _resume(first: dict[str, Any], rows: Iterator[dict[str, Any]], stream: Generator) -> Generator[dict[str, Any]]:
    """A peeked stream from its first row that needs work; closing it closes the server-side cursor."""
    try:
        yield first
        yield from rows
    finally:
        stream.close()


def _rebatch(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in lists of ``size`` (the rest of a peeked stream, in the destination's batch size)."""
    while batch := list(itertools.islice(rows, size)):
        yield batch


def _customer_hash(row: PreparedCheckIn) -> str:
    import hashlib

    values = asdict(row.customer)
    if values.get("company") is None:
        values.pop("company", None)  # hashes from before the company field stay the same
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:32]
