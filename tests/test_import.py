"""crm_import: validation (unit), imports into PostgreSQL, and the DAG followed by an incremental sync."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_sync.check_in_import import (
    ImportFileError,
    Technicians,
    parse_checked_in_at,
    resolve_header,
    run_import,
    validate_row,
)
from e2e_helpers import HS_TOKEN, ledger, records, register, run_dag
from localdev.demo_data import create_company, hubspot_integration

NOW = datetime(2026, 11, 25, 12, 0)
HEADER = [
    "external_id",
    "checked_in_at",
    "job_type",
    "technician_email",
    "customer_name",
    "customer_email",
    "customer_phone",
    "address",
    "city",
    "state",
    "zip",
    "notes",
    "follow_up_required",
    "photos",
]


def good(n: int, **changes) -> dict[str, str]:
    row = {
        "external_id": f"OLD-{n}",
        "checked_in_at": f"2026-03-{1 + n % 28:02d} 14:{n % 60:02d}",
        "job_type": "AC Repair",
        "technician_email": "alex@example.com",
        "customer_name": f"Pat Customer{n}",
        "customer_email": f"Pat.C{n}@Example.com",
        "customer_phone": "(512) 555-01" + f"{n % 100:02d}",
        "address": f"{100 + n} Oak St",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "notes": f'Imported visit {n}.\nSecond line, with "quotes".',
        "follow_up_required": "no",
        "photos": f"https://cdn.example.com/{n}.jpg | https://cdn.example.com/{n}b.jpg",
    }
    row.update(changes)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rejects_of(report) -> list[dict[str, str]]:
    with open(report.rejects_file, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------- unit
@pytest.mark.parametrize(
    "text, want",
    [
        ("2026-03-01", datetime(2026, 3, 1)),
        ("2026-03-01 14:30", datetime(2026, 3, 1, 14, 30)),
        ("2026-03-01T14:30:00-06:00", datetime(2026, 3, 1, 20, 30)),
        ("2026-03-01T14:30:00Z", datetime(2026, 3, 1, 14, 30)),
        ("03/01/2026", datetime(2026, 3, 1)),
        ("3/1/2026 2:30 PM", datetime(2026, 3, 1, 14, 30)),
        ("3/1/2026 12:05 am", datetime(2026, 3, 1, 0, 5)),
    ],
)
def test_checked_in_at_formats(text, want):
    assert parse_checked_in_at(text, now=NOW) == (want, None)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("2026-02-30", "not a valid date/time"),
        ("13/01/2026", "not a valid date/time"),
        ("yesterday", "not a valid"),
        ("2027-01-01", "in the future"),
        ("1970-01-01", "before 1990-01-01"),
        ("3/1/2026 13:00 PM", "hour 13 with PM"),
    ],
)
def test_bad_checked_in_at(text, reason):
    value, why = parse_checked_in_at(text, now=NOW)
    assert value is None and reason in why


def test_header_problems_are_named():
    assert resolve_header([" External ID", "Checked-In At", "JOB_TYPE", "technician_name"]) == [
        "external_id",
        "checked_in_at",
        "job_type",
        "technician_name",
    ]
    with pytest.raises(ImportFileError) as err:
        resolve_header(["external_id", "job_type", "job_type", "colour"])
    text = str(err.value)
    assert "unknown columns 'colour'" in text and "columns given twice: job_type" in text
    assert "required columns missing: checked_in_at" in text
    assert "a technician_email or technician_name column is required" in text


TECHS = Technicians.from_rows(
    [
        type("T", (), {"id": 1, "name": "Alex Tech", "email": "alex@example.com", "active": True}),
        type("T", (), {"id": 2, "name": "Sam  Smith", "email": "sam1@example.com", "active": True}),
        type("T", (), {"id": 3, "name": "sam smith", "email": "sam2@example.com", "active": False}),
        type("T", (), {"id": 4, "name": "Dee One", "email": "dee@example.com", "active": True}),
        type("T", (), {"id": 5, "name": "Dee Two", "email": " DEE@example.com", "active": True}),
    ]
)


@pytest.mark.parametrize(
    "changes, column, reason",
    [
        ({"checked_in_at": ""}, "checked_in_at", "required, but empty"),
        ({"job_type": "  "}, "job_type", "required, but empty"),
        ({"job_type": "x" * 256}, "job_type", "256 characters, at most 255 allowed"),
        ({"customer_email": "pat@@example"}, "customer_email", "not a valid email address"),
        ({"customer_phone": "555-12"}, "customer_phone", "not a valid phone number"),
        ({"customer_phone": "512-555-0101 or 512-555-0102"}, "customer_phone", "more than one phone number"),
        ({"technician_email": "nobody@example.com"}, "technician_email", "no technician with email"),
        ({"technician_email": "Dee@Example.com"}, "technician_email", "2 technicians of this company have the email"),
        ({"technician_email": "", "technician_name": "Sam Smith"}, "technician_name", "matches 2 technicians"),
        ({"technician_email": "", "technician_name": "Kim"}, "technician_name", "no technician named 'Kim'"),
        ({"technician_email": "", "technician_name": ""}, "technician_email", "required, but empty"),
        ({"follow_up_required": "maybe"}, "follow_up_required", "must be true/false"),
        ({"photos": "https://ok.example/a.jpg ftp://x/y"}, "photos", "'ftp://x/y' is not an http(s) URL"),
        ({"latitude": "30.2"}, "longitude", "give both or neither"),
        ({"latitude": "95", "longitude": "-97.7"}, "latitude", "between -90 and 90"),
        ({"external_id": ""}, "external_id", "every row needs its id"),
        ({"customer_name": "", "customer_email": "", "customer_phone": ""}, "customer_name", "is required"),
    ],
)
def test_each_problem_is_reported_on_its_column(changes, column, reason):
    row = {**good(1), "technician_name": "", "latitude": "", "longitude": "", **changes}
    values, errors = validate_row(row, TECHS, now=NOW)
    assert values is None
    assert [(c, r) for c, r in errors if reason in r] and all(c == column for c, r in errors if reason in r), errors
    assert len(errors) == 1, errors


def test_a_good_row_becomes_check_in_values():
    values, errors = validate_row(
        {**good(3), "technician_name": "", "latitude": "30.25", "longitude": "-97.75"}, TECHS, now=NOW
    )
    assert errors == []
    assert values["technician_id"] == 1 and values["created_at"] == datetime(2026, 3, 4, 14, 3)
    assert values["customer_email"] == "pat.c3@example.com" and values["customer_phone"] == "+15125550103"
    assert json.loads(values["photos"]) == ["https://cdn.example.com/3.jpg", "https://cdn.example.com/3b.jpg"]
    assert values["follow_up_required"] is False and values["latitude"] == 30.25


def test_dag_shape():
    import runpy

    from conftest import ROOT

    dag = runpy.run_path(str(ROOT / "dags" / "crm_import.py"))["dag"]
    assert dag.schedule is None  # manual trigger only
    assert list(dag.task_dict) == ["import_check_ins"]
    assert dag.default_args["retries"] == 0


# ---------------------------------------------------------------------------------------------- on PostgreSQL
def company(db, integrations=None) -> int:
    cid, _ = create_company(db, "Import Co", integrations)
    with db.begin() as conn:  # a second technician, inactive: imported history may be theirs
        conn.execute(
            sa.text(
                "INSERT INTO technicians (name, email, phone, location, company_id, active) "
                "VALUES ('Jo Former', 'jo@example.com', '5125550001', 'Austin', :c, false)"
            ),
            {"c": cid},
        )
    return cid


def imported(db, company_id) -> list[dict]:
    with db.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text(
                    "SELECT ci.*, r.source_key, r.line FROM check_ins ci JOIN crm_sync.check_in_import_rows r "
                    "ON r.check_in_id = ci.id WHERE ci.company_id = :c ORDER BY r.line"
                ),
                {"c": company_id},
            ).mappings()
        ]


def count(db, table: str) -> int:
    with db.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_bad_rows_are_rejected_with_reasons_and_good_rows_inserted(db, tmp_path):
    cid = company(db)
    rows = [
        good(1),
        good(2, customer_email="not-an-email"),
        good(3),
        good(4, checked_in_at="31/02/2026"),
        good(5, technician_email="jo@example.com"),
        good(1, notes="same id again"),
        good(6, technician_email="ghost@example.com", customer_phone="12"),
    ]
    path = write_csv(tmp_path / "old_system.csv", rows)
    # A malformed record (too many fields) after the header + 7 records; multi-line notes shift line numbers.
    with open(path, "a", encoding="utf-8") as f:
        f.write("OLD-9,2026-03-02,AC Repair,alex@example.com,A,,,,,,,,no,,EXTRA\n")
    report = run_import(db, cid, path, run_id="manual__1", now=NOW)
    assert (report.rows_read, report.inserted, report.rejected, report.duplicates_in_file) == (8, 3, 4, 1)
    assert report.status == "imported" and report.already_imported == 0

    got = [(r["line"], r["external_id"], r["column"], r["reason"]) for r in rejects_of(report)]
    # A record spans two lines when its notes hold a newline (all but line 12's): line numbers are the file's.
    assert got[0][:3] == ("4", "OLD-2", "customer_email") and "not a valid email address" in got[0][3]
    assert got[1][:3] == ("8", "OLD-4", "checked_in_at") and "not a valid date/time" in got[1][3]
    assert got[2] == ("12", "OLD-1", "external_id", "duplicate of line 2 (same external_id)")
    assert {g[2] for g in got[3:5]} == {"technician_email", "customer_phone"} and {g[0] for g in got[3:5]} == {"13"}
    assert got[5] == ("15", "OLD-9", "", "has 15 fields, the header has 14")
    assert len(got) == 6

    rows_in = imported(db, cid)
    assert [(r["line"], r["source_key"]) for r in rows_in] == [(2, "ext:OLD-1"), (6, "ext:OLD-3"), (10, "ext:OLD-5")]
    first = rows_in[0]
    assert first["customer_email"] == "pat.c1@example.com" and first["customer_phone"] == "+15125550101"
    assert first["created_at"] == datetime(2026, 3, 2, 14, 1) and first["notes"].endswith('with "quotes".')
    assert first["photos"] == ["https://cdn.example.com/1.jpg", "https://cdn.example.com/1b.jpg"]
    assert rows_in[2]["technician_id"] != first["technician_id"]  # the inactive technician, by email

    report_json = json.loads(Path(report.report_file).read_text())
    assert report_json["inserted"] == 3 and Path(report.report_file).parent == Path(report.rejects_file).parent
    with db.connect() as conn:
        rec = (
            conn.execute(sa.text("SELECT * FROM crm_sync.check_in_imports WHERE id = :i"), {"i": report.import_id})
            .mappings()
            .one()
        )
    assert (rec["status"], rec["inserted"], rec["rejected"], rec["file_name"]) == ("imported", 3, 4, "old_system.csv")

    # The same file again: nothing inserted twice, each row says what it became.
    again = run_import(db, cid, path, run_id="manual__2", now=NOW)
    assert (again.inserted, again.already_imported, again.rejected) == (0, 3, 4)
    assert len(imported(db, cid)) == 3
    already = [r for r in rejects_of(again) if r["reason"].startswith("already imported")]
    assert [r["external_id"] for r in already] == ["OLD-1", "OLD-3", "OLD-5"]
    assert f"as check-in {rows_in[0]['id']} (import {report.import_id}, line 2)" in already[0]["reason"]


def test_rows_without_external_id_are_keyed_by_content_and_dry_run_inserts_nothing(db, tmp_path):
    cid = company(db)
    header = [h for h in HEADER if h != "external_id"]
    rows = [{k: v for k, v in good(n).items() if k != "external_id"} for n in (1, 2, 1)]
    path = write_csv(tmp_path / "no_ids.csv", rows, header)
    dry = run_import(db, cid, path, run_id="dry", dry_run=True, output_dir=str(tmp_path / "reports"), now=NOW)
    assert (dry.status, dry.inserted, dry.duplicates_in_file) == ("dry_run", 0, 1)
    assert Path(dry.rejects_file).parent.parent == tmp_path / "reports"
    assert count(db, "check_ins") == 0
    done = run_import(db, cid, path, run_id="real", now=NOW)
    assert done.inserted == 2 and [r["reason"] for r in rejects_of(done)] == ["duplicate of line 2 (identical row)"]
    assert all(r["source_key"].startswith("row:") for r in imported(db, cid))
    assert run_import(db, cid, path, run_id="again", now=NOW).already_imported == 2


def test_a_failure_mid_insert_leaves_nothing(db, tmp_path):
    cid = company(db)
    path = write_csv(
        tmp_path / "boom.csv",
        [good(n) for n in range(1, 31)] + [good(31, customer_name="Boom")] + [good(n) for n in range(32, 40)],
    )
    with db.begin() as conn:  # the database refuses the 31st row, after 30 were inserted in the transaction
        conn.execute(
            sa.text(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.customer_name = 'Boom' THEN RAISE EXCEPTION 'disk full (simulated)'; END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(sa.text("CREATE TRIGGER boom BEFORE INSERT ON check_ins FOR EACH ROW EXECUTE FUNCTION boom()"))
    with pytest.raises(sa.exc.DBAPIError, match="disk full"):
        run_import(db, cid, path, run_id="boom", now=NOW)
    assert count(db, "check_ins") == 0 and count(db, "crm_sync.check_in_import_rows") == 0
    with db.connect() as conn:
        status, error = conn.execute(sa.text("SELECT status, error FROM crm_sync.check_in_imports")).one()
    assert status == "failed" and "nothing was imported" in error and "disk full" in error


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"checked_in_at,job_type\n2026-01-01,x\n", "a technician_email or technician_name column is required"),
        (
            "external_id,checked_in_at,job_type,technician_name\n1,2026-01-01,Caf\u00e9,Alex Tech\n".encode("latin-1"),
            "not UTF-8 text",
        ),
    ],
)
def test_unreadable_files_are_refused_as_a_whole(db, tmp_path, content, message):
    cid = company(db)
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message):
        run_import(db, cid, path, run_id="x", now=NOW)
    with pytest.raises(ImportFileError, match="file not found"):
        run_import(db, cid, tmp_path / "missing.csv", run_id="x", now=NOW)
    with pytest.raises(ImportFileError, match="company 999999 does not exist"):
        run_import(db, 999999, write_csv(tmp_path / "ok.csv", [good(1)]), run_id="x", now=NOW)
    assert count(db, "check_ins") == 0


# ---------------------------------------------------------------------------------------------- the DAG, then a sync
@pytest.mark.e2e
def test_imported_check_ins_reach_the_crm_with_the_next_incremental_sync(db, db_url, sandbox, airflow_home, tmp_path):
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    cid = company(db, {"hubspot": hubspot_integration(sandbox.url, HS_TOKEN)})
    path = write_csv(tmp_path / "previous_system.csv", [good(n) for n in range(1, 9)] + [good(9, job_type="")])
    code, out = run_dag(
        airflow_home,
        db_url,
        tmp_path,
        dag_id="crm_import",
        conf={"company_id": cid, "file_path": path.name},  # relative to the import folder
        extra_env={"CRM_SYNC_IMPORT_DIR": str(tmp_path)},
    )
    assert code == 0, out[-3000:]
    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        value = meta.execute(
            "SELECT value FROM xcom WHERE dag_id = 'crm_import' AND task_id = 'import_check_ins' "
            "ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
    report = json.loads(value[0])
    assert (report["inserted"], report["rejected"], report["status"]) == (8, 1, "imported")
    assert "Pat" not in json.dumps(report)  # counts and paths only, no row data
    rows_in = imported(db, cid)
    assert len(rows_in) == 8

    code, out = run_dag(airflow_home, db_url, tmp_path, conf={"company_ids": [cid], "crm_types": ["hubspot"]})
    assert code == 0, out[-3000:]
    entries = ledger(db, cid, "hubspot")
    assert {r["id"] for r in rows_in} == set(entries)
    assert all(e["status"] == "synced" for e in entries.values()), entries
    keys = [n["properties"].get("rankitpro_checkin_key") for n in records(sandbox.url, "hubspot", "hs", "notes")]
    assert sorted(keys) == sorted(f"rankitpro-{cid}-{r['id']}" for r in rows_in)
    assert HS_TOKEN not in out
