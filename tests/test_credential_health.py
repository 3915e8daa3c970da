"""The daily credential health check (issue 11, section 5): expired or revoked credentials are found and
reported per company, without a failed task that would hide the others.

Real parts: PostgreSQL, the sandbox over HTTP, every CRM of ``tests/crm_cases``, and the DAG itself under
``airflow dags test``.
"""

from __future__ import annotations

import json

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_hooks.errors import BadCredentialsError, ConfigurationError, RetryableError
from crm_hooks.registry import HOOKS
from crm_sync.credential_health import HealthStatus, check_credentials, checks_for, classify, format_checks
from localdev.demo_data import create_company, hubspot_integration

CASES = all_cases()


@pytest.fixture(params=CASES, ids=[c.crm_type for c in CASES])
def case(request) -> CrmCase:
    return request.param


def register(sandbox_url: str, case: CrmCase) -> None:
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox_url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()


def test_classify():
    assert classify(BadCredentialsError("401 token revoked")) == HealthStatus.BAD_CREDENTIALS
    assert classify(ConfigurationError("no tenant")) == HealthStatus.CONFIG_ERROR
    assert classify(RetryableError("503")) == HealthStatus.UNREACHABLE


def test_every_crm_has_a_connection_test():
    """The Test button's call (``test_connection`` -> ``check_access``) is the health check's: all six have one."""
    from crm_hooks.base import CrmHook
    from crm_hooks.registry import hook_class

    assert len(HOOKS) == 6
    for crm_type in HOOKS:
        assert hook_class(crm_type).check_access is not CrmHook.check_access, crm_type


def test_a_revoked_credential_is_reported_for_its_company_and_the_others_are_healthy(db, sandbox, case):
    register(sandbox.url, case)
    good, _ = create_company(db, f"{case.crm_type} good", {case.crm_type: case.integration(sandbox.url)})
    bad, _ = create_company(db, f"{case.crm_type} revoked", {case.crm_type: case.bad_integration(sandbox.url)})

    healthy = check_credentials(db, good, case.crm_type, run_id="h1", dag_id="test")
    revoked = check_credentials(db, bad, case.crm_type, run_id="h1", dag_id="test")

    assert healthy.status == HealthStatus.HEALTHY and healthy.api_calls >= 1, healthy.message
    assert revoked.status == HealthStatus.BAD_CREDENTIALS, revoked.message
    rows = checks_for(db, "h1")
    assert [(r["company_id"], r["status"]) for r in rows] == [(bad, "bad_credentials"), (good, "healthy")]
    text = json.dumps([healthy.as_dict(), revoked.as_dict()]) + format_checks(rows) + str(rows)
    for secret in case.secrets:
        assert secret not in text


@pytest.mark.e2e
def test_the_dag_reports_a_revoked_credential_and_checks_every_company(db, db_url, sandbox, airflow_home, tmp_path):
    from e2e_helpers import run_dag

    tokens = {"acct-a": "pat-na1-portal-a-11aa22bb", "acct-b": "pat-na1-portal-b-33cc44dd"}
    for account, token in tokens.items():
        requests.post(
            f"{sandbox.url}/_sandbox/accounts",
            json={"crm": "hubspot", "account": account, "credentials": {"accessToken": token}},
            timeout=10,
        ).raise_for_status()
    companies = {
        account: create_company(db, f"health {account}", {"hubspot": hubspot_integration(sandbox.url, token)})[0]
        for account, token in tokens.items()
    }
    # Account B's admin revokes the app's token (and issues another the company never saved).
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={"crm": "hubspot", "account": "acct-b", "credentials": {"accessToken": "pat-na1-portal-b-new-55ee66ff"}},
        timeout=10,
    ).raise_for_status()

    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id="crm_credential_health")

    assert code == 0, out[-3000:]
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT company_id, crm_type, status, message FROM crm_sync.credential_checks ORDER BY company_id")
        ).all()
    assert [(r.company_id, r.status) for r in rows] == [
        (companies["acct-a"], "healthy"),
        (companies["acct-b"], "bad_credentials"),
    ]
    assert "need attention" in out and "bad_credentials" in out
    for token in tokens.values():
        assert token not in out and all(token not in (r.message or "") for r in rows)
