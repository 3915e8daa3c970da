"""The new-row watermark on a real PostgreSQL: rows committed out of id order are never skipped."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_sync.extract import (
    advance_integration,
    iter_candidate_batches,
    iter_range_batches,
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


def test_a_crm_state_row_is_a_candidate_once_its_customer_changed_after_it_was_quarantined(db):
    """``state_changed`` (extract_candidates.sql and extract_range.sql): a ``crm_state`` row whose customer has a
    ``customer_map`` entry of this account written after the row was quarantined, by its customer key or by the
    CRM customer it was refused for; not another kind, not an older change, not another account's entry."""
    company_id, tech = create_company(db, "State Co", {})
    created = datetime(2025, 6, 1, 9, 0)  # outside any look-back: only state_changed can bring a row back
    rows = list(check_in_rows(company_id, tech, 6, messy=False, start=created))
    with db.begin() as conn:
        conn.execute(INSERT_CHECK_IN, rows)
        found = conn.execute(sa.text("SELECT id FROM check_ins WHERE company_id = :c"), {"c": company_id})
        ids = sorted(found.scalars())
    #: check-in -> (error_kind, customer key, CRM customer id)
    ledger = {
        ids[0]: ("crm_state", "email:a@x.com", None),  # a later entry for its key
        ids[1]: ("crm_state", "phone:+15125550101", "cus_b"),  # a later entry for another key of its customer
        ids[2]: ("crm_rejected", "email:c@x.com", "cus_c"),  # a later entry, but not a CRM-state reason
        ids[3]: ("crm_state", "email:d@x.com", "cus_d"),  # only an older entry
        ids[4]: ("crm_state", "email:e@x.com", None),  # a later entry of another CRM account
        ids[5]: ("crm_state", "email:f@x.com", None),  # a later entry of another CRM type
    }
    later, earlier = "now() + interval '1 minute'", "now() - interval '1 day'"
    with db.begin() as conn:
        for check_in_id, (kind, key, customer) in ledger.items():
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, customer_key, "
                    "crm_customer_id, source_hash, error_kind, last_attempt_at, quarantined_at, crm_account) "
                    "VALUES (:c, 'housecallpro', :i, 'quarantined', :k, :cus, 'h', :kind, now(), now(), 'acct')"
                ),
                {"c": company_id, "i": check_in_id, "k": key, "cus": customer, "kind": kind},
            )
        for key, customer, account, crm, at in [
            ("email:a@x.com", "cus_a", "acct", "housecallpro", later),
            ("email:b@x.com", "cus_b", "acct", "housecallpro", later),
            ("email:c@x.com", "cus_c", "acct", "housecallpro", later),
            ("email:d@x.com", "cus_d", "acct", "housecallpro", earlier),
            ("email:e@x.com", "cus_e", "other", "housecallpro", later),
            ("email:f@x.com", "cus_f", "acct", "jobber", later),
        ]:
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.customer_map (company_id, crm_type, match_key, crm_customer_id, crm_account, "
                    f"updated_at) VALUES (:c, :t, :k, :cus, :a, {at})"
                ),
                {"c": company_id, "t": crm, "k": key, "cus": customer, "a": account},
            )
    candidates = {
        r["id"]: r["state_changed"]
        for batch in iter_candidate_batches(
            db, company_id, "housecallpro", batch_size=100, lookback_days=7, crm_account="acct"
        )
        for r in batch
    }
    assert candidates == {ids[0]: True, ids[1]: True}
    ranged = {
        r["id"]: r["state_changed"]
        for batch in iter_range_batches(
            db,
            company_id,
            "housecallpro",
            created_from=created,
            created_to=datetime(2025, 7, 1),
            batch_size=100,
            crm_account="acct",
        )
        for r in batch
    }
    assert ranged == {i: i in (ids[0], ids[1]) for i in ids}
