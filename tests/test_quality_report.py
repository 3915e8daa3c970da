"""Sync-quality metrics (crm_sync.quality) and the HTML/CSV report (crm_sync.report) on a real PostgreSQL.

The scenario is built row by row so every figure is known: check-ins on two days, ledger rows synced with
chosen latencies, quarantined with reasons, failed, pending; one check-in the sync passed over (below its
settled horizon, no ledger row) and one it has not reached yet; sync runs with API calls, 429s and retries;
two reconciliations of which only the latest may show. Customer and company names are hostile HTML.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from markupsafe import escape

from crm_sync import report as report_mod
from crm_sync.quality import compute_quality_metrics, metric_params
from crm_sync.report import Health, assess, build_report, csv_safe, format_seconds, line_chart, worst
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

D1, D2 = date(2026, 11, 20), date(2026, 11, 21)
HOSTILE_CUSTOMER = '<script>alert("pwned")</script> O\'Brien & <b>Sons</b>'
HOSTILE_COMPANY = "Acme <img src=x onerror=alert(1)> Heating"
LATENCIES_D1 = [60, 120, 180, 240, 300, 360, 420]  # seconds, the 7 synced check-ins of day 1
LATENCIES_D2 = [30, 90]


def percentile(values: list[float], q: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _check_ins(
    engine, company_id: int, technician_id: int, created: list[datetime], names: dict[int, str] | None = None
):
    rows = list(check_in_rows(company_id, technician_id, len(created), seed=3, messy=False))
    for i, (row, at) in enumerate(zip(rows, created, strict=True)):
        row["created_at"] = at
        if names and i in names:
            row["customer_name"] = names[i]
    insert_check_ins(engine, iter(rows))
    with engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                sa.text("SELECT id FROM check_ins WHERE company_id = :c ORDER BY id"), {"c": company_id}
            )
        ]


def _ledger(
    conn,
    company_id: int,
    crm: str,
    check_in_id: int,
    status: str,
    *,
    created: datetime | None = None,
    latency: float | None = None,
    kind: str | None = None,
    error: str | None = None,
) -> None:
    synced_at = None if latency is None else created + timedelta(seconds=latency)
    conn.execute(
        sa.text(
            "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, crm_visit_id, error_kind, "
            "last_error, "
            "synced_at) VALUES (:c, :crm, :id, :s, :v, :k, :e, CAST(:at AS timestamp) AT TIME ZONE 'UTC')"
        ),
        {
            "c": company_id,
            "crm": crm,
            "id": check_in_id,
            "s": status,
            "v": f"V{check_in_id}" if status == "synced" else None,
            "k": kind,
            "e": error,
            "at": synced_at,
        },
    )


def _run(conn, company_id: int, crm: str, started: datetime, **counts) -> None:
    row = {
        k: 0
        for k in (
            "candidates",
            "unchanged",
            "synced",
            "customers_found",
            "customers_created",
            "customers_updated",
            "visits_created",
            "visits_updated",
            "visits_recovered",
            "quarantined",
            "failed",
            "api_calls",
            "retries",
            "rate_limited",
        )
    }
    row.update(counts)
    row.update(
        run_id=f"scheduled__{started.isoformat()}",
        dag_id="crm_incremental_sync",
        company_id=company_id,
        crm_type=crm,
        status="success",
        started_at=started.replace(tzinfo=None).isoformat() + "+00:00",
        finished_at=None,
        seconds=1,
        error=None,
        quarantine_reasons="{}",
        warnings="[]",
    )
    from crm_sync.db import sql

    conn.execute(sql("run_insert"), row)


def _reconciliation(
    conn, company_id: int, crm: str, run_id: str, started: datetime, findings: list[tuple[str, int | None, str]]
) -> int:
    rid = conn.execute(
        sa.text(
            "INSERT INTO crm_sync.reconciliation_runs (run_id, company_id, crm_type, range_start, range_end, "
            "started_at, "
            "finished_at) VALUES (:r, :c, :crm, :a, :b, :s, :s) RETURNING id"
        ),
        {"r": run_id, "c": company_id, "crm": crm, "a": D1, "b": D2 + timedelta(days=1), "s": started},
    ).scalar_one()
    for cls, check_in_id, detail in findings:
        conn.execute(
            sa.text(
                "INSERT INTO crm_sync.discrepancies (reconciliation_id, company_id, crm_type, check_in_id, "
                "crm_id, class, "
                "detail) VALUES (:r, :c, :crm, :ci, :crm_id, :cls, :d)"
            ),
            {
                "r": rid,
                "c": company_id,
                "crm": crm,
                "ci": check_in_id,
                "crm_id": f"V{check_in_id}" if check_in_id else None,
                "cls": cls,
                "d": detail,
            },
        )
    return rid


@pytest.fixture
def scenario(db):
    """Company A (hostile name) on HubSpot with every kind of row; company B on Salesforce, all synced."""
    a, tech_a = create_company(db, HOSTILE_COMPANY, None)
    b, tech_b = create_company(db, "Bravo Plumbing", None)
    d1 = [datetime(2026, 11, 20, 8) + timedelta(minutes=10 * i) for i in range(10)]
    d2 = [datetime(2026, 11, 21, 9) + timedelta(minutes=10 * i) for i in range(5)]
    ids_a = _check_ins(db, a, tech_a, d1 + d2, names={0: HOSTILE_CUSTOMER})
    created = dict(zip(ids_a, d1 + d2, strict=True))
    ids_b = _check_ins(db, b, tech_b, [datetime(2026, 11, 20, 12), datetime(2026, 11, 21, 12)])
    s = {"a": a, "b": b, "ids_a": ids_a, "ids_b": ids_b}
    with db.begin() as conn:
        # Day 1: 7 synced, 2 quarantined (two reasons), 1 failed.
        for cid, lat in zip(ids_a[:7], LATENCIES_D1, strict=True):
            _ledger(conn, a, "hubspot", cid, "synced", created=created[cid], latency=lat)
        _ledger(
            conn,
            a,
            "hubspot",
            ids_a[7],
            "quarantined",
            kind="no_match",
            error="no existing customer in the CRM matches email:x@example.com and createNewCustomers is off",
        )
        _ledger(conn, a, "hubspot", ids_a[8], "quarantined", kind="crm_rejected", error="Property email is invalid")
        _ledger(conn, a, "hubspot", ids_a[9], "failed", kind="transient", error="HTTP 503 after 5 attempts")
        # Day 2: 2 synced, 1 pending, 1 passed over (no ledger row, at the horizon), 1 not reached yet.
        for cid, lat in zip(ids_a[10:12], LATENCIES_D2, strict=True):
            _ledger(conn, a, "hubspot", cid, "synced", created=created[cid], latency=lat)
        _ledger(conn, a, "hubspot", ids_a[12], "pending")
        conn.execute(
            sa.text(
                "INSERT INTO crm_sync.integration_state (company_id, crm_type, settled_id) VALUES (:c, 'hubspot', :s)"
            ),
            {"c": a, "s": ids_a[13]},
        )
        for cid, at in zip(ids_b, [datetime(2026, 11, 20, 12), datetime(2026, 11, 21, 12)], strict=True):
            _ledger(conn, b, "salesforce", cid, "synced", created=at, latency=45)
        _run(
            conn,
            a,
            "hubspot",
            datetime(2026, 11, 20, 9),
            api_calls=5,
            rate_limited=1,
            retries=2,
            customers_found=3,
            customers_created=4,
        )
        _run(conn, a, "hubspot", datetime(2026, 11, 20, 23, 45), api_calls=7, retries=1, customers_found=1)
        _run(conn, a, "hubspot", datetime(2026, 11, 21, 10), api_calls=2, customers_created=1)
        _run(conn, b, "salesforce", datetime(2026, 11, 21, 12, 5), api_calls=3, customers_created=2)
        # An older reconciliation (must not show) and the latest, of this run.
        _reconciliation(
            conn,
            a,
            "hubspot",
            "old_run",
            datetime(2026, 11, 21, 1),
            [("missing_in_crm", ids_a[1], "OLD finding that must not show")],
        )
        s["recon_a"] = _reconciliation(
            conn,
            a,
            "hubspot",
            "this_run",
            datetime(2026, 11, 22, 5),
            [
                ("missing_in_crm", ids_a[0], "HubSpot has no note V1 any more <b>bold</b>"),
                ("missing_in_crm", ids_a[2], "HubSpot has no note"),
                ("stale", ids_a[3], "check-in changed after its last sync"),
                ("quarantined", ids_a[7], "no existing customer in the CRM matches email:x@example.com"),
                ("duplicate", None, '=HYPERLINK("http://evil") two customers share phone +15125550101'),
            ],
        )
        _reconciliation(conn, b, "salesforce", "this_run", datetime(2026, 11, 22, 5), [])
    return s


def metrics(engine) -> dict[tuple, Decimal]:
    with engine.connect() as conn:
        return {
            (r.day, r.company_id, r.crm_type, r.metric, r.dimension): r.value
            for r in conn.execute(
                sa.text("SELECT day, company_id, crm_type, metric, dimension, value FROM crm_sync.quality_daily")
            )
        }


def test_metrics_are_exact_per_company_crm_and_day(db, scenario):
    a, b = scenario["a"], scenario["b"]
    written = compute_quality_metrics(db, day_from=D1, day_to=D2)
    m = metrics(db)
    assert written == len(m)

    def v(day, metric, dim="", company=a, crm="hubspot"):
        return m.get((day, company, crm, metric, dim))

    assert v(D1, "eligible") == 10 and v(D1, "synced") == 7
    assert v(D1, "success_rate") == Decimal("0.700000")
    assert v(D1, "quarantined") == 2 and v(D1, "quarantined", "no_match") == 1
    assert v(D1, "quarantined", "crm_rejected") == 1
    assert v(D1, "failed") == 1 and v(D1, "unfinished") == 0 and v(D1, "never_sent") == 0
    assert float(v(D1, "latency_p50_s")) == pytest.approx(percentile(LATENCIES_D1, 0.5)) == 240
    assert float(v(D1, "latency_p95_s")) == pytest.approx(percentile(LATENCIES_D1, 0.95)) == pytest.approx(402)
    # Day 2: the check-in above the settled horizon with no ledger row is not eligible (not reached yet);
    # the one at the horizon is (never_sent).
    assert v(D2, "eligible") == 4 and v(D2, "synced") == 2 and v(D2, "success_rate") == Decimal("0.500000")
    assert v(D2, "unfinished") == 1 and v(D2, "never_sent") == 1 and v(D2, "quarantined") == 0
    assert v(D2, "quarantined", "no_match") is None
    assert float(v(D2, "latency_p50_s")) == pytest.approx(60)
    assert float(v(D2, "latency_p95_s")) == pytest.approx(percentile(LATENCIES_D2, 0.95))
    # Runs by their UTC start day.
    assert v(D1, "runs") == 2 and v(D1, "api_calls") == 12 and v(D1, "rate_limited") == 1 and v(D1, "retries") == 3
    assert v(D1, "customers_matched") == 4 and v(D1, "customers_created") == 4
    assert v(D2, "runs") == 1 and v(D2, "api_calls") == 2 and v(D2, "customers_created") == 1
    assert v(D1, "success_rate", company=b, crm="salesforce") == 1
    assert v(D2, "api_calls", company=b, crm="salesforce") == 3
    assert {k[3] for k in m} <= set(report_mod.NUMERIC) | {"success_rate", "latency_p50_s", "latency_p95_s"}


def test_recomputation_is_idempotent_and_follows_the_ledger(db, scenario):
    a = scenario["a"]
    first = compute_quality_metrics(db, day_from=D1, day_to=D2)
    before = metrics(db)
    assert compute_quality_metrics(db, day_from=D1, day_to=D2) == first
    assert metrics(db) == before
    # The no_match row is fixed and synced: its reason disappears, the rate goes up.
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE crm_sync.ledger SET status = 'synced', error_kind = NULL, "
                "synced_at = now() WHERE company_id = :c AND check_in_id = :i"
            ),
            {"c": a, "i": scenario["ids_a"][7]},
        )
    compute_quality_metrics(db, day_from=D1, day_to=D2)
    after = metrics(db)
    assert (D1, a, "hubspot", "quarantined", "no_match") not in after
    assert after[(D1, a, "hubspot", "success_rate", "")] == Decimal("0.800000")
    assert after[(D1, a, "hubspot", "quarantined", "")] == 1


def test_filters_and_day_range_leave_other_rows_alone(db, scenario):
    a, b = scenario["a"], scenario["b"]
    compute_quality_metrics(db, day_from=D1, day_to=D2)
    everything = metrics(db)
    # Recompute only company B's Salesforce day 2: nothing else may change or vanish.
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE crm_sync.ledger SET status = 'failed' WHERE company_id = :c"), {"c": b})
    written = compute_quality_metrics(db, day_from=D2, day_to=D2, company_ids=[b], crm_types=["salesforce"])
    after = metrics(db)
    changed = {k for k in after if after[k] != everything.get(k)} | (everything.keys() - after.keys())
    assert written > 0 and changed and all(k[0] == D2 and k[1] == b for k in changed)
    assert after[(D1, b, "salesforce", "success_rate", "")] == 1  # day 1 untouched
    assert after[(D2, b, "salesforce", "success_rate", "")] == 0
    assert all(after[k] == everything[k] for k in everything if k[1] == a)
    with pytest.raises(ValueError, match="before"):
        compute_quality_metrics(db, day_from=D2, day_to=D1)
    with pytest.raises(TypeError):
        metric_params(datetime(2026, 1, 1), date(2026, 1, 2))


def test_report_html_and_csv(db, scenario, tmp_path):
    a = scenario["a"]
    compute_quality_metrics(db, day_from=D1 - timedelta(days=29), day_to=D2)
    out = build_report(db, run_id="this_run", output_dir=tmp_path / "r", day_from=D1, day_to=D2)
    page = Path(out["html"]).read_text(encoding="utf-8")
    head = out["headline"]
    # A: 9 of 14 eligible synced; B: 2 of 2.
    assert (head["eligible"], head["synced"], head["quarantined"], head["failed"]) == (16, 11, 2, 1)
    assert head["success_rate"] == round(11 / 16, 4)
    assert head["missing_in_crm"] == 2 and head["discrepancies"] == 5
    assert (head["red"], head["green"], head["status"]) == (1, 1, "red")
    json.dumps(out)  # an XCom
    assert f'id="headline-success-rate">{11 / 16:.1%}<' in page
    assert f"{9 / 14:.1%}" in page  # company A x HubSpot
    assert "success rate 64.3% &lt; 98.0%" in page and "2 missing_in_crm" in page
    assert "1 eligible check-in(s) with no ledger row" in page
    assert "no_match&nbsp;1<" in page and "crm_rejected&nbsp;1<" in page  # A x HubSpot's quarantines by kind
    # ... each with its plain-language label, and every kind explained under Definitions
    assert 'title="refused by the CRM">crm_rejected&nbsp;1<' in page
    assert "<code>crm_state</code></dt><dd>waiting for the customer&#39;s CRM record: nothing: retried" in page
    # Latency of A x HubSpot over both days, formatted.
    assert format_seconds(percentile(LATENCIES_D1 + LATENCIES_D2, 0.5)) in page
    # Hostile values are escaped everywhere; the old reconciliation is not shown.
    assert HOSTILE_CUSTOMER not in page and "<img src=x" not in page and "<b>bold</b>" not in page
    assert str(escape(HOSTILE_CUSTOMER)) in page and str(escape(HOSTILE_COMPANY)) in page
    assert "OLD finding" not in page
    assert page.count("<script") == 1  # the report's own script only
    # Quarantine reasons with example ids.
    assert "Property email is invalid" in page and str(scenario["ids_a"][8]) in page
    # Charts are inline SVG, no external resource anywhere.
    assert page.count("<svg") == 2 and "<polyline" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace("http://evil", "")
    assert "https://" not in page
    # CSV: one row per discrepancy of the latest reconciliations; formulas defused.
    with open(out["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with db.connect() as conn:
        expected = conn.execute(
            sa.text(
                "SELECT count(*) FROM crm_sync.discrepancies d JOIN crm_sync.reconciliation_runs r "
                "ON r.id = d.reconciliation_id WHERE r.run_id = 'this_run'"
            )
        ).scalar_one()
    assert len(rows) == out["csv_rows"] == expected == 5
    assert {r["customer_name"] for r in rows if r["check_in_id"] == str(scenario["ids_a"][0])} == {HOSTILE_CUSTOMER}
    assert next(r["detail"] for r in rows if r["class"] == "duplicate").startswith("'=HYPERLINK")
    with open(out["metrics_csv"], newline="", encoding="utf-8") as fh:
        metric_rows = list(csv.DictReader(fh))
    with db.connect() as conn:
        in_range = conn.execute(
            sa.text("SELECT count(*) FROM crm_sync.quality_daily WHERE day BETWEEN :a AND :b"), {"a": D1, "b": D2}
        ).scalar_one()
    assert len(metric_rows) == out["metrics_rows"] == in_range
    assert any(
        r["company_id"] == str(a) and r["metric"] == "success_rate" and r["value"] == "0.700000" for r in metric_rows
    )


def test_report_caps_table_rows_but_counts_everything(db, scenario, tmp_path):
    with db.begin() as conn:
        for i in range(7):
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.discrepancies (reconciliation_id, company_id, crm_type, check_in_id, class, "
                    "detail) VALUES (:r, :c, 'hubspot', :ci, 'stale', 'changed')"
                ),
                {"r": scenario["recon_a"], "c": scenario["a"], "ci": 900000 + i},
            )
    compute_quality_metrics(db, day_from=D1, day_to=D2)
    out = build_report(db, run_id="this_run", output_dir=tmp_path, day_from=D1, day_to=D2, rows_per_class=3)
    page = Path(out["html"]).read_text(encoding="utf-8")
    assert out["csv_rows"] == 12
    assert page.count('data-class="stale"') == 3 and page.count('data-class="missing_in_crm"') == 2
    assert "(first 3 shown)" in page


def test_report_without_any_data(db, tmp_path):
    out = build_report(db, run_id="r", output_dir=tmp_path, day_from=D1, day_to=D2)
    page = Path(out["html"]).read_text(encoding="utf-8")
    assert out["headline"]["integrations"] == 0 and out["csv_rows"] == 0
    assert "No sync-quality metrics for these days" in page and "no data in these days" in page


# ---------------------------------------------------------------------- pure functions
def test_assess_rules():
    good = {"eligible": 100, "synced": 99, "discrepancies": {}, "reconciled": True, "reconciliation": {}}
    assert assess(good) == Health("green", [])
    low = assess({**good, "synced": 90})
    assert low.status == "red" and low.reasons == ["success rate 90.0% < 98.0% (90 of 100 eligible check-ins synced)"]
    assert assess({**good, "discrepancies": {"missing_in_crm": 1}}).status == "red"
    assert assess({**good, "discrepancies": {"duplicate": 2}}).status == "red"
    assert assess({**good, "never_sent": 1}).status == "red"
    assert assess({**good, "discrepancies": {"stale": 3}}).reasons == [
        "3 stale: changed in the app since their last sync"
    ]
    assert assess({**good, "failed": 1}).status == "amber"
    assert assess({**good, "rate_limited": 4}).status == "amber"
    assert assess({**good, "latency_p95_s": 7200}).reasons == ["p95 latency 2.0 h > 60.0 min"]
    assert assess({**good, "latency_p95_s": 7200}, max_p95_latency_s=None).status == "green"
    assert assess({**good, "reconciled": False}).reasons == ["not reconciled against the CRM yet"]
    assert assess({**good, "reconciliation": {"error": "CRM records not read back"}}).status == "amber"
    assert assess({**good, "synced": 97}, min_success_rate=0.95).status == "green"
    assert assess({"eligible": 0, "synced": 0, "reconciled": True}).status == "green"
    assert worst(["green", "red", "amber"]) == "red" and worst([]) == "green"


def test_csv_safe_and_format():
    assert csv_safe("=1+1") == "'=1+1" and csv_safe("@SUM(A1)") == "'@SUM(A1)" and csv_safe("-2") == "'-2"
    assert csv_safe("plain") == "plain" and csv_safe(-2) == -2 and csv_safe(None) is None
    assert [format_seconds(v) for v in (42, 300, 7200, 172800, None)] == ["42 s", "5.0 min", "2.0 h", "2.0 d", ""]


def test_line_chart_escapes_and_leaves_gaps():
    days = [D1, D2, D2 + timedelta(days=1)]
    svg = line_chart("<t>", days, {"<crm>": {D1: 0.5, D2: None, days[2]: 1.0}}, y_format=str, y_min=0, y_max=1)
    assert "<t>" not in svg and "&lt;t&gt;" in svg and "&lt;crm&gt;" in svg
    assert svg.count("<polyline") == 2  # the gap splits the line
    assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_quarantine_reasons_group_by_reason_not_by_customer(db, scenario, tmp_path):
    b = scenario["b"]
    with db.connect() as conn:
        tech = conn.execute(sa.text("SELECT id FROM technicians WHERE company_id = :c"), {"c": b}).scalar_one()
    at = datetime(2026, 11, 20, 15)
    new = _check_ins(db, b, tech, [at] * 3)[-3:]
    with db.begin() as conn:
        for cid, keys in zip(
            new[:2],
            ["email:ann@example.com, phone:+15125550123", "email:bob.o'neil@example.com, phone:+15125550999"],
            strict=True,
        ):
            _ledger(
                conn,
                b,
                "salesforce",
                cid,
                "quarantined",
                kind="no_match",
                error=f"no existing customer in the CRM matches {keys} and createNewCustomers is off",
            )
        _ledger(conn, b, "salesforce", new[2], "quarantined", kind="", error="")
    compute_quality_metrics(db, day_from=D1, day_to=D2)
    m = metrics(db)
    assert m[(D1, b, "salesforce", "quarantined", "")] == 3
    assert m[(D1, b, "salesforce", "quarantined", "no_match")] == 2
    assert m[(D1, b, "salesforce", "quarantined", "unknown")] == 1
    out = build_report(db, run_id="this_run", output_dir=tmp_path, day_from=D1, day_to=D2)
    page = Path(out["html"]).read_text(encoding="utf-8")
    # One row for both customers: the match keys are blanked.
    assert (
        '<td>salesforce</td><td>no_match</td><td class="detail">no existing customer in the CRM matches '
        'email:..., phone:... and createNewCustomers is off</td><td class="n">2</td>'
    ) in page
    assert "ann@example.com" not in page and "+15125550999" not in page
    assert f"{new[1]}, {new[0]}</td>" in page  # newest example first
    assert "<td>salesforce</td><td>unknown</td>" in page


def test_synced_check_ins_with_warnings_are_counted_by_field(db, scenario, tmp_path):
    """The report's "Synced with a warning, by field": one row per CRM x field, a check-in counted once per
    field, the fields named as crm_sync.row_warnings names them (the words matched in SQL, in order)."""
    from crm_sync.row_warnings import warning_field

    b = scenario["b"]
    with db.connect() as conn:
        tech = conn.execute(sa.text("SELECT id FROM technicians WHERE company_id = :c"), {"c": b}).scalar_one()
    new = _check_ins(db, b, tech, [datetime(2026, 11, 20, 15)] * 3)[-3:]
    warnings = {
        new[0]: ["customer_phone '512-555-0100 ext 12': the extension '12' is moved to the visit note"],
        new[1]: [
            "customer_phone '5550123' is not a valid phone number (no area code): dropped",
            "FieldEdge refused lastName (lastName is required): sent again without it",
            "customer_phone '555 0199' is not a valid phone number (no area code): dropped",
        ],
        new[2]: [],
    }
    with db.begin() as conn:
        for cid, items in warnings.items():
            _ledger(conn, b, "fieldedge", cid, "synced", created=datetime(2026, 11, 20, 15), latency=5)
            conn.execute(
                sa.text("UPDATE crm_sync.ledger SET warnings = CAST(:w AS jsonb) WHERE check_in_id = :id"),
                {"w": json.dumps(items), "id": cid},
            )
    out = build_report(db, run_id="warned", output_dir=tmp_path, day_from=D1, day_to=D2)
    page = Path(out["html"]).read_text(encoding="utf-8")
    section = page[page.index('id="warning-table"') : page.index('id="quarantine"')]
    expected = Counter(warning_field(w) for items in warnings.values() for w in set(items))
    expected["phone"] = 1  # two phone warnings of one check-in: counted once
    assert expected == Counter({"phone extension": 1, "phone": 1, "retried without a field": 1})
    for field, n in expected.items():
        assert f'<td>fieldedge</td><td>{field}</td><td class="n">{n}</td>' in section, field
    assert "512-555-0100" not in section  # grouped by field: no customer data in the table
