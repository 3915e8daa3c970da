"""What every benchmark sets up: an embedded PostgreSQL with both schemas, the CRM sandbox in its own
process (as in production the CRM is remote) with one account at the CRM's documented limit, and memory
readings. Nothing here measures; the benchmarks do."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]
os.environ.setdefault("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*")
if not os.environ.get("AIRFLOW__CORE__FERNET_KEY"):
    # Rotating tokens (Jobber) are stored encrypted: a throwaway key for this benchmark's throwaway database.
    from cryptography.fernet import Fernet

    os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident memory (not the peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def documented_rps(crm: str, integration: dict) -> float | None:
    """The hook's own default limit, in requests per second (None when the CRM has no such limit)."""
    from crm_hooks.registry import hook_class

    hook = hook_class(crm).from_integration(integration)
    return hook.rate_limits["default"].rate


@dataclass
class CrmBench:
    """One company on one CRM sandbox account, ready to sync."""

    engine: Any
    url: str
    integration: dict[str, Any]
    limit_rps: float
    company_id: int
    technician_id: int


@contextmanager
def crm_bench(
    crm: str, stand_in_rps: float | None, prefix: str = "crm-bench-", sandbox_limits: dict[str, Any] | None = None
) -> Iterator[CrmBench]:
    """An embedded PostgreSQL and a sandbox account for ``crm`` with its limit on; all removed afterwards.

    A CRM that documents no per-second limit (Salesforce: its allocation is per day) gets a
    stand-in pace on both the sandbox and the hook (``stand_in_rps``, else its profile's).
    ``sandbox_limits``: the sandbox account's own limits instead (a hidden limit the hook does not know).
    """
    import requests

    from crm_sync.db import create_app_schema, make_engine, migrate
    from localdev.crm_profiles import PROFILES
    from localdev.demo_data import create_company
    from localdev.pg import start_embedded

    profile = PROFILES[crm]
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    server = start_embedded(tmp / "pg")
    engine = make_engine(server.get_uri())
    create_app_schema(engine)
    migrate(engine)
    port = _free_port()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "crm_sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        integration = profile.integration(url)
        limit_rps = documented_rps(crm, integration)
        limits = {}
        if limit_rps is None:
            limit_rps = stand_in_rps or profile.stand_in_rps or 10.0
            limits = {"per_second": limit_rps}
            integration.setdefault("crmSettings", {})["requestsPerSecond"] = limit_rps
        limits.update(sandbox_limits or {})
        requests.post(f"{url}/_sandbox/accounts", json=profile.account_body("bench", **limits)).raise_for_status()
        company_id, technician_id = create_company(engine, f"Bench {crm}", {crm: integration})
        yield CrmBench(engine, url, integration, limit_rps, company_id, technician_id)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
        engine.dispose()
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str) -> None:
    import requests

    for _ in range(600):  # 30 s: a busy machine starts the sandbox slowly
        try:
            requests.get(f"{url}/_sandbox/stats", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError("sandbox did not start")
