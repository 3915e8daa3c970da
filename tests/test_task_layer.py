"""The task layer's shared units: the fixed-width table formatter, the connection -> engine step (a socket host
in a connection extra), param errors that fail without a retry."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from crm_sync.backfill import format_chunks
from crm_sync.customer_import import format_imports
from crm_sync.summary import format_table
from crm_sync.tasks.common import connection_url, param_errors, sync_db
from crm_sync.text_table import Column, render

RUN = {
    "company_id": 7,
    "company_name": "Acme Plumbing",
    "crm_type": "hubspot",
    "status": "success",
    "customers_found": 1,
    "customers_created": 2,
    "customers_updated": 3,
    "visits_created": 4,
    "visits_recovered": 1,
    "quarantined": 0,
    "failed": 0,
    "unchanged": 5,
    "api_calls": 12,
    "seconds": 1.5,
    "synced": 5,
}


def test_render_aligns_titles_and_cells_and_draws_a_rule():
    columns = (Column("name", 6, "<"), Column("n", 3), Column("secs", 6, value=lambda r: r["s"], spec=".2f"))
    assert render(columns, [{"name": "ab", "n": 7, "s": 1.5}]) == [
        "name     n   secs",
        "-----------------",
        "ab       7   1.50",
    ]
    assert render(columns, [], rule=False) == ["name     n   secs"]


def test_the_run_table_keeps_its_layout():
    lines = format_table([RUN]).splitlines()
    assert lines[0] == (
        "company                      crm           status       found created updated  jobs quar. "
        "failed unchg  calls    secs"
    )
    assert lines[1] == "-" * len(lines[0]) == lines[3]
    assert lines[2] == (
        "7 Acme Plumbing              hubspot       success          1       2       3     5     0 "
        "     0     5     12    1.50"
    )


def test_the_import_and_chunk_tables_keep_their_layout():
    row = {
        "company_id": 7,
        "company_name": "Acme",
        "crm_type": "jobber",
        "status": "success",
        "customers_indexed": 10,
        "keys_added": 8,
        "keys_already_mapped": 1,
        "customers_without_keys": 1,
        "duplicate_groups": 0,
        "duplicate_customers": 0,
        "api_calls": 3,
        "error": None,
        "duplicate_examples": [],
    }
    header, rule, line = format_imports([row]).splitlines()
    assert header == (
        "company                      crm           status   customers keys added already no keys "
        "dup groups dup cust.  calls"
    )
    assert rule == "-" * len(header)
    assert line == (
        "7 Acme                       jobber        success         10          8       1       1 "
        "         0         0      3"
    )
    chunk = {
        "company_id": 7,
        "chunk_start": "2026-01-01",
        "chunk_end": "2026-01-08",
        "status": "failed",
        "candidates": 9,
        "synced": 8,
        "unchanged": 0,
        "quarantined": 0,
        "failed": 1,
        "api_calls": 4,
        "error": "boom",
    }
    assert format_chunks([chunk]) == [
        " company chunk                   status      rows  synced unchanged quarant. failed  calls",
        "       7 2026-01-01..2026-01-08  failed         9       8         0        0      1      4  boom",
    ]


def test_param_errors_fail_the_task_and_let_other_errors_through():
    with pytest.raises(AirflowFailException, match="could not convert"):
        with param_errors():
            float("lots")
    with pytest.raises(KeyError):
        with param_errors():
            raise KeyError("not a param error")
    with pytest.raises(ValueError):  # only the kinds named
        with param_errors(LookupError):
            raise ValueError("x")


def test_a_socket_directory_in_the_connection_extra_reaches_the_engine(db_url, monkeypatch):
    """The provider's URL honours ``extra.sqlalchemy_query`` (here: the socket directory as ``host``); the
    connection's own host is empty, so only the extra can lead to the server."""
    socket_dir = db_url.query.get("host") or db_url.host
    if not socket_dir or not str(socket_dir).startswith("/"):
        pytest.skip("the test database is not reached through a Unix socket")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SOCKET_DB",
        json.dumps(
            {
                "conn_type": "postgres",
                "login": db_url.username,
                "password": db_url.password,
                "schema": db_url.database,
                "port": db_url.port,
                "extra": {"sqlalchemy_query": {"host": socket_dir}, "application_name": "crm-sync"},
            }
        ),
    )
    url = connection_url("socket_db")
    assert url.drivername == "postgresql+psycopg" and url.host is None
    assert url.query["host"] == socket_dir and url.query["application_name"] == "crm-sync"
    with sync_db("socket_db") as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_database()")).scalar() == db_url.database
        assert conn.execute(sa.text("SELECT current_setting('application_name')")).scalar() == "crm-sync"


