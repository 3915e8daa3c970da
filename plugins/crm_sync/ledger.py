"""The ledger: one row per check-in x CRM (``crm_sync.ledger``) saying where that check-in stands.

Every check-in a sync considers gets a row, and every row ends a run in one :class:`LedgerStatus`:

``pending``      not sent yet (a run stopped before its request went out); sent next run
``in_flight``    claimed by an attempt whose outcome is not known: the CRM may hold its record, so the
                 next run looks the sync's marker up before anything is created again
``synced``       the CRM holds the record (``crm_visit_id``); an edit of the check-in is sent as an update
``quarantined``  cannot be sent as it is: a :class:`~crm_sync.quarantine.QuarantineKind` and a reason; retried
                 when the check-in changes or an operator requeues it, and a ``crm_state`` row also when
                 its customer changes in the CRM
``failed``       a transient failure outlived the retries; retried next run (marker looked up first)

A row is *claimed* (``in_flight`` with a new ``attempt_id``, committed) before any CRM call for it, and
only the attempt that claimed it may *finish* it. Between the two, the attempt commits the CRM ids it
writes the row's visit under, and each record id as soon as the CRM returns it (``crm_intent``,
:meth:`Ledger.record_intent`): a later run looks there first for what an interrupted attempt wrote.
The SQL files that read or write these statuses
(``ledger_*.sql``, ``extract_*.sql``, ``quality_compute.sql``, ``reconcile_requeue.sql``, ...) keep them as
literals; ``tests/test_ledger.py`` checks each literal is a :class:`LedgerStatus` and that the table's CHECK
constraint allows exactly these. Which rows a run reads is :mod:`crm_sync.extract`; which CRM account the
rows belong to is :mod:`crm_sync.accounts`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from crm_sync.accounts import AccountBinding, bind_account, bound_account, mark_change_reported
from crm_sync.clean import dumps_strict, storable_text
from crm_sync.db import sql
from crm_sync.models import PreparedCheckIn

log = logging.getLogger(__name__)

#: Rows a run claims before it first checks the ledger's planner statistics (:meth:`Ledger.claim`).
STATS_CHECK_ROWS = 500
#: Most row warnings one ledger row keeps.
WARNINGS_KEPT = 20


class LedgerStatus(StrEnum):
    """Where one check-in stands with one CRM (``crm_sync.ledger.status``)."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SYNCED = "synced"
    QUARANTINED = "quarantined"
    FAILED = "failed"


#: The last attempt did not finish: every run reads these rows again, whatever their age.
UNFINISHED: frozenset[LedgerStatus] = frozenset({LedgerStatus.PENDING, LedgerStatus.IN_FLIGHT, LedgerStatus.FAILED})
#: An earlier attempt may have reached the CRM: its marker is looked up before any create.
UNCERTAIN: frozenset[LedgerStatus] = frozenset({LedgerStatus.IN_FLIGHT, LedgerStatus.FAILED})


def outcome(
    status: LedgerStatus,
    *,
    kind: str | None = None,
    error: str | None = None,
    customer_id: str | None = None,
    visit_id: str | None = None,
) -> dict[str, Any]:
    """The columns :meth:`Ledger.finish` writes for one row (``error`` already redacted and cut)."""
    return {
        "status": status,
        "error_kind": kind,
        "last_error": error,
        "crm_customer_id": customer_id,
        "crm_visit_id": visit_id,
    }


def is_unchanged(row: Mapping[str, Any], source_hash: str) -> bool:
    """Already handled (synced or quarantined) and neither changed nor requeued since: nothing to do.

    ``row`` is a candidate row of :mod:`crm_sync.extract` (its ledger columns ``ledger_status``,
    ``synced_hash``, ``ledger_source_hash``, ``requeue``, ``state_changed``: a ``crm_state`` row whose
    customer changed since, see :mod:`crm_sync.quarantine`); ``source_hash`` the check-in's hash now.
    """
    status = row.get("ledger_status")
    if not status or row.get("requeue") or row.get("state_changed"):
        return False
    return (status == LedgerStatus.SYNCED and source_hash == row.get("synced_hash")) or (
        status == LedgerStatus.QUARANTINED and source_hash == row.get("ledger_source_hash")
    )


