"""Account facts kept between runs (issue 14, crm_sync/account_facts.py): checked once per CRM account, re-checked
when expired, when the configuration changes, and when the CRM refuses a write because one is wrong.

Every CRM through the sandbox: the engine's hook counts calls by endpoint (``IntegrationSync.endpoint_calls``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_hooks.registry import hook_class
from crm_sync import account_facts
from crm_sync.integration_sync import IntegrationResult, IntegrationSync
from crm_sync.integrations import load_integration
from e2e_helpers import check_in_ids, company_json, recent, records
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

CASES = all_cases()
#: What each CRM asked at run start before the facts were kept (the endpoints a re-check calls again).
FACTS_ENDPOINTS = {
    "hubspot": {"GET /crm/v3/properties/contacts", "GET /crm/v3/properties/notes", "GET /account-info/v3/details"},
    "salesforce": {"GET sobjects/Account/describe", "GET sobjects/Contact/describe", "GET sobjects/Case/describe"},
    "servicetitan": {
        "GET /settings/v2/tenant/{t}/business-units/{id}",
        "GET /jpm/v2/tenant/{t}/job-types/{id}",
        "GET /marketing/v2/tenant/{t}/campaigns/{id}",
        "GET /crm/v2/tenant/{t}/customers",  # the account identity (a tenant-scoped read)
    },
    "housecallpro": {"GET /company", "GET /job_fields/job_types"},
    "jobber": {"POST graphql RipAccount"},
    "fieldedge": set(),  # the tenant is confirmed by the token request; nothing else is read at run start
}


@pytest.fixture(params=CASES, ids=[c.crm_type for c in CASES])
def case(request) -> CrmCase:
    return request.param


def setup(db, sandbox, case: CrmCase, n: int = 3) -> int:
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    company_id, tech = create_company(db, f"{case.crm_type} facts", {case.crm_type: case.integration(sandbox.url)})
    insert_check_ins(db, check_in_rows(company_id, tech, n, messy=False, start=recent(), repeat_share=0.0))
    return company_id


def new_rows(db, company_id: int, n: int, seed: int) -> None:
    with db.connect() as conn:
        tech = conn.execute(sa.text("SELECT id FROM technicians WHERE company_id = :c"), {"c": company_id}).scalar()
    insert_check_ins(db, check_in_rows(company_id, tech, n, seed=seed, messy=False, start=recent(), repeat_share=0.0))


def run(db, case: CrmCase, company_id: int, run_id: str) -> tuple[IntegrationResult, dict[str, int]]:
    sync = IntegrationSync(
        db,
        company_id=company_id,
        crm_type=case.crm_type,
        integration=load_integration(db, company_id, case.crm_type),
        run_id=run_id,
    )
    result = sync.run()
    assert result.status == "success", (result.error, result.warnings)
    return result, sync.endpoint_calls


def facts_row(db, company_id: int, crm_type: str) -> Any:
    with db.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT crm_account, facts, checked_at, expires_at, config_fingerprint FROM crm_sync.account_facts "
                "WHERE company_id = :c AND crm_type = :t"
            ),
            {"c": company_id, "t": crm_type},
        ).one_or_none()


def facts_called(case: CrmCase, endpoints: dict[str, int]) -> set[str]:
    return set(endpoints) & FACTS_ENDPOINTS[case.crm_type]


def test_facts_are_checked_once_and_kept_across_runs(db, sandbox, case):
    company_id = setup(db, sandbox, case)
    first, first_calls = run(db, case, company_id, "f1")
    assert first.synced == 3
    row = facts_row(db, company_id, case.crm_type)
    assert row is not None and row.crm_account == first.crm_account
    assert row.expires_at > row.checked_at
    stored = json.dumps(row.facts) + row.config_fingerprint
    assert not [s for s in case.secrets if s in stored]  # never a secret
    assert facts_called(case, first_calls) == FACTS_ENDPOINTS[case.crm_type], first_calls

    new_rows(db, company_id, 3, seed=21)
    second, second_calls = run(db, case, company_id, "f2")

    assert second.synced == 3 and second.crm_account == first.crm_account
    assert facts_called(case, second_calls) == set(), second_calls  # no facts call, no account identity call
    assert second.api_calls < first.api_calls or not FACTS_ENDPOINTS[case.crm_type]
    assert facts_row(db, company_id, case.crm_type).checked_at == row.checked_at


def test_expired_or_deleted_facts_are_checked_again(db, sandbox, case):
    company_id = setup(db, sandbox, case)
    first, first_calls = run(db, case, company_id, "e1")
    checked = facts_row(db, company_id, case.crm_type).checked_at
    with db.begin() as conn:  # as if the expiry passed
        conn.execute(
            sa.text("UPDATE crm_sync.account_facts SET expires_at = now() - interval '1 second' WHERE company_id = :c"),
            {"c": company_id},
        )
    new_rows(db, company_id, 2, seed=22)
    _, calls = run(db, case, company_id, "e2")
    assert facts_called(case, calls) == facts_called(case, first_calls)
    assert facts_row(db, company_id, case.crm_type).checked_at > checked

    with db.begin() as conn:  # deleting the row forces a re-check (README)
        conn.execute(sa.text("DELETE FROM crm_sync.account_facts WHERE company_id = :c"), {"c": company_id})
    new_rows(db, company_id, 2, seed=23)
    _, calls = run(db, case, company_id, "e3")
    assert facts_called(case, calls) == facts_called(case, first_calls)
    assert facts_row(db, company_id, case.crm_type) is not None


def test_a_configuration_change_checks_the_facts_again(db, sandbox):
    case = next(c for c in CASES if c.crm_type == "hubspot")
    company_id = setup(db, sandbox, case)
    run(db, case, company_id, "c1")
    before = facts_row(db, company_id, case.crm_type)
    integrations, _ = company_json(db, company_id)
    integrations["hubspot"].setdefault("syncSettings", {})["customFieldMapping"] = {"technicianName": "rip_technician"}
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE companies SET crm_integrations = :i WHERE id = :c"),
            {"i": json.dumps(integrations), "c": company_id},
        )
    new_rows(db, company_id, 1, seed=24)
    result, calls = run(db, case, company_id, "c2")
    assert facts_called(case, calls), calls
    after = facts_row(db, company_id, case.crm_type)
    assert after.config_fingerprint != before.config_fingerprint and after.checked_at > before.checked_at
    assert any("rip_technician" in w for w in result.warnings)  # the warning comes back with the kept facts too
    new_rows(db, company_id, 1, seed=25)
    result, calls = run(db, case, company_id, "c3")
    assert not facts_called(case, calls) and any("rip_technician" in w for w in result.warnings)


def test_ttl_setting(monkeypatch):
    monkeypatch.delenv(account_facts.TTL_ENV, raising=False)
    assert account_facts.ttl_seconds() == 24 * 3600
    monkeypatch.setenv(account_facts.TTL_ENV, "0.5")
    assert account_facts.ttl_seconds() == 1800
    monkeypatch.setenv(account_facts.TTL_ENV, "soon")
    assert account_facts.ttl_seconds() == 24 * 3600


def test_a_property_deleted_in_hubspot_is_checked_again_and_the_rows_sent_once(db, sandbox):
    """The notes marker property is deleted between two runs: the note create is refused for it, the facts
    are invalidated and checked again (the property is created again) and the refused rows are sent once more."""
    case = next(c for c in CASES if c.crm_type == "hubspot")
    company_id = setup(db, sandbox, case)
    run(db, case, company_id, "p1")
    hook = hook_class("hubspot").from_integration(load_integration(db, company_id, "hubspot"))
    path = "/crm/v3/properties/notes/rankitpro_checkin_key"
    hook.request("DELETE", path, endpoint="DELETE property")  # as an admin would, in HubSpot's settings

    def marker_exists() -> bool:
        return any(p["name"] == "rankitpro_checkin_key" for p in hook.get_properties("notes"))

    assert not marker_exists()
    checked = facts_row(db, company_id, case.crm_type).checked_at
    new_rows(db, company_id, 3, seed=26)

    result, calls = run(db, case, company_id, "p2")

    assert result.synced == 3 and result.quarantined == 0 and result.failed == 0, result.quarantine_reasons
    assert any("checked again" in w for w in result.warnings)
    assert calls.get("POST /crm/v3/properties/notes") == 1  # created again, once
    assert marker_exists()
    assert facts_row(db, company_id, case.crm_type).checked_at > checked
    markers = [case.visit_marker(r) for r in records(sandbox.url, "hubspot", case.account, case.visit_object)]
    expected = {f"rankitpro-{company_id}-{cid}" for cid in check_in_ids(db, company_id)}
    assert {m for m in markers if m in expected} == expected
    assert len([m for m in markers if m in expected]) == len(expected)  # each visit once


def test_an_external_id_field_deleted_in_salesforce_stops_the_run_with_the_setup_message(db, sandbox):
    """The org loses the External ID fields between two runs: the write is refused, the facts are checked again,
    and the run stops as a configuration error naming the fields (rows back to pending, nothing lost)."""
    case = next(c for c in CASES if c.crm_type == "salesforce")
    company_id = setup(db, sandbox, case)
    run(db, case, company_id, "s1")
    body = {
        "crm": case.crm_type,
        "account": case.account,
        "credentials": case.sandbox_credentials,
        "options": {**case.sandbox_options, "missing_external_ids": True},
    }
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    new_rows(db, company_id, 2, seed=27)
    sync = IntegrationSync(
        db,
        company_id=company_id,
        crm_type=case.crm_type,
        integration=load_integration(db, company_id, case.crm_type),
        run_id="s2",
    )
    result = sync.run()
    assert result.status == "config_error", (result.status, result.error)
    assert "External ID" in (result.error or "")
    assert facts_called(case, sync.endpoint_calls) == FACTS_ENDPOINTS["salesforce"], sync.endpoint_calls
    assert facts_row(db, company_id, case.crm_type) is None  # forgotten; the next run checks again
    with db.connect() as conn:
        statuses = conn.execute(
            sa.text("SELECT status, count(*) FROM crm_sync.ledger WHERE company_id = :c GROUP BY status"),
            {"c": company_id},
        ).all()
    assert dict(statuses).get("synced") == 3 and sum(n for _, n in statuses) == 5


TOKEN_ENDPOINTS = {
    "salesforce": "POST /services/oauth2/token",
    "servicetitan": "POST /connect/token",
    "fieldedge": "POST /oauth/token",
}


@pytest.mark.parametrize("crm", sorted(TOKEN_ENDPOINTS))
def test_a_client_credentials_token_is_kept_encrypted_between_runs(db, sandbox, crm):
    case = next(c for c in CASES if c.crm_type == crm)
    company_id = setup(db, sandbox, case)
    _, first_calls = run(db, case, company_id, "t1")
    assert first_calls.get(TOKEN_ENDPOINTS[crm]) == 1
    with db.connect() as conn:
        kept = conn.execute(
            sa.text("SELECT ciphertext, credentials_fingerprint FROM crm_sync.access_tokens WHERE company_id = :c"),
            {"c": company_id},
        ).one()
    with sandbox.state.lock:
        values = [t.value for t in sandbox.state.tokens.values() if t.crm == crm]
    issued = [v for v in values if v in kept.ciphertext + kept.credentials_fingerprint]
    assert values
    assert not issued and not [s for s in case.secrets if s in kept.ciphertext + kept.credentials_fingerprint]

    new_rows(db, company_id, 2, seed=31)
    second, second_calls = run(db, case, company_id, "t2")
    assert second.synced == 2 and TOKEN_ENDPOINTS[crm] not in second_calls, second_calls

    # The CRM stops taking it (expired early, revoked): a 401, the kept token is dropped, a new one fetched.
    requests.post(f"{sandbox.url}/_sandbox/accounts/{crm}/{case.account}/expire-tokens", timeout=10).raise_for_status()
    new_rows(db, company_id, 2, seed=32)
    third, third_calls = run(db, case, company_id, "t3")
    assert third.synced == 2 and third_calls.get(TOKEN_ENDPOINTS[crm]) == 1, third_calls


def test_a_servicetitan_business_unit_gone_is_discovered_again_and_the_rows_sent_once(db, sandbox):
    """The business unit the sync discovered (not set in crmSettings) is gone from the tenant between two runs:
    the job create is refused for it, the job defaults are discovered again and the refused rows sent once more."""
    case = next(c for c in CASES if c.crm_type == "servicetitan")
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    integration = case.integration(sandbox.url)
    integration["crmSettings"].pop("businessUnitId")  # discovered: the tenant's single active business unit
    company_id, tech = create_company(db, "servicetitan facts", {case.crm_type: integration})
    insert_check_ins(db, check_in_rows(company_id, tech, 2, messy=False, start=recent(), repeat_share=0.0))
    run(db, case, company_id, "b1")
    assert facts_row(db, company_id, case.crm_type).facts["chosen"] == {"businessUnitId": 1001}
    requests.post(
        f"{sandbox.url}/_sandbox/accounts", json={**body, "options": {"business_units": [1005]}}, timeout=10
    ).raise_for_status()
    new_rows(db, company_id, 2, seed=41)

    result, calls = run(db, case, company_id, "b2")

    assert result.synced == 2 and result.quarantined == 0 and result.failed == 0, result.quarantine_reasons
    assert any("checked again" in w for w in result.warnings)
    assert facts_row(db, company_id, case.crm_type).facts["chosen"] == {"businessUnitId": 1005}
    jobs = records(sandbox.url, "servicetitan", case.account, case.visit_object)
    units = sorted(j.get("businessUnitId") for j in jobs)
    assert units == [1001, 1001, 1005, 1005], units  # each check-in's job once


def test_the_daily_credential_check_does_not_trust_a_kept_token(db, sandbox):
    """A kept token would answer for credentials revoked since it was issued: the health check fetches a new one."""
    from crm_sync.credential_health import check_credentials

    case = next(c for c in CASES if c.crm_type == "salesforce")
    company_id = setup(db, sandbox, case)
    run(db, case, company_id, "h1")
    with db.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM crm_sync.access_tokens WHERE company_id = :c"), {"c": company_id}
            ).scalar()
            == 1
        )
    # The admin rotated the client secret in Salesforce; the sync still holds the old one (and a session
    # issued before, which Salesforce keeps answering until it expires).
    body = {
        "crm": case.crm_type,
        "account": case.account,
        "credentials": {**case.sandbox_credentials, "clientSecret": "rotated-secret-000"},
        "options": case.sandbox_options,
    }
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    result = check_credentials(db, company_id, "salesforce", run_id="h2")
    assert result.status != "healthy", result
