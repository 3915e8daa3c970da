"""Reconciliation: check-ins in the app x the sync's ledger x the records in the CRM.

One run compares, per company x CRM, the check-ins created in ``[range_start, range_end)``
(the source), their ledger rows, and the visit records read back from the CRM by the ids
the ledger holds (batched reads where the CRM has them; a random sample of ``sample_size``
when there are more). Every discrepancy gets a class:

==================  =========================================================================
``missing_in_crm``  the ledger says synced, the CRM has no record with that id any more
``never_synced``    no ledger row for a check-in the sync has already considered (id at or
                    below the integration's settled horizon); newer rows are just not read yet
``stale``           the check-in changed after its last sync (hash differs from ``synced_hash``)
``drift``           the CRM record's fields differ from what the sync sends for the check-in
``duplicate``       two CRM customers with one normalised email or phone, at least one of them
                    used by the sync (or two visit records for one check-in)
``orphan``          a ledger row whose check-in no longer exists in the app
``quarantined``     the sync refused the row; the detail is its reason
==================  =========================================================================

The classification functions are pure (plain rows in, :class:`Finding` out); :class:`Reconciler`
reads the database (``include/sql/reconcile_*.sql``, streamed) and the CRM, and writes
``crm_sync.reconciliation_runs`` + ``crm_sync.discrepancies``. Nothing here writes to the CRM
or to the app's ``crm_sync_history`` / ``lastSyncedAt``: a report is not a sync.

:func:`requeue` (the DAG's ``requeue: true``) puts missing, stale and never-synced rows back in
line for the next incremental sync, which looks each marker up before it creates anything.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from crm_hooks.errors import CrmError
from crm_sync.contacts import normalize_email, normalize_phone
from crm_sync.db import sql
from crm_sync.field_rules import apply_field_rules
from crm_sync.ledger import UNFINISHED, LedgerStatus
from crm_sync.match_key import MatchKey
from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.prepare import prepare_check_in, source_hash
from crm_sync.quality import success_rate

log = logging.getLogger(__name__)

CLASSES = ("missing_in_crm", "never_synced", "stale", "drift", "duplicate", "orphan", "quarantined")
#: Classes an operator can put back in line with ``requeue: true``.
REQUEUE_CLASSES = ("missing_in_crm", "stale", "never_synced")
EXAMPLES_PER_CLASS = 5
DETAIL_LIMIT = 500
INSERT_BATCH = 500


@dataclass(frozen=True)
class Finding:
    """One discrepancy: its class, the check-in and CRM record concerned, and a specific detail."""

    cls: str
    detail: str
    check_in_id: int | None = None
    crm_id: str | None = None

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ValueError(f"unknown discrepancy class {self.cls!r}")


# ============================================================================ pure classification
def classify_source_row(row: Mapping[str, Any], current_hash: str, settled_id: int) -> Finding | None:
    """The source-side class of one check-in (with its ledger columns), or None when it is in order.

    ``settled_id``: every check-in up to this id has been read by the sync (the integration's horizon);
    a check-in above it without a ledger row is simply waiting for the next run.
    """
    check_in_id = int(row["id"])
    status = row.get("ledger_status")
    if status is None:
        if check_in_id <= settled_id:
            return Finding(
                "never_synced",
                f"check-in {check_in_id} (created {_when(row.get('created_at'))}) has no "
                f"ledger row, although the sync has read every check-in up to id "
                f"{settled_id}",
                check_in_id,
            )
        return None
    if status == LedgerStatus.QUARANTINED:
        reason = f"{row.get('error_kind') or 'quarantined'}: {row.get('last_error') or 'no reason recorded'}"
        return Finding("quarantined", reason, check_in_id, row.get("crm_visit_id"))
    if status == LedgerStatus.SYNCED and row.get("synced_hash") and current_hash != row["synced_hash"]:
        return Finding(
            "stale",
            f"check-in {check_in_id} was edited after its last sync "
            f"({_when(row.get('synced_at'))}); the CRM record holds the earlier version",
            check_in_id,
            row.get("crm_visit_id"),
        )
    return None


def is_eligible(row: Mapping[str, Any], settled_id: int) -> bool:
    """A check-in the sync should have handled by now: it has a ledger row or is at/below the horizon."""
    return row.get("ledger_status") is not None or int(row["id"]) <= settled_id


def comparable(value: Any) -> Any:
    """A field value in a form two CRMs' renderings of the same value compare equal in.

    Text is stripped (trailing whitespace is not a difference); ISO-8601 timestamps compare as instants
    (``...T08:00:00.000Z`` = ``...T08:00:00Z`` = ``...T08:00:00+00:00``); numbers compare as numbers.
    """
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 19 and text[4] == "-" and text[10] in "T ":
            try:
                moment = datetime.fromisoformat(text)
                return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            except ValueError:
                pass
        return text.replace("\r\n", "\n")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def field_differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Names of the fields whose CRM value differs from what the sync sends (fields the CRM did not
    return are not compared: a read that leaves a field out says nothing about it)."""
    return sorted(k for k, v in expected.items() if k in actual and comparable(v) != comparable(actual[k]))


def classify_read_back(
    checked: Sequence[tuple[int, str, Mapping[str, Any] | None]],
    found: Mapping[str, Mapping[str, Any]],
    crm_name: str = "the CRM",
) -> list[Finding]:
    """Missing and drift findings for read-back records.

    ``checked``: (check-in id, CRM id the ledger holds, the fields the sync sends for the check-in,
    or None when drift is not to be checked, e.g. the row is stale). ``found``: what the CRM returned.
    """
    out: list[Finding] = []
    for check_in_id, crm_id, expected in checked:
        actual = found.get(crm_id)
        if actual is None:
            out.append(
                Finding(
                    "missing_in_crm",
                    f"the ledger says check-in {check_in_id} is synced as {crm_id}, but {crm_name} has no such record",
                    check_in_id,
                    crm_id,
                )
            )
            continue
        if expected is None:
            continue
        changed = field_differences(expected, actual)
        if changed:
            out.append(
                Finding(
                    "drift",
                    f"{crm_name} record {crm_id} differs from what the sync sent for check-in "
                    f"{check_in_id} in: {', '.join(changed)}",
                    check_in_id,
                    crm_id,
                )
            )
    return out


def contact_identity_keys(email: Any, phone: Any) -> list[str]:
    """The sync's identity keys of a CRM customer's raw email and phone (``email:...``, ``phone:+1...``)."""
    keys = []
    normal_email = normalize_email(email)[0] if email else None
    if normal_email:
        keys.append(str(MatchKey.email(normal_email)))
    normal_phone = normalize_phone(phone)[0] if phone else None
    if normal_phone:
        keys.append(str(MatchKey.phone(normal_phone)))
    return keys


def duplicate_customers(customers: Iterable[Any], used_ids: set[str], crm_name: str = "the CRM") -> list[Finding]:
    """Groups of two or more CRM customers sharing a normalised email or phone, where the sync uses at least
    one of them (``used_ids``). ``customers``: objects with ``crm_id``, ``email``, ``phone`` (streamed)."""
    groups: dict[str, set[str]] = {}
    for customer in customers:
        for key in contact_identity_keys(customer.email, customer.phone):
            groups.setdefault(key, set()).add(str(customer.crm_id))
    out: list[Finding] = []
    reported: set[frozenset[str]] = set()
    for key, ids in sorted(groups.items()):
        members = frozenset(ids)
        if len(members) < 2 or not (members & used_ids) or members in reported:
            continue
        reported.add(members)
        used = sorted(members & used_ids)
        detail = (
            f"{len(members)} {crm_name} customers share {key}: {', '.join(sorted(members))} "
            f"(the sync uses {', '.join(used)})"
        )
        out.append(Finding("duplicate", detail, None, ",".join(sorted(members))[:200]))
    return out


def duplicate_visits(
    keys: Mapping[str, int], found: Mapping[str, Sequence[str]], crm_name: str = "the CRM"
) -> list[Finding]:
    """Check-ins with two or more visit records carrying their marker. ``keys``: visit_key -> check-in id;
    ``found``: visit_key -> the CRM ids carrying it."""
    out = []
    for key, check_in_id in keys.items():
        ids = sorted(set(found.get(key) or ()))
        if len(ids) > 1:
            out.append(
                Finding(
                    "duplicate",
                    f"{len(ids)} {crm_name} visit records carry the marker {key} of check-in "
                    f"{check_in_id}: {', '.join(ids)}",
                    check_in_id,
                    ",".join(ids)[:200],
                )
            )
    return out


def orphan_findings(rows: Iterable[Mapping[str, Any]]) -> Iterator[Finding]:
    """Ledger rows whose check-in was deleted in the app."""
    for row in rows:
        where = f"; its CRM record {row['crm_visit_id']} is still there" if row.get("crm_visit_id") else ""
        yield Finding(
            "orphan",
            f"ledger row for check-in {row['check_in_id']} ({row.get('status')}) but the check-in "
            f"no longer exists in the app{where}",
            int(row["check_in_id"]),
            row.get("crm_visit_id"),
        )


def alert_problems(
    rows: Iterable[Mapping[str, Any]], *, min_success_rate: float | None, fail_on_missing: bool
) -> list[str]:
    """One line per company x CRM that crosses a threshold (empty: no alert).

    ``rows``: reconciliation_runs rows (company_id, crm_type, eligible_count, synced_count, counts, error).
    """
    problems = []
    for r in rows:
        counts = r.get("counts") or {}
        if isinstance(counts, str):
            counts = json.loads(counts)
        label = f"company {r['company_id']} x {r['crm_type']}"
        rate = success_rate(int(r.get("synced_count") or 0), int(r.get("eligible_count") or 0))
        if min_success_rate is not None and rate is not None and rate < min_success_rate:
            problems.append(
                f"{label}: success rate {rate:.1%} < {min_success_rate:.1%} "
                f"({r.get('synced_count')} of {r.get('eligible_count')} eligible check-ins synced)"
            )
        missing = int(counts.get("missing_in_crm") or 0)
        if fail_on_missing and missing:
            problems.append(f"{label}: {missing} check-in(s) missing in the CRM although the ledger says synced")
    return problems


class Reservoir:
    """A uniform random sample of at most ``size`` items from a stream (``size`` 0: keep everything)."""

    def __init__(self, size: int, seed: Any = None):
        self.size = int(size)
        self.seen = 0
        self.items: list[Any] = []
        self._random = random.Random(seed)

    def add(self, item: Any) -> None:
        self.seen += 1
        if self.size <= 0 or len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item

    @property
    def sampled(self) -> bool:
        return 0 < self.size < self.seen


def date_range(
    date_from: str | date | None, date_to: str | date | None, days: int, today: date | None = None
) -> tuple[date, date]:
    """``[start, end)`` from the params: ``date_to`` inclusive (default today, UTC), ``date_from`` inclusive
    (default ``days`` days back). Raises ValueError for an empty or inverted range."""
    today = today or datetime.now(UTC).date()
    end = (_as_date(date_to, "date_to") if date_to else today) + timedelta(days=1)
    start = _as_date(date_from, "date_from") if date_from else end - timedelta(days=max(int(days), 1))
    if start >= end:
        raise ValueError(f"date_from {start} is after date_to {end - timedelta(days=1)}")
    return start, end


def _as_date(value: str | date, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-11-01, not {str(value)[:40]!r}") from None


def visit_key(company_id: int, check_in_id: int) -> str:
    """The sync's marker of a check-in's visit record (:attr:`PreparedCheckIn.visit_key`)."""
    return PreparedCheckIn(
        check_in_id=check_in_id, company_id=company_id, source_hash="", customer=Customer(), visit=None, match_keys=[]
    ).visit_key


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value) if value else "unknown time"


# ============================================================================ the runner
@dataclass
class ReconcileResult:
    """The totals of one company x CRM; one row of ``crm_sync.reconciliation_runs`` (XCom-safe)."""

    reconciliation_id: int
    company_id: int
    crm_type: str
    range_start: str
    range_end: str
    source_count: int = 0
    eligible_count: int = 0
    ledger_count: int = 0
    synced_count: int = 0
    crm_checked: int = 0
    crm_sampled: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int | str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return "; ".join(self.notes)[:2000] if self.notes else None

    def as_dict(self) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in (
                "reconciliation_id",
                "company_id",
                "crm_type",
                "range_start",
                "range_end",
                "source_count",
                "eligible_count",
                "ledger_count",
                "synced_count",
                "crm_checked",
                "crm_sampled",
                "counts",
                "examples",
                "notes",
            )
        }
        rate = success_rate(self.synced_count, self.eligible_count)
        out["success_rate"] = None if rate is None else round(rate, 4)
        return out


