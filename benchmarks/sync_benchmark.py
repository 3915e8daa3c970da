"""Sync N generated check-ins per CRM to the sandbox with the CRMs' limits on; print the figures.

    python benchmarks/sync_benchmark.py [--rows 20000] [--crm hubspot,salesforce,...] [--repeat-share 0.4]

For each CRM it prints check-ins/second, API calls per check-in, the bound the
rate limit puts on throughput at that call pattern (limit in requests/s divided
by calls per check-in; for a CRM with a query-cost budget too, Jobber, the lower of
that and restore rate / points per check-in), the ratio achieved / bound, and the process's peak
memory for N/4 and N rows (run in separate processes: flat means streaming works).

The sandbox runs as its own process (as in production the CRM is remote), the
database is an embedded PostgreSQL in a temporary folder. Each CRM runs at its
hook's documented default limit (HubSpot 190 requests per 10 s, ...). A CRM that
documents no per-second limit (Salesforce: its allocation is per day) gets a
stand-in pace on both the sandbox and the hook (``--stand-in-rps``, default from
its profile in ``localdev/crm_profiles.py``). Nothing here is asserted: machines
are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.bench_env import crm_bench, peak_rss_mb


def run_one(crm: str, rows: int, repeat_share: float, stand_in_rps: float | None) -> dict:
    """One measurement in this process: returns the figures as a dict."""
    import sqlalchemy as sa

    from crm_sync.destinations import destination_for
    from crm_sync.integration_sync import IntegrationSync, SyncOptions
    from crm_sync.integrations import credentials_writer
    from crm_sync.settings import parse_sync_settings
    from localdev.demo_data import check_in_rows, insert_check_ins

    with crm_bench(crm, stand_in_rps) as bench:
        engine, integration, limit_rps = bench.engine, bench.integration, bench.limit_rps
        company_id, tech = bench.company_id, bench.technician_id
        insert_check_ins(engine, check_in_rows(company_id, tech, rows, repeat_share=repeat_share, messy=False))
        rss_before = peak_rss_mb()
        started = time.monotonic()
        settings, _ = parse_sync_settings(integration.get("syncSettings"))
        destination = destination_for(
            crm, integration, settings, credentials_writer=credentials_writer(engine, company_id, crm)
        )
        result = IntegrationSync(
            engine,
            company_id=company_id,
            crm_type=crm,
            integration=integration,
            run_id=f"bench-{crm}-{rows}",
            options=SyncOptions(),
            destination=destination,
        ).run()
        seconds = time.monotonic() - started
        with engine.connect() as conn:
            synced = conn.execute(sa.text("SELECT count(*) FROM crm_sync.ledger WHERE status = 'synced'")).scalar()
        calls_per = result.api_calls / max(synced, 1)
        achieved = synced / seconds
        bound = limit_rps / calls_per if calls_per else float("inf")
        stats = destination.hook.stats
        points_per = stats.quota_points / max(synced, 1)
        if points_per and stats.quota_restore_rate:
            # A cost budget (Jobber) binds too: the lower of the two bounds is the real one.
            bound = min(bound, stats.quota_restore_rate / points_per)
        return {
            "crm": crm,
            "rows": rows,
            "synced": synced,
            "status": result.status,
            "seconds": round(seconds, 2),
            "checkins_per_s": round(achieved, 1),
            "api_calls": result.api_calls,
            "calls_per_checkin": round(calls_per, 4),
            "points_per_checkin": round(points_per, 1),
            "limit_rps": round(limit_rps, 2),
            "bound_per_s": round(bound, 1),
            "ratio": round(achieved / bound, 3) if bound else None,
            "customers_created": result.customers_created,
            "customers_found": result.customers_found,
            "rate_limited": result.rate_limited,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_before_sync_mb": round(rss_before, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--crm", default="", help="comma-separated CRM types (default: every profile)")
    parser.add_argument("--repeat-share", type=float, default=0.4, help="share of check-ins by returning customers")
    parser.add_argument(
        "--stand-in-rps",
        type=float,
        default=None,
        help="pace for CRMs that document no per-second limit (default: the profile's)",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.crm, args.rows, args.repeat_share, args.stand_in_rps)))
        return
    print(
        f"{'crm':<11} {'rows':>7} {'synced':>7} {'secs':>7} {'chk-ins/s':>9} {'calls':>6} {'calls/chk':>9} "
        f"{'pts/chk':>7} {'limit r/s':>9} {'bound/s':>8} {'ratio':>6} {'peak MB':>8}"
    )
    from localdev.crm_profiles import PROFILES

    for crm in [c for c in args.crm.split(",") if c] or list(PROFILES):
        for rows in (max(1, args.rows // 4), args.rows):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    "--crm",
                    crm,
                    "--rows",
                    str(rows),
                    "--repeat-share",
                    str(args.repeat_share),
                ]
                + (["--stand-in-rps", str(args.stand_in_rps)] if args.stand_in_rps else []),
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode != 0:
                print(f"{crm} {rows}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith('{"crm"')))
            print(
                f"{r['crm']:<11} {r['rows']:>7} {r['synced']:>7} {r['seconds']:>7} {r['checkins_per_s']:>9} "
                f"{r['api_calls']:>6} {r['calls_per_checkin']:>9} {r['points_per_checkin']:>7} "
                f"{r['limit_rps']:>9} {r['bound_per_s']:>8} "
                f"{r['ratio']:>6} {r['peak_rss_mb']:>8}",
                flush=True,
            )


if __name__ == "__main__":
    main()
