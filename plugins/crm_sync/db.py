"""Access to the Rank It Pro PostgreSQL database and the project's SQL files.

The database is the Airflow connection ``rankitpro_db`` (e.g. the environment
variable ``AIRFLOW_CONN_RANKITPRO_DB`` as a URI or JSON); the task layer turns it into an
engine (:func:`crm_sync.tasks.common.sync_db`). SQL lives in ``include/sql/`` as files;
:func:`sql` loads one by name.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

RANKITPRO_CONN_ID = "rankitpro_db"
SQL_DIR = Path(os.environ.get("CRM_SYNC_SQL_DIR") or Path(__file__).resolve().parents[2] / "include" / "sql")


@functools.cache
def sql(name: str) -> sa.TextClause:
    """The SQL file ``include/sql/<name>.sql`` as a SQLAlchemy text clause."""
    return sa.text((SQL_DIR / f"{name}.sql").read_text())


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url`` (a ``postgresql://`` URL gets the psycopg 3 driver); a task gets the one of its
    Airflow connection from :func:`crm_sync.tasks.common.sync_db`."""
    if isinstance(url, str) and url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return sa.create_engine(url, pool_pre_ping=True, future=True, **kwargs)


def migrate(engine: Engine) -> list[str]:
    """Apply ``include/sql/migrations/*.sql`` not applied yet, in name order, each in one transaction."""
    applied: list[str] = []
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS crm_sync"))
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS crm_sync.schema_migrations "
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
    for path in sorted((SQL_DIR / "migrations").glob("*.sql")):
        with engine.begin() as conn:
            # One migrator at a time, even from several workers.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('crm_sync.migrate'))"))
            done = conn.execute(
                sa.text("SELECT 1 FROM crm_sync.schema_migrations WHERE version = :v"), {"v": path.stem}
            ).first()
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