class Reconciler:
    """The three-way comparison of one company x CRM over a date range.

    :param destination: the CRM destination (built by the caller; its ``prepare`` is not called: a
        report writes nothing to the CRM).
    :param sample_size: at most this many CRM records are read back (a uniform sample); 0 reads all.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        company_id: int,
        crm_type: str,
        integration: Mapping[str, Any],
        destination: Any,
        run_id: str,
        dag_id: str | None,
        range_start: date,
        range_end: date,
        sample_size: int = 1000,
        crm_name: str | None = None,
    ):
        from crm_hooks.registry import display_name
        from crm_sync.settings import parse_sync_settings

        self.engine = engine
        self.company_id = company_id
        self.crm_type = crm_type
        self.destination = destination
        self.settings, _ = parse_sync_settings(integration.get("syncSettings"))
        self.run_id, self.dag_id = run_id, dag_id
        self.range_start, self.range_end = range_start, range_end
        self.sample_size = int(sample_size)
        self.crm_name = crm_name or display_name(crm_type) or crm_type
        self._buffer: list[dict[str, Any]] = []
        self.result: ReconcileResult | None = None

    # ------------------------------------------------------------------ entry point
    def run(self) -> ReconcileResult:
        from crm_sync.extract import integration_settled_id

        with self.engine.begin() as conn:
            key = {"run_id": self.run_id, "company_id": self.company_id, "crm_type": self.crm_type}
            conn.execute(sql("reconcile_run_replace"), key)
            rid = int(
                conn.execute(
                    sql("reconcile_run_insert"),
                    {**key, "dag_id": self.dag_id, "range_start": self.range_start, "range_end": self.range_end},
                ).scalar()
            )
        result = self.result = ReconcileResult(
            rid, self.company_id, self.crm_type, self.range_start.isoformat(), self.range_end.isoformat()
        )
        try:
            settled_id = integration_settled_id(self.engine, self.company_id, self.crm_type)
            sample = Reservoir(self.sample_size, seed=f"{self.run_id}|{self.company_id}|{self.crm_type}")
            for row in self._source_rows():
                self._classify(row, settled_id, sample)
            other_account = self._other_account()
            if other_account:
                result.notes.append(other_account)
            else:
                self._read_back(sample)
            self._orphans()
            if not other_account:
                self._duplicates()
            self._flush()
        finally:
            self._flush()
            with self.engine.begin() as conn:
                conn.execute(
                    sql("reconcile_run_finish"),
                    {
                        "id": rid,
                        "source_count": result.source_count,
                        "eligible_count": result.eligible_count,
                        "ledger_count": result.ledger_count,
                        "synced_count": result.synced_count,
                        "crm_checked": result.crm_checked,
                        "crm_sampled": result.crm_sampled,
                        "counts": json.dumps(result.counts),
                        "error": result.error,
                    },
                )
        return result

    def _other_account(self) -> str | None:
        """Why the CRM must not be compared: it answers for another account than the ledger's (the company
        reconnected its CRM and no sync has switched yet; the ledger's record ids mean nothing there)."""
        from crm_sync.accounts import bound_account

        bound = bound_account(self.engine, self.company_id, self.crm_type)
        if bound is None:
            return None
        try:
            current = self.destination.account_identity()
        except CrmError:
            return None  # the CRM cannot be read at all: the read-back records why, nothing is compared
        if current == bound:
            return None
        return (
            f"the CRM answers for account {current} but the ledger belongs to account {bound} (the company "
            "reconnected its CRM; the next sync switches to the new account): CRM records were not compared"
        )

    # ------------------------------------------------------------------ source x ledger
    def _source_rows(self) -> Iterator[dict[str, Any]]:
        params = {
            "company_id": self.company_id,
            "crm_type": self.crm_type,
            "range_start": datetime.combine(self.range_start, datetime.min.time()),
            "range_end": datetime.combine(self.range_end, datetime.min.time()),
        }
        with self.engine.connect().execution_options(stream_results=True, yield_per=1000) as conn:
            for row in conn.execute(sql("reconcile_source"), params).mappings():
                yield dict(row)

    def _classify(self, row: dict[str, Any], settled_id: int, sample: Reservoir) -> None:
        result = self.result
        assert result is not None
        result.source_count += 1
        status = row.get("ledger_status")
        if is_eligible(row, settled_id):
            result.eligible_count += 1
        if status is not None:
            result.ledger_count += 1
        if status == LedgerStatus.SYNCED:
            result.synced_count += 1
        elif status in UNFINISHED:
            result.counts["unfinished"] = result.counts.get("unfinished", 0) + 1
        current = source_hash(row)
        finding = classify_source_row(row, current, settled_id)
        if finding is not None:
            self._add(finding)
        if status == LedgerStatus.SYNCED and row.get("crm_visit_id"):
            # Only what the sample keeps is mapped (drift needs the fields the sync sends).
            stale = finding is not None and finding.cls == "stale"
            sample.add((row, stale))

    # ------------------------------------------------------------------ CRM read-back
    def _read_back(self, sample: Reservoir) -> None:
        result = self.result
        assert result is not None
        if not sample.items:
            return
        checked: list[tuple[int, str, Mapping[str, Any] | None]] = []
        drift_checked = True
        for row, stale in sample.items:
            expected = None
            if not stale and drift_checked:
                try:
                    # What the sync sent: the CRM's field rules applied, as the engine applies them.
                    prepared = apply_field_rules(self.crm_type, prepare_check_in(row, self.settings))
                    expected = self.destination.visit_fields(prepared) if prepared.visit is not None else None
                except NotImplementedError as exc:
                    drift_checked = False
                    result.notes.append(f"drift not checked: {exc}")
            checked.append((int(row["id"]), str(row["crm_visit_id"]), expected))
        try:
            found = self.destination.read_visits([crm_id for _, crm_id, _ in checked])
        except NotImplementedError as exc:
            result.notes.append(f"CRM records not read back: {exc}")
            return
        except CrmError as exc:
            # The CRM could not be read: say so; the source x ledger classes stand on their own.
            result.notes.append(f"CRM records not read back: {exc}")
            return
        result.crm_checked = len(checked)
        result.crm_sampled = sample.sampled  # missing and drift counts are then for the sample
        for finding in classify_read_back(checked, found, self.crm_name):
            self._add(finding)
        self._duplicate_visits([int(row["id"]) for row, _ in sample.items])

    def _duplicate_visits(self, check_in_ids: Sequence[int]) -> None:
        """Two visit records for one check-in, where the CRM can be searched by the marker (sampled rows)."""
        result = self.result
        assert result is not None
        if getattr(self.destination, "unique_visit_marker", False):
            return  # the CRM enforces one record per marker
        keys = {visit_key(self.company_id, cid): cid for cid in check_in_ids}
        try:
            found = self.destination.find_visit_records(list(keys))
        except (NotImplementedError, CrmError) as exc:
            result.notes.append(f"duplicate visit records not checked: {exc}")
            return
        for finding in duplicate_visits(keys, found, self.crm_name):
            self._add(finding)

    def _duplicates(self) -> None:
        result = self.result
        assert result is not None
        with self.engine.connect() as conn:
            used = {
                str(r[0])
                for r in conn.execute(
                    sql("reconcile_customer_ids"), {"company_id": self.company_id, "crm_type": self.crm_type}
                )
            }
        if not used:
            return
        try:
            findings = duplicate_customers(self.destination.iter_customers(), used, self.crm_name)
        except NotImplementedError as exc:
            result.notes.append(f"duplicate customers not checked: {exc}")
            return
        except CrmError as exc:
            result.notes.append(f"duplicate customers not checked: {exc}")
            return
        for finding in findings:
            self._add(finding)

    def _orphans(self) -> None:
        key = {"company_id": self.company_id, "crm_type": self.crm_type}
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sql("reconcile_orphans"), key).mappings()]
        for finding in orphan_findings(rows):
            self._add(finding)

    # ------------------------------------------------------------------ writing
    def _add(self, finding: Finding) -> None:
        result = self.result
        assert result is not None
        result.counts[finding.cls] = result.counts.get(finding.cls, 0) + 1
        examples = result.examples.setdefault(finding.cls, [])
        if len(examples) < EXAMPLES_PER_CLASS:
            examples.append(finding.check_in_id if finding.check_in_id is not None else (finding.crm_id or ""))
        self._buffer.append(
            {
                "reconciliation_id": result.reconciliation_id,
                "company_id": self.company_id,
                "crm_type": self.crm_type,
                "check_in_id": finding.check_in_id,
                "crm_id": finding.crm_id,
                "class": finding.cls,
                "detail": finding.detail[:DETAIL_LIMIT],
            }
        )
        if len(self._buffer) >= INSERT_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        with self.engine.begin() as conn:
            conn.execute(sql("reconcile_discrepancy_insert"), self._buffer)
        self._buffer = []


