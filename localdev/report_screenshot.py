"""Regenerate ``docs/reconciliation-report.png``: seed demo-like sync history, build the report, screenshot it.

    python -m localdev.report_screenshot [--out docs/reconciliation-report.png] [--keep-html DIR]

An embedded PostgreSQL in a temporary folder gets 30 days of check-ins for seven integrations (the demo's
messy customers, :func:`localdev.demo_data.check_in_rows`) with a plausible sync history: ledger rows (mostly
synced within minutes, a bad day with an outage, quarantines with the sync's real reasons, a few failures),
hourly sync runs with API calls and the odd 429, and one reconciliation with discrepancies.
:func:`seed_report_demo` is also what ``tests/test_report_screenshot.py`` renders. Needs ``chromium``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from localdev.demo_data import check_in_rows, create_company, insert_check_ins

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "reconciliation-report.png"
RUN_ID = "scheduled__demo_report"


#: (company, crm, check-ins per day, share quarantined, share failed, median latency minutes, 429s per day,
#: messy data: the demo's unmatchable rows, which the sync quarantines as no_identity)
PROFILES = [
    ("Sunrise Heating & Air", "hubspot", 40, 0.006, 0.0, 7, 0, False),
    ("Metro Plumbing Co", "servicetitan", 25, 0.008, 0.002, 9, 0.3, False),
    ("Lone Star Electric", "salesforce", 30, 0.003, 0.0, 6, 0, False),
    ("Hill Country HVAC", "jobber", 15, 0.004, 0.0, 8, 0, False),
    ("Bluebonnet Garage Doors", "housecallpro", 10, 0.004, 0.01, 11, 0, False),
    ("Capitol Roofing", "fieldedge", 12, 0.01, 0.0, 10, 0, True),
    ("Riverside Pest Control", "hubspot", 18, 0.004, 0.0, 7, 0, False),
]
REASONS = {
    "no_identity": ["no name, email or phone to identify the customer"],
    "no_match": ["no existing customer in the CRM matches email:{email} and createNewCustomers is off"],
    "crm_rejected": {
        "servicetitan": "ServiceTitan refused the location: address is incomplete (zip is required)",
        "fieldedge": "FieldEdge needs an email or a phone for a customer; this check-in has only a name",
        "housecallpro": "Housecall Pro refused the job: address.street is blank",
        "hubspot": "HubSpot refused the contact: Property values were not valid (email)",
        "salesforce": "Salesforce refused the Contact: REQUIRED_FIELD_MISSING LastName",
        "jobber": "Jobber refused the property: street1 can't be blank",
    },
}


def seed_report_demo(
    engine: Engine, *, day_to: date, days: int = 30, seed: int = 7, run_id: str = RUN_ID
) -> dict[str, Any]:
    """Seed ``days`` days up to ``day_to`` of check-ins and sync history; returns what it made."""
    rng = random.Random(seed)
    start = datetime.combine(day_to - timedelta(days=days - 1), time(7))
    outage_day = day_to - timedelta(days=days // 3)  # one CRM had a bad day
    made: dict[str, Any] = {"pairs": [], "check_ins": 0}
    companies: dict[str, tuple[int, int]] = {}
    for name, crm, per_day, q_share, f_share, median_min, per_day_429, messy in PROFILES:
        if name not in companies:
            companies[name] = create_company(engine, name, None)
        company_id, technician_id = companies[name]
        n = per_day * days
        rows = list(check_in_rows(company_id, technician_id, n, seed=seed + company_id, messy=messy))
        for i, row in enumerate(rows):  # working hours, spread over the days
            day = i // per_day
            row["created_at"] = start + timedelta(days=day, minutes=rng.randint(0, 11 * 60))
        with engine.begin() as conn:
            first_id = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM check_ins")).scalar_one()
        insert_check_ins(engine, iter(rows))
        ids = list(range(first_id + 1, first_id + 1 + n))
        ledger = []
        for cid, row in zip(ids, rows, strict=True):
            created = row["created_at"]
            bad_day = crm == "servicetitan" and created.date() == outage_day
            roll = rng.random()
            entry = {
                "company_id": company_id,
                "crm_type": crm,
                "check_in_id": cid,
                "status": "synced",
                "error_kind": None,
                "last_error": None,
                "synced_at": None,
                "visit": f"{crm[:2].upper()}-{cid}",
            }
            if row["customer_name"] is None and row["customer_phone"] is None:
                entry.update(status="quarantined", error_kind="no_identity", last_error=REASONS["no_identity"][0])
            elif roll < q_share or (bad_day and roll < 0.25):
                kind = "crm_rejected" if rng.random() < 0.7 else "no_match"
                text = (
                    REASONS["crm_rejected"][crm]
                    if kind == "crm_rejected"
                    else REASONS["no_match"][0].format(email=(row["customer_email"] or "").strip().lower())
                )
                entry.update(status="quarantined", error_kind=kind, last_error=text)
            elif roll < q_share + f_share:
                entry.update(
                    status="failed", error_kind="transient", last_error="HTTP 503 from the CRM after 5 attempts"
                )
            else:
                minutes = rng.lognormvariate(0, 0.6) * median_min * (6 if bad_day else 1)
                entry["synced_at"] = created + timedelta(minutes=minutes)
            if entry["status"] != "synced":
                entry["visit"] = None
            ledger.append(entry)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, crm_visit_id, error_kind, "
                    "last_error, attempts, synced_at) VALUES (:company_id, :crm_type, :check_in_id, :status, :visit, "
                    ":error_kind, :last_error, 1, CAST(:synced_at AS timestamp) AT TIME ZONE 'UTC')"
                ),
                ledger,
            )
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.integration_state (company_id, crm_type, settled_id) VALUES (:c, :t, :s)"
                ),
                {"c": company_id, "t": crm, "s": ids[-1]},
            )
            runs = []
            for d in range(days):
                for hour in range(7, 20):
                    started = datetime.combine(start.date() + timedelta(days=d), time(hour, 5), tzinfo=UTC)
                    synced = max(0, int(rng.gauss(per_day / 12, 1)))
                    found = int(synced * 0.4)
                    runs.append(
                        {
                            "run_id": f"scheduled__{started.isoformat()}",
                            "company_id": company_id,
                            "crm_type": crm,
                            "started_at": started,
                            "synced": synced,
                            "found": found,
                            "created": synced - found,
                            "api_calls": 1 + synced * (3 if crm in ("housecallpro", "fieldedge") else 1),
                            "rate_limited": 1 if per_day_429 and rng.random() < per_day_429 / 13 else 0,
                            "retries": rng.choice([0, 0, 0, 1]),
                        }
                    )
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.runs (run_id, dag_id, company_id, crm_type, status, started_at, finished_at, "
                    "seconds, synced, customers_found, customers_created, visits_created, api_calls, "
                    "rate_limited, retries)"
                    " VALUES (:run_id, 'crm_incremental_sync', :company_id, :crm_type, 'success', :started_at, "
                    ":started_at, 2.5, :synced, :found, :created, :synced, :api_calls, :rate_limited, :retries)"
                ),
                runs,
            )
            made["pairs"].append((company_id, crm))
            made["check_ins"] += n
            _reconcile_demo(conn, rng, company_id, crm, name, ids, ledger, start.date(), day_to, run_id)
    return made


def _reconcile_demo(
    conn,
    rng: random.Random,
    company_id: int,
    crm: str,
    name: str,
    ids: list[int],
    ledger: list[dict[str, Any]],
    day_from: date,
    day_to: date,
    run_id: str,
) -> None:
    """One finished reconciliation of this run with discrepancies shaped like crm_sync.reconcile's."""
    findings: list[tuple[str, int | None, str | None, str]] = []
    synced = [e for e in ledger if e["status"] == "synced"]
    if name == "Lone Star Electric":
        for e in rng.sample(synced, 2):
            findings.append(
                (
                    "missing_in_crm",
                    e["check_in_id"],
                    e["visit"],
                    f"the ledger says synced as Case {e['visit']}, but Salesforce has no such record",
                )
            )
    if name == "Sunrise Heating & Air":
        for e in rng.sample(synced, 3):
            findings.append(
                (
                    "stale",
                    e["check_in_id"],
                    e["visit"],
                    "the check-in changed after its last sync (notes); the next run updates it",
                )
            )
    if name == "Metro Plumbing Co":
        e = rng.choice(synced)
        findings.append(
            (
                "drift",
                e["check_in_id"],
                e["visit"],
                "ServiceTitan job summary differs from the check-in (edited in ServiceTitan)",
            )
        )
    if name == "Riverside Pest Control":
        findings.append(("duplicate", None, "5512", "two HubSpot contacts share phone +15125550188 (ids 5512, 5530)"))
    for e in ledger:
        if e["status"] == "quarantined":
            findings.append(("quarantined", e["check_in_id"], None, f"{e['error_kind']}: {e['last_error']}"))
    counts: dict[str, int] = {}
    for cls, *_ in findings:
        counts[cls] = counts.get(cls, 0) + 1
    finished = datetime.combine(day_to + timedelta(days=1), time(5, 3), tzinfo=UTC)
    rid = conn.execute(
        sa.text(
            "INSERT INTO crm_sync.reconciliation_runs (run_id, dag_id, company_id, crm_type, range_start, range_end, "
            "started_at, finished_at, source_count, eligible_count, ledger_count, synced_count, crm_checked, "
            "crm_sampled,"
            " counts) VALUES (:r, 'crm_reconciliation_report', :c, :t, :a, :b, :s, :s, :n, :n, :n, :synced, :checked, "
            ":sampled, CAST(:counts AS jsonb)) RETURNING id"
        ),
        {
            "r": run_id,
            "c": company_id,
            "t": crm,
            "a": day_from,
            "b": day_to + timedelta(days=1),
            "s": finished,
            "n": len(ids),
            "synced": len(synced),
            "checked": min(1000, len(synced)),
            "sampled": len(synced) > 1000,
            "counts": json.dumps(counts),
        },
    ).scalar_one()
    if findings:
        conn.execute(
            sa.text(
                "INSERT INTO crm_sync.discrepancies (reconciliation_id, company_id, crm_type, check_in_id, "
                "crm_id, class, "
                "detail, found_at) VALUES (:r, :c, :t, :ci, :crm_id, :cls, :d, :s)"
            ),
            [
                {
                    "r": rid,
                    "c": company_id,
                    "t": crm,
                    "ci": ci,
                    "crm_id": crm_id,
                    "cls": cls,
                    "d": detail,
                    "s": finished,
                }
                for cls, ci, crm_id, detail in findings
            ],
        )


