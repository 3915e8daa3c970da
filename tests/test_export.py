"""crm_export: parameters (unit), a chunked export against PostgreSQL, and the DAG run by `airflow dags test`."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import date, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from crm_sync.csv_escape import csv_safe
from crm_sync.export import (
    COLUMNS,
    ExportError,
    default_export_root,
    export_folder_name,
    read_csv,
    resolve_params,
    run_date_of,
    run_export,
)
from crm_sync.paths import PathRefused
from e2e_helpers import HS_TOKEN, run_dag
from localdev.bulk_data import seed_check_ins
from localdev.demo_data import create_company, hubspot_integration

NAMES = [name for name, _ in COLUMNS]


# ---------------------------------------------------------------------------------------------- unit
def test_empty_dates_mean_the_day_before_the_run():
    p = resolve_params({}, run_date=date(2026, 3, 10))
    assert (p.date_from, p.date_to) == (date(2026, 3, 9), date(2026, 3, 9))
    assert p.formats == ("csv", "parquet") and p.crm_types == () and p.company_ids == ()
    p = resolve_params({"date_from": "2026-03-01", "date_to": ""}, run_date=date(2026, 3, 10))
    assert (p.date_from, p.date_to) == (date(2026, 3, 1), date(2026, 3, 9))
    q = p.query_params()
    assert q["created_from"] == datetime(2026, 3, 1) and q["created_to"] == datetime(2026, 3, 10)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"date_from": "2026-03-05", "date_to": "2026-03-01"}, "date_from 2026-03-05 is after date_to 2026-03-01"),
        ({"date_from": "03/05/2026"}, "date_from must be a date like 2026-03-31, got '03/05/2026'"),
        ({"date_to": "2026-02-30"}, "date_to must be a date"),
        ({"formats": ["xlsx"]}, "formats ['xlsx'] not supported"),
        ({"crm_types": ["zoho"]}, "crm_types ['zoho'] unknown"),
        ({"company_ids": ["7"]}, "company_ids must be a list of integers"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(raw, message):
    with pytest.raises(ExportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_params(raw, run_date=date(2026, 3, 10))


def test_output_folder_and_run_date():
    # output_dir is a folder inside the export root (crm_sync.paths); one leading out of it is refused.
    assert str(default_export_root(" x/y ", {"CRM_SYNC_EXPORT_DIR": "/e"})) == "/e/x/y"
    assert str(default_export_root(None, {"CRM_SYNC_EXPORT_DIR": "/e", "AIRFLOW_HOME": "/h"})) == "/e"
    assert str(default_export_root("", {"AIRFLOW_HOME": "/h"})) == "/h/crm_exports"
    with pytest.raises(PathRefused, match="output_dir '/x/y' is outside the export folder /e"):
        default_export_root(" /x/y ", {"CRM_SYNC_EXPORT_DIR": "/e"})
    p = resolve_params({"date_from": "2026-03-01", "date_to": "2026-03-02"}, run_date=date(2026, 3, 10))
    assert (
        export_folder_name(p, "manual__2026-03-10T10:00:00+00:00")
        == "check_ins_20260301_20260302_manual__2026-03-10T10_00_00_00_00"
    )
    assert run_date_of({"logical_date": None, "data_interval_end": datetime(2026, 3, 10, 0, 0)}) == date(2026, 3, 10)


def test_dag_shape():
    import runpy

    from conftest import ROOT

    dag = runpy.run_path(str(ROOT / "dags" / "crm_export.py"))["dag"]
    # Daily, but off until someone unpauses it; a manual trigger always works.
    assert dag.is_paused_upon_creation is True and not dag.catchup
    assert dag.schedule == "@daily" and dag.timetable.expression == "0 0 * * *"
    assert list(dag.task_dict) == ["export_check_ins"]
    assert dag.params.get_param("chunk_size").value == 20_000


# ---------------------------------------------------------------------------------------------- on PostgreSQL
def test_bulk_seed_spreads_realistic_rows_over_the_range(db):
    cid, tid = create_company(db, "Bulk Co", None)
    assert seed_check_ins(db, cid, tid, 25_000, start=datetime(2026, 5, 1), days=5) == 25_000
    with db.connect() as conn:
        n, first, last, days, emails, names, long_notes = conn.execute(
            sa.text(
                "SELECT count(*), min(created_at), max(created_at), count(DISTINCT created_at::date), "
                "count(DISTINCT customer_email), count(customer_name), max(length(notes)) "
                "FROM check_ins WHERE company_id = :c"
            ),
            {"c": cid},
        ).one()
    assert n == 25_000 and first == datetime(2026, 5, 1) and last < datetime(2026, 5, 6) and days == 5
    assert 5_000 < emails < 25_000 and names < n  # returning customers, and rows without a name
    assert long_notes == 4000  # the demo's 75 KB notes, cut for benchmarks
    with db.connect() as conn:
        again = (
            conn.execute(
                sa.text("SELECT customer_email FROM check_ins WHERE company_id = :c ORDER BY id LIMIT 50"), {"c": cid}
            )
            .scalars()
            .all()
        )
    cid2, tid2 = create_company(db, "Bulk Co", None)
    seed_check_ins(db, cid2, tid2, 50, start=datetime(2026, 5, 1), days=5)
    with db.connect() as conn:
        first50 = (
            conn.execute(sa.text("SELECT customer_email FROM check_ins WHERE company_id = :c ORDER BY id"), {"c": cid2})
            .scalars()
            .all()
        )
    # Deterministic per (seed, company): same generator, other company id -> other customers.
    assert len(first50) == 50 and first50 != again


def seed(db) -> dict[str, int]:
    """Two companies, check-ins over ten days, and ledger rows of two CRMs for some of them."""
    cid, tid = create_company(db, "Export Co", {"hubspot": hubspot_integration("http://127.0.0.1:1", HS_TOKEN)})
    other, other_tid = create_company(db, "Other Co", None)
    seed_check_ins(db, cid, tid, 120, start=datetime(2026, 3, 1), days=10)
    seed_check_ins(db, other, other_tid, 30, start=datetime(2026, 3, 1), days=10)
    with db.begin() as conn:
        ids = (
            conn.execute(sa.text("SELECT id FROM check_ins WHERE company_id = :c ORDER BY id"), {"c": cid})
            .scalars()
            .all()
        )
        for n, check_in_id in enumerate(ids[::3]):
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, crm_customer_id, "
                    "crm_visit_id, "
                    "attempts, synced_at) VALUES (:c, 'hubspot', :i, 'synced', :cust, :visit, 1, "
                    "'2026-03-11 10:00:00.123456+00')"
                ),
                {"c": cid, "i": check_in_id, "cust": f"C{n}", "visit": f"V{n}"},
            )
        for check_in_id in ids[::5]:
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, error_kind, last_error, "
                    "attempts) VALUES (:c, 'salesforce', :i, 'quarantined', 'no_match', 'customer not found in CRM', 2)"
                ),
                {"c": cid, "i": check_in_id},
            )
    return {"company": cid, "other": other}


def expected(db, company_ids, date_from, date_to, crm_types=()):
    """What the export must hold, computed independently of the export's SQL."""
    with db.connect() as conn:
        check_ins = conn.execute(
            sa.text(
                "SELECT id, customer_name, customer_email, created_at FROM check_ins "
                "WHERE company_id = ANY(:c) AND created_at >= :f AND created_at < :t ORDER BY id"
            ),
            {"c": company_ids, "f": date_from, "t": date_to},
        ).all()
        ledger = conn.execute(sa.text("SELECT check_in_id, crm_type, status, crm_visit_id FROM crm_sync.ledger")).all()
    by_id: dict[int, list] = {}
    for row in ledger:
        by_id.setdefault(row.check_in_id, []).append(row)
    rows = []
    for ci in check_ins:
        entries = sorted(by_id.get(ci.id, []), key=lambda r: r.crm_type)
        if crm_types:
            for crm in sorted(crm_types):
                hit = [e for e in entries if e.crm_type == crm]
                rows.append(
                    (
                        ci.id,
                        crm,
                        hit[0].status if hit else "not_sent",
                        hit[0].crm_visit_id if hit else None,
                        ci.customer_name,
                    )
                )
        elif entries:
            rows += [(ci.id, e.crm_type, e.status, e.crm_visit_id, ci.customer_name) for e in entries]
        else:
            rows.append((ci.id, None, "not_synced", None, ci.customer_name))
    return rows


