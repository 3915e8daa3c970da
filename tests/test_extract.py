"""The new-row watermark on a real PostgreSQL: rows committed out of id order are never skipped."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_sync.extract import (
    advance_integration,
    iter_candidate_batches,
    settled_horizon,
)
from localdev.demo_data import INSERT_CHECK_IN, check_in_rows, create_company


def _rows(company_id, technician_id, n):
    return list(check_in_rows(company_id, technician_id, n, messy=False, start=datetime(2026, 1, 5, 9, 0)))


def _candidates(db, company_id):
    return [
        r["id"]
        for batch in iter_candidate_batches(db, company_id, "hubspot", batch_size=100, lookback_days=7)
        for r in batch
    ]


def _mark_synced(db, company_id, ids):
    with db.begin() as conn:
        for i in ids:
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, source_hash, synced_hash) "
                    "VALUES (:c, 'hubspot', :i, 'synced', 'h', 'h') ON CONFLICT DO NOTHING"
                ),
                {"c": company_id, "i": i},
            )


def test_row_committed_late_is_read_by_a_later_run(db):
    company_id, tech = create_company(db, "Late Co", {})
    rows = _rows(company_id, tech, 4)
    with db.begin() as conn:
        conn.execute(INSERT_CHECK_IN, rows[:2])
    # A technician's phone holds a transaction open: it has drawn the next id but not committed.
    slow = db.connect()
    slow_tx = slow.begin()
    slow.execute(INSERT_CHECK_IN, rows[2])
    late_id = slow.execute(sa.text("SELECT max(id) FROM check_ins")).scalar()
    with db.begin() as conn:
        conn.execute(INSERT_CHECK_IN, rows[3])

    # Run 1 sees the committed rows, including one above the invisible id.
    settled = settled_horizon(db)
    first = _candidates(db, company_id)
    assert late_id not in first and max(first) > late_id
    _mark_synced(db, company_id, first)
    advance_integration(db, company_id, "hubspot", settled)

    # Run 2 while the slow transaction is still open: still not skipped, not yet visible.
    settled = settled_horizon(db)
    assert settled < late_id, "the horizon never settles past a running transaction's rows"
    advance_integration(db, company_id, "hubspot", settled)

    slow_tx.commit()
    slow.close()

    # Run 3: the late row is read (a "max id seen" watermark would have skipped it for good).
    settled = settled_horizon(db)
    third = _candidates(db, company_id)
    assert third == [late_id]
    _mark_synced(db, company_id, third)
    advance_integration(db, company_id, "hubspot", settled)

    # Once settled past everything, nothing is read again.
    settled_horizon(db)
    advance_integration(db, company_id, "hubspot", settled_horizon(db))
    assert _candidates(db, company_id) == []


def test_edited_rows_inside_the_lookback_are_candidates_again(db):
    company_id, tech = create_company(db, "Edit Co", {})
    with db.begin() as conn:
        conn.execute(INSERT_CHECK_IN, _rows(company_id, tech, 3))
    ids = _candidates(db, company_id)
    _mark_synced(db, company_id, ids)
    advance_integration(db, company_id, "hubspot", settled_horizon(db))
    # Synced rows within the look-back come back for a hash comparison; older ones do not.
    assert sorted(_candidates(db, company_id)) == []  # created in January: outside a 7-day look-back
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE check_ins SET created_at = now() AT TIME ZONE 'UTC' WHERE id = :i"), {"i": ids[0]})
    assert _candidates(db, company_id) == [ids[0]]
