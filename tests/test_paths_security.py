"""Issue #10, section 3 and CSV formula injection: DAG params and run ids cannot reach files outside the
configured roots, import errors never echo file content, written files are owner-only, CSV cells a
spreadsheet would run are escaped."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import stat
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from crm_sync import paths
from crm_sync.check_in_import import ImportFileError, resolve_header, run_import
from crm_sync.csv_escape import csv_safe
from crm_sync.export import read_csv, resolve_params, run_export
from crm_sync.paths import PathRefused, confine, open_regular, safe_component
from crm_sync.tasks.check_in_import import import_task
from crm_sync.tasks.export import export_task
from e2e_helpers import run_dag
from localdev.demo_data import INSERT_CHECK_IN, create_company

NOW = datetime(2026, 11, 25, 12, 0)
HEADER = "external_id,checked_in_at,job_type,technician_email,customer_name,customer_email\n"


@pytest.fixture
def roots(tmp_path, monkeypatch) -> dict[str, Path]:
    """Import, export and report roots in tmp_path, set as the settings the tasks read."""
    out = {}
    for kind, (setting, _) in paths.ROOT_SETTINGS.items():
        out[kind] = tmp_path / f"{kind}-root"
        out[kind].mkdir()
        monkeypatch.setenv(setting, str(out[kind]))
    monkeypatch.delenv("CRM_SYNC_FILE_MODE", raising=False)
    return out


def environ_values() -> list[str]:
    """Values in this process's /proc/self/environ worth looking for in a message (a leak would show them)."""
    raw = Path("/proc/self/environ").read_bytes().decode("utf-8", "replace")
    return [kv.split("=", 1)[1] for kv in raw.split("\0") if "=" in kv and len(kv.split("=", 1)[1]) >= 8]


def import_context(file_path: str, **params) -> dict:
    return {"params": {"company_id": 1, "file_path": file_path, **params}, "run_id": "manual__t"}


# ---------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize(
    "file_path", ["/proc/self/environ", "../../../../../../../../proc/self/environ", "/etc/passwd", "~/.bashrc"]
)
def test_import_of_a_system_file_fails_the_task_without_its_content(roots, file_path):
    with pytest.raises(AirflowFailException) as err:
        import_task(**import_context(file_path))
    message = str(err.value)
    assert "file_path" in message and str(roots["import"]) in message and "CRM_SYNC_IMPORT_DIR" in message
    assert "outside the import folder" in message or "not found" in message
    assert not [v for v in environ_values() if v in message and v not in (str(roots["import"]), file_path)]
    assert "root:" not in message


def test_dotdot_escapes_are_refused_and_inside_paths_resolve(roots, tmp_path):
    (tmp_path / "secret.csv").write_text("external_id\n")
    (roots["import"] / "sub").mkdir()
    (roots["import"] / "ok.csv").write_text(HEADER)
    where = paths.root("import")
    for bad in ("../secret.csv", "sub/../../secret.csv", str(tmp_path / "secret.csv"), "sub/../../import-root2"):
        with pytest.raises(PathRefused, match=r"outside the import folder .*CRM_SYNC_IMPORT_DIR"):
            confine("file_path", bad, where)
    assert confine("file_path", "sub/../ok.csv", where, must_exist=True) == roots["import"] / "ok.csv"
    assert confine("file_path", str(roots["import"] / "ok.csv"), where) == roots["import"] / "ok.csv"
    with pytest.raises(PathRefused, match="file not found"):
        confine("file_path", "missing.csv", where, must_exist=True)


