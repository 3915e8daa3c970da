"""crm_backfill: chunk planning (pure), and end to end on real parts (PostgreSQL, sandbox over HTTP,
``airflow dags test``): a dry run sends nothing, a killed backfill resumes exactly once, rows the incremental
sync already sent are not sent again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from datetime import date

import pytest
import requests
import sqlalchemy as sa

from crm_sync.backfill import BackfillParamError, backfill_key, merge_reports, parse_params, plan_chunks
from e2e_helpers import SECRETS, check_in_ids, ledger, records, run_dag, seed, stats
from localdev.airflow_env import ROOT, airflow_env, dags_test_command

DAG_ID = "crm_backfill"


# ---------------------------------------------------------------------- pure rules
def test_plan_chunks_covers_the_range_once_and_skips_done_chunks():
    chunks = plan_chunks([1, 2], date(2026, 3, 1), date(2026, 3, 10), 4)
    assert [(c["company_id"], c["chunk_start"], c["chunk_end"]) for c in chunks] == [
        (1, "2026-03-01", "2026-03-05"),
        (1, "2026-03-05", "2026-03-09"),
        (1, "2026-03-09", "2026-03-11"),
        (2, "2026-03-01", "2026-03-05"),
        (2, "2026-03-05", "2026-03-09"),
        (2, "2026-03-09", "2026-03-11"),
    ]
    left = plan_chunks([1, 2], date(2026, 3, 1), date(2026, 3, 10), 4, {(1, date(2026, 3, 1)), (2, date(2026, 3, 9))})
    assert len(left) == 4 and {"company_id": 1, "chunk_start": "2026-03-01", "chunk_end": "2026-03-05"} not in left
    assert plan_chunks([1], date(2026, 3, 1), date(2026, 3, 1), 30) == [
        {"company_id": 1, "chunk_start": "2026-03-01", "chunk_end": "2026-03-02"}
    ]


def test_backfill_key_depends_on_what_not_how_fast():
    base = {
        "crm_type": "hubspot",
        "company_ids": [3, 1],
        "date_from": "2026-01-01",
        "date_to": "2026-02-01",
        "chunk_days": 7,
        "dry_run": False,
    }
    key = backfill_key(parse_params(base))
    assert key == backfill_key(parse_params({**base, "company_ids": [1, 3, 3], "batch_size": 50, "rate_share": 0.2}))
    for change in (
        {"date_to": "2026-02-02"},
        {"chunk_days": 3},
        {"dry_run": True},
        {"resync_quarantined": True},
        {"crm_type": "salesforce"},
        {"company_ids": [1]},
    ):
        assert backfill_key(parse_params({**base, **change})) != key, change


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "crm_type is required"),
        ({"crm_type": "zoho"}, "crm_type 'zoho' is not one of"),
        ({"crm_type": "hubspot", "date_from": "2026-02-30"}, "date_from '2026-02-30' is not a date"),
        ({"crm_type": "hubspot", "date_from": "2026-03-02", "date_to": "2026-03-01"}, "is after date_to"),
        ({"crm_type": "hubspot", "company_ids": ["x"]}, "company_ids must be integers"),
    ],
)
def test_bad_params_are_refused_with_the_reason(params, message):
    with pytest.raises(BackfillParamError, match=message):
        parse_params(params)


def test_merge_reports_sums_counts_and_keeps_few_samples():
    one = {
        "counts": {"would_create_visits": 2, "invalid": 1},
        "invalid_reasons": {"no email": 1},
        "samples": [{"check_in_id": i} for i in range(4)],
    }
    merged = merge_reports([one, one])
    assert merged["counts"] == {"would_create_visits": 4, "invalid": 2}
    assert merged["invalid_reasons"] == {"no email": 2} and len(merged["samples"]) == 5


# ---------------------------------------------------------------------- end to end
def spread(db, company_id: int, first_day: str, hours: int) -> tuple[str, str]:
    """Spread a company's check-ins over days (one every ``hours``); returns the first and last day."""
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE check_ins SET created_at = CAST(:d AS timestamp) + (id - (SELECT min(id) FROM check_ins "
                "WHERE company_id = :c)) * make_interval(hours => :h) WHERE company_id = :c"
            ),
            {"d": first_day, "c": company_id, "h": hours},
        )
        first, last = conn.execute(
            sa.text("SELECT min(created_at)::date, max(created_at)::date FROM check_ins WHERE company_id = :c"),
            {"c": company_id},
        ).one()
    return first.isoformat(), last.isoformat()


