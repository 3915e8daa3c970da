"""CRM calls per check-in in the fleet's regime (issue 14): many companies, a few new check-ins each per cycle.

    python benchmarks/fleet_calls_benchmark.py [--companies 50] [--per-cycle 3] [--cycles 3] [--repeat-share 0.4]
                                               [--crm hubspot,...]

Per CRM: ``--companies`` companies on one sandbox account (the sandbox in its own process, as in production
the CRM is remote); each cycle inserts ``--per-cycle`` new check-ins per company, then runs the engine
(:class:`crm_sync.integration_sync.IntegrationSync`, no Airflow) once per company. Prints the CRM calls per
check-in (the hook's ``result.api_calls``, token requests included) for the first cycle and for the later ones,
and the later cycles' calls per run by endpoint, so what every run pays whatever its size (the fixed cost)
is visible. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.bench_env import crm_bench

#: CRMs whose refresh token rotates at every refresh (Jobber): companies sharing one sandbox account's token would
#: revoke each other's, so one company only (its calls per check-in are the same).
ONE_COMPANY = {"jobber"}


def run_crm(crm: str, companies: int, per_cycle: int, cycles: int, repeat_share: float) -> dict:
    """Every cycle's calls, check-ins synced and calls by endpoint for ``crm``."""
    from crm_sync.integration_sync import IntegrationSync
    from crm_sync.integrations import load_integration
    from localdev.demo_data import check_in_rows, create_company, insert_check_ins

    if crm in ONE_COMPANY:
        companies = 1
    out: dict = {"crm": crm, "cycles": [], "companies": companies}
    with crm_bench(crm, None, prefix="crm-fleet-bench-") as bench:
        ids = [(bench.company_id, bench.technician_id)]
        ids += [create_company(bench.engine, f"Fleet {crm} {i}", {crm: bench.integration}) for i in range(1, companies)]
        start = (datetime.now(UTC) - timedelta(days=2)).replace(tzinfo=None, second=0, microsecond=0)
        # Each company's check-ins of every cycle from one generator: a share of them are for customers the
        # company saw before (in an earlier cycle or the same one), as in production.
        planned = {
            company_id: list(
                check_in_rows(
                    company_id,
                    technician_id,
                    per_cycle * cycles,
                    seed=11,
                    messy=False,
                    repeat_share=repeat_share,
                    start=start,
                )
            )
            for company_id, technician_id in ids
        }
        for cycle in range(cycles):
            for company_id, _ in ids:
                insert_check_ins(bench.engine, iter(planned[company_id][cycle * per_cycle : (cycle + 1) * per_cycle]))
            calls = synced = 0
            endpoints: Counter = Counter()
            statuses: Counter = Counter()
            for company_id, _ in ids:
                sync = IntegrationSync(
                    bench.engine,
                    company_id=company_id,
                    crm_type=crm,
                    integration=load_integration(bench.engine, company_id, crm),
                    run_id=f"fleet-{crm}-{cycle}-{company_id}",
                    dag_id="fleet_calls_benchmark",
                )
                result = sync.run()
                calls += result.api_calls
                synced += result.synced
                statuses[result.status] += 1
                endpoints.update(sync.endpoint_calls)
            out["cycles"].append({"calls": calls, "synced": synced, "endpoints": endpoints, "statuses": statuses})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--companies", type=int, default=50)
    parser.add_argument("--per-cycle", type=int, default=3, help="new check-ins per company per cycle")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument(
        "--repeat-share", type=float, default=0.4, help="share of check-ins for a customer the company saw before"
    )
    parser.add_argument("--crm", default="", help="comma-separated CRM types (default: every profile)")
    args = parser.parse_args()
    from localdev.crm_profiles import PROFILES

    print(
        f"{args.companies} companies x {args.per_cycle} new check-ins per cycle, {args.cycles} cycles, "
        f"repeat share {args.repeat_share}"
    )
    print(f"{'crm':<13} {'1st: synced':>11} {'calls/check-in':>14} {'later: synced':>13} {'calls/check-in':>14}")
    details = []
    for crm in [c for c in args.crm.split(",") if c] or list(PROFILES):
        r = run_crm(crm, args.companies, args.per_cycle, args.cycles, args.repeat_share)
        first, later = r["cycles"][0], r["cycles"][1:]
        later_calls = sum(c["calls"] for c in later)
        later_synced = sum(c["synced"] for c in later)
        print(
            f"{crm:<13} {first['synced']:>11} {first['calls'] / max(first['synced'], 1):>14.2f} "
            f"{later_synced:>13} {later_calls / max(later_synced, 1):>14.2f}"
            + ("  (1 company: rotating refresh token)" if crm in ONE_COMPANY else ""),
            flush=True,
        )
        details.append((crm, r))
    for crm, r in details:
        runs = r["companies"] * max(len(r["cycles"]) - 1, 1)
        later = sum((c["endpoints"] for c in r["cycles"][1:]), Counter()) or r["cycles"][0]["endpoints"]
        statuses = sum((c["statuses"] for c in r["cycles"]), Counter())
        print(f"\n{crm}: later cycles, calls per run by endpoint (run statuses: {dict(statuses)})")
        for endpoint, n in sorted(later.items(), key=lambda e: -e[1]):
            print(f"  {n / runs:>6.2f}  {endpoint}")


if __name__ == "__main__":
    main()
