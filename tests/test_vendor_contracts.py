"""Vendor contracts that expire or are unconfirmed (issue 11 §3, §4): the real engine against the sandbox.

Jobber's pinned API version is reported back and warned about once per run; the fallbacks for a
HubSpot that refuses ``hasUniqueValue`` and a FieldEdge that refuses ``GET /v1/leads?trackingId=``
keep the exactly-once promise; ServiceTitan's job defaults are discovered from the tenant.
"""

from __future__ import annotations

from collections import Counter

import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from e2e_helpers import check_in_ids, ledger, recent, records
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

CASES = {c.crm_type: c for c in all_cases()}


def company(db, sandbox, case: CrmCase, n: int = 6, *, options=None, integration=None):
    """A company on ``case``'s CRM with ``n`` check-ins; ``options`` go to the sandbox account."""
    body = {
        "crm": case.crm_type,
        "account": case.account,
        "credentials": case.sandbox_credentials,
        "options": {**case.sandbox_options, **(options or {})},
    }
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    integration = integration or case.integration(sandbox.url)
    company_id, tech = create_company(db, f"{case.crm_type} contracts", {case.crm_type: integration})
    insert_check_ins(db, check_in_rows(company_id, tech, n, messy=False, start=recent(), repeat_share=0.3))
    return company_id


def sync(db, case: CrmCase, company_id: int, run_id: str = "v1"):
    """One engine run, the integration re-read from the database as the DAG does."""
    integration = load_integration(db, company_id, case.crm_type)
    return IntegrationSync(
        db, company_id=company_id, crm_type=case.crm_type, integration=integration, run_id=run_id, options=SyncOptions()
    ).run()


def assert_each_visit_once(db, sandbox, case: CrmCase, company_id: int) -> None:
    rows = ledger(db, company_id, case.crm_type)
    assert set(rows) == check_in_ids(db, company_id)
    assert {r["status"] for r in rows.values()} == {"synced"}
    found = Counter(case.visit_marker(r) for r in records(sandbox.url, case.crm_type, case.account, case.visit_object))
    assert set(found.values()) == {1}, found
    assert set(found) == {f"rankitpro-{company_id}-{cid}" for cid in rows}


# --------------------------------------------------------------------------- Jobber API version
def test_jobber_version_jobber_answered_with_is_warned_once_per_run(db, sandbox):
    case = CASES["jobber"]
    company_id = company(db, sandbox, case, options={"oldest_api_version": "2099-01-01"})
    result = sync(db, case, company_id)
    assert result.status == "success", result.error
    version = [w for w in result.warnings if w.startswith("jobber: ")]
    assert len(version) == 1 and "Jobber answered as version 2099-01-01, not the pinned 2025-04-16" in version[0]
    assert sum("has been removed" in w for w in result.warnings) == 1  # Jobber's own warning, once
    assert_each_visit_once(db, sandbox, case, company_id)


# --------------------------------------------------------------------------- ServiceTitan job defaults
def servicetitan_company(db, sandbox, crm_settings: dict, **options):
    """A ServiceTitan company whose crmSettings hold only ``crm_settings`` (the app's form sets no job defaults)."""
    case = CASES["servicetitan"]
    integration = {**case.integration(sandbox.url), "crmSettings": crm_settings}
    return case, company(db, sandbox, case, 4, options=options, integration=integration)


def jobs(sandbox, case):
    return records(sandbox.url, case.crm_type, case.account, "jobs")


def test_servicetitan_single_active_choices_are_discovered(db, sandbox):
    case, company_id = servicetitan_company(
        db, sandbox, {}, business_units=[1001, {"id": 1002, "name": "Closed branch", "active": False}]
    )
    result = sync(db, case, company_id)
    assert result.status == "success", result.error
    assert {(j["businessUnitId"], j["jobTypeId"], j["campaignId"], j["priority"]) for j in jobs(sandbox, case)} == {
        (1001, 2001, 3001, "Normal")
    }
    assert_each_visit_once(db, sandbox, case, company_id)


def test_servicetitan_campaign_named_by_a_setting(db, sandbox):
    campaigns = [{"id": 31, "name": "Google Ads"}, {"id": 32, "name": "Rank It Pro"}]
    case, company_id = servicetitan_company(
        db, sandbox, {"campaignName": "Rank It Pro", "priority": "High"}, campaigns=campaigns
    )
    result = sync(db, case, company_id)
    assert result.status == "success", result.error
    assert {(j["campaignId"], j["priority"]) for j in jobs(sandbox, case)} == {(32, "High")}


def test_servicetitan_ambiguous_or_missing_choices_are_a_configuration_error_listing_them(db, sandbox):
    campaigns = [{"id": 31, "name": "Google Ads"}, {"id": 32, "name": "Rank It Pro"}]
    units = [{"id": 11, "name": "Old branch", "active": False}]
    case, company_id = servicetitan_company(db, sandbox, {}, campaigns=campaigns, business_units=units)
    result = sync(db, case, company_id)
    assert result.status == "config_error" and result.synced == 0
    assert "tenant 1234567 has no active business units: create one in ServiceTitan" in result.error
    assert "has 2 active campaigns: set crmSettings.campaignId (or campaignName) to one of: " in result.error
    assert "31 'Google Ads'; 32 'Rank It Pro'" in result.error
    assert "is missing businessUnitId" not in result.error
    assert jobs(sandbox, case) == [] and records(sandbox.url, "servicetitan", case.account, "customers") == []