def chunk_rows(db) -> list[dict]:
    with db.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text("SELECT * FROM crm_sync.backfill_chunks ORDER BY company_id, chunk_start")
            ).mappings()
        ]


def report_xcom(airflow_home) -> dict:
    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        (value,) = meta.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'report' ORDER BY timestamp DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
    return json.loads(value)


def note_keys(sandbox_url: str) -> Counter:
    return Counter(n["properties"].get("rankitpro_checkin_key") for n in records(sandbox_url, "hubspot", "hs", "notes"))


def assert_exactly_once(db, sandbox_url, company_id):
    keys = note_keys(sandbox_url)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    rows = ledger(db, company_id, "hubspot")
    assert set(rows) == check_in_ids(db, company_id)
    for cid, r in rows.items():
        key = f"rankitpro-{company_id}-{cid}"
        assert r["status"] in ("synced", "quarantined"), (cid, r)
        assert keys[key] == (1 if r["status"] == "synced" else 0), (cid, r)
        assert r["status"] == "synced" or r["last_error"]


def test_dry_run_sends_nothing_and_reports_what_it_would_send(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=40, salesforce=0, broken=False)
    first, last = spread(db, ids["hubspot"], "2026-03-01", 6)
    before = stats(sandbox.url)
    conf = {
        "crm_type": "hubspot",
        "company_ids": [ids["hubspot"]],
        "date_from": first,
        "date_to": last,
        "chunk_days": 3,
        "dry_run": True,
    }
    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id=DAG_ID, conf=conf)
    assert code == 0, out[-3000:]
    after = stats(sandbox.url)
    assert after["hubspot"]["hs"]["requests"] == before["hubspot"]["hs"]["requests"], "no API call at all"
    assert after["hubspot"]["hs"]["objects"] == before["hubspot"]["hs"]["objects"]
    assert ledger(db, ids["hubspot"], "hubspot") == {}, "the ledger is untouched"

    report = report_xcom(airflow_home)["dry_run"]
    counts = report["counts"]
    assert counts["would_create_visits"] + counts["invalid"] == 40
    assert counts["invalid"] >= 1 and report["invalid_reasons"], report  # seed() makes unmatchable rows
    assert 0 < counts["would_create_customers"] < counts["would_create_visits"]  # returning customers counted once
    assert counts["already_synced"] == 0
    sample = report["samples"][0]
    assert sample["visit_key"].startswith(f"rankitpro-{ids['hubspot']}-") and sample["visit"]["title"]
    chunks = chunk_rows(db)
    assert len(chunks) == 4 and {c["status"] for c in chunks} == {"dry_run"}
    with db.connect() as conn:
        runs = conn.execute(sa.text("SELECT status, candidates FROM crm_sync.runs")).all()
    assert {r.status for r in runs} == {"dry_run"} and sum(r.candidates for r in runs) == 40
    assert not any(s in out for s in SECRETS)


