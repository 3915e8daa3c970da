"""The ledger's status vocabulary: one enum, and the SQL files agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm_sync.ledger import UNCERTAIN, UNFINISHED, LedgerStatus, is_unchanged, status_when_stopped_unsent
from crm_sync.quarantine import ACTIONS, LABELS, QuarantineKind, label, named_fields

SQL_DIR = Path(__file__).resolve().parents[1] / "include" / "sql"
MARKER = "crm_sync.ledger.LedgerStatus"
#: ``status = 'x'``, ``status <> 'x'``, ``status IN ('x', 'y')`` (any table alias).
_COMPARED = re.compile(r"\bstatus\s*(?:=|<>|!=)\s*'([^']*)'|\bstatus\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
_LITERAL = re.compile(r"'([^']*)'")


def _ledger_sql() -> dict[str, str]:
    """Every SQL file that reads or writes ``crm_sync.ledger`` (not its archive alone)."""
    files = {p.name: p.read_text() for p in sorted(SQL_DIR.glob("*.sql"))}
    return {name: text for name, text in files.items() if re.search(r"crm_sync\.ledger\b(?!_)", text)}


def _status_literals(text: str) -> set[str]:
    found: set[str] = set()
    for one, many in _COMPARED.findall(text):
        found |= {one} if one else set(_LITERAL.findall(many))
    return found


def test_every_status_literal_of_the_ledger_sql_is_a_ledger_status():
    files = _ledger_sql()
    assert "ledger_claim.sql" in files and "extract_candidates.sql" in files
    used: set[str] = set()
    for name, text in files.items():
        literals = _status_literals(text)
        assert literals <= set(LedgerStatus), f"{name}: {sorted(literals - set(LedgerStatus))} is not a LedgerStatus"
        if literals:
            assert MARKER in text.splitlines()[0], f"{name} compares ledger statuses: name {MARKER} at the top"
        used |= literals
    # Vice versa: every status is one the SQL actually reads or writes (the regex is not matching nothing).
    assert used == set(LedgerStatus)


def test_the_table_constraint_allows_exactly_the_enum():
    schema = (SQL_DIR / "migrations" / "0001_crm_sync_schema.sql").read_text()
    check = re.search(r"status\s+text\s+NOT NULL CHECK \(status IN \(([^)]*)\)\)", schema)
    assert check is not None
    assert set(_LITERAL.findall(check.group(1))) == set(LedgerStatus)


def test_statuses_are_plain_strings_for_the_database_and_json():
    assert LedgerStatus.IN_FLIGHT == "in_flight" and str(LedgerStatus.IN_FLIGHT) == "in_flight"
    assert f"{LedgerStatus.SYNCED}" == "synced"
    assert UNCERTAIN < UNFINISHED and LedgerStatus.SYNCED not in UNFINISHED


@pytest.mark.parametrize(
    ("row", "source_hash", "expected"),
    [
        ({}, "h", False),  # no ledger row yet
        ({"ledger_status": "synced", "synced_hash": "h"}, "h", True),
        ({"ledger_status": "synced", "synced_hash": "h"}, "edited", False),
        ({"ledger_status": "synced", "synced_hash": "h", "requeue": True}, "h", False),
        ({"ledger_status": "quarantined", "ledger_source_hash": "h"}, "h", True),
        ({"ledger_status": "quarantined", "ledger_source_hash": "h"}, "edited", False),
        ({"ledger_status": "failed", "ledger_source_hash": "h", "synced_hash": "h"}, "h", False),
        ({"ledger_status": "in_flight", "ledger_source_hash": "h"}, "h", False),
        # a crm_state row whose customer changed since (extract_*.sql's state_changed): read again
        ({"ledger_status": "quarantined", "ledger_source_hash": "h", "state_changed": True}, "h", False),
        ({"ledger_status": "quarantined", "ledger_source_hash": "h", "state_changed": False}, "h", True),
    ],
)
def test_is_unchanged(row, source_hash, expected):
    assert is_unchanged(row, source_hash) is expected


@pytest.mark.parametrize(
    ("before", "sent", "expected"),
    [
        (None, False, LedgerStatus.PENDING),
        ("pending", False, LedgerStatus.PENDING),
        ("synced", False, LedgerStatus.PENDING),  # an edit not sent yet: pending, not synced
        ("in_flight", False, LedgerStatus.IN_FLIGHT),  # still uncertain from an earlier attempt
        ("failed", False, LedgerStatus.FAILED),
        (None, True, LedgerStatus.IN_FLIGHT),  # a visit request went out: maybe in the CRM
        ("failed", True, LedgerStatus.IN_FLIGHT),
    ],
)
def test_status_when_stopped_unsent(before, sent, expected):
    assert status_when_stopped_unsent(before, sent=sent) is expected


# ---------------------------------------------------------------------------- quarantine kinds
KIND_MARKER = "crm_sync.quarantine.QuarantineKind"
#: ``error_kind = 'x'``, ``error_kind IN ('x', 'y')`` (any table alias).
_KIND_COMPARED = re.compile(r"\berror_kind\s*(?:=|<>|!=)\s*'([^']*)'|\berror_kind\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
#: Not a quarantine: the mark reconcile_requeue.sql leaves on a row it puts back in line.
NOT_QUARANTINE_KINDS = {"requeued"}


def test_every_error_kind_literal_of_the_ledger_sql_is_a_quarantine_kind():
    used: set[str] = set()
    for name, text in _ledger_sql().items():
        literals: set[str] = set()
        for one, many in _KIND_COMPARED.findall(text):
            literals |= {one} if one else set(_LITERAL.findall(many))
        literals -= NOT_QUARANTINE_KINDS
        assert literals <= set(QuarantineKind), f"{name}: {sorted(literals - set(QuarantineKind))} is no kind"
        if literals:
            assert KIND_MARKER in text, f"{name} compares quarantine kinds: name {KIND_MARKER} at the top"
        used |= literals
    assert QuarantineKind.CRM_STATE in used  # the retry reads it (the regex is not matching nothing)


def test_every_kind_has_a_label_and_an_action():
    assert set(LABELS) == set(ACTIONS) == set(QuarantineKind)
    assert label("crm_state") == LABELS[QuarantineKind.CRM_STATE] and label("somethingnew") == "somethingnew"
    assert label(None) == "unknown"


def test_the_readme_table_lists_every_kind_with_its_label_and_action():
    readme = (SQL_DIR.parents[1] / "README.md").read_text()
    for kind in QuarantineKind:
        assert f"| `{kind}` | {LABELS[kind]} | {ACTIONS[kind]} |" in readme, kind


def test_named_fields():
    assert named_fields(["email", "phone", "email", None, ""]) == " (field email, phone)"
    assert named_fields([]) == ""


def test_intent_is_recorded_per_attempt_kept_until_synced_and_archived_with_the_row(db):
    """``crm_intent`` (migration 0009): replaced before a create, added to as ids come back, written only by the
    attempt that claimed the row, kept by a new claim of the same account, cleared when the row is synced."""
    import sqlalchemy as sa

    from crm_sync.db import sql
    from crm_sync.ledger import Ledger, intent_of, outcome
    from crm_sync.models import Customer, PreparedCheckIn

    ledger = Ledger(db, 4242, "housecallpro", "acct-1")
    row = PreparedCheckIn(77, 4242, "h1", Customer(), None, ["phone:+15125550160"])

    def intent() -> dict[str, str]:
        with db.connect() as conn:
            found = conn.execute(
                sa.text("SELECT crm_intent FROM crm_sync.ledger WHERE company_id = 4242 AND check_in_id = 77")
            )
            return intent_of({"crm_intent": found.scalar()})

    ledger.claim([row], "00000000-0000-0000-0000-000000000001", "r1")
    ledger.record_intent({77: {"customer_id": "cus_a", "parent_id": None}}, "00000000-0000-0000-0000-000000000001")
    ledger.record_intent({77: {"visit_id": "job_1"}}, "00000000-0000-0000-0000-000000000001")
    assert intent() == {"customer_id": "cus_a", "visit_id": "job_1"}
    ledger.record_intent({77: {"visit_id": "job_x"}}, "00000000-0000-0000-0000-000000000009")  # not its attempt
    ledger.claim([row], "00000000-0000-0000-0000-000000000002", "r2")  # the re-run still sees it
    assert intent() == {"customer_id": "cus_a", "visit_id": "job_1"}
    ledger.record_intent({77: {"customer_id": "cus_b"}}, "00000000-0000-0000-0000-000000000002", replace=True)
    assert intent() == {"customer_id": "cus_b"}
    failed = outcome(LedgerStatus.FAILED, kind="transient", error="x")
    ledger.finish([row], {77: failed}, "00000000-0000-0000-0000-000000000002")
    assert intent() == {"customer_id": "cus_b"}
    ledger.claim([row], "00000000-0000-0000-0000-000000000003", "r3")
    synced = outcome(LedgerStatus.SYNCED, customer_id="cus_b", visit_id="job_2")
    ledger.finish([row], {77: synced}, "00000000-0000-0000-0000-000000000003")
    assert intent() == {}
    with db.begin() as conn:  # an account change moves the row, its intent with it
        moved = """UPDATE crm_sync.ledger SET crm_intent = '{"visit_id": "j2"}' WHERE company_id = 4242"""
        conn.execute(sa.text(moved))
        keys = {"company_id": 4242, "crm_type": "housecallpro"}
        conn.execute(sql("account_archive_ledger"), {**keys, "previous_account": "acct-1"})
        archived = conn.execute(sa.text("SELECT crm_intent FROM crm_sync.ledger_archive WHERE company_id = 4242"))
        assert archived.scalar() == {"visit_id": "j2"}
        conn.execute(sql("account_restore_ledger"), {**keys, "crm_account": "acct-1"})
        restored = conn.execute(sa.text("SELECT crm_intent FROM crm_sync.ledger WHERE company_id = 4242"))
        assert restored.scalar() == {"visit_id": "j2"}


def test_a_run_that_outgrows_the_planner_statistics_refreshes_them(db):
    """A fresh ledger has no statistics: its per-row UPDATEs by primary key were planned on another
    ``(company_id, crm_type, ...)`` index and read every row of the company (65 ms per 100 rows at 5,000)."""
    import sqlalchemy as sa

    from crm_sync.db import sql
    from crm_sync.ledger import STATS_CHECK_ROWS, Ledger
    from crm_sync.models import Customer, PreparedCheckIn

    def rows(start: int, n: int) -> list[PreparedCheckIn]:
        return [PreparedCheckIn(i, 4343, "h", Customer(), None, [f"email:{i}@x.com"]) for i in range(start, start + n)]

    def planner_rows() -> float:
        with db.connect() as conn:
            return conn.execute(sql("ledger_planner_rows")).scalar()

    attempt = "00000000-0000-0000-0000-000000000001"
    ledger = Ledger(db, 4343, "hubspot", "acct-1")
    assert planner_rows() < STATS_CHECK_ROWS  # a new database: nothing analyzed yet
    ledger.claim(rows(0, STATS_CHECK_ROWS - 100), attempt, "r1")
    ledger.claim(rows(STATS_CHECK_ROWS - 100, 200), attempt, "r1")  # past the first check: analyzed
    assert planner_rows() == STATS_CHECK_ROWS + 100
    with db.connect() as conn:
        plan = conn.execute(
            sa.text(
                "EXPLAIN UPDATE crm_sync.ledger SET crm_intent = NULL WHERE company_id = 4343 "
                "AND crm_type = 'hubspot' AND check_in_id = 5 AND attempt_id = :a"
            ),
            {"a": attempt},
        ).scalars()
        assert "ledger_pkey" in "\n".join(plan)
    ledger.claim(rows(STATS_CHECK_ROWS + 100, STATS_CHECK_ROWS + 200), attempt, "r1")  # the run's count doubled
    assert planner_rows() == 2 * STATS_CHECK_ROWS + 300
