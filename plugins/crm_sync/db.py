"""Access to the Rank It Pro PostgreSQL database and the project's SQL files.

The database is the Airflow connection ``rankitpro_db`` (e.g. the environment
variable ``AIRFLOW_CONN_RANKITPRO_DB`` as a URI or JSON). SQL lives in
``include/sql/`` as files; :func:`sql` loads one by name.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

RANKITPRO_CONN_ID = "rankitpro_db"
SQL_DIR = Path(os.environ.get("CRM_SYNC_SQL_DIR") or Path(__file__).resolve().parents[2] / "include" / "sql")


@functools.cache
def sql(name: str) -> sa.TextClause:
    """The SQL file ``include/sql/<name>.sql`` as a SQLAlchemy text clause."""
    return sa.text((SQL_DIR / f"{name}.sql").read_text())


def url_from_connection(conn_id: str = RANKITPRO_CONN_ID) -> URL:
    """A psycopg 3 SQLAlchemy URL from an Airflow connection (host may be a socket directory)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    query = {k: str(v) for k, v in (conn.extra_dejson or {}).items() if k in ("sslmode", "options", "application_name")}
    return URL.create(
        "postgresql+psycopg",
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or "postgres",
        query=query,
    )


def make_engine(url: str | URL | None = None, **kwargs) -> Engine:
    """An engine for ``url``, or for the ``rankitpro_db`` connection when no URL is given."""
    if url is None:
        url = url_from_connection()
    elif isinstance(url, str) and url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return sa.create_engine(url, pool_pre_ping=True, future=True, **kwargs)


def migrate(engine: Engine) -> list[str]:
    """Apply ``include/sql/migrations/*.sql`` not applied yet, in name order, each in one transaction."""
    applied: list[str] = []
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS crm_sync"))
        conn.execute(sa.text(
            "CREATE TABLE IF NOT EXISTS crm_sync.schema_migrations "
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"))
    for path in sorted((SQL_DIR / "migrations").glob("*.sql")):
        with engine.begin() as conn:
            # One migrator at a time, even from several workers.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('crm_sync.migrate'))"))
            done = conn.execute(sa.text("SELECT 1 FROM crm_sync.schema_migrations WHERE version = :v"),
                                {"v": path.stem}).first()
            if done:
                continue
            conn.exec_driver_sql(path.read_text())
            conn.execute(sa.text("INSERT INTO crm_sync.schema_migrations (version) VALUES (:v)"), {"v": path.stem})
            applied.append(path.stem)
    return applied


def create_app_schema(engine: Engine) -> None:
    """Create the app's own tables (demo and tests only; production already has them)."""
    with engine.begin() as conn:
        conn.exec_driver_sql((SQL_DIR / "rankitpro_schema.sql").read_text())