def build_demo_report(engine: Engine, out_dir: Path, *, day_to: date, days: int = 30) -> dict[str, Any]:
    """Seed, compute the metrics and build the report into ``out_dir``; returns build_report's result."""
    from crm_sync.quality import compute_quality_metrics
    from crm_sync.report import build_report

    seed_report_demo(engine, day_to=day_to, days=days)
    day_from = day_to - timedelta(days=days - 1)
    compute_quality_metrics(engine, day_from=day_from, day_to=day_to)
    return build_report(engine, run_id=RUN_ID, output_dir=out_dir, day_from=day_from, day_to=day_to)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=SCREENSHOT)
    ap.add_argument("--keep-html", type=Path, help="also copy the report (HTML + CSVs) into this folder")
    ap.add_argument("--day-to", type=date.fromisoformat, default=date(2026, 11, 24))
    args = ap.parse_args()
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]
    from browser import Chromium, assert_not_blank, chromium_path  # tests/browser.py: the DevTools driver
    from crm_sync.db import create_app_schema, make_engine, migrate
    from localdev.pg import start_embedded

    if not chromium_path():
        sys.exit("chromium is not installed (apt-get install -y chromium)")
    tmp = Path(tempfile.mkdtemp(prefix="crm-report-shot-"))
    server = start_embedded(tmp / "pg")
    try:
        engine = make_engine(server.get_uri())
        create_app_schema(engine)
        migrate(engine)
        result = build_demo_report(engine, tmp / "report", day_to=args.day_to)
        engine.dispose()
        with Chromium(tmp / "chromium", size=(1280, 900)) as browser:
            browser.navigate(Path(result["html"]).as_uri())
            browser.settle(1.0)
            png = browser.screenshot(full_page=True)
            if browser.errors:
                sys.exit(f"the report logged errors: {browser.errors}")
        assert_not_blank(png)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(png)
        if args.keep_html:
            shutil.copytree(tmp / "report", args.keep_html, dirs_exist_ok=True)
        print(f"wrote {args.out} ({len(png):,} bytes); headline: {json.dumps(result['headline'])}")
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
