"""A real distributed Airflow deployment on this machine, driven through the REST API like an operator.

Metadata in PostgreSQL, CeleryExecutor with Redis as the broker and PostgreSQL as the result backend, a
scheduler, a dag-processor, an api-server on a loopback port and Celery workers; the Rank It Pro
database is another fresh PostgreSQL database. :func:`running_deployment` starts all of it and stops
every process it started (also on an exception or Ctrl-C). Used by tests/test_distributed.py and
benchmarks/fleet_benchmark.py; each passes database/queue name prefixes and a Redis db number of its
own, so both can run side by side on one PostgreSQL and one Redis.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from localdev.airflow_env import ROOT

DAG_ID = "crm_incremental_sync"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


class Deployment:
    """The processes of one Airflow deployment, their environment, and an authenticated API client."""

    def __init__(self, home: Path, env: dict[str, str], api_url: str, password: str) -> None:
        self.home, self.env, self.api_url, self.password = home, env, api_url, password
        self.procs: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()

    # ------------------------------------------------------------------ processes
    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return proc

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        log = open(self.home / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            args,
            env={**self.env, **(extra_env or {})},
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}"

    def stop(self) -> list[int]:
        """SIGTERM every process group, SIGKILL what is left; returns the pids still alive (none)."""
        import psutil

        tree: set[int] = set()
        for proc in self.procs.values():
            try:
                tree |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)} | {proc.pid}
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs.values():  # workers first: they stop taking tasks, then the rest
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        # Children that left the group (uvicorn workers, task supervisors) go too.
        for pid in tree:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs([p for p in (self._proc(pid) for pid in tree) if p], timeout=10)
        return [pid for pid in tree if self._proc(pid) and self._proc(pid).status() != psutil.STATUS_ZOMBIE]

    @staticmethod
    def _proc(pid: int):
        import psutil

        try:
            return psutil.Process(pid)
        except psutil.NoSuchProcess:
            return None

    # ------------------------------------------------------------------ REST API
    def login(self) -> None:
        r = requests.post(
            f"{self.api_url}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        )
        assert r.status_code == 201, r.text
        self.token = r.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def api(self, method: str, path: str, expect: int | None = 200, **kwargs: Any) -> requests.Response:
        r = self.session.request(method, f"{self.api_url}/api/v2{path}", timeout=60, **kwargs)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:2000]}"
        return r

    def wait_for(self, what: str, check, timeout: float = 180, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                result = check()
            except requests.RequestException:
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.procs)
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            time.sleep(interval)

    def trigger(self, conf: dict[str, Any]) -> str:
        body = {"dag_run_id": f"test__{uuid.uuid4().hex[:10]}", "logical_date": None, "conf": conf}
        return self.api("POST", f"/dags/{DAG_ID}/dagRuns", json=body).json()["dag_run_id"]

    def wait_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        def done():
            run = self.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}").json()
            return run if run["state"] in ("success", "failed") else None

        return self.wait_for(f"run {run_id}", done, timeout=timeout)

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}).json()[
            "task_instances"
        ]


@contextmanager
def running_deployment(
    home: Path,
    *,
    pg_server: str,
    redis_url: str,
    prefix: str,
    pool_slots: dict[str, int],
    workers: Sequence[str] = ("w1", "w2"),
    worker_concurrency: int = 2,
    worker_env: Callable[[str], dict[str, str]] | None = None,
    pythonpath: Sequence[Path] = (),
    extra_env: dict[str, str] | None = None,
    seed: Callable[[sa.Engine], Any] | None = None,
) -> Iterator[Deployment]:
    """Create the databases ``<prefix>_meta_<suffix>`` and ``<prefix>_app_<suffix>``, run ``seed(engine)`` on
    the app database (its result is ``dep.ids``), start the deployment and yield it, logged in, with the DAG
    parsed and every worker ready. Afterwards every process is stopped, the queue's Redis keys and both
    databases are removed; ``dep.leftovers`` holds the pids still alive after the stop (none)."""
    import redis

    from crm_sync.db import create_app_schema, make_engine, migrate
    from localdev.pg import airflow_conn_json

    started = time.monotonic()
    suffix = uuid.uuid4().hex[:10]
    meta_db, app_db, queue = f"{prefix}_meta_{suffix}", f"{prefix}_app_{suffix}", f"{prefix}_{suffix}"
    server = sa.engine.make_url(pg_server)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in (meta_db, app_db):
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    app_url = server.set(database=app_db)
    meta = server.set(database=meta_db)
    meta_url = meta.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    engine = make_engine(app_url)
    dep = None
    try:
        create_app_schema(engine)
        migrate(engine)
        ids = seed(engine) if seed else None

        port = free_port()
        password = secrets.token_urlsafe(12)
        (home / "passwords.json").write_text(json.dumps({"admin": password}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__CORE__FERNET_KEY": fernet_key(),
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
                "AIRFLOW__CELERY__BROKER_URL": redis_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta_url}",
                # A queue of this session's own: nothing else on the shared Redis takes (or gives) its tasks.
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                # Runs come from the REST API only: no scheduled run of the */15 schedule gets in between.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW_CONN_RANKITPRO_DB": airflow_conn_json(app_url),
                "CRM_SYNC_ALLOWED_HOSTS": "127.0.0.1:*",
                "CRM_SYNC_POOL_SLOTS": ",".join(f"{k}={v}" for k, v in pool_slots.items()),
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), *map(str, pythonpath)]),
                **(extra_env or {}),
            }
        )
        dep = Deployment(home, env, f"http://127.0.0.1:{port}", password)
        dep.ids, dep.engine, dep.timings, dep.queue, dep.leftovers = ids, engine, {}, queue, []
        airflow = str(Path(sys.executable).with_name("airflow"))
        dep.run(airflow, "db", "migrate")
        dep.pools_output = dep.run(sys.executable, "-m", "crm_sync.pools").stdout  # as airflow-init does
        dep.timings["migrate + pools"] = time.monotonic() - started

        dep.start("api-server", airflow, "api-server")
        dep.start("scheduler", airflow, "scheduler")
        dep.start("dag-processor", airflow, "dag-processor")
        for name in workers:
            dep.start(
                name,
                airflow,
                "celery",
                "worker",
                "-H",
                f"{name}@%h",
                "-c",
                str(worker_concurrency),
                "-q",
                queue,
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
                extra_env=worker_env(name) if worker_env else None,
            )
        dep.wait_for(
            "the api-server", lambda: requests.get(f"{dep.api_url}/api/v2/monitor/health", timeout=5).status_code == 200
        )
        dep.login()
        dep.wait_for(
            f"{DAG_ID} parsed by the dag-processor",
            lambda: dep.api("GET", f"/dags/{DAG_ID}", expect=None).status_code == 200,
        )
        for name in workers:
            dep.wait_for(f"worker {name}", lambda n=name: re.search(rf"{n}@\S+ ready", dep.log(n)))
        dep.timings["deployment up"] = time.monotonic() - started
        yield dep
    finally:
        if dep:
            dep.leftovers = dep.stop()
        engine.dispose()
        try:
            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(f"*{queue}*"):
                client.delete(key)
            for key in client.scan_iter("_kombu.binding.*"):
                client.srem(key, *[m for m in client.smembers(key) if queue.encode() in m] or [b"-"])
        except redis.RedisError:
            pass
        with admin.connect() as conn:
            for name in (meta_db, app_db):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
