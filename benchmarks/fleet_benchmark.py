"""Fleet benchmark (issue 14): ``crm_incremental_sync`` over many companies, on a real distributed deployment.

    python benchmarks/fleet_benchmark.py [--companies 100,1000] [--check-ins 3] [--idle-companies 5000]
                                         [--crm hubspot] [--max-shards N] [--pool-slots N] [--repeat-busy]

Per size N of ``--companies``: a fresh deployment (localdev/distributed.py: metadata in PostgreSQL, Celery
with Redis, scheduler, dag-processor, api-server, two Celery workers with 2 slots each, the CRM pools at
their default size), N companies created in bulk with SQL, each with its own sandbox account and K new
check-ins; a run triggered through the REST API as an operator does, then a second run with nothing new
(``--repeat-busy``: before it, K more check-ins each and one more busy run, a later cycle's cost: accounts
bound, customer indexes done, account facts cached).
``--idle-companies M``: M companies seeded as synced already, in SQL (``benchmarks/synced_fleet.py``, shared
with the discovery benchmark; real integrations and sandbox accounts, HubSpot only), then one run with nothing
new.

Printed per run: wall time from the trigger to the run's end, its state, the workers' CPU seconds (process
trees of both Celery workers, tasks included) per company, CRM calls (the sandbox's request counter over
every account; ``crm_sync.runs.api_calls`` beside it) per check-in, and where the time went: task instances,
their summed duration against the sync engine's own seconds, queueing, and the CPU of the scheduler,
dag-processor, api-server, sandbox and PostgreSQL. Figures are printed, never asserted.

Needs PostgreSQL (``CRM_SYNC_BENCH_PG_SERVER``, default 127.0.0.1:5432) and Redis
(``CRM_SYNC_BENCH_REDIS_URL``, default db 12: test_distributed uses 13); databases and the queue are named
``crm_fleet_*``, so it runs beside the tests. Every process it starts is stopped at the end, on an
exception and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.bench_env import _free_port, _wait, documented_rps  # noqa: E402  (sets sys.path for plugins)
from localdev.distributed import DAG_ID  # noqa: E402

PG_SERVER = os.environ.get("CRM_SYNC_BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CRM_SYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")  # test_distributed: 13
WORKERS = ("w1", "w2")
IDLE_PORTAL_BASE = 70_000_000  # HubSpot portal ids of the idle companies' sandbox accounts


# ---------------------------------------------------------------------- the sandbox and the companies
@contextmanager
def sandbox_process() -> Iterator[tuple[str, int]]:
    """The CRM sandbox in its own process (as in production the CRM is remote, and its CPU is not the workers')."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def company_account(crm: str, sandbox_url: str, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Company ``i``'s sandbox account body and integration object: the CRM profile's credentials, each value
    made unique with the company's number (so every company has its own account and token)."""
    from localdev.crm_profiles import PROFILES

    profile = PROFILES[crm]
    unique = {v: f"{v}{i:06d}" for v in profile.sandbox_credentials.values() if isinstance(v, str)}
    body = profile.account_body(f"fleet{i}")
    body["credentials"] = {k: unique.get(v, v) for k, v in body["credentials"].items()}
    integration = profile.integration(sandbox_url)
    creds = integration["credentials"]
    integration["credentials"] = {k: unique.get(v, v) if isinstance(v, str) else v for k, v in creds.items()}
    if documented_rps(crm, integration) is None:  # no per-second limit documented: the profile's stand-in pace
        body["limits"] = {"per_second": profile.stand_in_rps or 10.0}
        integration.setdefault("crmSettings", {})["requestsPerSecond"] = profile.stand_in_rps or 10.0
    return body, integration


def create_companies(engine, crm: str, sandbox_url: str, n: int, check_ins: int) -> list[int]:
    """``n`` companies (one technician each) with their own sandbox accounts and ``check_ins`` recent check-ins
    each: companies, technicians and check-ins each in one SQL statement / COPY."""
    import requests
    import sqlalchemy as sa

    session = requests.Session()
    names, integrations = [], []
    for i in range(1, n + 1):
        body, integration = company_account(crm, sandbox_url, i)
        session.post(f"{sandbox_url}/_sandbox/accounts", json=body, timeout=30).raise_for_status()
        names.append(f"Fleet Co {i}")
        integrations.append(json.dumps({crm: integration}))
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "INSERT INTO companies (name, plan, crm_integrations, crm_sync_history) "
                "SELECT n, 'pro', i, '[]' FROM unnest(CAST(:names AS text[]), CAST(:integrations AS text[])) "
                "WITH ORDINALITY AS t(n, i, o) ORDER BY o RETURNING id"
            ),
            {"names": names, "integrations": integrations},
        ).all()
        company_ids = [r[0] for r in rows]
        techs = conn.execute(
            sa.text(
                "INSERT INTO technicians (name, email, phone, location, company_id) "
                "SELECT 'Alex Tech', 'alex@example.com', '5125550000', 'Austin', c "
                "FROM unnest(CAST(:ids AS integer[])) AS c RETURNING id, company_id"
            ),
            {"ids": company_ids},
        ).all()
    add_check_ins(engine, {c: t for t, c in techs}, check_ins)
    return company_ids


