"""Export N check-ins (with their sync status) to CSV + Parquet; print seconds and peak memory.

    python benchmarks/export_benchmark.py [--rows 1000000] [--chunk-size 50000] [--formats csv,parquet]

Seeds N check-ins of one company over 100 days (``localdev/bulk_data.seed_check_ins``, COPY) into an
embedded PostgreSQL in a temporary folder, with a HubSpot ledger row (synced) for half of them and a
Salesforce one (quarantined) for a tenth (those have two export rows: 1.1 N rows). Then it exports the first
tenth of the days (N/10 check-ins)
and the whole range (N), each in its own process, and prints rows, seconds, rows/second, file sizes and
the process's peak RSS: the same peak for N/10 and N means memory is flat in the number of rows (it
grows with ``--chunk-size`` instead). Nothing is asserted: machines are noisy.
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

START = datetime(2026, 1, 1)
DAYS = 100


def seed(url: str, rows: int) -> dict:
    import sqlalchemy as sa

    from crm_sync.db import create_app_schema, make_engine, migrate
    from localdev.bulk_data import seed_check_ins
    from localdev.demo_data import create_company

    engine = make_engine(url)
    create_app_schema(engine)
    migrate(engine)
    company_id, technician_id = create_company(engine, "Benchmark Co", None)
    t0 = time.perf_counter()
    seed_check_ins(engine, company_id, technician_id, rows, start=START, days=DAYS)
    seeded = time.perf_counter() - t0
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, crm_customer_id, "
                "crm_visit_id, "
                "attempts, synced_at, first_attempt_at, last_attempt_at) "
                "SELECT company_id, 'hubspot', id, 'synced', 'C' || id, 'V' || id, 1, now(), now(), now() "
                "FROM check_ins WHERE id % 2 = 0"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, error_kind, "
                "last_error, attempts) "
                "SELECT company_id, 'salesforce', id, 'quarantined', 'no_match', 'customer not found in CRM', 2 "
                "FROM check_ins WHERE id % 10 = 4"
            )
        )
        conn.execute(sa.text("ANALYZE"))
    engine.dispose()
    return {"company_id": company_id, "seed_seconds": round(seeded, 1)}


def run_one(url: str, company_id: int, days: int, chunk_size: int, formats: list[str], out: str) -> dict:
    """One export in this process."""
    from crm_sync.db import make_engine
    from crm_sync.export import resolve_params, run_export

    engine = make_engine(url)
    params = resolve_params(
        {
            "company_ids": [company_id],
            "date_from": START.date().isoformat(),
            "date_to": (START.date() + timedelta(days=days - 1)).isoformat(),
            "chunk_size": chunk_size,
            "formats": formats,
        },
        run_date=date.today(),
    )
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    manifest = run_export(engine, params, Path(out), run_id=f"bench_{days}")
    seconds = time.perf_counter() - t0
    engine.dispose()
    return {
        "rows": manifest["row_count"],
        "check_ins": manifest["check_in_count"],
        "seconds": round(seconds, 1),
        "rows_per_s": round(manifest["row_count"] / seconds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(rss_before, 1),
        "files_mb": {f["format"]: round(f["bytes"] / 2**20, 1) for f in manifest["files"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk-size", type=int, default=20_000)
    ap.add_argument("--formats", default="csv,parquet")
    ap.add_argument("--one", nargs=4, metavar=("URL", "COMPANY", "DAYS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    formats = args.formats.split(",")
    if args.one:
        url, company, days, out = args.one
        print(json.dumps(run_one(url, int(company), int(days), args.chunk_size, formats, out)))
        return

    from localdev.pg import start_embedded

    tmp = Path(tempfile.mkdtemp(prefix="crm-export-bench-"))
    server = start_embedded(tmp / "pg")
    try:
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        print(f"seeding {args.rows:,} check-ins over {DAYS} days ...", flush=True)
        info = seed(url, args.rows)
        print(f"seeded in {info['seed_seconds']} s ({args.rows / info['seed_seconds']:,.0f} rows/s with COPY)")
        print(
            f"{'range':>9} {'rows':>10} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>12} {'RSS before':>11}  files MB"
        )
        for days in (DAYS // 10, DAYS):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    url,
                    str(info["company_id"]),
                    str(days),
                    str(tmp / f"out{days}"),
                    "--chunk-size",
                    str(args.chunk_size),
                    "--formats",
                    args.formats,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{days:>4} days {r['rows']:>10,} {r['seconds']:>8} {r['rows_per_s']:>8,} {r['peak_rss_mb']:>12} "
                f"{r['rss_before_mb']:>11}  {r['files_mb']}",
                flush=True,
            )
    finally:
        server.cleanup()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
