"""Issue #10, section 5 and parts of section 7: one company cannot stall the others, hostile text cannot break writes.

* Admin-set rate limits are validated against a documented range (warning + default).
* The time budget: the limiter, the hook and the engine stop before crossing it; unsent rows stay pending.
* NUL bytes and lone surrogates never reach PostgreSQL; configuration reports are idempotent per DAG run.
* A DAG run whose task failed ends ``failed`` (a real ``dag.test`` run), and a stuck task is ended by its
  execution timeout while the other companies still sync.
* ``NaN`` / ``Infinity`` / ``1e999`` are refused when reading settings; the write-back writes strict JSON.
* Redaction runs before truncation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa

from crm_hooks.base import CrmHook
from crm_hooks.errors import RetryableError
from crm_hooks.rate_limit import RateLimit, RollingWindowLimiter
from crm_hooks.registry import HOOKS
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from e2e_helpers import check_in_ids, company_json, ledger, recent, records, register
from localdev.demo_data import (
    check_in_rows,
    create_company,
    housecallpro_integration,
    hubspot_integration,
    insert_check_ins,
)

# ============================================================================ 1. admin-set limits


@pytest.mark.parametrize(
    "crm_type, key, value, expected",
    [
        ("housecallpro", "requestsPerMinute", 0.0001, RateLimit(120, 60.0)),
        ("housecallpro", "requestsPerMinute", "1e999", RateLimit(120, 60.0)),
        ("servicetitan", "requestsPerSecond", 1000, None),
        ("salesforce", "requestsPerSecond", float("nan"), RateLimit(None, 1.0)),
        ("hubspot", "rateLimitPer10s", True, RateLimit(190.0, 10.0)),
        ("fieldedge", "rateLimitPer10s", -5, RateLimit(100.0, 10.0)),
    ],
)
def test_out_of_range_rate_limit_setting_is_a_warning_and_the_default(crm_type, key, value, expected):
    hook = HOOKS[crm_type](credentials={"apiKey": "k"}, settings={key: value})
    limit = hook.rate_limits["default"]
    default = HOOKS[crm_type](credentials={"apiKey": "k"}).rate_limits["default"]
    assert limit == (expected or default)
    warnings = hook.setting_warnings
    assert len(warnings) == 1 and f"crmSettings.{key} must be a number from" in warnings[0], warnings
    assert "used" in warnings[0]


def test_in_range_rate_limit_setting_is_used_without_a_warning():
    hook = HOOKS["housecallpro"](credentials={"apiKey": "k"}, settings={"requestsPerMinute": "30"})
    assert hook.rate_limits["default"] == RateLimit(30.0, 60.0)
    assert hook.setting_warnings == []


# ============================================================================ 3. the time budget: limiter and hook


def test_limiter_raises_instead_of_sleeping_past_the_deadline(instant_rate_limits):
    from crm_hooks.errors import BudgetExhaustedError

    limiter = RollingWindowLimiter(RateLimit(1, 60.0))
    limiter.acquire()
    start = instant_rate_limits.now
    with pytest.raises(BudgetExhaustedError, match="time budget reached"):
        limiter.acquire(deadline=start + 5)
    assert instant_rate_limits.now == start, "no sleep at all"
    # Without a deadline (or with one far enough away) it still waits for the slot, as before.
    assert limiter.acquire(deadline=start + 3600) > 0


class _Hook(CrmHook):
    crm_type = "housecallpro"
    vendor_domains = ("housecallpro.com",)
    default_base_url = "https://api.housecallpro.com"
    secret_keys = ("apiKey",)
    backoff_seconds = 30.0

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.cred('apiKey')}"}


def test_hook_never_backs_off_past_the_deadline_and_cuts_the_read_timeout(rsps, sleeps):
    from crm_hooks.errors import BudgetExhaustedError

    hook = _Hook(credentials={"apiKey": "k-123456"})
    rsps.get("https://api.housecallpro.com/customers", status=503)
    hook.deadline = time.monotonic() + 5
    # A hanging host costs at most what is left of the budget, not the hook's 60 s read timeout.
    assert hook.request_timeout()[1] <= 5
    with pytest.raises(BudgetExhaustedError):
        hook.request("GET", "/customers")
    assert len(rsps.calls) == 1 and sleeps == [], "no backoff sleep that would cross the deadline"
    # Without a deadline the same host is retried as before.
    hook.deadline = None
    with pytest.raises(RetryableError):
        hook.request("GET", "/customers")
    assert len(rsps.calls) == 1 + hook.max_attempts


# ============================================================================ 3./4. the engine on real parts


HCP_KEY = "hcp-budget-key-7f3a9c"
HS_TOKEN = "pat-na1-budget-5e6f7a8b-9c0d"


def _hcp_markers(sandbox_url: str) -> Counter:
    from crm_sync.mapping.housecallpro import markers_in

    keys: Counter = Counter()
    for job in records(sandbox_url, "housecallpro", "hcp", "jobs"):
        for note in job.get("notes") or []:
            for key in markers_in(note.get("content")):
                keys[key] += 1
    return keys


def _hubspot_markers(sandbox_url: str) -> Counter:
    return Counter(n["properties"].get("rankitpro_checkin_key") for n in records(sandbox_url, "hubspot", "hs", "notes"))


@pytest.mark.parametrize("crm_type", ["housecallpro", "hubspot"])
def test_time_budget_stops_cleanly_and_the_next_run_finishes_without_duplicates(db, sandbox, crm_type):
    if crm_type == "housecallpro":
        register(sandbox.url, "housecallpro", "hcp", {"apiKey": HCP_KEY})
        slow = {**housecallpro_integration(sandbox.url, HCP_KEY), "crmSettings": {"requestsPerMinute": 4}}
        markers = _hcp_markers
    else:
        register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
        slow = {**hubspot_integration(sandbox.url, HS_TOKEN), "crmSettings": {"rateLimitPer10s": 2}}
        markers = _hubspot_markers
    company_id, tech = create_company(db, "Slow Co", {crm_type: slow})
    insert_check_ins(db, check_in_rows(company_id, tech, 12, messy=False, start=recent()))

    first = IntegrationSync(
        db,
        company_id=company_id,
        crm_type=crm_type,
        integration=slow,
        run_id="budget-1",
        options=SyncOptions(batch_size=3, deadline=time.monotonic() + 3),
    ).run()
    assert first.status == "partial" and "time budget reached" in first.error, first
    assert any("stopped by the time budget" in w for w in first.warnings), first.warnings
    rows = ledger(db, company_id, crm_type)
    statuses = Counter(r["status"] for r in rows.values())
    # Nothing ambiguous: no in_flight row, nothing failed; what was not sent is pending (or not claimed yet).
    assert set(statuses) <= {"synced", "pending"}, statuses
    assert first.synced == statuses["synced"] < 12
    written = markers(sandbox.url)
    assert sum(written.values()) == statuses["synced"] and all(n == 1 for n in written.values())
    # The run row and the app's history say so.
    with db.connect() as conn:
        run = conn.execute(sa.text("SELECT status, error, warnings FROM crm_sync.runs WHERE run_id = 'budget-1'")).one()
    assert run.status == "partial" and "time budget" in run.error
    _, history = company_json(db, company_id)
    assert history and history[0]["crmType"] == crm_type

    # The next run (no budget, the default limit) picks the rest up: every check-in exactly once in the CRM.
    fast = {k: v for k, v in slow.items() if k != "crmSettings"}
    second = IntegrationSync(
        db,
        company_id=company_id,
        crm_type=crm_type,
        integration=fast,
        run_id="budget-2",
        options=SyncOptions(batch_size=3),
    ).run()
    assert second.status == "success" and second.error is None, second
    rows = ledger(db, company_id, crm_type)
    assert set(rows) == check_in_ids(db, company_id)
    assert Counter(r["status"] for r in rows.values()) == {"synced": 12}
    written = markers(sandbox.url)
    assert len(written) == 12 and all(n == 1 for n in written.values()), written


def test_out_of_range_limit_reaches_the_run_summary(db, sandbox):
    register(sandbox.url, "housecallpro", "hcp", {"apiKey": HCP_KEY})
    integration = {**housecallpro_integration(sandbox.url, HCP_KEY), "crmSettings": {"requestsPerMinute": 0.0001}}
    company_id, tech = create_company(db, "Crawl Co", {"housecallpro": integration})
    insert_check_ins(db, check_in_rows(company_id, tech, 3, messy=False, start=recent()))
    # A deadline keeps the original code (1 request a minute) from hanging this test for minutes.
    result = IntegrationSync(
        db,
        company_id=company_id,
        crm_type="housecallpro",
        integration=integration,
        run_id="crawl",
        options=SyncOptions(deadline=time.monotonic() + 60),
    ).run()
    assert result.status == "success" and result.synced == 3, result
    assert any("crmSettings.requestsPerMinute must be a number from 1 to 600" in w for w in result.warnings)


# =================================================================== 5. NUL bytes, lone surrogates, idempotency

HOSTILE_JSON = (
    '{"hub\\u0000spot": {"status": "active", "credentials": {"apiKey": "k"}}, '
    '"zoho\\ud800": {"status": "active", "name": "Z\\u0000\\udc00", "credentials": {"apiKey": "k"}}}'
)


def test_nul_and_lone_surrogates_in_integration_keys_are_reported_once_per_run(db):
    from crm_sync.integrations import discover
    from crm_sync.summary import record_config_problem

    company_id, _ = create_company(db, "Hostile Co", HOSTILE_JSON)
    _, problems = discover(db, company_ids=[company_id])
    assert len(problems) == 2
    for _attempt in range(2):  # the task's first try and its retry in the same DAG run
        for p in problems:
            record_config_problem(db, "run-hostile", "crm_incremental_sync", p.company_id, p.crm_type, p.error)
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT crm_type, error FROM crm_sync.runs WHERE run_id = 'run-hostile' ORDER BY crm_type")
        ).all()
    assert [r.crm_type for r in rows] == ["hub\ufffdspot", "zoho\ufffd"]
    assert all("unknown CRM type" in r.error and "\x00" not in r.error for r in rows)
    _, history = company_json(db, company_id)
    assert len(history) == 2 and all(h["status"] == "failed" for h in history)


def test_a_retried_configuration_report_adds_no_duplicate_row_or_history_entry(db):
    from crm_sync.summary import record_config_problem

    company_id, _ = create_company(db, "No Creds Co", {"hubspot": {"status": "active", "credentials": {}}})
    recorded = [
        record_config_problem(
            db,
            "run-retry",
            "crm_incremental_sync",
            company_id,
            "hubspot",
            "the 'hubspot' integration has no credentials",
        )
        for _ in range(3)
    ]
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM crm_sync.runs WHERE run_id = 'run-retry'")).scalar() == 1
    assert len(company_json(db, company_id)[1]) == 1
    assert recorded == [True, False, False]
    # Another DAG run reports it again: once more.
    record_config_problem(
        db, "run-next", "crm_incremental_sync", company_id, "hubspot", "the 'hubspot' integration has no credentials"
    )
    assert len(company_json(db, company_id)[1]) == 2


def test_lone_surrogates_in_sync_settings_reach_the_run_row_cleaned(db, sandbox):
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    integration = hubspot_integration(
        sandbox.url, HS_TOKEN, customFieldMapping={"notes\ud800": "x"}, **{"extra\udc00\x00": True}
    )
    company_id, tech = create_company(db, "Surrogate Co", {"hubspot": integration})
    insert_check_ins(db, check_in_rows(company_id, tech, 2, messy=False, start=recent()))
    result = IntegrationSync(
        db,
        company_id=company_id,
        crm_type="hubspot",
        integration=integration,
        run_id="surrogate-1",
        options=SyncOptions(),
    ).run()
    assert result.status == "success" and result.synced == 2, result
    with db.connect() as conn:
        warnings = conn.execute(sa.text("SELECT warnings FROM crm_sync.runs WHERE run_id = 'surrogate-1'")).scalar()
    assert any("customFieldMapping" in w and "\ufffd" in w for w in warnings), warnings


def test_nul_in_imported_check_in_text_is_cleaned_instead_of_failing_the_file(db, tmp_path):
    import csv

    from crm_sync.check_in_import import run_import

    company_id, _ = create_company(db, "Import Co", None)
    path = tmp_path / "old.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["external_id", "checked_in_at", "job_type", "technician_email", "customer_name", "notes"])
        writer.writerow(["A-1", "2026-03-01 10:00", "AC\x00Repair", "alex@example.com", "Ann\x00Lee", "fixed\x00it"])
    report = run_import(db, company_id, path, run_id="manual__nul", now=datetime(2026, 11, 1))
    assert (report.status, report.inserted, report.rejected) == ("imported", 1, 0), report
    with db.connect() as conn:
        row = conn.execute(
            sa.text("SELECT job_type, customer_name, notes FROM check_ins WHERE company_id = :c"), {"c": company_id}
        ).one()
    assert tuple(row) == ("AC\ufffdRepair", "Ann\ufffdLee", "fixed\ufffdit")


def test_engine_rows_are_cleaned_before_postgres():
    from crm_sync.integration_sync import IntegrationResult

    result = IntegrationResult(run_id="r", company_id=1, crm_type="hub\x00spot", error="bad \ud800 value\x00")
    result.warnings.append("w\x00\udfff")
    result.quarantine("crm_rejected", "reason \x00 \ud801", 7)
    row = result.as_row()
    text = json.dumps(row, default=str, ensure_ascii=False)
    assert "\x00" not in row["error"] and "\ud800" not in row["error"] and "\x00" not in row["crm_type"]
    for column in ("warnings", "quarantine_reasons"):
        assert "\\u0000" not in row[column] and "\\ud8" not in row[column] and "\\udf" not in row[column]
    assert "\ufffd" in text


# ============================================================================ 7. non-finite numbers


@pytest.mark.parametrize(
    "raw",
    [
        '{"hubspot": {"crmSettings": {"rateLimitPer10s": 1e999}}}',
        '{"hubspot": {"crmSettings": {"rateLimitPer10s": NaN}}}',
        '{"hubspot": {"crmSettings": {"x": -Infinity}}}',
    ],
)
def test_non_finite_numbers_in_crm_integrations_are_a_configuration_problem(raw):
    from crm_sync.settings import parse_integrations

    data, error = parse_integrations(raw)
    assert data == {} and "crm_integrations holds a number JSON cannot carry" in error, error
    assert "rateLimitPer10s" not in error  # names the problem, never quotes the column


def test_write_back_never_turns_1e999_into_infinity(db):
    from crm_sync.history import write_back

    def stored(company_id):
        with db.connect() as conn:
            return tuple(
                conn.execute(
                    sa.text("SELECT crm_integrations, crm_sync_history FROM companies WHERE id = :c"), {"c": company_id}
                ).one()
            )

    # The app's own JSON holds 1e999: lastSyncedAt is not written (that would write Infinity back).
    raw = '{"hubspot": {"status": "active", "name": "HubSpot", "crmSettings": {"rateLimitPer10s": 1e999}}}'
    company_id, _ = create_company(db, "Overflow Co", raw)
    assert (
        write_back(
            db, company_id, "hubspot", synced=1, errors=0, at=datetime.now(UTC), set_last_synced=True, add_history=True
        )
        is False
    )
    assert stored(company_id) == (raw, "[]")
    # A configuration problem still reaches the history; the app's JSON stays as the app wrote it.
    write_back(
        db, company_id, "hubspot", synced=0, errors=1, at=datetime.now(UTC), set_last_synced=False, add_history=True
    )
    integrations, history = stored(company_id)
    assert integrations == raw and json.loads(history)[0]["status"] == "failed"

    # A history the app cannot parse (NaN) is not carried on: what is written is strict JSON.
    good = json.dumps({"hubspot": {"status": "active", "name": "HubSpot"}})
    company_id, _ = create_company(db, "NaN Co", good)
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE companies SET crm_sync_history = :h WHERE id = :c"),
            {"h": '[{"id": 1, "status": "success", "itemsProcessed": NaN}]', "c": company_id},
        )
    assert write_back(
        db, company_id, "hubspot", synced=1, errors=0, at=datetime.now(UTC), set_last_synced=True, add_history=True
    )
    integrations, history = stored(company_id)
    for text in (integrations, history):
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON written: {c}"))
    assert json.loads(integrations)["hubspot"]["lastSyncedAt"].endswith("Z")


# ============================================================================ 8. redaction before truncation


def test_redact_and_truncate_redacts_a_secret_straddling_the_limit():
    from crm_hooks.redaction import redact_and_truncate

    secret = "s3cr3t-value-0123456789"
    text = "x" * 490 + secret + "y" * 100
    assert redact_and_truncate(text, [secret], 500) == "x" * 490 + "***" + "y" * 7
    assert redact_and_truncate(text, [secret]) == "x" * 490 + "***" + "y" * 100


def test_hook_error_messages_redact_before_cutting():
    secret = "hcp-api-key-ab12cd34ef56gh78"
    hook = HOOKS["housecallpro"](credentials={"apiKey": secret})
    for text, cut in (("e" * 190 + secret, 200), ("e" * 290 + secret, 300)):
        response = requests.Response()
        response.status_code, response._content = 400, text.encode()
        message = str(hook.classify_error(response))
        assert secret[:8] not in message, (cut, message)
    base = _Hook(credentials={"apiKey": secret})
    response = requests.Response()
    response.status_code, response._content = 400, ("b" * 492 + secret).encode()
    assert secret[:8] not in str(CrmHook.classify_error(base, response))


def test_engine_redacts_hook_secrets_in_ledger_reasons(db, sandbox):
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    integration = hubspot_integration(sandbox.url, HS_TOKEN)
    sync = IntegrationSync(db, company_id=1, crm_type="hubspot", integration=integration, run_id="redact")
    from crm_sync.destinations import destination_for

    sync._in_use = destination_for("hubspot", integration, sync.settings)
    outcome = sync._outcome("quarantined", kind="crm_rejected", error="x" * 1990 + HS_TOKEN)
    assert HS_TOKEN[:8] not in outcome["last_error"] and outcome["last_error"].endswith("***")


# ============================================================================ 2./4./6. the DAG, for real

_RUNNER = """
import json, runpy, sys
dag = runpy.run_path(sys.argv[1])["dag"]
for task in dag.tasks:
    task.retries = 0   # no retry delays in a test: a failed task stays failed