def technicians(engine) -> dict[int, int]:
    """Each company's technician."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT company_id, min(id) FROM technicians GROUP BY company_id")).all())


def add_check_ins(engine, technicians: dict[int, int], check_ins: int) -> None:
    """``check_ins`` new check-ins for each company (``{company id: its technician}``), in one COPY."""
    from localdev.bulk_data import COLUMNS
    from localdev.demo_data import check_in_rows

    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur, cur.copy(f"COPY check_ins ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for cid, technician in technicians.items():
                for row in check_in_rows(cid, technician, check_ins, messy=False):
                    copy.write_row(tuple(row[c] for c in COLUMNS))
        raw.commit()
    finally:
        raw.close()


def create_synced_companies(engine, crm: str, sandbox_url: str, n: int, check_ins: int) -> list[int]:
    """``n`` idle companies: each with its own sandbox account and real integration (as
    :func:`create_companies`), seeded as synced in SQL (:mod:`benchmarks.synced_fleet`, the discovery
    benchmark's seeding) with ``check_ins`` check-ins of the last few days, all inside the look-back, bound to
    the account's real identity (the HubSpot portal id, set on the sandbox account). Checked: discovery finds
    none of them, so any CRM call in their cycle is a bug."""
    import requests

    from benchmarks.synced_fleet import seed_synced_companies
    from crm_sync.discovery import companies_with_work

    if crm != "hubspot":
        raise SystemExit("--idle-companies binds the sandbox account's identity: HubSpot (portal id) only")
    session = requests.Session()
    names, integrations, accounts = [], [], []
    for i in range(1, n + 1):
        body, integration = company_account(crm, sandbox_url, i)
        portal = IDLE_PORTAL_BASE + i
        body["options"] = {**body.get("options", {}), "portal_id": portal}
        session.post(f"{sandbox_url}/_sandbox/accounts", json=body, timeout=30).raise_for_status()
        names.append(f"Idle Co {i}")
        integrations.append(json.dumps({crm: integration}))
        accounts.append(str(portal))
    ids = seed_synced_companies(engine, crm, names, integrations, accounts, per_company=check_ins, spread_days=6)
    work = companies_with_work(engine, crm, ids, lookback_days=7)
    if work:
        raise SystemExit(f"seeding left {len(work)} of {n} companies with work, e.g. {work[:3]}")
    return ids


# ---------------------------------------------------------------------- readings
def tree_cpu(pid: int) -> float:
    """CPU seconds of a process tree: every live process's own time plus that of its children it reaped (a dead
    task process's time is in exactly one live ancestor)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on the machine (read only; includes other users' load)."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("postgres", "postgresql"):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def cpu_snapshot(dep, sandbox_pid: int) -> dict[str, float]:
    snap = {name: tree_cpu(proc.pid) for name, proc in dep.procs.items()}
    snap["sandbox"] = tree_cpu(sandbox_pid)
    snap["postgres"] = postgres_cpu()
    return snap


def sandbox_requests(url: str, crm: str) -> int:
    import requests

    return sum(a["requests"] for a in requests.get(f"{url}/_sandbox/stats", timeout=60).json()[crm].values())


