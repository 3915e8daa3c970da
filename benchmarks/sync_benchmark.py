"""Sync N generated check-ins per CRM to the sandbox with the CRMs' limits on; print the figures.

    python benchmarks/sync_benchmark.py [--rows 20000] [--crm hubspot,salesforce,...] [--repeat-share 0.4]
                                        [--profiles clean,faults,hidden]

Profiles (``--profiles``, default all three):

* ``clean``: the sandbox at the CRM's documented limit, N/4 and N rows (the memory check below).
* ``faults``: the same at N rows with 3% of answers 5xx and 3% 429 with ``Retry-After: 1`` (sandbox faults);
  printed against the clean run of the same size (target: >= 0.8 x its throughput).
* ``hidden``: a sandbox limit below the hook's default that the hook is not told (FieldEdge 10 / s,
  Housecall Pro 60 / min; CRMs in :data:`HIDDEN_LIMITS` only), N rows; printed against that hidden
  limit's bound (target: >= 0.85 of it with <= 1% of calls answered 429). The hook learns the rate
  (:mod:`crm_hooks.rate_limit`).

Every row shows the share of calls answered 429 (``429 %``).

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

#: The sandbox faults of the ``faults`` profile: 3% 5xx, 3% 429 with Retry-After: 1 (every CRM endpoint).
FAULTS = ({"status": 503, "rate": 0.03}, {"status": 429, "rate": 0.03, "retry_after": 1})
#: The ``hidden`` profile: the sandbox account's own limit (below the hook's default) and its rate in requests / s.
HIDDEN_LIMITS: dict[str, tuple[dict, float]] = {
    "fieldedge": ({"rate_limit_calls": 10, "rate_limit_period": 1}, 10.0),
    "housecallpro": ({"requests_per_minute": 60}, 1.0),
}


def run_one(crm: str, rows: int, repeat_share: float, stand_in_rps: float | None, profile: str = "clean") -> dict:
    """One measurement in this process: returns the figures as a dict."""
    import requests
    import sqlalchemy as sa

    from crm_sync.destinations import destination_for
    from crm_sync.integration_sync import IntegrationSync, SyncOptions
    from crm_sync.integrations import credentials_writer
    from crm_sync.settings import parse_sync_settings
    from localdev.demo_data import check_in_rows, insert_check_ins

    hidden, hidden_rps = HIDDEN_LIMITS[crm] if profile == "hidden" else (None, None)
    with crm_bench(crm, stand_in_rps, sandbox_limits=hidden) as bench:
        engine, integration, limit_rps = bench.engine, bench.integration, bench.limit_rps
        limit_rps = hidden_rps or limit_rps
        company_id, tech = bench.company_id, bench.technician_id
        if profile == "faults":
            for fault in FAULTS:
                requests.post(f"{bench.url}/_sandbox/faults", json={"crm": crm, **fault}).raise_for_status()
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
            "profile": profile,
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
            "share_429": round(result.rate_limited / max(result.api_calls, 1), 4),
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
    parser.add_argument("--profiles", default="clean,faults,hidden", help="comma-separated: clean, faults, hidden")
    parser.add_argument("--profile", default="clean", help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.crm, args.rows, args.repeat_share, args.stand_in_rps, args.profile)))
        return
    print(
        f"{'crm':<11} {'profile':<7} {'rows':>6} {'synced':>6} {'secs':>7} {'chk-ins/s':>9} {'calls':>6} "
        f"{'calls/chk':>9} {'pts/chk':>7} {'limit r/s':>9} {'bound/s':>8} {'ratio':>6} {'429 %':>6} "
        f"{'vs clean':>8} {'peak MB':>8}"
    )
    from localdev.crm_profiles import PROFILES

    profiles = [p for p in args.profiles.split(",") if p]
    for crm in [c for c in args.crm.split(",") if c] or list(PROFILES):
        runs = [("clean", max(1, args.rows // 4)), ("clean", args.rows)] if "clean" in profiles else []
        runs += [("faults", args.rows)] if "faults" in profiles else []
        runs += [("hidden", args.rows)] if "hidden" in profiles and crm in HIDDEN_LIMITS else []
        clean_speed: dict[int, float] = {}
        for profile, rows in runs:
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
                    "--profile",
                    profile,
                ]
                + (["--stand-in-rps", str(args.stand_in_rps)] if args.stand_in_rps else []),
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode != 0:
                print(f"{crm} {profile} {rows}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith('{"crm"')))
            if profile == "clean":
                clean_speed[rows] = r["checkins_per_s"]
            # faults: throughput against the clean run of the same size (hidden: see ratio, against its bound)
            versus = r["checkins_per_s"] / clean_speed[rows] if profile == "faults" and clean_speed.get(rows) else None
            print(
                f"{r['crm']:<11} {profile:<7} {r['rows']:>6} {r['synced']:>6} {r['seconds']:>7} "
                f"{r['checkins_per_s']:>9} {r['api_calls']:>6} {r['calls_per_checkin']:>9} "
                f"{r['points_per_checkin']:>7} {r['limit_rps']:>9} {r['bound_per_s']:>8} {r['ratio']:>6} "
                f"{100 * r['share_429']:>6.2f} {'' if versus is None else f'{versus:.3f}':>8} {r['peak_rss_mb']:>8}",
                flush=True,
            )


if __name__ == "__main__":
    main()
