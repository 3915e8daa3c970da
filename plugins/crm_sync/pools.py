"""The Airflow pools the sync DAGs use: ``crm_<type>`` for every CRM type in the hook registry.

Each ``sync_<crm>`` task runs in the pool ``crm_<crm>``; a task whose pool does not exist is never
scheduled. This module derives the pools from :data:`crm_hooks.registry.HOOKS`, so a CRM added to the
registry gets its pool wherever pools are created (docker-compose's ``airflow-init``, the demo, the
tests)::

    python -m crm_sync.pools             # create the missing pools; existing ones keep their size
    python -m crm_sync.pools --update    # also set existing pools to the configured size
    python -m crm_sync.pools --print     # print them as `airflow pools import` JSON, change nothing

Sizes: :data:`DEFAULT_SLOTS` each, overridden per pool by ``CRM_SYNC_POOL_SLOTS`` (or ``--slots``),
e.g. ``crm_hubspot=2,crm_salesforce=8``. It runs the ``airflow`` CLI, so it needs only what any
Airflow component needs: the metadata database settings.

What a pool protects: a slot is one running task of that CRM (a shard of the incremental sync, an import,
a backfill chunk, a reconciliation), i.e. one task process on a worker and about three connections to the
Rank It Pro database (the task's engine, the company's advisory lock, the customer index). The vendors'
limits are per company (a HubSpot portal, a Salesforce org, a ServiceTitan tenant, a Jobber account): each
company's hook limiter holds them, whatever the number of slots, so the pool does not need to be small for
the vendor's sake (only companies sharing one CRM account share a limit). Size it so that (a) the sum over
all CRM pools leaves worker slots for the other tasks (discovery, summaries) and (b) slots x 3 connections
fit the database's budget; and at least ``CRM_SYNC_MAX_SHARDS`` (:mod:`crm_sync.discovery`), so one
cycle's shards of a CRM run side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Slots of a CRM pool unless configured: concurrent tasks per CRM type across all workers (= the default
#: shards per CRM, crm_sync.discovery.DEFAULT_MAX_SHARDS: a busy cycle's shards run side by side).
DEFAULT_SLOTS = 4
SLOTS_ENV = "CRM_SYNC_POOL_SLOTS"


def pool_name(crm_type: str) -> str:
    """The pool of ``sync_<crm_type>`` tasks (the DAGs use ``pool=f"crm_{crm_type}"``)."""
    return f"crm_{crm_type}"


def parse_slots(raw: str | None) -> dict[str, int]:
    """``"crm_hubspot=2, crm_salesforce=8"`` -> ``{"crm_hubspot": 2, "crm_salesforce": 8}``."""
    sizes: dict[str, int] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{SLOTS_ENV}: expected name=slots (slots >= 1), got {item.strip()!r}")
        sizes[name.strip()] = int(value)
    return sizes


def crm_pools(slots: str | None = None) -> dict[str, dict[str, Any]]:
    """Pool name -> ``{"slots", "description", "include_deferred"}``, one per CRM type in the registry.

    ``slots`` (default: ``$CRM_SYNC_POOL_SLOTS``) overrides sizes; naming a pool no CRM type has is an error.
    """
    from crm_hooks.registry import HOOKS

    sizes = parse_slots(os.environ.get(SLOTS_ENV) if slots is None else slots)
    pools = {
        pool_name(crm_type): {
            "slots": sizes.get(pool_name(crm_type), DEFAULT_SLOTS),
            "description": f"{crm_type} tasks at once across all workers (sync shards, imports, backfills)",
            "include_deferred": False,
        }
        for crm_type in HOOKS
    }
    unknown = sorted(set(sizes) - set(pools))
    if unknown:
        raise ValueError(f"{SLOTS_ENV} names pools no CRM type uses: {', '.join(unknown)} (known: {', '.join(pools)})")
    return pools


def _airflow(*args: str) -> str:
    exe = shutil.which("airflow") or str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def existing_pools() -> dict[str, int]:
    """Pool name -> slots, as the metadata database has them."""
    out = _airflow("pools", "list", "--output", "json")
    return {p["pool"]: int(p["slots"]) for p in json.loads(out[out.index("[") :])}


def ensure_pools(pools: dict[str, dict[str, Any]], *, update: bool = False) -> dict[str, str]:
    """Create the pools missing from the metadata DB (and resize existing ones if ``update``).

    Returns pool name -> ``"created"`` / ``"updated"`` / ``"kept (N slots)"``.
    """
    have = existing_pools()
    todo = {name: p for name, p in pools.items() if name not in have or (update and have[name] != p["slots"])}
    if todo:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(todo, f)
        try:
            _airflow("pools", "import", f.name)
        finally:
            os.unlink(f.name)
    return {
        name: ("created" if name not in have else "updated" if name in todo else f"kept ({have[name]} slots)")
        for name in pools
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_sync.pools", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", default=None, help=f"name=slots,... (default: ${SLOTS_ENV})")
    parser.add_argument("--update", action="store_true", help="also resize pools that exist")
    parser.add_argument("--print", dest="print_only", action="store_true", help="print the pools JSON only")
    args = parser.parse_args(argv)
    try:
        pools = crm_pools(args.slots)
    except ValueError as exc:
        parser.error(str(exc))
    if args.print_only:
        print(json.dumps(pools, indent=2))
        return 0
    for name, outcome in ensure_pools(pools, update=args.update).items():
        print(f"pool {name}: {outcome}" + ("" if outcome.startswith("kept") else f" ({pools[name]['slots']} slots)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