# --------------------------------------------------------------------------- HubSpot: no unique notes property
def test_hubspot_refusing_a_unique_notes_property_falls_back_to_search_before_create(db, sandbox, monkeypatch):
    case = CASES["hubspot"]
    company_id = company(db, sandbox, case, options={"refuse_unique_notes": True})
    real_finish = IntegrationSync._finish

    def die_after_the_crm_write(self, *args, **kwargs):
        raise SystemExit("worker killed before the ledger update")

    monkeypatch.setattr(IntegrationSync, "_finish", die_after_the_crm_write)
    try:
        sync(db, case, company_id)
    except SystemExit:
        pass
    assert {r["status"] for r in ledger(db, company_id, "hubspot").values()} == {"in_flight"}
    monkeypatch.setattr(IntegrationSync, "_finish", real_finish)
    result = sync(db, case, company_id, run_id="v2")
    assert result.status == "success", result.error
    assert sum("HubSpot refused hasUniqueValue on notes" in w for w in result.warnings) == 1
    assert result.visits_recovered == 6 and result.visits_created == 0
    assert_each_visit_once(db, sandbox, case, company_id)
    # rows the ledger believes unsent (e.g. restored from an old backup): the search before each create finds
    # every note, nothing is created twice
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE crm_sync.ledger SET status = 'pending', crm_visit_id = NULL WHERE company_id = :c"),
            {"c": company_id},
        )
    again = sync(db, case, company_id, run_id="v3")
    assert again.status == "success", again.error
    assert again.synced == 6 and len(records(sandbox.url, "hubspot", case.account, "notes")) == 6
    assert_each_visit_once(db, sandbox, case, company_id)


# --------------------------------------------------------------------------- FieldEdge: no lead look-up
def test_fieldedge_refusing_the_lead_lookup_relies_on_the_ledger_and_never_resends(db, sandbox, monkeypatch):
    case = CASES["fieldedge"]
    company_id = company(db, sandbox, case, options={"refuse_lead_lookup": True})
    real_finish = IntegrationSync._finish

    def die_after_the_crm_write(self, *args, **kwargs):
        raise SystemExit("worker killed before the ledger update")

    monkeypatch.setattr(IntegrationSync, "_finish", die_after_the_crm_write)
    try:
        sync(db, case, company_id)
    except SystemExit:
        pass
    in_flight = sorted(cid for cid, r in ledger(db, company_id, "fieldedge").items() if r["status"] == "in_flight")
    assert len(in_flight) == 6  # one batch, its leads written in lanes, killed before the ledger update
    interrupted, never_started = in_flight[0], in_flight[1]
    monkeypatch.setattr(IntegrationSync, "_finish", real_finish)
    # Each lead's id was recorded in the ledger as soon as FieldEdge answered (crm_intent): a kill between the
    # answer and that record leaves none (``interrupted``), and only then does a re-run need the (refused)
    # look-up. A row marked as never sent (``never_started``: its lead is deleted, the marks say the batch's
    # sends were marked and this row's was not) is sent, not held back.
    with db.begin() as conn:
        intents = dict(
            conn.execute(
                sa.text("SELECT check_in_id, crm_intent FROM crm_sync.ledger WHERE company_id = :c"),
                {"c": company_id},
            ).all()
        )
        assert all(intents[cid].get("visit_id") and intents[cid].get("sending") for cid in in_flight)
        assert all(intents[cid].get("sends_marked") for cid in in_flight)
        conn.execute(
            sa.text("UPDATE crm_sync.ledger SET crm_intent = NULL WHERE company_id = :c AND check_in_id = :i"),
            {"c": company_id, "i": interrupted},
        )
        conn.execute(
            sa.text(
                "UPDATE crm_sync.ledger SET crm_intent = crm_intent - 'visit_id' - 'sending' "
                "WHERE company_id = :c AND check_in_id = :i"
            ),
            {"c": company_id, "i": never_started},
        )
    lost = f"rankitpro-{company_id}-{never_started}"
    lead_ids = [
        lead.get("id") or lead.get("leadId")
        for lead in records(sandbox.url, "fieldedge", case.account, "leads")
        if case.visit_marker(lead) == lost
    ]
    requests.delete(f"{sandbox.url}/_sandbox/records/fieldedge/{case.account}/leads/{lead_ids[0]}").raise_for_status()

    result = sync(db, case, company_id, run_id="v2")
    assert result.status == "partial" and result.synced == 5 and result.quarantined == 1
    assert sum("FieldEdge refused the lead look-up" in w for w in result.warnings) == 1
    held = ledger(db, company_id, "fieldedge")[interrupted]
    assert held["status"] == "quarantined" and held["error_kind"] == "unconfirmed_write"
    assert f"trackingId rankitpro-{company_id}-{interrupted}" in held["last_error"]
    leads = Counter(case.visit_marker(r) for r in records(sandbox.url, "fieldedge", case.account, "leads"))
    assert sum(leads.values()) == 6 and set(leads.values()) == {1}  # the interrupted lead is there once
    assert leads[f"rankitpro-{company_id}-{interrupted}"] == 1

    again = sync(db, case, company_id, run_id="v3")
    assert again.status == "success" and again.synced == 0 and again.visits_created == 0
    assert len(records(sandbox.url, "fieldedge", case.account, "leads")) == 6
