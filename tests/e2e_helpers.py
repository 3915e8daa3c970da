"""Shared steps of the end-to-end tests: seed companies, run the DAG for real, read the outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from localdev.airflow_env import airflow_env, dags_test
from localdev.demo_data import (
    check_in_rows,
    create_company,
    hubspot_integration,
    insert_check_ins,
    salesforce_integration,
)

HS_TOKEN = "pat-na1-e2e-9d0f3b2a-77c1-4c55-b1e0"
SF_CREDS = {"client_id": "3MVG9e2e.client", "client_secret": "sf-e2e-secret-5d8c1a"}
SF_PASSWORD_CREDS = {
    "client_id": "3MVG9e2e.pw",
    "client_secret": "sf-e2e-pw-secret-88ab",
    "username": "e2e@example.com",
    "password": "E2e-Pass-77!",
    "security_token": "TOKe2e4411",
}
SECRETS = [
    HS_TOKEN,
    SF_CREDS["client_secret"],
    SF_PASSWORD_CREDS["client_secret"],
    SF_PASSWORD_CREDS["password"],
    SF_PASSWORD_CREDS["security_token"],
]


def recent() -> datetime:
    """Check-ins from the last two days: inside the edit look-back window."""
    return (datetime.now(UTC) - timedelta(days=2)).replace(tzinfo=None, microsecond=0)


def register(sandbox_url: str, crm: str, account: str, credentials: dict[str, Any], **limits: Any) -> None:
    body: dict[str, Any] = {"crm": crm, "account": account, "credentials": credentials}
    if limits:
        body["limits"] = limits
    requests.post(f"{sandbox_url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()


def seed(
    engine: sa.Engine,
    sandbox_url: str,
    *,
    hubspot: int = 30,
    salesforce: int = 30,
    salesforce_pw: int = 0,
    broken: bool = True,
    seed_value: int = 7,
) -> dict[str, int]:
    """Companies on HubSpot and Salesforce (+ broken configurations); returns name -> company id."""
    ids: dict[str, int] = {}
    if hubspot:
        register(sandbox_url, "hubspot", "hs", {"accessToken": HS_TOKEN})
        cid, tid = create_company(engine, "HubSpot Co", {"hubspot": hubspot_integration(sandbox_url, HS_TOKEN)})
        insert_check_ins(engine, check_in_rows(cid, tid, hubspot, seed=seed_value, start=recent()))
        ids["hubspot"] = cid
    if salesforce:
        register(
            sandbox_url,
            "salesforce",
            "sf",
            {"clientId": SF_CREDS["client_id"], "clientSecret": SF_CREDS["client_secret"]},
        )
        cid, tid = create_company(
            engine, "Salesforce Co", {"salesforce": salesforce_integration(sandbox_url, **SF_CREDS)}
        )
        insert_check_ins(engine, check_in_rows(cid, tid, salesforce, seed=seed_value, start=recent()))
        ids["salesforce"] = cid
    if salesforce_pw:
        c = SF_PASSWORD_CREDS
        register(
            sandbox_url,
            "salesforce",
            "sfpw",
            {
                "clientId": c["client_id"],
                "clientSecret": c["client_secret"],
                "username": c["username"],
                "password": c["password"],
                "securityToken": c["security_token"],
            },
        )
        cid, tid = create_company(engine, "Salesforce PW Co", {"salesforce": salesforce_integration(sandbox_url, **c)})
        insert_check_ins(engine, check_in_rows(cid, tid, salesforce_pw, seed=seed_value, start=recent()))
        ids["salesforce_pw"] = cid
    if broken:
        ids["broken_json"] = create_company(engine, "Broken JSON", '{"hubspot": {"status": "act')[0]
        ids["unknown_crm"] = create_company(
            engine, "Unknown CRM", {"zoho": {"status": "active", "credentials": {"apiKey": "k"}}}
        )[0]
        ids["no_credentials"] = create_company(
            engine, "No Credentials", {"hubspot": {"status": "active", "credentials": {}}}
        )[0]
    return ids


def run_dag(
    airflow_home: Path,
    db_url: sa.URL,
    tmp_path: Path,
    *,
    dag_id: str = "crm_incremental_sync",
    conf: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """``airflow dags test`` in a subprocess; returns (exit code, full output)."""
    env = airflow_env(airflow_home, db_url, extra=extra_env)
    log_path = tmp_path / f"dags-test-{len(list(tmp_path.glob('dags-test-*')))}.log"
    proc = dags_test(env, dag_id, conf, log_path=log_path)
    return proc.returncode, log_path.read_text()


def stats(sandbox_url: str) -> dict[str, Any]:
    return requests.get(f"{sandbox_url}/_sandbox/stats", timeout=10).json()


def records(sandbox_url: str, crm: str, account: str, obj: str) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox_url}/_sandbox/records/{crm}/{account}/{obj}", timeout=30).json()


def ledger(engine: sa.Engine, company_id: int, crm_type: str) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM crm_sync.ledger WHERE company_id = :c AND crm_type = :t"),
            {"c": company_id, "t": crm_type},
        ).mappings()
        return {r["check_in_id"]: dict(r) for r in rows}


def check_in_ids(engine: sa.Engine, company_id: int) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM check_ins WHERE company_id = :c"), {"c": company_id}).scalars())


def company_json(engine: sa.Engine, company_id: int) -> tuple[Any, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT crm_integrations, crm_sync_history FROM companies WHERE id = :c"), {"c": company_id}
        ).one()
    return json.loads(row[0]), json.loads(row[1] or "[]")
