"""Run the project's DAGs with a real Airflow (``airflow dags test``) on a project-local home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from localdev.pg import airflow_conn_json

ROOT = Path(__file__).resolve().parents[1]
#: Slots of each ``crm_<type>`` pool (one per CRM type the registry knows).
POOL_SLOTS = 4


def pools() -> dict[str, int]:
    """The pools the sync DAGs use, one per CRM type."""
    from crm_hooks.registry import HOOKS

    return {f"crm_{crm_type}": POOL_SLOTS for crm_type in HOOKS}


def airflow_env(
    home: Path, db_url: URL, *, allowed_hosts: str = "127.0.0.1:*,localhost:*", extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment for Airflow commands: SQLite metadata in ``home``, the project's DAGs and plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_RANKITPRO_DB": airflow_conn_json(db_url),
            "AIRFLOW__CORE__FERNET_KEY": fernet_key(home),
            "CRM_SYNC_ALLOWED_HOSTS": allowed_hosts,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
        }
    )
    env.update(extra or {})
    return env


def fernet_key(home: Path) -> str:
    """``AIRFLOW__CORE__FERNET_KEY`` if set, else a key generated once into ``home/fernet.key`` (owner-only).

    Airflow encrypts connections with it and the sync its stored CRM tokens (it refuses to store them
    unencrypted), so the demo needs one out of the box; keeping it in the home keeps stored tokens readable
    on the next run.
    """
    if os.environ.get("AIRFLOW__CORE__FERNET_KEY"):
        return os.environ["AIRFLOW__CORE__FERNET_KEY"]
    from cryptography.fernet import Fernet

    path = home / "fernet.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def ensure_airflow_db(env: dict[str, str]) -> None:
    """Migrate the metadata DB once and create the CRM pools."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".migrated"
    if not marker.exists():
        subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True, text=True)
        spec = {
            name: {"slots": slots, "description": f"concurrent {name[4:]} syncs", "include_deferred": False}
            for name, slots in pools().items()
        }
        (home / "pools.json").write_text(json.dumps(spec))
        subprocess.run(
            [airflow_bin(), "pools", "import", str(home / "pools.json")],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        marker.write_text("ok")


def dags_test_command(dag_id: str, conf: dict[str, Any] | None = None) -> list[str]:
    cmd = [airflow_bin(), "dags", "test", dag_id]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    return cmd


def dags_test(
    env: dict[str, str], dag_id: str, conf: dict[str, Any] | None = None, *, log_path: Path, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run ``airflow dags test``; its whole output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        return subprocess.run(
            dags_test_command(dag_id, conf), env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT
        )