def test_killed_backfill_resumes_and_lands_every_row_once(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=60, salesforce=0, broken=False)
    company = ids["hubspot"]
    first, last = spread(db, company, "2026-02-01", 6)
    conf = {
        "crm_type": "hubspot",
        "company_ids": [company],
        "date_from": first,
        "date_to": last,
        "chunk_days": 2,
        "dry_run": False,
        "batch_size": 5,
    }
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"latency_ms": 100, "rate": 1.0}, timeout=5)
    env = airflow_env(airflow_home, db_url)
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(
            dags_test_command(DAG_ID, conf),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline:
                done = [c for c in chunk_rows(db) if c["status"] == "done"]
                if len(done) >= 2:
                    break
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
    done_first = {c["chunk_start"] for c in chunk_rows(db) if c["status"] == "done"}
    total_chunks = len(plan_chunks([company], date.fromisoformat(first), date.fromisoformat(last), 2))
    assert 2 <= len(done_first) < total_chunks, "killed midway"
    synced_first = sum(1 for r in ledger(db, company, "hubspot").values() if r["status"] == "synced")

    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id=DAG_ID, conf=conf)
    assert code == 0, out[-3000:]
    chunks = chunk_rows(db)
    assert len(chunks) == total_chunks and {c["status"] for c in chunks} == {"done"}
    # Chunks finished before the kill were not run again; the rest were.
    for c in chunks:
        assert c["attempts"] == 1 or c["chunk_start"] not in done_first, c
    assert_exactly_once(db, sandbox.url, company)
    print(f"killed after {len(done_first)} of {total_chunks} chunks ({synced_first} rows synced); resumed exactly once")


def test_backfill_sends_nothing_the_incremental_sync_already_sent(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=25, salesforce=0, broken=False)
    company = ids["hubspot"]
    assert run_dag(airflow_home, db_url, tmp_path, conf={"crm_types": ["hubspot"]})[0] == 0
    assert_exactly_once(db, sandbox.url, company)
    before = stats(sandbox.url)["hubspot"]["hs"]
    keys = note_keys(sandbox.url)
    conf = {"crm_type": "hubspot", "company_ids": [company], "chunk_days": 1, "dry_run": False}
    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id=DAG_ID, conf=conf)
    assert code == 0, out[-3000:]
    assert stats(sandbox.url)["hubspot"]["hs"]["objects"] == before["objects"]
    assert note_keys(sandbox.url) == keys
    result = report_xcom(airflow_home)
    assert result["candidates"] == 25 and result["unchanged"] == 25 and result["synced"] == 0, result
    with db.connect() as conn:
        sent = conn.execute(
            sa.text(
                "SELECT sum(visits_created + customers_created + visits_updated) FROM crm_sync.runs WHERE dag_id = :d"
            ),
            {"d": DAG_ID},
        ).scalar()
    assert sent == 0
    # And the dry run says so.
    code, _ = run_dag(airflow_home, db_url, tmp_path, dag_id=DAG_ID, conf={**conf, "dry_run": True})
    assert code == 0
    counts = report_xcom(airflow_home)["dry_run"]["counts"]
    assert counts["would_create_visits"] == 0 and counts["already_synced"] + counts["already_quarantined"] == 25

    # Airflow's own backfill of the scheduled DAG makes runs with past logical dates: each one is the same
    # incremental run through the same ledger, so it sends nothing either.
    env = airflow_env(airflow_home, db_url)
    command = dags_test_command("crm_incremental_sync", {"crm_types": ["hubspot"]})
    command.insert(4, "2026-06-01T00:15:00+00:00")  # airflow dags test <dag_id> <logical_date> -c ...
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert stats(sandbox.url)["hubspot"]["hs"]["objects"] == before["objects"] and note_keys(sandbox.url) == keys


def test_incremental_dag_is_safe_to_backfill_with_airflow():
    """``airflow backfill create`` runs the scheduled DAG once per past interval: one run at a time, and no task
    reads the interval (each run is the ledger-driven incremental sync)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    dag = bag.dags["crm_incremental_sync"]
    assert dag.max_active_runs == 1 and dag.catchup is False
    source = (
        (ROOT / "dags" / "crm_incremental_sync.py").read_text()
        + (ROOT / "plugins" / "crm_sync" / "tasks" / "sync.py").read_text()
        + (ROOT / "plugins" / "crm_sync" / "tasks" / "common.py").read_text()
    )
    for word in ("data_interval", "logical_date", "ds }}", "execution_date"):
        assert word not in source, word
    backfill = bag.dags["crm_backfill"]
    assert type(backfill.timetable).__name__ == "NullTimetable", "crm_backfill only runs when triggered"
