"""``make demo``: a real end-to-end sync on the embedded defaults.

Starts an embedded PostgreSQL under ``.local/pg`` holding the Rank It Pro schema
and demo companies, starts the CRM sandbox (records kept in
``.local/sandbox-state.json``), runs ``crm_incremental_sync`` with
``airflow dags test`` (metadata in ``.local/airflow``), and prints what each
company x CRM did and what changed in the sandbox. Run it again: nothing new is
created, and it says so.

Environment: ``CRM_SYNC_DATABASE_URL`` uses another PostgreSQL instead of the
embedded one; ``CRM_SANDBOX_PORT`` (default 8765) moves the sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import sqlalchemy as sa

from localdev.airflow_env import ROOT, airflow_env, dags_test, ensure_airflow_db
from localdev.demo_data import point_integrations_at, seed_demo
from localdev.pg import database_url

LOCAL = ROOT / ".local"


def start_sandbox(port: int, state_file: Path, log_file: Path) -> tuple[subprocess.Popen, str]:
    """The sandbox as its own process (as a user would run it); returns it and its base URL."""
    url = f"http://127.0.0.1:{port}"
    log = open(log_file, "a")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crm_sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--state-file",
            str(state_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    for _ in range(100):
        try:
            requests.get(f"{url}/_sandbox/stats", timeout=1).raise_for_status()
            return proc, url
        except requests.RequestException:
            if proc.poll() is not None:
                raise SystemExit(f"the CRM sandbox did not start; see {log_file}") from None
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"the CRM sandbox did not answer on {url}; see {log_file}")


def seed_existing_crm_customers(engine: sa.Engine, url: str) -> None:
    """Lone Star's HubSpot portal already knows a few of its customers, typed differently (first run only)."""
    if requests.get(f"{url}/_sandbox/records/hubspot/lonestar/contacts", timeout=10).json():
        return
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT DISTINCT ON (ci.customer_email) ci.customer_email, ci.customer_name FROM check_ins ci "
                "JOIN companies c ON c.id = ci.company_id WHERE c.name = 'Lone Star HVAC' "
                "AND ci.customer_email LIKE '%@example.com' ORDER BY ci.customer_email LIMIT 3"
            )
        ).all()
    for email, name in rows:
        first, _, last = (name or "").partition(" ")
        requests.post(
            f"{url}/_sandbox/records/hubspot/lonestar/contacts",
            timeout=10,
            json={"properties": {"email": email.strip().upper(), "firstname": first, "lastname": last}},
        ).raise_for_status()


def object_counts(url: str) -> dict[str, int]:
    """crm/object -> records held by the sandbox, over all accounts."""
    counts: dict[str, int] = {}
    for crm, accounts in requests.get(f"{url}/_sandbox/stats", timeout=10).json().items():
        for account in accounts.values():
            for obj, n in account.get("objects", {}).items():
                counts[f"{crm} {obj}"] = counts.get(f"{crm} {obj}", 0) + n
    return counts


def main() -> int:
    from crm_sync.db import create_app_schema, make_engine, migrate
    from crm_sync.integrations import discover
    from crm_sync.summary import format_table, runs_for

    LOCAL.mkdir(exist_ok=True)
    port = int(os.environ.get("CRM_SANDBOX_PORT", "8765"))
    db_url, server = database_url(LOCAL / "pg")
    engine = make_engine(db_url)
    create_app_schema(engine)
    migrate(engine)
    sandbox, sandbox_url = start_sandbox(port, LOCAL / "sandbox-state.json", LOCAL / "sandbox.log")
    try:
        companies = seed_demo(engine, sandbox_url)
        point_integrations_at(engine, sandbox_url)
        for company in companies:
            for account in company.accounts:
                requests.post(f"{sandbox_url}/_sandbox/accounts", json=account, timeout=10).raise_for_status()
        seed_existing_crm_customers(engine, sandbox_url)
        before = object_counts(sandbox_url)
        env = airflow_env(LOCAL / "airflow", db_url, allowed_hosts=f"127.0.0.1:{port}")
        print(f"Rank It Pro database: {db_url.render_as_string(hide_password=True)}")
        print(f"CRM sandbox: {sandbox_url}   Airflow home: {LOCAL / 'airflow'}")
        ensure_airflow_db(env)
        log_path = LOCAL / "logs" / f"crm_incremental_sync-{time.strftime('%Y%m%dT%H%M%S')}.log"
        print("running crm_incremental_sync with `airflow dags test` ...", flush=True)
        started = time.monotonic()
        proc = dags_test(env, "crm_incremental_sync", log_path=log_path)
        elapsed = time.monotonic() - started
        with engine.connect() as conn:
            run_id = conn.execute(sa.text("SELECT run_id FROM crm_sync.runs ORDER BY id DESC LIMIT 1")).scalar()
        print(
            f"\nDAG run {run_id}: {'success' if proc.returncode == 0 else 'FAILED'} in {elapsed:.1f}s "
            f"(full Airflow log: {log_path})\n"
        )
        if run_id:
            rows = runs_for(engine, run_id)
            print(format_table(rows))
            # Discovery gave no task to the integrations with nothing to do (README, idle runs cost nothing).
            usable = {(w.company_id, w.crm_type) for w in discover(engine)[0]}
            idle = usable - {(r["company_id"], r["crm_type"]) for r in rows}
            print(
                f"\nCompany x CRM integrations with nothing to do: {len(idle)} of {len(usable)} (no task, 0 API calls)"
            )
        after = object_counts(sandbox_url)
        changes = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))}
        print("\nCRM sandbox records: " + ", ".join(f"{k} {after.get(k, 0)} ({v:+d})" for k, v in changes.items()))
        if not any(changes.values()):
            print("Nothing new was created in the CRMs: every check-in was already synced exactly once.")
        return proc.returncode
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
        engine.dispose()
        del server


if __name__ == "__main__":
    sys.exit(main())