def intent_of(row: Mapping[str, Any]) -> dict[str, str]:
    """The CRM ids an earlier attempt recorded for a candidate row (its ``crm_intent``; empty when none)."""
    intent = row.get("crm_intent")
    if isinstance(intent, str):  # a driver that does not decode jsonb
        intent = json.loads(intent)
    return {str(k): str(v) for k, v in (intent or {}).items() if v is not None}


def status_when_stopped_unsent(before: str | None, *, sent: bool) -> LedgerStatus:
    """The status of a claimed row whose run stopped on the time budget before its outcome was known.

    If a visit request went out since visit writes began, the row may be in the CRM: ``in_flight``.
    Otherwise this attempt put nothing in the CRM: back to ``pending``, except a row an earlier attempt
    left uncertain, which keeps that status so the next run still looks its marker up.
    """
    if sent:
        return LedgerStatus.IN_FLIGHT
    return LedgerStatus(before) if before in UNCERTAIN else LedgerStatus.PENDING


class Ledger:
    """The ledger rows of one company x CRM, bound to one CRM account.

    :param engine: the Rank It Pro database.
    :param crm_account: the account the rows are written for; set by :meth:`bind` or :meth:`load_account`
        (None: rows written by a caller that does not know it).
    """

    def __init__(self, engine: Engine, company_id: int, crm_type: str, crm_account: str | None = None):
        self.engine = engine
        self.company_id = company_id
        self.crm_type = crm_type
        self.crm_account = crm_account
        #: rows this object claimed, and that count when the planner statistics were last checked
        self._claimed = 0
        self._claimed_at_last_check = 0

    # ------------------------------------------------------------------ account
    def bind(self, identity: str) -> AccountBinding:
        """Bind to the account the CRM reports now (:func:`crm_sync.accounts.bind_account`)."""
        binding = bind_account(self.engine, self.company_id, self.crm_type, identity)
        self.crm_account = binding.account
        return binding

    def load_account(self) -> str | None:
        """Use the account the live rows are bound to, without asking the CRM (dry runs)."""
        self.crm_account = bound_account(self.engine, self.company_id, self.crm_type)
        return self.crm_account

    def mark_change_reported(self) -> None:
        """A sync run has reported the account change: later runs do not repeat it."""
        assert self.crm_account is not None
        mark_change_reported(self.engine, self.company_id, self.crm_type, self.crm_account)

    # ------------------------------------------------------------------ rows
    def claim(self, rows: Sequence[PreparedCheckIn], attempt_id: str, run_id: str) -> None:
        """Record the intent to send ``rows`` (``in_flight``, committed) before any CRM call for them."""
        params = [
            {
                **self._keys(r.check_in_id),
                "customer_key": storable_text(r.customer_key),
                "source_hash": r.source_hash,
                "source_fp": r.source_fp,
                "attempt_id": attempt_id,
                "run_id": run_id,
                "warnings": _warnings(r),
                "crm_account": self.crm_account,
            }
            for r in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(sql("ledger_claim"), params)
        self._claimed += len(params)
        if self._claimed >= max(STATS_CHECK_ROWS, 2 * self._claimed_at_last_check):
            self._refresh_planner_statistics()

    def _refresh_planner_statistics(self) -> None:
        """ANALYZE the ledger when this run alone has claimed more rows than its planner statistics know of.

        Without statistics (a new deployment, a ledger still small) PostgreSQL may plan the per-row
        ``UPDATE ... WHERE company_id, crm_type, check_in_id`` (:meth:`record_intent`, :meth:`finish`) on
        another index starting with ``(company_id, crm_type)`` and read every row of the company: a first sync
        of 20,000 check-ins spent most of its time there (65 ms per 100 rows at 5,000, growing with the table)
        until autovacuum's ANALYZE, up to a minute later. Checked after :data:`STATS_CHECK_ROWS` claimed rows and
        again each time the run's count doubles, so a run analyzes a few times at most and, on a ledger whose
        statistics are current, never. ANALYZE waits at most a second for its lock; if it cannot run, the run
        goes on (autovacuum does it later).
        """
        self._claimed_at_last_check = self._claimed
        try:
            with self.engine.begin() as conn:
                known = conn.execute(sql("ledger_planner_rows")).scalar()
                if known is not None and known >= self._claimed:
                    return
                conn.execute(sa.text("SET LOCAL lock_timeout = '1s'"))
                conn.execute(sql("ledger_analyze"))
        except sa.exc.SQLAlchemyError as exc:
            log.info("ledger statistics not refreshed (autovacuum will): %s", type(exc).__name__)

    def finish(
        self, rows: Sequence[PreparedCheckIn], outcomes: Mapping[int, Mapping[str, Any]], attempt_id: str
    ) -> None:
        """Write each row's outcome (see :func:`outcome`); a row another attempt claimed since stays as it is."""
        params = [
            {
                **self._keys(row.check_in_id),
                "attempt_id": attempt_id,
                "warnings": _warnings(row),
                **outcomes[row.check_in_id],
            }
            for row in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(sql("ledger_finish"), params)

    def record_intent(
        self, intents: Mapping[int, Mapping[str, str | None]], attempt_id: str, *, replace: bool = False
    ) -> None:
        """Commit the CRM ids this attempt chose or created for rows it is writing (``crm_intent``, migration 0009).

        ``intents``: check-in id -> ids such as ``customer_id``, ``parent_id``, ``visit_id``. With ``replace``
        the rows' intents start afresh (the engine, right before the visit create call); otherwise the ids are
        added (a destination, as soon as the CRM returns a record id). One transaction for all rows. A later
        run reads them (:func:`intent_of`) to find what an interrupted attempt wrote, whatever customer it
        resolves the row to then.
        """
        params = [
            {
                **self._keys(check_in_id),
                "attempt_id": attempt_id,
                "replace": replace,
                "intent": dumps_strict({k: storable_text(str(v)) for k, v in ids.items() if v is not None}),
            }
            for check_in_id, ids in intents.items()
        ]
        if not params:
            return
        with self.engine.begin() as conn:
            conn.execute(sql("ledger_intent"), params)

    def quarantine_unsent(self, row: PreparedCheckIn, run_id: str, *, kind: str, error: str | None) -> None:
        """Record a row that cannot be sent as it is (e.g. no usable identity), without any CRM call."""
        with self.engine.begin() as conn:
            conn.execute(
                sql("ledger_quarantine_unsent"),
                {
                    **self._keys(row.check_in_id),
                    "source_hash": row.source_hash,
                    "source_fp": row.source_fp,
                    "run_id": run_id,
                    "warnings": _warnings(row),
                    "error_kind": kind,
                    "last_error": error,
                    "crm_account": self.crm_account,
                },
            )

    def refresh_fingerprints(self, rows: Sequence[PreparedCheckIn]) -> None:
        """Store the fingerprint read for rows found unchanged whose ledger holds another one (or none), so
        discovery (``discover_work.sql``) stops finding them edited. No CRM call; one transaction."""
        params = [
            {**self._keys(r.check_in_id), "source_fp": r.source_fp, "source_hash": r.source_hash}
            for r in rows
            if r.source_fp is not None
        ]
        if params:
            with self.engine.begin() as conn:
                conn.execute(sql("ledger_refresh_fp"), params)

    def _keys(self, check_in_id: int) -> dict[str, Any]:
        return {"company_id": self.company_id, "crm_type": self.crm_type, "check_in_id": check_in_id}


def _warnings(row: PreparedCheckIn) -> str:
    return dumps_strict(row.warnings[:WARNINGS_KEPT])


__all__ = [
    "UNCERTAIN",
    "UNFINISHED",
    "Ledger",
    "LedgerStatus",
    "intent_of",
    "is_unchanged",
    "outcome",
    "status_when_stopped_unsent",
]
