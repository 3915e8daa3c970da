"""Test-session setup. Airflow reads its settings at import, so the environment is set first."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(os.environ.get("CRM_SYNC_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="crm-sync-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*,localhost:*")
if not os.environ.get("AIRFLOW__CORE__FERNET_KEY"):
    # The sync stores rotated CRM tokens only encrypted; DAG runs in subprocesses get the same key (airflow_env).
    from cryptography.fernet import Fernet

    os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
for p in (ROOT, ROOT / "plugins"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import uuid  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory):
    """A PostgreSQL server: ``CRM_SYNC_TEST_DATABASE_URL`` if set, else an embedded one (never skipped)."""
    from sqlalchemy.engine import make_url

    raw = os.environ.get("CRM_SYNC_TEST_DATABASE_URL")
    server = None
    if not raw:
        from localdev.pg import start_embedded

        # Not under pytest's basetemp: pytest prunes old basetemp folders, which would pull the data
        # directory from under a server still used by a concurrent session.
        data_dir = tempfile.mkdtemp(prefix="crm-sync-pg-")
        server = start_embedded(data_dir)
        raw = server.get_uri()
    yield make_url(raw).set(drivername="postgresql+psycopg")
    if server is not None:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def db_url(pg_server_url):
    """A fresh database holding the app's schema and the sync schema, dropped afterwards."""
    import sqlalchemy as sa

    from crm_sync.db import create_app_schema, make_engine, migrate

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server_url.set(database=name)
    engine = make_engine(url)
    create_app_schema(engine)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def db(db_url):
    from crm_sync.db import make_engine

    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sandbox():
    """The CRM sandbox over real HTTP on a free loopback port."""
    from crm_sandbox.server import SandboxServer

    server = SandboxServer(port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    """A migrated Airflow metadata DB (SQLite) with the CRM pools, shared by the session's DAG runs."""
    from localdev.airflow_env import ensure_airflow_db

    home = Path(tempfile.mkdtemp(prefix="crm-sync-airflow-home-"))  # outside basetemp, as above
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
    )
    ensure_airflow_db(env)
    yield home
    shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------- unit tests of the hooks
@pytest.fixture
def rsps():
    """``responses`` intercepting every request made with ``requests``."""
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


@pytest.fixture
def sleeps(monkeypatch):
    """Record tenacity's backoff sleeps (``tenacity.nap`` calls ``time.sleep``) instead of sleeping.

    A ``Retry-After`` is recorded exactly as the CRM said: its jitter is off here (tests/test_rate_limits.py
    checks the jitter's bounds)."""
    import types

    import tenacity.nap

    from crm_hooks import base

    recorded: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", types.SimpleNamespace(sleep=recorded.append))
    monkeypatch.setattr(base, "RETRY_AFTER_JITTER_SHARE", 0.0)
    return recorded


@pytest.fixture
def instant_rate_limits(monkeypatch):
    """Rate-limit waits advance a fake clock instead of real time."""
    import types

    from crm_hooks import rate_limit

    clock = types.SimpleNamespace(now=1000.0)
    clock.monotonic = lambda: clock.now
    clock.sleep = lambda s: setattr(clock, "now", clock.now + s)
    monkeypatch.setattr(rate_limit, "time", clock)
    return clock