def test_a_socket_directory_as_the_connection_host_still_works(db_url, monkeypatch):
    socket_dir = db_url.query.get("host") or db_url.host
    if not socket_dir or not str(socket_dir).startswith("/"):
        pytest.skip("the test database is not reached through a Unix socket")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SOCKET_HOST_DB",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": socket_dir,
                "login": db_url.username,
                "password": db_url.password,
                "schema": db_url.database,
                "port": db_url.port,
            }
        ),
    )
    with sync_db("socket_host_db") as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_database()")).scalar() == db_url.database


def test_discovery_returns_bounded_shards_of_the_companies_with_work(db, db_url, monkeypatch):
    """``discover_<crm>``: the companies with work (here: never synced) dealt into ``max_shards`` shards; the
    ``company_ids`` and ``crm_types`` params still narrow it; a bad ``max_shards`` fails without a retry."""
    from crm_sync.tasks.sync import discover_companies
    from localdev.demo_data import create_company, hubspot_integration

    socket_dir = db_url.query.get("host") or db_url.host
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHARD_DB",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": socket_dir,
                "login": db_url.username,
                "password": db_url.password,
                "schema": db_url.database,
                "port": db_url.port,
            }
        ),
    )
    ids = [create_company(db, f"Co {i}", {"hubspot": hubspot_integration("http://x", "t")})[0] for i in range(5)]

    def shards(**params):
        return discover_companies("hubspot", db_conn_id="shard_db", params=params, run_id="r", dag=None)

    found = shards(max_shards=2)
    assert len(found) == 2 and sorted(c for s in found for c in s) == ids
    assert shards(max_shards=2, company_ids=ids[:1]) == [[ids[0]]]
    assert shards(crm_types=["salesforce"]) == []
    assert len(shards()) == 4  # CRM_SYNC_MAX_SHARDS unset: the default
    with pytest.raises(AirflowFailException, match="max_shards"):
        shards(max_shards=0)


# ---------------------------------------------------------------------------------------------- the real DAGs
def task_tries(airflow_home, dag_id: str, task_prefix: str) -> list[tuple[str, str, int]]:
    """(task id, state, try number) of the last run's tasks of ``dag_id`` whose id starts with ``task_prefix``."""
    import sqlite3

    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        run_id = meta.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()[0]
        return meta.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ? "
            "AND task_id LIKE ? ORDER BY task_id",
            (dag_id, run_id, task_prefix + "%"),
        ).fetchall()


@pytest.mark.e2e
def test_a_backfill_with_an_upside_down_range_fails_at_once_without_retry(db_url, airflow_home, tmp_path):
    from e2e_helpers import run_dag

    code, out = run_dag(
        airflow_home,
        db_url,
        tmp_path,
        dag_id="crm_backfill",
        conf={"crm_type": "hubspot", "date_from": "2026-03-02", "date_to": "2026-03-01"},
    )
    assert code != 0
    assert "date_from 2026-03-02 is after date_to 2026-03-01" in out
    plans = task_tries(airflow_home, "crm_backfill", "plan_")
    assert plans and all(state == "failed" and tries == 1 for _, state, tries in plans), plans  # retries=2 unused
    assert "up_for_retry" not in out.lower()


@pytest.mark.e2e
def test_a_reconciliation_with_a_bad_date_fails_at_once_without_retry(db_url, airflow_home, tmp_path):
    from e2e_helpers import run_dag

    code, out = run_dag(
        airflow_home,
        db_url,
        tmp_path,
        dag_id="crm_reconciliation_report",
        conf={"date_from": "2026-03-05", "date_to": "2026-03-01", "crm_types": ["hubspot"]},
    )
    assert code != 0
    assert "date_from 2026-03-05 is after date_to 2026-03-01" in out
    assert task_tries(airflow_home, "crm_reconciliation_report", "report") == [("report", "failed", 1)]
    assert "up_for_retry" not in out.lower()