def test_a_symlink_inside_the_root_pointing_outside_is_refused(roots, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(HEADER + "SECRET-ROW\n")
    (roots["import"] / "link.csv").symlink_to(outside)
    (roots["import"] / "env.csv").symlink_to("/proc/self/environ")
    (roots["import"] / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    for name in ("link.csv", "env.csv", "linkdir/outside.csv"):
        with pytest.raises(AirflowFailException, match="outside the import folder") as err:
            import_task(**import_context(name))
        assert "SECRET-ROW" not in str(err.value)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(roots, tmp_path):
    """Time of check to time of use: open_regular walks from the root with O_NOFOLLOW."""
    where = paths.root("import")
    (roots["import"] / "d").mkdir()
    target = roots["import"] / "d" / "f.csv"
    target.write_text(HEADER)
    checked = confine("file_path", "d/f.csv", where, must_exist=True)
    with open_regular(checked, where=where) as fh:
        assert fh.read() == HEADER.encode()
    outside = tmp_path / "outside.csv"
    outside.write_text("SECRET")
    target.unlink()
    target.symlink_to(outside)  # the file itself swapped
    with pytest.raises(PathRefused, match="symlinks are not followed"):
        open_regular(checked, where=where)
    target.unlink()
    (roots["import"] / "d").rmdir()
    (roots["import"] / "d").symlink_to(tmp_path, target_is_directory=True)  # a folder on the way swapped
    (tmp_path / "f.csv").write_text("SECRET")
    with pytest.raises(PathRefused, match="symlinks are not followed"):
        open_regular(checked, where=where)


def test_fifos_directories_and_devices_are_refused(roots):
    os.mkfifo(roots["import"] / "pipe.csv")  # opening it for reading would block without O_NONBLOCK
    (roots["import"] / "folder.csv").mkdir()
    for name, what in (("pipe.csv", "a FIFO"), ("folder.csv", "a directory")):
        with pytest.raises(AirflowFailException, match=f"file_path .*{name}' is {what}.*: only a regular file"):
            import_task(**import_context(name))
    try:
        os.mknod(roots["import"] / "null.csv", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        return  # no CAP_MKNOD here: FIFOs and folders were checked
    with pytest.raises(AirflowFailException, match="is a device"):
        import_task(**import_context("null.csv"))


def test_a_system_folder_cannot_be_a_root(monkeypatch):
    for value in ("/", "/proc", "/proc/self", "/dev"):
        monkeypatch.setenv("CRM_SYNC_IMPORT_DIR", value)
        with pytest.raises(PathRefused, match="a system folder cannot be the import folder"):
            paths.root("import")


# ---------------------------------------------------------------------------------------------- no content in errors
def test_unknown_columns_are_named_only_when_they_look_like_column_names():
    with pytest.raises(ImportFileError) as err:
        resolve_header(
            [
                "checked_in_at",
                "job_type",
                "technician_email",
                "colour",
                "AIRFLOW__CORE__FERNET_KEY=Zm9vYmFyYmF6cXV4",
                "",
                "x" * 65,
            ]
        )
    text = str(err.value)
    assert "unknown columns 'colour', column 5 (name not shown), an unnamed column (column 6), column 7" in text
    assert "Zm9vYmFy" not in text and "FERNET" not in text and "xxxxx" not in text


def test_a_file_that_is_no_import_file_is_refused_without_quoting_it(db, tmp_path):
    cid, _ = create_company(db, "Leak Co", None)
    for first_line, secret in (
        (b"root:x:0:0:root:/root:/bin/bash\n", b"/bin/bash"),
        (b"DB_PASSWORD=hunter2-secret,API_KEY=abc\n", b"hunter2"),
        (b"checked_in_at,job_type,technician_email,hunter2-secret\n", b"hunter2"),
    ):
        path = tmp_path / "leak.csv"
        path.write_bytes(first_line + b"a,b,c,d\n")
        with pytest.raises(ImportFileError) as err:
            run_import(db, cid, path, run_id="x", now=NOW)
        assert secret.decode() not in str(err.value) and "header (line 1)" in str(err.value)
    path.write_bytes(HEADER.encode() + b"1,2026-01-01,Caf\xe9 secret,alex@example.com,A,\n")
    with pytest.raises(ImportFileError, match="not UTF-8 text") as err:
        run_import(db, cid, path, run_id="x", now=NOW)
    assert "\\xe9" not in str(err.value) and "secret" not in str(err.value)


# ---------------------------------------------------------------------------------------------- writing
def test_export_output_dir_outside_the_root_is_refused(roots, tmp_path):
    context = {
        "params": {"output_dir": str(tmp_path / "elsewhere")},
        "run_id": "manual__x",
        "logical_date": datetime(2026, 3, 10),
    }
    for bad in (str(tmp_path / "elsewhere"), "../elsewhere", "/etc", "sub/../../x"):
        context["params"]["output_dir"] = bad
        with pytest.raises(
            AirflowFailException,
            match=r"output_dir .* is outside the export folder .*"
            r"CRM_SYNC_EXPORT_DIR",
        ):
            export_task(**context)
    assert not (tmp_path / "elsewhere").exists()
    assert paths.confine("output_dir", "daily/acme", paths.root("export")) == roots["export"] / "daily" / "acme"


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}


@pytest.fixture
def open_umask():
    old = os.umask(0o002)  # a group-writable, world-readable default: the code must not rely on it
    yield
    os.umask(old)


def seed_formulas(db) -> int:
    """A company with one check-in whose text cells a spreadsheet would run."""
    cid, tid = create_company(db, "=Formula Co", None)
    with db.begin() as conn:
        conn.execute(
            INSERT_CHECK_IN,
            {
                "job_type": "@SUM(1+1)",
                "notes": "-2+3",
                "customer_name": '=HYPERLINK("http://x","y")',
                "customer_email": "a@example.com",
                "customer_phone": "+15125550101",
                "work_performed": "\tTab",
                "materials_used": "\rCR",
                "address": "'quoted",
                "city": "Austin",
                "state": "TX",
                "zip": "78701",
                "photos": "[]",
                "customer_feedback": None,
                "follow_up_required": False,
                "technician_id": tid,
                "company_id": cid,
                "created_at": datetime(2026, 3, 2, 10, 0),
            },
        )
        conn.execute(
            sa.text("UPDATE check_ins SET latitude = -30.5, longitude = -97.75 WHERE company_id = :c"), {"c": cid}
        )
    return cid


def test_export_files_are_owner_only_and_csv_formulas_escaped(db, roots, open_umask):
    cid = seed_formulas(db)
    params = resolve_params(
        {"company_ids": [cid], "date_from": "2026-03-01", "date_to": "2026-03-03"}, run_date=date(2026, 3, 10)
    )
    manifest = run_export(db, params, roots["export"] / "nested", run_id="manual__perm")
    folder = Path(manifest["folder"])
    assert modes(folder) == {
        folder.name: 0o700,
        "check_ins.csv": 0o600,
        "check_ins.parquet": 0o600,
        "manifest.json": 0o600,
    }
    assert stat.S_IMODE((roots["export"] / "nested").stat().st_mode) == 0o700

    with open(folder / "check_ins.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["customer_name"] == '\'=HYPERLINK("http://x","y")' and row["job_type"] == "'@SUM(1+1)"
    assert row["notes"] == "'-2+3" and row["customer_phone"] == "'+15125550101"
    assert row["work_performed"] == "'\tTab" and row["materials_used"] == "'\rCR"
    assert row["company_name"] == "'=Formula Co" and row["address"] == "'quoted"  # a leading ' alone: as is
    assert row["latitude"] == "-30.5" and row["longitude"] == "-97.75"  # numbers are not text: not escaped
    parquet = pd.read_parquet(folder / "check_ins.parquet").iloc[0]
    assert parquet["customer_name"].startswith("=HYPERLINK") and parquet["notes"] == "-2+3"  # Parquet untouched
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["parameters"]["csv_escape_formulas"] is True and on_disk["csv"]["formula_escaping"] != "off"

    raw = resolve_params(
        {"company_ids": [cid], "date_from": "2026-03-01", "date_to": "2026-03-03", "csv_escape_formulas": False},
        run_date=date(2026, 3, 10),
    )
    plain = Path(run_export(db, raw, roots["export"], run_id="manual__plain")["folder"])
    df = read_csv(plain / "check_ins.csv")
    assert df["customer_name"].iloc[0].startswith("=HYPERLINK") and df["customer_phone"].iloc[0] == "+15125550101"
    assert json.loads((plain / "manifest.json").read_text())["csv"]["formula_escaping"] == "off"


def test_file_mode_setting_can_give_the_group_read_access_only(db, roots, monkeypatch, open_umask):
    monkeypatch.setenv("CRM_SYNC_FILE_MODE", "640")
    assert (paths.file_mode(), paths.dir_mode()) == (0o640, 0o750)
    for bad in ("644", "666", "700", "abc", "400"):
        monkeypatch.setenv("CRM_SYNC_FILE_MODE", bad)
        assert paths.file_mode() == 0o600, bad
    monkeypatch.setenv("CRM_SYNC_FILE_MODE", "640")
    cid = seed_formulas(db)
    params = resolve_params(
        {"company_ids": [cid], "date_from": "2026-03-02", "date_to": "2026-03-02", "formats": ["csv"]},
        run_date=date(2026, 3, 10),
    )
    folder = Path(run_export(db, params, roots["export"], run_id="g")["folder"])
    assert modes(folder) == {folder.name: 0o750, "check_ins.csv": 0o640, "manifest.json": 0o640}


def test_import_rejects_are_owner_only_and_formula_escaped(db, roots, open_umask):
    cid, _ = create_company(db, "Import Co", None)
    path = roots["import"] / "old.csv"
    path.write_text(
        HEADER + '=1+1,2026-03-01,AC Repair,alex@example.com,Pat,=HYPERLINK("x")\n'
        "-5,2026-03-01,@SUM(A1),nobody@example.com,Sam,sam@example.com\n",
        encoding="utf-8",
    )
    report = run_import(db, cid, path, run_id="manual__..", now=NOW, root=paths.root("import"))
    folder = Path(report.rejects_file).parent
    assert folder.parent == roots["import"] and not folder.name.startswith(".") and ".." not in folder.name
    assert modes(folder) == {folder.name: 0o700, "rejects.csv": 0o600, "report.json": 0o600}
    with open(report.rejects_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    first = next(r for r in rows if r["column"] == "customer_email")
    assert first["external_id"] == "'=1+1" and first["value"] == '\'=HYPERLINK("x")' and first["line"] == "2"
    second = next(r for r in rows if r["column"] == "technician_email")
    assert second["external_id"] == "'-5"
    assert csv_safe(-5) == -5 and csv_safe("") == "" and csv_safe(None) is None


# ---------------------------------------------------------------------------------------------- report folder
@pytest.mark.parametrize("run_id", ["..", "../..", ".hidden", "manual__../../../etc", "/abs/olute", "..\\..", "."])
def test_a_run_id_gives_a_safe_report_folder_inside_the_report_root(db, roots, monkeypatch, run_id):
    from crm_sync.tasks import reconcile as reconcile_tasks

    monkeypatch.setattr(reconcile_tasks, "sync_db", lambda _conn_id, **_: contextlib.nullcontext(db))
    out = reconcile_tasks.report_task(params={"days": 1}, run_id=run_id)
    folder = Path(out["html"]).parent
    assert folder.parent == roots["report"], folder
    assert not folder.name.startswith(".") and ".." not in folder.name and "/" not in folder.name
    assert modes(folder) == {
        folder.name: 0o700,
        "report.html": 0o600,
        "discrepancies.csv": 0o600,
        "quality_metrics.csv": 0o600,
    }


def test_safe_component_keeps_ordinary_run_ids_and_bounds_long_ones():
    assert safe_component("manual__2026-03-10T10:00:00+00:00") == "manual__2026-03-10T10_00_00_00_00"
    assert safe_component("scheduled__2026-03-10T05:00:00+00:00") == "scheduled__2026-03-10T05_00_00_00_00"
    assert safe_component("..") == "run" and safe_component("") == "run" and safe_component("a..b") == "a_b"
    long = safe_component("x" * 300)
    assert len(long) <= 150 and long != safe_component("x" * 301)


# ---------------------------------------------------------------------------------------------- the real DAGs
def ti_rows(airflow_home: Path, dag_id: str) -> list[tuple]:
    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        return meta.execute(
            "SELECT state, try_number FROM task_instance WHERE dag_id = ? ORDER BY rowid DESC LIMIT 1", (dag_id,)
        ).fetchall()


@pytest.mark.e2e
def test_import_dag_with_proc_self_environ_fails_at_once_without_leaking(db, db_url, airflow_home, tmp_path):
    canary = "canary-7f3e9d2b5a1c4e8f"
    root = tmp_path / "imports"
    root.mkdir()
    cid, _ = create_company(db, "DAG Co", None)
    code, out = run_dag(
        airflow_home,
        db_url,
        tmp_path,
        dag_id="crm_import",
        conf={"company_id": cid, "file_path": "/proc/self/environ"},
        extra_env={"CRM_SYNC_IMPORT_DIR": str(root), "CRM_SYNC_LEAK_CANARY": canary},
    )
    assert code != 0
    assert canary not in out, "the worker's environment reached the task log"
    assert "file_path '/proc/self/environ' is outside the import folder" in out
    assert ti_rows(airflow_home, "crm_import") == [("failed", 1)]


@pytest.mark.e2e
def test_export_dag_with_output_dir_outside_the_root_fails_without_retry(db, db_url, airflow_home, tmp_path):
    root = tmp_path / "exports"
    root.mkdir()
    code, out = run_dag(
        airflow_home,
        db_url,
        tmp_path,
        dag_id="crm_export",
        conf={"output_dir": str(tmp_path / "elsewhere"), "date_from": "2026-03-01", "date_to": "2026-03-01"},
        extra_env={"CRM_SYNC_EXPORT_DIR": str(root)},
    )
    assert code != 0
    assert "is outside the export folder" in out and not (tmp_path / "elsewhere").exists()
    # crm_export has retries=1: an AirflowFailException skips it (the param would be just as bad next time).
    assert ti_rows(airflow_home, "crm_export") == [("failed", 1)]
    assert "up_for_retry" not in out.lower()
