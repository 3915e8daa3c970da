"""docker-compose.yaml, Dockerfile and .env.example agree with Compose and with the project.

Docker cannot run here, so the deployment is checked the ways that need no engine: ``docker compose
config -q`` (Compose v2, else Debian's docker-compose 1.29, which .ci/run installs), the Compose
Specification schema (vendored in tests/data), and what the project itself says: the DAGs in the
folder it mounts, include/ where crm_sync.db looks for SQL, the variables the code reads, the pools
the DAG tasks use, and an install of the project in the image's layout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
AIRFLOW_HOME_IN_IMAGE = PurePosixPath("/opt/airflow")  # the official image's AIRFLOW_HOME
#: Read by the official image's entrypoint (scripts/docker/entrypoint_prod.sh), not by this project.
IMAGE_ENTRYPOINT_VARS = {
    "_AIRFLOW_DB_MIGRATE",
    "_AIRFLOW_WWW_USER_CREATE",
    "_AIRFLOW_WWW_USER_USERNAME",
    "_AIRFLOW_WWW_USER_PASSWORD",
    "_PIP_ADDITIONAL_REQUIREMENTS",
    "DUMB_INIT_SETSID",
    "CONNECTION_CHECK_MAX_COUNT",
}
SECRETS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "_AIRFLOW_WWW_USER_PASSWORD",
    "AIRFLOW_CONN_RANKITPRO_DB",
}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def airflow_services(doc: dict) -> dict[str, dict]:
    """The services built on x-airflow-common (they run Airflow components)."""
    return {name: s for name, s in doc["services"].items() if s.get("user") and "airflow" in str(s.get("image"))}


def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return {k.strip(): v.strip() for k, v in pairs}


def compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def run_compose(*args: str, env_file: Path) -> subprocess.CompletedProcess:
    cli = compose_cli()
    if cli is None:
        msg = "neither `docker compose` (v2) nor docker-compose is installed (apt-get install -y docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; .ci/run installs it")
        pytest.skip(msg)
    # Nothing from this shell may fill in a variable: only the env file does.
    names = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    env = {k: v for k, v in os.environ.items() if k not in names and k != "COMPOSE_PROFILES"}
    return subprocess.run(
        [*cli, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


# ---------------------------------------------------------------------- Compose itself
def test_compose_config_is_valid_with_the_documented_variables():
    proc = run_compose("config", "-q", env_file=ENV_EXAMPLE)
    assert proc.returncode == 0, proc.stderr
    services = run_compose(
        "--profile",
        "sandbox",
        "--profile",
        "flower",
        "--profile",
        "debug",
        "config",
        "--services",
        env_file=ENV_EXAMPLE,
    )
    assert services.returncode == 0, services.stderr
    assert set(services.stdout.split()) == set(compose()["services"])


def test_compose_refuses_to_start_without_the_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = run_compose("config", "-q", env_file=empty)
    assert proc.returncode != 0
    assert re.search(r"set \w+ in \.env", proc.stderr), proc.stderr


def test_compose_file_matches_the_compose_specification():
    import jsonschema

    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    jsonschema.validate(compose(), schema)


def test_compose_has_the_official_structure():
    doc = compose()
    services = doc["services"]
    for name in (
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ):
        assert name in services, name
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ):
        s = services[name]
        assert s["healthcheck"]["test"], name
        assert s["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name
        assert s["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert s["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}
    assert services["airflow-worker"]["command"] == "celery worker"
    # Scalable: nothing that two replicas could not share.
    assert "container_name" not in services["airflow-worker"] and "ports" not in services["airflow-worker"]
    assert services["crm-sandbox"]["profiles"] == ["sandbox"]
    assert services["crm-sandbox"]["image"] == services["airflow-worker"]["image"]
    env = services["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    for s in airflow_services(doc).values():
        assert s["build"] == "." and s["image"] == services["airflow-worker"]["image"]


# ---------------------------------------------------------------------- secrets and variables
def test_every_secret_comes_from_env_and_every_variable_is_documented():
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    documented = env_example()
    assert used == set(documented), (
        f"used in compose, not in .env.example: {sorted(used - set(documented))}; "
        f"documented, unused: {sorted(set(documented) - used)}"
    )
    for name in SECRETS:
        # Required (":?"): compose stops with a message instead of starting with an empty or default secret.
        assert re.search(rf"\$\{{{name}:\?", text), f"{name} must be ${{{name}:?...}} in docker-compose.yaml"
        assert not re.search(rf"\$\{{{name}:-", text), f"{name} must not have a default"
    for s in compose()["services"].values():
        for key, value in (s.get("environment") or {}).items():
            if any(w in key.upper() for w in ("PASSWORD", "SECRET", "FERNET", "CONN_")):
                assert "${" in str(value), f"{key} is written into docker-compose.yaml"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
    assert ignored, ".env must be git-ignored"


def _literals(paths: list[Path]) -> str:
    return "\n".join(p.read_text() for base in paths for p in sorted(base.rglob("*.py")))


def test_compose_sets_only_variables_something_reads_and_all_the_sync_reads():
    from airflow.configuration import conf

    from crm_sync.db import RANKITPRO_CONN_ID

    code = _literals([ROOT / "plugins", ROOT / "dags"])
    env: dict[str, str] = {}
    for s in airflow_services(compose()).values():
        env.update(s.get("environment") or {})
    for name in env:
        if m := re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", name):
            options = conf.configuration_description.get(m.group(1).lower(), {}).get("options", {})
            assert m.group(2).lower() in options, f"{name} is no Airflow setting"
        elif name.startswith("AIRFLOW_CONN_"):
            assert name[len("AIRFLOW_CONN_") :].lower() == RANKITPRO_CONN_ID, name
        elif name == "AIRFLOW_CONFIG":
            continue  # Airflow's own (airflow/configuration.py)
        elif name not in IMAGE_ENTRYPOINT_VARS:
            assert re.search(rf"[\"']{name}[\"']", code), f"{name} is set in compose but no code reads it"
    read = set(re.findall(r"[\"'](CRM_SYNC_[A-Z0-9_]+)[\"']", code))
    assert read <= set(env), f"read by the sync but not set by docker-compose.yaml: {sorted(read - set(env))}"


# ---------------------------------------------------------------------- mounts, DAGs, SQL, pools
def _mounts(service: dict) -> dict[str, PurePosixPath]:
    """Host path (relative to the project, AIRFLOW_PROJ_DIR at its default) -> container path."""
    out = {}
    for volume in service["volumes"]:
        host, container = volume.replace("${AIRFLOW_PROJ_DIR:-.}", ".").split(":")[:2]
        out[host.removeprefix("./")] = PurePosixPath(container)
    return out


def test_mounts_put_dags_plugins_and_include_where_the_code_looks():
    from airflow.dag_processing.dagbag import DagBag

    from crm_sync import db

    doc = compose()
    for name, service in airflow_services(doc).items():
        mounts = _mounts(service)
        assert mounts["dags"] == AIRFLOW_HOME_IN_IMAGE / "dags", name  # the image's default dags folder
        assert mounts["plugins"] == AIRFLOW_HOME_IN_IMAGE / "plugins", name  # ... and plugins folder
        assert "AIRFLOW__CORE__DAGS_FOLDER" not in service["environment"]
        # crm_sync.db: SQL_DIR = <plugins parent>/include/sql, unless CRM_SYNC_SQL_DIR says otherwise.
        db_in_image = mounts["plugins"] / Path(db.__file__).resolve().relative_to(ROOT / "plugins").as_posix()
        computed = db_in_image.parents[2] / "include" / "sql"
        assert computed == mounts["include"] / "sql", name
        assert PurePosixPath(service["environment"]["CRM_SYNC_SQL_DIR"]) == computed, name
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors and "crm_incremental_sync" in bag.dags
    assert (ROOT / "include" / "sql" / "extract_candidates.sql").exists()


def test_file_roots_are_mounted_folders_every_worker_shares():
    """crm_import, crm_export and the report read and write only inside these roots (crm_sync.paths): each is
    set for every Airflow service and is a mounted host folder, so any worker sees the same files."""
    from crm_sync.paths import ROOT_SETTINGS

    for name, service in airflow_services(compose()).items():
        env, mounts = service["environment"], _mounts(service)
        for setting, _ in ROOT_SETTINGS.values():
            assert env.get(setting), f"{name} does not set {setting}"
            assert PurePosixPath(env[setting]) in mounts.values(), f"{setting} of {name} is not a mounted folder"
        assert len({env[s] for s, _ in ROOT_SETTINGS.values()}) == len(ROOT_SETTINGS), "one folder per kind"


def test_init_creates_the_pools_the_dag_tasks_use():
    from airflow.dag_processing.dagbag import DagBag

    from crm_sync.pools import DEFAULT_SLOTS, crm_pools, parse_slots

    init = " ".join(compose()["services"]["airflow-init"]["command"])
    assert "python -m crm_sync.pools" in init and "PYTHONPATH=/opt/airflow/plugins" in init
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    used = {t.pool for dag in bag.dags.values() for t in dag.tasks} - {"default_pool"}
    assert used == set(crm_pools("")), f"DAG tasks use {sorted(used)}; crm_sync.pools creates {sorted(crm_pools(''))}"
    assert all(p["slots"] == DEFAULT_SLOTS for p in crm_pools("").values())
    assert parse_slots(env_example()["CRM_SYNC_POOL_SLOTS"]) == {}
    assert crm_pools("crm_hubspot=2")["crm_hubspot"]["slots"] == 2
    with pytest.raises(ValueError, match="no CRM type"):
        crm_pools("crm_nosuchcrm=2")


# ---------------------------------------------------------------------- the image
def dockerfile_copies() -> list[tuple[list[str], str]]:
    out = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def test_dockerfile_pins_airflow_and_installs_requirements_and_the_project():
    import tomllib

    import airflow

    text = DOCKERFILE.read_text()
    pinned = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(pinned)}$", text, re.MULTILINE), (
        "the Dockerfile and requirements.txt pin different Airflow versions"
    )
    assert airflow.__version__ == pinned
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}", text, re.MULTILINE)
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" -r /opt/airflow/requirements.txt', text)
    assert re.search(r"pip install .*-e /opt/airflow\b", text)
    copied = {src.rstrip("/") for srcs, _ in dockerfile_copies() for src in srcs}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    roots = {d.split("/")[0] for d in project["tool"]["setuptools"]["package-dir"].values()}
    needed = roots | {"pyproject.toml", project["project"]["readme"], "requirements.txt", "dags", "include"}
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not (copied & ignored), f".dockerignore drops what the Dockerfile copies: {copied & ignored}"
    for srcs, dest in dockerfile_copies():
        for src in srcs:
            assert (ROOT / src).exists(), src
            if len(srcs) == 1 and dest.endswith("/") and src.endswith("/"):
                assert PurePosixPath(dest) == AIRFLOW_HOME_IN_IMAGE / src.rstrip("/"), "same layout as the repo"


def test_project_installs_in_the_image_layout(tmp_path):
    """Copy what the Dockerfile copies to an /opt/airflow-like folder, install it as the Dockerfile does
    (editable, no dependencies), and check: the packages resolve into that folder, SQL is found in its
    include/sql, and the provider entry point gives the CRM connection types."""
    home = tmp_path / "opt" / "airflow"
    home.mkdir(parents=True)
    for srcs, dest in dockerfile_copies():
        target = home / PurePosixPath(dest).relative_to(AIRFLOW_HOME_IN_IMAGE)
        for src in srcs:
            if (ROOT / src).is_dir():
                shutil.copytree(
                    ROOT / src,
                    target if dest.endswith("/") and len(srcs) == 1 else target / src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    dirs_exist_ok=True,
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / src, target / Path(src).name if dest.endswith("/") else target)
    prefix = tmp_path / "prefix"
    # --ignore-installed: pip must not uninstall this checkout's own editable install from the venv.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            "--prefix",
            str(prefix),
            "-e",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    own = subprocess.run(
        [sys.executable, "-c", "import crm_hooks; print(crm_hooks.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert own.stdout.strip() == str(ROOT / "plugins" / "crm_hooks" / "__init__.py"), (
        f"the venv's own install of the project must be untouched: {own.stdout} {own.stderr[-1000:]}"
    )
    site_dir = next(prefix.glob("lib/python*/site-packages"))
    venv_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    probe = f"""
import json, sys, site
site.addsitedir({str(site_dir)!r})        # the install in the image layout (its finder module first)
sys.path.append({venv_site!r})            # the dependencies, without this checkout's own editable install
from importlib.metadata import distribution
import crm_hooks, crm_sync.db, crm_sandbox
dist = distribution("rankitpro-crm-sync")
ep = [e for e in dist.entry_points if e.group == "apache_airflow_provider"][0]
info = ep.load()()
print(json.dumps({{"crm_hooks": crm_hooks.__file__, "sandbox": crm_sandbox.__file__,
                  "sql_dir": str(crm_sync.db.SQL_DIR),
                  "conn_types": sorted(c["connection-type"] for c in info["connection-types"])}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CRM_SYNC_SQL_DIR")}
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["crm_hooks"]).is_relative_to(home / "plugins"), got
    assert Path(got["sandbox"]).is_relative_to(home / "crm_sandbox"), got
    assert Path(got["sql_dir"]) == home / "include" / "sql", got
    assert {"crm_hubspot", "crm_salesforce"} <= set(got["conn_types"]), got