run = dag.test(run_conf=json.loads(sys.argv[2]))
print("DAG_RUN_STATE=" + str(run.state))
"""


@pytest.mark.e2e
def test_dag_run_fails_when_a_task_fails_and_a_stuck_company_does_not_hold_the_others(
    db, db_url, sandbox, airflow_home, tmp_path
):
    from localdev.airflow_env import ROOT, airflow_env

    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    good, tech = create_company(db, "Good Co", {"hubspot": hubspot_integration(sandbox.url, HS_TOKEN)})
    insert_check_ins(db, check_in_rows(good, tech, 4, messy=False, start=recent()))
    slow_token = "pat-na1-stuck-0a1b2c3d-4e5f"
    register(sandbox.url, "hubspot", "stuck", {"accessToken": slow_token})
    stuck, tech2 = create_company(db, "Stuck Co", {"hubspot": hubspot_integration(sandbox.url, slow_token)})
    insert_check_ins(db, check_in_rows(stuck, tech2, 2, messy=False, start=recent()))
    # Every request of the stuck account hangs for longer than the task may run.
    requests.post(
        f"{sandbox.url}/_sandbox/faults", json={"crm": "hubspot", "account": "stuck", "latency_ms": 120000}, timeout=10
    ).raise_for_status()
    hostile, _ = create_company(db, "Hostile Co", HOSTILE_JSON)

    env = airflow_env(
        airflow_home,
        db_url,
        extra={
            # 0.25 min execution timeout; a budget set (wrongly) beyond it, so only the timeout can end the task.
            "CRM_SYNC_TASK_TIMEOUT_MINUTES": "0.25",
            "CRM_SYNC_TIME_BUDGET_SECONDS": "600",
        },
    )
    conf = {"crm_types": ["hubspot"], "company_ids": [good, stuck, hostile]}
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(ROOT / "dags" / "crm_incremental_sync.py"), json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        cwd=ROOT,
    )
    out = proc.stdout + proc.stderr
    assert "DAG_RUN_STATE=failed" in out, out[-5000:]
    # The good company synced; the stuck one was ended by its timeout; nothing else waited for it.
    assert Counter(r["status"] for r in ledger(db, good, "hubspot").values()) == {"synced": 4}
    assert "AirflowTaskTimeout" in out or "Timeout" in out
    with db.connect() as conn:
        run_id = conn.execute(sa.text("SELECT run_id FROM crm_sync.runs WHERE company_id = :c"), {"c": good}).scalar()
        problems = (
            conn.execute(
                sa.text(
                    "SELECT crm_type FROM crm_sync.runs WHERE run_id = :r AND company_id = :c "
                    "AND status = 'config_error' ORDER BY crm_type"
                ),
                {"r": run_id, "c": hostile},
            )
            .scalars()
            .all()
        )
    assert problems == ["hub\ufffdspot", "zoho\ufffd"], problems
    import sqlite3

    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        states = dict(
            meta.execute(
                "SELECT task_id || ':' || map_index, state FROM task_instance WHERE run_id = ?", (run_id,)
            ).fetchall()
        )
    assert states["check_configurations:-1"] == "success", states
    assert states["summarize:-1"] == "success" and states["check_failures:-1"] == "failed", states
    assert sorted(v for k, v in states.items() if k.startswith("sync_hubspot:")) == ["failed", "success"], states


def test_task_timeouts_come_from_the_settings(monkeypatch):
    from crm_sync.budget import budget_seconds, task_timeout

    monkeypatch.delenv("CRM_SYNC_TIME_BUDGET_SECONDS", raising=False)
    monkeypatch.setenv("CRM_SYNC_TASK_TIMEOUT_MINUTES", "12")
    monkeypatch.delenv("CRM_SYNC_LONG_TASK_TIMEOUT_MINUTES", raising=False)
    assert task_timeout() == timedelta(minutes=12) and task_timeout(long=True) == timedelta(minutes=180)
    assert budget_seconds(timedelta(minutes=12)) == 12 * 60 - 120
    monkeypatch.setenv("CRM_SYNC_TIME_BUDGET_SECONDS", "5")
    assert budget_seconds(timedelta(minutes=12)) == 5
    monkeypatch.setenv("CRM_SYNC_TASK_TIMEOUT_MINUTES", "inf")
    with pytest.raises(ValueError, match="CRM_SYNC_TASK_TIMEOUT_MINUTES must be a positive number"):
        task_timeout()


def test_every_sync_backfill_import_export_and_report_task_has_an_execution_timeout(monkeypatch):
    import runpy

    from localdev.airflow_env import ROOT

    monkeypatch.delenv("CRM_SYNC_TASK_TIMEOUT_MINUTES", raising=False)
    for name in (
        "crm_incremental_sync",
        "crm_backfill",
        "crm_customer_import",
        "crm_import",
        "crm_export",
        "crm_reconciliation_report",
        "crm_credential_health",
    ):
        dag = runpy.run_path(str(ROOT / "dags" / f"{name}.py"))["dag"]
        for task in dag.tasks:
            assert task.execution_timeout is not None, (name, task.task_id)
        leaves = [t.task_id for t in dag.tasks if not t.downstream_list]
        # A summary that runs all_done is never the only leaf: it would end a failed run green.
        expected = {
            "crm_import": ["import_check_ins"],
            "crm_export": ["export_check_ins"],
            "crm_reconciliation_report": ["alert"],
        }.get(name, ["check_failures"])
        assert leaves == expected, (name, leaves)
    sync = runpy.run_path(str(ROOT / "dags" / "crm_incremental_sync.py"))["dag"]
    assert sync.task_dict["sync_hubspot"].execution_timeout == timedelta(minutes=12)