def reconcile_integration(
    engine: Engine,
    *,
    company_id: int,
    crm_type: str,
    run_id: str,
    dag_id: str | None,
    range_start: date,
    range_end: date,
    sample_size: int = 1000,
    rate_share: float = 1.0,
    destination: Any = None,
) -> ReconcileResult:
    """Reconcile one company x CRM (its integration and credentials are read from the database here)."""
    from crm_sync.integrations import company_destination, load_integration

    integration = load_integration(engine, company_id, crm_type)
    if destination is None:
        # Token rotation (Jobber) must still be stored: only the credentials are written, never history.
        destination = company_destination(engine, company_id, crm_type, integration, rate_share=rate_share)
    try:
        return Reconciler(
            engine,
            company_id=company_id,
            crm_type=crm_type,
            integration=integration,
            destination=destination,
            run_id=run_id,
            dag_id=dag_id,
            range_start=range_start,
            range_end=range_end,
            sample_size=sample_size,
        ).run()
    finally:
        destination.close()


def runs_for(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The reconciliation_runs rows of one Airflow run."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sql("reconcile_runs_for_run_id"), {"run_id": run_id}).mappings()]


def requeue(engine: Engine, reconciliation_ids: Sequence[int]) -> Counter:
    """Put the missing, stale and never-synced rows of these report rows back in line (see the SQL file);
    returns class -> rows requeued. Rows that changed since the report are left alone."""
    if not reconciliation_ids:
        return Counter()
    with engine.begin() as conn:
        rows = conn.execute(sql("reconcile_requeue"), {"reconciliation_ids": [int(i) for i in reconciliation_ids]})
        return Counter(r[0] for r in rows)
