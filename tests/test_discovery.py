"""Discovery in SQL and shards (issue 14): idle companies get no task; busy ones are synced in shards.

Real parts: PostgreSQL, the CRM sandbox over HTTP (HubSpot), the sync as the DAG task runs it. Fifty companies
are synced once; a few then get each kind of work (new, edited in the look-back, unfinished, requeued,
crm_state whose customer changed, a ledger row without a fingerprint) and a few get changes that are no work
(an edit of a column the sync does not send, an edit older than the look-back). Discovery must return exactly
the busy ones, and the engine, run for every company, must agree with it row for row.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from crm_sync.discovery import CompanyWork, companies_with_work, max_shards, plan_shards, shard_label
from crm_sync.integration_sync import IntegrationResult, SyncOptions
from crm_sync.prepare import HASHED_COLUMNS
from crm_sync.shards import DEFERRED, sync_shard
from crm_sync.tasks.common import discover
from e2e_helpers import HS_TOKEN, recent, register
from localdev.demo_data import check_in_rows, create_company, hubspot_integration, insert_check_ins

N_COMPANIES = 50


def sync_all(db, company_ids, run_id: str) -> dict[int, IntegrationResult]:
    """Every company as its own shard of one, so each result is seen."""
    results: dict[int, IntegrationResult] = {}

    def keep(result: IntegrationResult) -> None:
        results[result.company_id] = result

    sync_shard(db, company_ids, "hubspot", run_id=run_id, dag_id="test", options=SyncOptions(), on_result=keep)
    return results


def busy(db, lookback_days: int = 7) -> dict[int, CompanyWork]:
    usable = discover(db, "hubspot", purpose="sync into").company_ids
    return {w.company_id: w for w in companies_with_work(db, "hubspot", usable, lookback_days=lookback_days)}


def execute(db, statement: str, **params: Any) -> None:
    with db.begin() as conn:
        conn.execute(sa.text(statement), params)


def one_check_in(db, company_id: int) -> int:
    with db.connect() as conn:
        return conn.execute(sa.text("SELECT min(id) FROM check_ins WHERE company_id = :c"), {"c": company_id}).scalar()


def add_check_in(db, company_id: int, seed: int, **override: Any) -> int:
    with db.connect() as conn:
        tech = conn.execute(sa.text("SELECT id FROM technicians WHERE company_id = :c"), {"c": company_id}).scalar()
    row = next(iter(check_in_rows(company_id, tech, 1, seed=seed, messy=False, start=recent(), repeat_share=0.0)))
    insert_check_ins(db, iter([{**row, **override}]))
    with db.connect() as conn:
        return conn.execute(sa.text("SELECT max(id) FROM check_ins WHERE company_id = :c"), {"c": company_id}).scalar()


@pytest.fixture
def fleet(db, sandbox) -> list[int]:
    """Fifty HubSpot companies, two check-ins each, all synced once: discovery finds nothing."""
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    ids = []
    for i in range(N_COMPANIES):
        cid, tech = create_company(db, f"Fleet {i}", {"hubspot": hubspot_integration(sandbox.url, HS_TOKEN)})
        insert_check_ins(db, check_in_rows(cid, tech, 2, seed=100 + i, messy=False, start=recent(), repeat_share=0))
        ids.append(cid)
    assert set(busy(db)) == set(ids)  # never synced: every company has its first run
    first = sync_all(db, ids, "first")
    assert {r.status for r in first.values()} == {"success"}, {c: r.error for c, r in first.items() if r.error}
    assert busy(db) == {}
    return ids


def test_discovery_finds_exactly_the_companies_with_work_and_the_engine_agrees(db, sandbox, fleet):
    c = iter(fleet)
    new, edited, failed, pending, in_flight, requeued, state, no_fp = (next(c) for _ in range(8))
    other_column, old_edit, other_crm_ledger = next(c), next(c), next(c)
    expected: dict[int, str] = {}

    add_check_in(db, new, seed=1)
    expected[new] = "new_rows=1"
    execute(db, "UPDATE check_ins SET notes = notes || ' (edited)' WHERE id = :i", i=one_check_in(db, edited))
    expected[edited] = "edited=1"
    for company, status in ((failed, "failed"), (pending, "pending"), (in_flight, "in_flight")):
        row = add_check_in(db, company, seed=2)
        execute(
            db,
            "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, source_hash, attempts) "
            "VALUES (:c, 'hubspot', :i, :s, 'x', 1)",
            c=company,
            i=row,
            s=status,
        )
        expected[company] = "unfinished=1"
    execute(
        db,
        "UPDATE crm_sync.ledger SET requeue = true WHERE company_id = :c AND check_in_id = :i",
        c=requeued,
        i=one_check_in(db, requeued),
    )
    expected[requeued] = "requeued=1"
    # A row quarantined for the CRM's state an hour ago; its customer's map entry was written since.
    row = add_check_in(db, state, seed=3)
    with db.connect() as conn:
        key = conn.execute(
            sa.text("SELECT match_key FROM crm_sync.customer_map WHERE company_id = :c LIMIT 1"), {"c": state}
        ).scalar()
    execute(
        db,
        "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, error_kind, customer_key, "
        "source_hash, source_fp, attempts, quarantined_at) VALUES (:c, 'hubspot', :i, 'quarantined', 'crm_state', :k, "
        "'x', (SELECT source_fp FROM crm_sync.sync_check_ins WHERE id = :i), 1, "
        "now() - interval '1 hour')",
        c=state,
        i=row,
        k=key,
    )
    execute(
        db,
        "UPDATE crm_sync.customer_map SET updated_at = now() WHERE company_id = :c AND match_key = :k",
        c=state,
        k=key,
    )
    expected[state] = "state_changed=1"
    # Written before migration 0017: no fingerprint. Found once; the run that finds it unchanged stores it.
    execute(
        db,
        "UPDATE crm_sync.ledger SET source_fp = NULL WHERE company_id = :c AND check_in_id = :i",
        c=no_fp,
        i=one_check_in(db, no_fp),
    )
    expected[no_fp] = "edited=1"
    # No work: a column the sync does not send; an edit of a row older than the look-back; another CRM's ledger.
    execute(db, "UPDATE check_ins SET latitude = 1.5 WHERE company_id = :c", c=other_column)
    old = one_check_in(db, old_edit)
    execute(db, "UPDATE check_ins SET created_at = now() - interval '30 days', notes = 'old edit' WHERE id = :i", i=old)
    execute(
        db,
        "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, source_hash, attempts) "
        "VALUES (:c, 'salesforce', :i, 'failed', 'x', 1)",
        c=other_crm_ledger,
        i=one_check_in(db, other_crm_ledger),
    )

    found = busy(db)
    assert {k: w.describe() for k, w in found.items()} == expected
    assert set(busy(db, lookback_days=60)) == set(expected) | {old_edit}  # the old edit inside a longer look-back

    # The engine, run for every company, agrees: the idle ones have nothing to do and make no CRM call.
    results = sync_all(db, fleet, "second")
    for company_id, result in results.items():
        worked = result.candidates - result.unchanged > 0 or result.api_calls > 0
        if company_id == no_fp:
            assert not worked and result.unchanged == 2, result  # unchanged after all: fingerprint stored
        else:
            assert worked == (company_id in expected), (company_id, result)
        assert result.status == "success", (company_id, result.error)
    assert busy(db) == {}  # everything done, the fingerprint of the row without one stored


def test_the_fingerprint_covers_exactly_the_columns_source_hash_covers(db):
    """sync_check_ins.source_fp (migration 0017) changes with each column of HASHED_COLUMNS, not with others."""
    company_id, tech = create_company(db, "Fingerprint", None)
    insert_check_ins(db, check_in_rows(company_id, tech, 1, seed=5, messy=False, start=recent(), repeat_share=0))
    row_id = one_check_in(db, company_id)

    def fp() -> str:
        with db.connect() as conn:
            return conn.execute(
                sa.text("SELECT source_fp FROM crm_sync.sync_check_ins WHERE id = :i"), {"i": row_id}
            ).scalar()

    with db.connect() as conn:
        types = dict(
            conn.execute(
                sa.text("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'check_ins'")
            ).all()
        )
    value = {
        "jsonb": "CAST('[\"https://x.example/changed.jpg\"]' AS jsonb)",
        "boolean": "NOT {c}",
        "numeric": "{c} + 1",
        "integer": "{c}",
        "timestamp without time zone": "{c} - interval '1 second'",
    }
    for column, data_type in sorted(types.items()):
        if column in ("id", "company_id", "technician_id", "location_id", "wordpress_post_id"):
            continue
        before = fp()
        expression = value.get(data_type, "COALESCE({c}, '') || ' changed'").format(c=column)
        execute(db, f"UPDATE check_ins SET {column} = {expression} WHERE id = :i", i=row_id)
        assert (fp() != before) == (column in HASHED_COLUMNS), column


def test_shards_are_bounded_balanced_and_named():
    work = [CompanyWork(i, new_rows=rows) for i, rows in enumerate([500, 1, 1, 1, 1, 1, 1, 1, 1, 1], start=1)]
    shards = plan_shards(work, 3)
    assert len(shards) == 3 and sorted(c for s in shards for c in s) == list(range(1, 11))
    assert [1] in shards  # the big company has a shard to itself
    assert plan_shards(work[:2], 4) == [[1], [2]]  # a small fleet: one shard per company
    assert plan_shards([], 4) == []
    assert shard_label([7]) == "company 7" and shard_label([7, 9]) == "companies 7, 9"
    assert shard_label(list(range(1, 41))) == "40 companies: 1, 2, 3, 4, 5, …"
    assert max_shards(None) == 4 and max_shards(2) == 2
    with pytest.raises(ValueError, match="max_shards"):
        max_shards(0)


def test_a_shard_goes_on_past_a_broken_company_and_its_retry_sends_nothing_twice(db, sandbox, fleet):
    from crm_sync.shards import sync_company

    shard = fleet[:4]
    for company_id in shard:
        add_check_in(db, company_id, seed=9)
    # Company 2 raises (a bug, the database going away); company 3's integration lost its credentials.
    execute(
        db,
        'UPDATE companies SET crm_integrations = \'{"hubspot": {"status": "active", "credentials": {}}}\' '
        "WHERE id = :c",
        c=shard[2],
    )

    def flaky(engine, company_id, crm_type, **kwargs):
        if company_id == shard[1]:
            raise RuntimeError("boom")
        return sync_company(engine, company_id, crm_type, **kwargs)

    first = sync_shard(db, shard, "hubspot", run_id="r", dag_id="test", options=SyncOptions(), sync=flaky)
    assert first.errors == [shard[1]]
    assert first.by_status == {"success": 2, "config_error": 1} and first.synced == 2

    # The retry (the task failed): the companies done are skipped, the broken one is synced now.
    retry = sync_shard(db, shard, "hubspot", run_id="r", dag_id="test", options=SyncOptions())
    assert sorted(retry.done_before) == sorted([shard[0], shard[2], shard[3]])
    assert retry.by_status == {"success": 1} and retry.synced == 1 and not retry.errors


def test_a_shard_out_of_time_defers_the_companies_it_did_not_reach(db, sandbox, fleet):
    import time

    shard = fleet[:3]
    for company_id in shard:
        add_check_in(db, company_id, seed=8)
    done = sync_shard(
        db, shard, "hubspot", run_id="late", dag_id="test", options=SyncOptions(deadline=time.monotonic() - 1)
    )
    assert sorted(done.deferred) == sorted(shard) and done.by_status == {DEFERRED: 3} and done.api_calls == 0
    with db.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, error FROM crm_sync.runs WHERE run_id = 'late'")).all()
    assert {r.status for r in rows} == {DEFERRED} and len(rows) == 3 and "next cycle" in rows[0].error
    assert set(busy(db)) == set(shard)  # still work: the next cycle finds them
    # A retry of that shard has a fresh budget and syncs them (deferred is not done).
    again = sync_shard(db, shard, "hubspot", run_id="late", dag_id="test", options=SyncOptions())
    assert again.by_status == {"success": 3} and again.synced == 3
    assert busy(db) == {}


def _last_synced(db, company_ids: list[int]) -> dict[int, Any]:
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, crm_integrations FROM companies WHERE id = ANY(:ids)"), {"ids": company_ids}
        ).all()
    return {r.id: json.loads(r.crm_integrations)["hubspot"].get("lastSyncedAt") for r in rows}


def test_an_idle_company_gets_no_task_but_its_last_synced_says_it_was_checked(db, db_url, sandbox, fleet, monkeypatch):
    """The app shows ``lastSyncedAt`` as "last synced": an idle company's must not go stale because discovery
    spared it a task. Busy companies get it from their run; one already later (a run that ended since) stays."""
    from crm_sync.tasks.sync import discover_companies

    socket_dir = db_url.query.get("host") or db_url.host
    conn = {"conn_type": "postgres", "host": socket_dir, "login": db_url.username, "password": db_url.password}
    monkeypatch.setenv("AIRFLOW_CONN_FLEET_DB", json.dumps({**conn, "schema": db_url.database, "port": db_url.port}))
    busy_one, later = fleet[0], fleet[1]
    execute(
        db,
        "UPDATE companies SET crm_integrations = "
        "jsonb_set(crm_integrations::jsonb, '{hubspot,lastSyncedAt}', to_jsonb(CAST(:at AS text)))::text "
        "WHERE id = ANY(:ids)",
        at="2026-01-01T00:00:00.000Z",
        ids=fleet,
    )
    execute(
        db,
        "UPDATE companies SET crm_integrations = "
        "jsonb_set(crm_integrations::jsonb, '{hubspot,lastSyncedAt}', '\"2999-01-01T00:00:00.000Z\"')::text "
        "WHERE id = :i",
        i=later,
    )
    add_check_in(db, busy_one, seed=7)
    with db.connect() as conn_:
        before = {
            r.id: (json.loads(r.crm_integrations), r.crm_sync_history)
            for r in conn_.execute(sa.text("SELECT id, crm_integrations, crm_sync_history FROM companies"))
        }

    shards = discover_companies("hubspot", db_conn_id="fleet_db", params={}, run_id="r", dag=None)
    assert [c for s in shards for c in s] == [busy_one]
    stamps = _last_synced(db, fleet)
    assert stamps[busy_one] == "2026-01-01T00:00:00.000Z"  # busy: its run writes it
    assert stamps[later] == "2999-01-01T00:00:00.000Z"  # never moved back
    idle = [c for c in fleet if c not in (busy_one, later)]
    assert len({stamps[c] for c in idle}) == 1 and stamps[idle[0]] > "2026-12"  # one check, one time, now
    with db.connect() as conn_:
        for r in conn_.execute(sa.text("SELECT id, crm_integrations, crm_sync_history FROM companies")):
            integrations, history = before[r.id]
            if r.id in idle:
                integrations["hubspot"]["lastSyncedAt"] = stamps[r.id]
            assert json.loads(r.crm_integrations) == integrations  # nothing else changed
            assert r.crm_sync_history == history  # and no history entry: nothing happened
