"""Idle runs cost nothing (issue 11, section 5): per CRM, sync N check-ins, then run again with nothing new.

    python benchmarks/idle_benchmark.py [--rows 200] [--crm hubspot,salesforce,...]

Prints, per CRM, the first run's CRM calls and the idle run's: the calls its hook counted (token fetches
included) and the requests the sandbox saw for the account (``/_sandbox/stats``: every request with a
token, token requests included). The idle figures should be 0. Each run is the sync task's steps
(:func:`crm_sync.customer_import.sync_with_index`), on the same parts as ``sync_benchmark.py``. Printed,
not asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.bench_env import crm_bench


def sandbox_requests(url: str, crm: str) -> int:
    import requests

    return sum(a["requests"] for a in requests.get(f"{url}/_sandbox/stats", timeout=10).json()[crm].values())


def run_one(crm: str, rows: int) -> dict:
    """A first sync of ``rows`` check-ins, then an idle one; their CRM calls."""
    from crm_sync.customer_import import sync_with_index
    from crm_sync.integration_sync import SyncOptions
    from crm_sync.integrations import load_integration
    from localdev.demo_data import check_in_rows, insert_check_ins

    if not os.environ.get("AIRFLOW__CORE__FERNET_KEY"):  # Jobber's rotated tokens are stored encrypted
        from cryptography.fernet import Fernet

        os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
    with crm_bench(crm, None, prefix="crm-idle-bench-") as bench:
        engine, company_id = bench.engine, bench.company_id
        insert_check_ins(engine, check_in_rows(company_id, bench.technician_id, rows, messy=False))
        figures: dict = {"crm": crm, "rows": rows}
        for name in ("first", "idle"):
            before = sandbox_requests(bench.url, crm)
            result = sync_with_index(
                engine,
                company_id,
                crm,
                load_integration(engine, company_id, crm),
                run_id=f"idle-bench-{name}",
                dag_id="idle_benchmark",
                options=SyncOptions(),
            )
            figures[name] = {
                "status": result.status,
                "error": result.error,
                "synced": result.synced,
                "unchanged": result.unchanged,
                "api_calls": result.api_calls,
                "sandbox_requests": sandbox_requests(bench.url, crm) - before,
                "seconds": result.seconds,
            }
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--crm", default="", help="comma-separated CRM types (default: every profile)")
    args = parser.parse_args()
    from localdev.crm_profiles import PROFILES

    print(
        f"{'crm':<13} {'rows':>5} {'1st status':>10} {'1st synced':>10} {'1st calls':>9} "
        f"{'idle unchanged':>14} {'idle calls':>10} {'idle sandbox req.':>17} {'idle secs':>9}"
    )
    for crm in [c for c in args.crm.split(",") if c] or list(PROFILES):
        r = run_one(crm, args.rows)
        first, idle = r["first"], r["idle"]
        print(
            f"{crm:<13} {r['rows']:>5} {first['status']:>10} {first['synced']:>10} {first['api_calls']:>9} "
            f"{idle['unchanged']:>14} {idle['api_calls']:>10} {idle['sandbox_requests']:>17} {idle['seconds']:>9}",
            flush=True,
        )


if __name__ == "__main__":
    main()
