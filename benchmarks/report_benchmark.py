"""Sync-quality metrics and the HTML/CSV report over 100k and 1M check-ins: seconds and peak memory.

    python benchmarks/report_benchmark.py [--rows 1000000] [--small 100000]

An embedded PostgreSQL in a temporary folder gets ``--small`` check-ins of one company spread over 30 days
(``localdev/bulk_data.seed_check_ins``, COPY), a HubSpot ledger row for each (94% synced with latencies of
minutes and a slow day, 4% quarantined with three reasons, 1% failed, 1% pending), a sync run every 15 minutes
for the 30 days (2,880 ``crm_sync.runs`` rows) and one reconciliation whose discrepancies are the quarantined
rows plus 0.5% stale and 0.01% missing. Then, in a fresh process, it computes the 30 days of metrics
(``crm_sync.quality.compute_quality_metrics``) and builds the report (``crm_sync.report.build_report``) and
prints the seconds of each and the process's peak RSS. It tops the data up to ``--rows`` check-ins and measures
again: the same peak RSS for 100k and 1M means the Python side is flat in the number of check-ins (the work is
in PostgreSQL, whose memory is its own, bounded by ``work_mem``). Nothing is asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from benchmarks.bench_env import peak_rss_mb

DAY_TO = date(2026, 11, 24)
DAYS = 30
DAY_FROM = DAY_TO - timedelta(days=DAYS - 1)

# Benchmark-only seeding SQL (the product's SQL lives in include/sql; this is test data).
LEDGER_SQL = """
INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, crm_visit_id, error_kind, last_error,
                             attempts, synced_at)
SELECT ci.company_id, 'hubspot', ci.id, s.status,
       CASE WHEN s.status = 'synced' THEN 'N' || ci.id END,
       CASE s.status WHEN 'quarantined' THEN (ARRAY['no_identity', 'no_match', 'crm_rejected'])[1 + ci.id % 3]
                     WHEN 'failed' THEN 'transient' END,
       CASE s.status WHEN 'quarantined' THEN (ARRAY['no name, email or phone to identify the customer',
                         'no existing customer in the CRM matches email:c' || ci.id || '@example.com and '
                         || 'createNewCustomers is off', 'HubSpot refused the contact: Property values were not valid'])
                         [1 + ci.id % 3]
                     WHEN 'failed' THEN 'HTTP 503 from the CRM after 5 attempts' END,
       1,
       CASE WHEN s.status = 'synced' THEN (ci.created_at AT TIME ZONE 'UTC')
            + make_interval(secs => 60 + (CAST(ci.id AS bigint) * 7919 % 900)
                                    * CASE WHEN ci.created_at::date = :slow_day THEN 12 ELSE 1 END)
       END
FROM check_ins ci
CROSS JOIN LATERAL (SELECT CASE WHEN ci.id % 100 < 94 THEN 'synced' WHEN ci.id % 100 < 98 THEN 'quarantined'
                                WHEN ci.id % 100 < 99 THEN 'failed' ELSE 'pending' END AS status) s
WHERE ci.id > :after_id
"""
RUNS_SQL = """
INSERT INTO crm_sync.runs (run_id, dag_id, company_id, crm_type, status, started_at, finished_at, seconds, synced,
                           customers_found, customers_created, visits_created, api_calls, rate_limited, retries)
SELECT 'scheduled__' || t, 'crm_incremental_sync', :company_id, 'hubspot', 'success', t, t + interval '40 s', 40,
       :per_run, :per_run * 4 / 10, :per_run * 6 / 10, :per_run, 1 + :per_run / 20, (extract(hour FROM t) = 9)::int,
       (extract(minute FROM t) = 30)::int
FROM generate_series(CAST(:day_from AS timestamp) AT TIME ZONE 'UTC',
                     CAST(:day_to AS timestamp) AT TIME ZONE 'UTC', interval '15 minutes') t
"""
RECON_SQL = """
WITH r AS (
    INSERT INTO crm_sync.reconciliation_runs (run_id, dag_id, company_id, crm_type, range_start, range_end, started_at,
                                              finished_at)
    VALUES ('bench_report', 'crm_reconciliation_report', :company_id, 'hubspot', :day_from, :day_end, now(), now())
    RETURNING id)
INSERT INTO crm_sync.discrepancies (reconciliation_id, company_id, crm_type, check_in_id, crm_id, class, detail)
SELECT r.id, l.company_id, 'hubspot', l.check_in_id, l.crm_visit_id,
       CASE WHEN l.status = 'quarantined' THEN 'quarantined' WHEN l.check_in_id % 10000 = 3 THEN 'missing_in_crm'
            ELSE 'stale' END,
       CASE WHEN l.status = 'quarantined' THEN l.error_kind || ': ' || l.last_error
            WHEN l.check_in_id % 10000 = 3 THEN 'HubSpot has no note ' || l.crm_visit_id
            ELSE 'the check-in changed after its last sync (notes)' END
