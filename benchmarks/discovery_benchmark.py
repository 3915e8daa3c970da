"""Discovery in SQL over a fleet: how long ``discover_<crm>`` takes to find the companies with work.

    python benchmarks/discovery_benchmark.py [--companies 5000] [--per-company 60] [--busy 50]

An embedded PostgreSQL in a temporary folder gets ``--companies`` companies with an active HubSpot
integration, ``--per-company`` check-ins each spread over 90 days, every one synced (a bound CRM account,
a finished customer index, a ledger row with its fingerprint, the settled id horizon). Then ``--busy``
companies get work, a third each: a new check-in, an edit inside the look-back, a failed ledger row.
Printed: the seconds of the integrations' parse (``crm_sync.tasks.common.discover``), of the work query
(``crm_sync.discovery.companies_with_work``) and of the idle companies' ``lastSyncedAt`` refresh
(``crm_sync.history.refresh_last_synced``), best and median of 5, and whether it found exactly the busy
companies. Nothing is asserted on time: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

# Benchmark-only SQL (the product's SQL lives in include/sql; this is test data).
WORK_SQL = {
    "new": """INSERT INTO check_ins (job_type, customer_name, technician_id, company_id)
              SELECT 'Repair', 'New customer', t.id, t.company_id FROM technicians t
              WHERE t.company_id = ANY(CAST(:ids AS integer[]))""",
    "edited": """UPDATE check_ins SET notes = 'edited' WHERE id IN (  -- the newest: inside the look-back
                   SELECT min(id) FROM check_ins WHERE company_id = ANY(CAST(:ids AS integer[]))
                   GROUP BY company_id)""",
    "failed": """UPDATE crm_sync.ledger SET status = 'failed' WHERE (company_id, check_in_id) IN (
                   SELECT company_id, min(check_in_id) FROM crm_sync.ledger
                   WHERE company_id = ANY(CAST(:ids AS integer[])) GROUP BY company_id)""",
}


def timed(fn, repeat: int = 5) -> tuple[float, float, object]:
    seconds, out = [], None
    for _ in range(repeat):
        clock = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - clock)
    return min(seconds), statistics.median(seconds), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--companies", type=int, default=5000)
    ap.add_argument("--per-company", type=int, default=60)
    ap.add_argument("--busy", type=int, default=50)
    args = ap.parse_args()

    import shutil

    import sqlalchemy as sa

    from benchmarks.synced_fleet import seed_synced_companies
    from crm_sync.db import create_app_schema, make_engine, migrate
    from crm_sync.discovery import companies_with_work
    from crm_sync.history import refresh_last_synced
    from crm_sync.tasks.common import discover
    from localdev.demo_data import hubspot_integration
    from localdev.pg import start_embedded

    tmp = Path(tempfile.mkdtemp(prefix="crm-discovery-bench-"))
    server = start_embedded(tmp / "pg")
    try:
        engine = make_engine(server.get_uri())
        create_app_schema(engine)
        migrate(engine)
        integration = json.dumps({"hubspot": hubspot_integration("http://127.0.0.1:9", "pat-na1-bench")})
        clock = time.perf_counter()
        ids = seed_synced_companies(
            engine,
            "hubspot",
            [f"Fleet {k}" for k in range(1, args.companies + 1)],
            [integration] * args.companies,
            [f"portal-{k}" for k in range(1, args.companies + 1)],
            per_company=args.per_company,
        )
        seeded = time.perf_counter() - clock
        busy = ids[:: max(1, len(ids) // max(1, args.busy))][: args.busy]
        with engine.begin() as conn:
            for n, statement in enumerate(WORK_SQL.values()):
                conn.execute(sa.text(statement), {"ids": busy[n :: len(WORK_SQL)]})
            conn.execute(sa.text("ANALYZE"))
        parse_best, parse_median, found = timed(lambda: discover(engine, "hubspot", purpose="sync into"))
        usable = found.company_ids
        best, median, work = timed(lambda: companies_with_work(engine, "hubspot", usable, lookback_days=7))
        exact = sorted(w.company_id for w in work) == sorted(busy)
        idle = sorted(set(usable) - {w.company_id for w in work})
        refresh_best, refresh_median, refreshed = timed(
            lambda: refresh_last_synced(engine, "hubspot", idle, at=datetime.now(UTC))
        )
        rows = args.companies * args.per_company
        print(
            f"{args.companies} companies, {rows:,} check-ins (seeded in {seeded:.1f} s), {len(busy)} with work\n"
            f"usable integrations (JSON parse): best {parse_best:.3f} s, median {parse_median:.3f} s\n"
            f"work query (discover_work.sql):  best {best:.3f} s, median {median:.3f} s; "
            f"found {len(work)} companies, exactly the busy ones: {exact}\n"
            f"idle lastSyncedAt refresh (history.refresh_last_synced): best {refresh_best:.3f} s, "
            f"median {refresh_median:.3f} s; {refreshed} companies updated"
        )
        engine.dispose()
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