def as_tuples(df: pd.DataFrame) -> list[tuple]:
    cols = df[["check_in_id", "crm_type", "sync_status", "crm_visit_id", "customer_name"]].astype(object)
    return [tuple(None if pd.isna(v) else v for v in row) for row in cols.itertuples(index=False)]


def test_chunked_export_round_trips(db, tmp_path):
    ids = seed(db)
    raw_params = {"company_ids": [ids["company"]], "date_from": "2026-03-03", "date_to": "2026-03-06", "chunk_size": 7}
    params = resolve_params(raw_params, run_date=date(2026, 3, 20))
    manifest = run_export(db, params, tmp_path, run_id="manual__t1")
    folder = tmp_path / manifest["export"]
    assert sorted(p.name for p in folder.iterdir()) == ["check_ins.csv", "check_ins.parquet", "manifest.json"]
    assert not list(tmp_path.glob("*.partial"))
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["row_count"] == manifest["row_count"]

    want = expected(db, [ids["company"]], datetime(2026, 3, 3), datetime(2026, 3, 7))
    assert len(want) > 40 and on_disk["row_count"] == len(want)
    assert on_disk["check_in_count"] == len({r[0] for r in want})
    assert on_disk["rows_by_company"] == {str(ids["company"]): len(want)}
    assert sum(on_disk["rows_by_sync_status"].values()) == len(want)
    assert on_disk["columns"][0] == {"name": "check_in_id", "type": "int64"}
    assert [c["name"] for c in on_disk["columns"]] == NAMES
    assert on_disk["parameters"]["date_to"] == "2026-03-06" and on_disk["parameters"]["chunk_size"] == 7

    for f in on_disk["files"]:
        data = (folder / f["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    # Chunked: one Parquet row group per chunk of 7 rows.
    meta = pq.ParquetFile(folder / "check_ins.parquet").metadata
    assert meta.num_row_groups == on_disk["chunks"] == -(-len(want) // 7)
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) == 7

    csv_df = read_csv(folder / "check_ins.csv")
    parquet_df = pd.read_parquet(folder / "check_ins.parquet").astype(csv_df.dtypes.to_dict())
    assert list(csv_df.columns) == list(parquet_df.columns) == NAMES
    # The CSV is the Parquet data with formula-like text cells escaped (here: phones such as "+1 512 ...").
    text = [name for name in NAMES if csv_df[name].dtype == "string"]
    escaped = parquet_df.assign(**{name: parquet_df[name].map(csv_safe).astype("string") for name in text})
    assert (escaped["customer_phone"] != parquet_df["customer_phone"]).any()
    pd.testing.assert_frame_equal(csv_df, escaped)
    assert as_tuples(csv_df) == want
    # Escaping off (for programs): the CSV is the Parquet data exactly; the manifest's checksums still hold.
    plain = run_export(
        db,
        resolve_params({**raw_params, "csv_escape_formulas": False}, run_date=date(2026, 3, 20)),
        tmp_path,
        run_id="manual__t1_plain",
    )
    plain_folder = tmp_path / plain["export"]
    pd.testing.assert_frame_equal(read_csv(plain_folder / "check_ins.csv"), parquet_df)
    for f in plain["files"]:
        assert hashlib.sha256((plain_folder / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    # A timestamptz from the ledger arrives as naive UTC with its microseconds.
    assert csv_df["synced_at"].dropna().iloc[0] == pd.Timestamp("2026-03-11 10:00:00.123456")
    # Nothing of crm_integrations (the HubSpot token) is in any file.
    for path in folder.iterdir():
        assert HS_TOKEN.encode() not in path.read_bytes()


def test_crm_filter_gives_one_row_per_requested_crm(db, tmp_path):
    ids = seed(db)
    params = resolve_params(
        {
            "date_from": "2026-03-01",
            "date_to": "2026-03-10",
            "crm_types": ["salesforce"],
            "formats": ["parquet"],
            "chunk_size": 50,
        },
        run_date=date(2026, 3, 20),
    )
    manifest = run_export(db, params, tmp_path, run_id="r2")
    folder = tmp_path / manifest["export"]
    assert [f["name"] for f in manifest["files"]] == ["check_ins.parquet"]
    df = pd.read_parquet(folder / "check_ins.parquet")
    want = expected(db, [ids["company"], ids["other"]], datetime(2026, 3, 1), datetime(2026, 3, 11), ["salesforce"])
    assert as_tuples(df) == want and len(want) == 150
    assert set(manifest["rows_by_sync_status"]) == {"quarantined", "not_sent"}
    assert manifest["rows_by_company"] == {str(ids["company"]): 120, str(ids["other"]): 30}


def test_empty_range_writes_headers_only(db, tmp_path):
    seed(db)
    params = resolve_params({"date_from": "2027-01-01", "date_to": "2027-01-02"}, run_date=date(2027, 2, 1))
    manifest = run_export(db, params, tmp_path, run_id="r3")
    folder = tmp_path / manifest["export"]
    assert manifest["row_count"] == 0 and manifest["chunks"] == 0
    assert read_csv(folder / "check_ins.csv").empty
    assert list(pd.read_parquet(folder / "check_ins.parquet").columns) == NAMES


# ---------------------------------------------------------------------------------------------- the DAG
@pytest.mark.e2e
def test_export_dag_run(db, db_url, airflow_home, tmp_path):
    ids = seed(db)
    out_dir = tmp_path / "exports"  # a folder inside the export root, named relative to it
    conf = {
        "company_ids": [ids["company"]],
        "date_from": "2026-03-02",
        "date_to": "2026-03-04",
        "output_dir": "exports",
        "chunk_size": 10,
    }
    code, out = run_dag(
        airflow_home, db_url, tmp_path, dag_id="crm_export", conf=conf, extra_env={"CRM_SYNC_EXPORT_DIR": str(tmp_path)}
    )
    assert code == 0, out[-3000:]
    folders = list(out_dir.iterdir())
    assert len(folders) == 1
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    want = expected(db, [ids["company"]], datetime(2026, 3, 2), datetime(2026, 3, 5))
    assert manifest["row_count"] == len(want) > 0
    assert as_tuples(read_csv(folders[0] / "check_ins.csv")) == want
    assert manifest["parameters"]["company_ids"] == [ids["company"]]
    assert HS_TOKEN not in out
    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        xcoms = [
            v
            for (v,) in meta.execute(
                "SELECT value FROM xcom WHERE dag_id = 'crm_export' AND task_id = 'export_check_ins'"
            )
        ]
    summary = json.loads(xcoms[-1])
    assert summary["row_count"] == len(want) and summary["folder"] == str(folders[0])
    assert summary["files"][0]["sha256"] == manifest["files"][0]["sha256"]
    assert "customer_name" not in json.dumps(summary)  # counts and paths only, no row data