FROM crm_sync.ledger l CROSS JOIN r
WHERE l.status = 'quarantined' OR (l.status = 'synced' AND (l.check_in_id % 200 = 1 OR l.check_in_id % 10000 = 3))
"""


def seed(engine, company_id: int, technician_id: int, n: int, seed_no: int) -> float:
    """Add ``n`` check-ins over the 30 days with their ledger rows; rebuild the reconciliation. Returns seconds."""
    import sqlalchemy as sa

    from localdev.bulk_data import seed_check_ins

    t0 = time.perf_counter()
    with engine.connect() as conn:
        after = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM check_ins")).scalar_one()
    seed_check_ins(
        engine,
        company_id,
        technician_id,
        n,
        start=datetime.combine(DAY_FROM, datetime.min.time()),
        days=DAYS,
        seed=seed_no,
    )
    with engine.begin() as conn:
        conn.execute(sa.text(LEDGER_SQL), {"after_id": after, "slow_day": DAY_TO - timedelta(days=10)})
        conn.execute(
            sa.text(
                "INSERT INTO crm_sync.integration_state (company_id, crm_type, settled_id) "
                "SELECT :c, 'hubspot', max(id) FROM check_ins ON CONFLICT (company_id, crm_type) "
                "DO UPDATE SET settled_id = EXCLUDED.settled_id"
            ),
            {"c": company_id},
        )
        conn.execute(sa.text("DELETE FROM crm_sync.reconciliation_runs"))
        conn.execute(
            sa.text(RECON_SQL), {"company_id": company_id, "day_from": DAY_FROM, "day_end": DAY_TO + timedelta(days=1)}
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return time.perf_counter() - t0


def run_one(url: str, out: str) -> dict:
    """Metrics for the 30 days, then the report, in this process."""
    from crm_sync.db import make_engine
    from crm_sync.quality import compute_quality_metrics
    from crm_sync.report import build_report

    engine = make_engine(url)
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    rows = compute_quality_metrics(engine, day_from=DAY_FROM, day_to=DAY_TO)
    metrics_s = time.perf_counter() - t0
    rss_metrics = peak_rss_mb()
    t0 = time.perf_counter()
    result = build_report(engine, run_id="bench_report", output_dir=Path(out), day_from=DAY_FROM, day_to=DAY_TO)
    report_s = time.perf_counter() - t0
    engine.dispose()
    return {
        "metric_rows": rows,
        "metrics_s": round(metrics_s, 1),
        "report_s": round(report_s, 1),
        "csv_rows": result["csv_rows"],
        "html_kb": round(Path(result["html"]).stat().st_size / 1024),
        "eligible": result["headline"]["eligible"],
        "rss_start_mb": round(rss_start, 1),
        "rss_after_metrics_mb": round(rss_metrics, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--one", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return

    import shutil

    from crm_sync.db import create_app_schema, make_engine, migrate
    from localdev.demo_data import create_company
    from localdev.pg import start_embedded

    tmp = Path(tempfile.mkdtemp(prefix="crm-report-bench-"))
    server = start_embedded(tmp / "pg")
    try:
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        engine = make_engine(url)
        create_app_schema(engine)
        migrate(engine)
        company_id, technician_id = create_company(engine, "Benchmark Heating & Air", None)
        import sqlalchemy as sa

        with engine.begin() as conn:
            conn.execute(
                sa.text(RUNS_SQL),
                {
                    "company_id": company_id,
                    "per_run": max(1, args.small // 2880),
                    "day_from": DAY_FROM,
                    "day_to": DAY_TO + timedelta(hours=23),
                },
            )
        print(
            f"{'check-ins':>10} {'seed s':>7} {'metrics s':>9} {'report s':>8} {'metric rows':>11} "
            f"{'CSV rows':>9} {'HTML KB':>8} {'RSS start MB':>12} {'peak RSS MB':>11}",
            flush=True,
        )
        total = 0
        for step, target in enumerate((args.small, args.rows)):
            seeded = seed(engine, company_id, technician_id, target - total, seed_no=7 + step)
            total = target
            proc = subprocess.run(
                [sys.executable, __file__, "--one", url, str(tmp / f"out{step}")],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{total:>10,} {seeded:>7.0f} {r['metrics_s']:>9} {r['report_s']:>8} {r['metric_rows']:>11,} "
                f"{r['csv_rows']:>9,} {r['html_kb']:>8,} {r['rss_start_mb']:>12} {r['peak_rss_mb']:>11}",
                flush=True,
            )
        engine.dispose()
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
