"""Backfill N generated check-ins into the sandbox's Salesforce and HubSpot with their limits on; print the figures.

    python benchmarks/backfill_benchmark.py [--rows 200000] [--crm salesforce,hubspot] [--rate-share 0.5]

Each CRM runs twice, N/4 and N rows, each in a fresh process (embedded PostgreSQL, the sandbox as its own
process), through the real backfill path: :func:`crm_sync.backfill.plan_chunks` and
:func:`crm_sync.backfill.execute_chunk` per company x date chunk (checkpoints, ledger, the engine; Salesforce
batches of 5,000 take the Bulk API 2.0 path for Cases). Rows are seeded with ``COPY``
(:mod:`localdev.bulk_data`), spread over ``rows / 500`` days.

Printed per run: check-ins/second, API calls per 1,000 check-ins, the rate-limit bound at that call pattern
(the CRM's limit x ``rate_share`` / calls per check-in; limits and the Salesforce stand-in pace come from
:mod:`benchmarks.bench_env` and :mod:`localdev.crm_profiles`), the ratio achieved / bound, the process's
resident memory after 1/4 of the rows and at the end, and its peak. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from benchmarks.bench_env import crm_bench, peak_rss_mb, rss_mb

ROWS_PER_DAY = 500
CHUNK_DAYS = 30


def run_one(crm: str, rows: int, rate_share: float, stand_in_rps: float | None) -> dict:
    import requests
    import sqlalchemy as sa

    from crm_sync.backfill import backfill_key, execute_chunk, parse_params, plan_chunks
    from localdev.bulk_data import seed_check_ins

    with crm_bench(crm, stand_in_rps, prefix="crm-backfill-bench-") as bench:
        engine, url, limit_rps, company_id = bench.engine, bench.url, bench.limit_rps, bench.company_id
        days = max(1, rows // ROWS_PER_DAY)
        first = date(2025, 1, 1)
        seed_check_ins(
            engine, company_id, bench.technician_id, rows, start=datetime(first.year, first.month, first.day), days=days
        )
        params = {
            "crm_type": crm,
            "company_ids": [company_id],
            "date_from": first.isoformat(),
            "date_to": (first + timedelta(days=days)).isoformat(),
            "chunk_days": CHUNK_DAYS,
            "dry_run": False,
            "rate_share": rate_share,
        }
        key = backfill_key(parse_params(params))
        chunks = plan_chunks([company_id], first, first + timedelta(days=days), CHUNK_DAYS)
        rss_before = rss_mb()
        rss_quarter = None
        done_rows = api_calls = 0
        started = time.monotonic()
        for chunk in chunks:
            out = execute_chunk(
                engine, {**chunk, "backfill_key": key}, crm, params, run_id=f"bench-{crm}-{rows}", dag_id="crm_backfill"
            )
            done_rows += out["candidates"]
            api_calls += out["api_calls"]
            if rss_quarter is None and done_rows >= rows // 4:
                rss_quarter = rss_mb()
        seconds = time.monotonic() - started
        with engine.connect() as conn:
            synced = conn.execute(sa.text("SELECT count(*) FROM crm_sync.ledger WHERE status = 'synced'")).scalar()
            statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM crm_sync.ledger GROUP BY 1")).all())
        stats = requests.get(f"{url}/_sandbox/stats", timeout=30).json()[crm]["bench"]
        calls_per = api_calls / max(synced, 1)
        achieved = synced / seconds
        bound = limit_rps * rate_share / calls_per if calls_per else float("inf")
        return {
            "crm": crm,
            "rows": rows,
            "chunks": len(chunks),
            "synced": synced,
            "ledger": statuses,
            "seconds": round(seconds, 1),
            "checkins_per_s": round(achieved, 1),
            "api_calls": api_calls,
            "calls_per_1000": round(1000 * calls_per, 2),
            "limit_rps": limit_rps,
            "rate_share": rate_share,
            "bound_per_s": round(bound, 1),
            "ratio": round(achieved / bound, 3) if bound else None,
            "bulk_jobs": stats["by_endpoint"].get("POST /salesforce/services/data/{version}/jobs/ingest", 0),
            "rss_before_mb": round(rss_before, 1),
            "rss_quarter_mb": round(rss_quarter or 0, 1),
            "rss_end_mb": round(rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--crm", default="salesforce,hubspot")
    parser.add_argument("--rate-share", type=float, default=0.5, help="the backfill's share of the CRM's limit")
    parser.add_argument(
        "--stand-in-rps", type=float, default=None, help="Salesforce pace (default: its profile's stand-in)"
    )
    parser.add_argument("--sizes", default="quarter,full", help="quarter,full or just full")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.crm, args.rows, args.rate_share, args.stand_in_rps)))
        return
    print(
        f"{'crm':<11} {'rows':>7} {'synced':>7} {'secs':>7} {'chk-ins/s':>9} {'calls':>6} {'calls/1k':>8} "
        f"{'limit r/s':>9} {'share':>5} {'bound/s':>8} {'ratio':>6} {'bulk jobs':>9} {'RSS 1/4':>7} "
        f"{'RSS end':>7} {'peak MB':>7}",
        flush=True,
    )
    sizes = [max(1, args.rows // 4), args.rows] if "quarter" in args.sizes else [args.rows]
    for crm in [c for c in args.crm.split(",") if c]:
        for rows in sizes:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    "--crm",
                    crm,
                    "--rows",
                    str(rows),
                    "--rate-share",
                    str(args.rate_share),
                ]
                + (["--stand-in-rps", str(args.stand_in_rps)] if args.stand_in_rps else []),
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            if out.returncode != 0:
                print(f"{crm} {rows}: failed\n{out.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith('{"crm"')))
            print(
                f"{r['crm']:<11} {r['rows']:>7} {r['synced']:>7} {r['seconds']:>7} {r['checkins_per_s']:>9} "
                f"{r['api_calls']:>6} {r['calls_per_1000']:>8} {r['limit_rps']:>9} {r['rate_share']:>5} "
                f"{r['bound_per_s']:>8} {r['ratio']:>6} {r['bulk_jobs']:>9} {r['rss_quarter_mb']:>7} "
                f"{r['rss_end_mb']:>7} {r['peak_rss_mb']:>7}",
                flush=True,
            )
            print(f"  ledger: {r['ledger']}", flush=True)


if __name__ == "__main__":
    main()
