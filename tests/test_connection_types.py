"""The CRM connection types as Airflow sees them: registered via the entry point, Test button works."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests

from e2e_helpers import SF_CREDS
from localdev.airflow_env import airflow_bin

TOKEN = "pat-na1-conntest-1b2c3d4e-5f60"


def airflow(args, airflow_home, **conns):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home}/airflow.db",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
    )
    env.update({f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in conns.items()})
    return subprocess.run([airflow_bin(), *args], env=env, capture_output=True, text=True, timeout=180)


def test_connection_types_are_registered(airflow_home):
    out = airflow(["providers", "hooks", "--output", "json"], airflow_home)
    assert out.returncode == 0, out.stderr[-2000:]
    hooks = {h["connection_type"]: h for h in json.loads(out.stdout)}
    assert hooks["crm_hubspot"]["class"] == "crm_hooks.hubspot.HubSpotHook"
    assert hooks["crm_salesforce"]["class"] == "crm_hooks.salesforce.SalesforceHook"


@pytest.mark.parametrize("good", [True, False], ids=["valid", "bad-credentials"])
def test_test_button_makes_a_real_call(airflow_home, sandbox, good):
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={"crm": "hubspot", "account": "conn", "credentials": {"accessToken": TOKEN}},
    ).raise_for_status()
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={
            "crm": "salesforce",
            "account": "conn",
            "credentials": {"clientId": SF_CREDS["client_id"], "clientSecret": SF_CREDS["client_secret"]},
        },
    ).raise_for_status()
    token = TOKEN if good else "pat-na1-wrong-token-000000"
    secret = SF_CREDS["client_secret"] if good else "wrong-secret-123456"
    conns = {
        "crm_hubspot_t": {
            "conn_type": "crm_hubspot",
            "password": token,
            "extra": {"baseUrl": f"{sandbox.url}/hubspot"},
        },
        "crm_salesforce_t": {
            "conn_type": "crm_salesforce",
            "host": f"{sandbox.url}/salesforce",
            "extra": {
                "clientId": SF_CREDS["client_id"],
                "clientSecret": secret,
                "myDomainUrl": f"{sandbox.url}/salesforce",
            },
        },
    }
    for conn_id in conns:
        out = airflow(["connections", "test", conn_id], airflow_home, **conns)
        text = out.stdout + out.stderr
        if good:
            assert "Connection success!" in text, text[-2000:]
        else:
            assert "Connection failed!" in text, text[-2000:]
            assert token not in text and secret not in text