def task_instances(dep, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of the run (the API returns at most a page, 100 by default, per call)."""
    out: list[dict[str, Any]] = []
    while True:
        body = dep.api(
            "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(out)}
        ).json()
        out += body["task_instances"]
        if not body["task_instances"] or len(out) >= body["total_entries"]:
            return out


def task_log_phases(dep, run_id: str) -> dict[str, float]:
    """Seconds per phase, summed over the run's task logs (Airflow's own log lines; a log that lacks one is
    left out): ``start-up`` (task process start to the DAG file parsed: imports, bundle, parse), ``execute``
    (the operator), ``finish`` (XCom push, state to the API server)."""
    totals = {"start-up": 0.0, "execute": 0.0, "finish": 0.0, "logs": 0}
    for path in (dep.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}").rglob("*.log"):
        marks: dict[str, float] = {}
        first = last = None
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                at = _ts(entry["timestamp"]).timestamp()
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            first = at if first is None else first
            last = at
            event = str(entry.get("event", ""))
            if event == "Worker startup parse complete" or event == "::group::Post Execute":
                marks.setdefault(event, at)
        parsed, post = marks.get("Worker startup parse complete"), marks.get("::group::Post Execute")
        if first is None or parsed is None or post is None:
            continue
        totals["start-up"] += parsed - first
        totals["execute"] += post - parsed
        totals["finish"] += last - post
        totals["logs"] += 1
    return totals


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def timed_cycle(
    dep, sandbox_url: str, sandbox_pid: int, crm: str, companies: int, timeout: float, conf: dict[str, Any]
) -> dict[str, Any]:
    """Trigger one run through the REST API (params ``conf``) and read what it cost."""
    import sqlalchemy as sa

    calls0, cpu0 = sandbox_requests(sandbox_url, crm), cpu_snapshot(dep, sandbox_pid)
    started = time.monotonic()
    run_id = dep.trigger(conf)
    run = dep.wait_run(run_id, timeout=timeout)
    wall = time.monotonic() - started
    cpu1, calls1 = cpu_snapshot(dep, sandbox_pid), sandbox_requests(sandbox_url, crm)
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    with dep.engine.connect() as conn:
        engine_row = conn.execute(
            sa.text(
                "SELECT count(*), COALESCE(sum(api_calls), 0), COALESCE(sum(seconds), 0), "
                "COALESCE(sum(synced), 0), COALESCE(sum(candidates), 0) FROM crm_sync.runs WHERE run_id = :r"
            ),
            {"r": run_id},
        ).one()
    tis = task_instances(dep, run_id)
    states = Counter(
        (t["task_id"].split("_")[0] if t["task_id"].startswith("sync_") else "other", t["state"]) for t in tis
    )
    ran = [t for t in tis if t["start_date"] and t["end_date"]]
    busy = sum((_ts(t["end_date"]) - _ts(t["start_date"])).total_seconds() for t in ran)
    queued = [(_ts(t["start_date"]) - _ts(t["queued_when"])).total_seconds() for t in ran if t.get("queued_when")]
    return {
        "run_state": run["state"],
        "wall_s": wall,
        "companies": companies,
        "task_instances": len(tis),
        "ti_states": dict(states),
        "ti_seconds": busy,
        "ti_queued_mean_s": sum(queued) / len(queued) if queued else 0.0,
        "engine_runs": engine_row[0],
        "engine_api_calls": int(engine_row[1]),
        "engine_seconds": float(engine_row[2]),
        "synced": int(engine_row[3]),
        "candidates": int(engine_row[4]),
        "crm_calls": calls1 - calls0,
        "cpu": cpu,
        "phases": task_log_phases(dep, run_id),
        "worker_cpu_s": sum(cpu[w] for w in WORKERS),
    }


def report(label: str, r: dict[str, Any], check_ins: int) -> None:
    n = r["companies"]
    new = n * check_ins
    per_check_in = f"{r['crm_calls'] / new:.2f}" if check_ins else "-"
    print(
        f"\n{label}: {r['run_state']} in {r['wall_s']:.1f} s; worker CPU {r['worker_cpu_s']:.1f} s "
        f"= {r['worker_cpu_s'] / n:.3f} s/company; CRM calls {r['crm_calls']} (sandbox) / "
        f"{r['engine_api_calls']} (crm_sync.runs) = {per_check_in}/check-in; synced {r['synced']}"
    )
    print(
        f"  task instances {r['task_instances']} {r['ti_states']}; their summed duration {r['ti_seconds']:.0f} s, "
        f"sync engine's own {r['engine_seconds']:.0f} s over {r['engine_runs']} runs; "
        f"mean queued->start {r['ti_queued_mean_s']:.1f} s"
    )
    ph = r["phases"]
    print(
        f"  inside the task processes ({ph['logs']} logs): start-up (imports, DAG parse) {ph['start-up']:.0f} s, "
        f"execute {ph['execute']:.0f} s, finish {ph['finish']:.0f} s"
    )
    print("  CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu"].items()) + " (postgres: machine-wide)")


# ---------------------------------------------------------------------- scenarios
@contextmanager
def fleet(
    crm: str, companies: int, check_ins: int, *, synced: bool, concurrency: int, pool_slots: dict[str, int]
) -> Iterator[tuple]:
    """A sandbox, ``companies`` companies on it, and a running deployment; everything removed afterwards."""
    from localdev.distributed import running_deployment

    home = Path(tempfile.mkdtemp(prefix="crm-fleet-"))
    try:
        with sandbox_process() as (sandbox_url, sandbox_pid):

            def seed(engine):
                t0 = time.monotonic()
                if synced:
                    ids = create_synced_companies(engine, crm, sandbox_url, companies, check_ins)
                    print(
                        f"  seeded {companies} companies x {check_ins} check-ins as synced in "
                        f"{time.monotonic() - t0:.1f} s; discovery finds none of them with work"
                    )
                else:
                    ids = create_companies(engine, crm, sandbox_url, companies, check_ins)
                    print(f"  created {companies} companies x {check_ins} check-ins in {time.monotonic() - t0:.1f} s")
                return ids

            with running_deployment(
                home,
                pg_server=PG_SERVER,
                redis_url=REDIS_URL,
                prefix="crm_fleet",
                pool_slots=pool_slots,  # empty: the production default size
                workers=WORKERS,
                worker_concurrency=concurrency,
                seed=seed,
            ) as dep:
                print(f"  deployment up: {dep.timings}")
                dep.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
                yield dep, sandbox_url, sandbox_pid
            if dep.leftovers:
                print(f"  WARNING: processes still running after stop: {dep.leftovers}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _raise_interrupt(signum, frame):  # SIGTERM cleans up like Ctrl-C
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--companies", default="100,1000", help="comma-separated fleet sizes (each its own run)")
    parser.add_argument("--check-ins", type=int, default=3, help="new check-ins per company")
    parser.add_argument("--idle-companies", type=int, default=5000, help="idle-cycle fleet size (0: skip)")
    parser.add_argument("--crm", default="hubspot")
    parser.add_argument("--no-idle-after-busy", action="store_true", help="skip the idle run after each busy run")
    parser.add_argument(
        "--repeat-busy", action="store_true", help="after the busy run, K more check-ins each and another busy run"
    )
    parser.add_argument("--worker-concurrency", type=int, default=2, help="task slots per Celery worker")
    parser.add_argument("--max-shards", type=int, default=0, help="the runs' max_shards param (0: the default)")
    parser.add_argument("--pool-slots", type=int, default=0, help="the crm_<crm> pool's slots (0: the default)")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait for one run")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    sizes = [int(s) for s in args.companies.split(",") if s.strip()]
    conf = {"max_shards": args.max_shards} if args.max_shards else {}
    pools = {f"crm_{args.crm}": args.pool_slots} if args.pool_slots else {}
    options = {"concurrency": args.worker_concurrency, "pool_slots": pools}
    print(
        f"fleet benchmark: {args.crm}, sizes {sizes} x {args.check_ins} check-ins, idle {args.idle_companies}; "
        f"run params {conf or 'default'}, pools {pools or 'default'}, {args.worker_concurrency} slots per worker"
    )
    results: list[tuple[str, dict[str, Any]]] = []
    for n in sizes:
        print(f"\n== {n} companies x {args.check_ins} new check-ins")
        with fleet(args.crm, n, args.check_ins, synced=False, **options) as (
            dep,
            url,
            pid,
        ):
            busy = timed_cycle(dep, url, pid, args.crm, n, args.timeout, conf)
            report(f"busy cycle, {n} companies", busy, args.check_ins)
            results.append((f"busy {n}", busy))
            if args.repeat_busy:  # a later cycle: accounts bound, customer index done, account facts cached
                add_check_ins(dep.engine, technicians(dep.engine), args.check_ins)
                again = timed_cycle(dep, url, pid, args.crm, n, args.timeout, conf)
                report(f"busy cycle again, {n} companies", again, args.check_ins)
                results.append((f"busy {n} #2", again))
            if not args.no_idle_after_busy:
                idle = timed_cycle(dep, url, pid, args.crm, n, args.timeout, conf)
                report(f"idle cycle, {n} companies", idle, 0)
                results.append((f"idle {n}", idle))
    if args.idle_companies:
        m = args.idle_companies
        print(f"\n== idle cycle over {m} companies (seeded as synced, {args.check_ins} check-ins each)")
        with fleet(args.crm, m, args.check_ins, synced=True, **options) as (
            dep,
            url,
            pid,
        ):
            idle = timed_cycle(dep, url, pid, args.crm, m, args.timeout, conf)
            report(f"idle cycle, {m} companies", idle, 0)
            results.append((f"idle {m}", idle))
    print("\nsummary")
    print(
        f"{'cycle':<12} {'state':<8} {'wall s':>8} {'worker CPU s/company':>21} {'CRM calls':>9} {'calls/check-in':>14}"
    )
    for label, r in results:
        per = r["crm_calls"] / (r["companies"] * args.check_ins) if label.startswith("busy") else None
        print(
            f"{label:<12} {r['run_state']:<8} {r['wall_s']:>8.1f} {r['worker_cpu_s'] / r['companies']:>21.3f} "
            f"{r['crm_calls']:>9} {'-' if per is None else f'{per:.2f}':>14}"
        )


if __name__ == "__main__":
    main()
