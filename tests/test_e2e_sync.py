"""End to end on real parts: PostgreSQL, the CRM sandbox over HTTP, and `airflow dags test`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter

import pytest
import requests
import sqlalchemy as sa

from e2e_helpers import (
    SECRETS,
    check_in_ids,
    company_json,
    ledger,
    records,
    run_dag,
    seed,
)
from localdev.airflow_env import ROOT, airflow_env, dags_test_command

pytestmark = pytest.mark.e2e


def visit_keys(sandbox_url: str) -> Counter:
    """How many CRM visit records carry each sync marker (must be 1 each)."""
    keys: Counter = Counter()
    for note in records(sandbox_url, "hubspot", "hs", "notes"):
        keys[note["properties"].get("rankitpro_checkin_key")] += 1
    for case in records(sandbox_url, "salesforce", "sf", "Case"):
        keys[case.get("RankItPro_CheckIn_Key__c")] += 1
    return keys


def assert_exactly_once(db, sandbox_url, ids):
    """Every check-in is synced exactly once or quarantined with a reason; nothing is left over."""
    keys = visit_keys(sandbox_url)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    for crm in ("hubspot", "salesforce"):
        company_id = ids[crm]
        rows = ledger(db, company_id, crm)
        assert set(rows) == check_in_ids(db, company_id), "every check-in has a ledger row"
        statuses = Counter(r["status"] for r in rows.values())
        assert set(statuses) <= {"synced", "quarantined"}, statuses
        for cid, r in rows.items():
            key = f"rankitpro-{company_id}-{cid}"
            if r["status"] == "synced":
                assert keys[key] == 1 and r["crm_visit_id"], (cid, r)
            else:
                assert keys[key] == 0 and r["last_error"], (cid, r)
    return keys


def test_incremental_sync_end_to_end(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=30, salesforce=30)
    code, out = run_dag(airflow_home, db_url, tmp_path)
    assert code == 0, out[-3000:]
    keys = assert_exactly_once(db, sandbox.url, ids)
    synced = sum(keys.values())
    assert synced >= 50
    # Repeat customers are not created twice.
    contacts = records(sandbox.url, "hubspot", "hs", "contacts")
    emails = [c["properties"].get("email") for c in contacts if c["properties"].get("email")]
    assert len(emails) == len(set(emails))

    # Quarantined rows carry a specific reason; bad configurations are reported, not fatal.
    with db.connect() as conn:
        reasons = (
            conn.execute(sa.text("SELECT last_error FROM crm_sync.ledger WHERE status = 'quarantined'")).scalars().all()
        )
        problems = dict(
            conn.execute(sa.text("SELECT company_id, error FROM crm_sync.runs WHERE status = 'config_error'")).all()
        )
    assert reasons and all("match strategy" in r or "customer" in r for r in reasons), reasons
    assert "not valid JSON" in problems[ids["broken_json"]]
    assert "unknown CRM type 'zoho'" in problems[ids["unknown_crm"]]
    assert "no credentials" in problems[ids["no_credentials"]]

    # The app sees the truth: history entries and lastSyncedAt.
    integrations, history = company_json(db, ids["hubspot"])
    assert integrations["hubspot"]["lastSyncedAt"].endswith("Z")
    assert history[0]["crmType"] == "hubspot" and history[0]["status"] == "partial"
    assert history[0]["errorCount"] == len(
        [r for r in ledger(db, ids["hubspot"], "hubspot").values() if r["status"] == "quarantined"]
    )
    _, no_cred_history = company_json(db, ids["no_credentials"])
    assert no_cred_history[0]["status"] == "failed"

    # No credential ever reached the Airflow output (dag.test output is not masked: nothing tried to log them).
    for secret in SECRETS:
        assert secret not in out
    with db.connect() as conn:
        dump = " ".join(
            str(r)
            for r in conn.execute(
                sa.text("SELECT l.*, r.* FROM crm_sync.ledger l FULL JOIN crm_sync.runs r ON false")
            ).all()
        )
    assert not any(s in dump for s in SECRETS)
    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        xcoms = " ".join(str(v) for (v,) in meta.execute("SELECT value FROM xcom"))
    assert '"done_before"' in xcoms and '"synced"' in xcoms  # the sync shards' counts are there ...
    assert not any(s in xcoms for s in SECRETS)  # ... and nothing else

    # Second run: nothing is sent again.
    before = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()
    code, out = run_dag(airflow_home, db_url, tmp_path)
    assert code == 0, out[-3000:]
    after = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()
    for crm in ("hubspot", "salesforce"):
        for account, data in after[crm].items():
            assert data["objects"] == before[crm][account]["objects"]
            # Idle runs cost nothing: no token fetch, no run-start check, no account identity (issue 11).
            assert data["by_endpoint"] == before[crm][account]["by_endpoint"], (crm, account)
    assert visit_keys(sandbox.url) == keys
    # Idle companies get no task at all (discovery in SQL, issue 14): the run's only rows are the
    # configuration problems, reported again; every sync_<crm> expanded to nothing.
    with db.connect() as conn:
        statuses = conn.execute(
            sa.text(
                "SELECT status, count(*) FROM crm_sync.runs "
                "WHERE run_id = (SELECT run_id FROM crm_sync.runs ORDER BY id DESC LIMIT 1) GROUP BY status"
            )
        ).all()
    assert dict(statuses) == {"config_error": 3}, statuses
    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        # This test's two runs (the Airflow home is shared with the other tests: their runs are there too).
        second_run, first_run = (
            run_id
            for (run_id,) in meta.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = 'crm_incremental_sync' ORDER BY id DESC LIMIT 2"
            ).fetchall()
        )
        sync_tis = meta.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE run_id = ? AND task_id LIKE 'sync_%'",
            (second_run,),
        ).fetchall()
        first_shards = meta.execute(
            "SELECT task_id, rendered_map_index FROM task_instance WHERE run_id = ? AND task_id LIKE 'sync_%' "
            "AND map_index >= 0",
            (first_run,),
        ).fetchall()
    assert sync_tis and {(m, s) for _, m, s in sync_tis} == {(-1, "skipped")}, sync_tis
    # The first run: one shard per company with work (a small fleet), named after its company.
    assert sorted(first_shards) == [
        ("sync_hubspot", f"company {ids['hubspot']}"),
        ("sync_salesforce", f"company {ids['salesforce']}"),
    ], first_shards


def test_edited_check_in_is_updated(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=12, salesforce=12, broken=False)
    assert run_dag(airflow_home, db_url, tmp_path)[0] == 0
    keys = assert_exactly_once(db, sandbox.url, ids)
    synced = {
        crm: [cid for cid, r in ledger(db, ids[crm], crm).items() if r["status"] == "synced"]
        for crm in ("hubspot", "salesforce")
    }
    with db.begin() as conn:
        for crm in synced:
            conn.execute(
                sa.text("UPDATE check_ins SET notes = 'EDITED: replaced the blower motor' WHERE id = :i"),
                {"i": synced[crm][0]},
            )
    code, out = run_dag(airflow_home, db_url, tmp_path)
    assert code == 0, out[-3000:]
    assert visit_keys(sandbox.url) == keys, "an edit updates, never creates"
    note = next(
        n
        for n in records(sandbox.url, "hubspot", "hs", "notes")
        if n["properties"]["rankitpro_checkin_key"] == f"rankitpro-{ids['hubspot']}-{synced['hubspot'][0]}"
    )
    assert "EDITED: replaced the blower motor" in note["properties"]["hs_note_body"]
    case = next(
        c
        for c in records(sandbox.url, "salesforce", "sf", "Case")
        if c["RankItPro_CheckIn_Key__c"] == f"rankitpro-{ids['salesforce']}-{synced['salesforce'][0]}"
    )
    assert "EDITED: replaced the blower motor" in case["Description"]
    with db.connect() as conn:
        updated = conn.execute(
            sa.text(
                "SELECT sum(visits_updated) FROM crm_sync.runs WHERE run_id = "
                "(SELECT run_id FROM crm_sync.runs ORDER BY id DESC LIMIT 1)"
            )
        ).scalar()
    assert updated == 2


def test_injected_429_and_5xx_give_the_same_result(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=25, salesforce=25, broken=False)
    requests.post(
        f"{sandbox.url}/_sandbox/faults", json={"status": 429, "rate": 0.25, "retry_after": 0.05}, timeout=5
    ).raise_for_status()
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"status": 503, "rate": 0.15}, timeout=5).raise_for_status()
    # 8 attempts per request: losing a whole batch to ~30% faults becomes a 1-in-25,000 event per call.
    code, out = run_dag(
        airflow_home, db_url, tmp_path, extra_env={"CRM_SYNC_BACKOFF_SECONDS": "0.05", "CRM_SYNC_MAX_ATTEMPTS": "8"}
    )
    assert code == 0, out[-3000:]
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
    with db.connect() as conn:
        synced_first = conn.execute(sa.text("SELECT count(*) FROM crm_sync.ledger WHERE status = 'synced'")).scalar()
        errors = conn.execute(sa.text("SELECT crm_type, error FROM crm_sync.runs WHERE error IS NOT NULL")).all()
    # Retries carried the faulty run: no integration stopped, (nearly) every row landed in one run.
    assert errors == [], errors
    assert synced_first >= 40, synced_first  # 50 check-ins, a few quarantined for bad data
    # A transient failure that outlived 5 attempts is retried by the next run; the end state is exact.
    assert run_dag(airflow_home, db_url, tmp_path)[0] == 0
    assert_exactly_once(db, sandbox.url, ids)
    with db.connect() as conn:
        retries = conn.execute(sa.text("SELECT sum(retries), sum(rate_limited) FROM crm_sync.runs")).one()
    assert retries[0] > 0 and retries[1] > 0


def test_killed_mid_batch_then_rerun_is_exactly_once(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=60, salesforce=60, broken=False)
    # Small batches and a slow CRM, so the kill lands between a write and its ledger update.
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"latency_ms": 150, "rate": 1.0}, timeout=5)
    env = airflow_env(airflow_home, db_url)
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(
        dags_test_command("crm_incremental_sync", {"batch_size": 5}),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            with db.connect() as conn:
                done = conn.execute(sa.text("SELECT count(*) FROM crm_sync.ledger WHERE status = 'synced'")).scalar()
            if done >= 20:
                break
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        log.close()
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
    with db.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM crm_sync.ledger WHERE status = 'in_flight'")).scalar()
        total = conn.execute(sa.text("SELECT count(*) FROM crm_sync.ledger WHERE status = 'synced'")).scalar()
    assert total < 120, "the kill happened before the run finished"
    code, out = run_dag(airflow_home, db_url, tmp_path)
    assert code == 0, out[-3000:]
    assert_exactly_once(db, sandbox.url, ids)
    print(f"killed with {total} synced and {left} in flight; after re-run every row is exactly once")
