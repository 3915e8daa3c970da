"""The sync engine on real parts (PostgreSQL + the sandbox over HTTP), without Airflow around it."""

from __future__ import annotations

from collections import Counter

import requests
import sqlalchemy as sa

from crm_sync.integration_sync import IntegrationSync, SyncOptions
from e2e_helpers import SF_CREDS, check_in_ids, ledger, recent, records, register
from localdev.demo_data import (
    check_in_rows,
    create_company,
    hubspot_integration,
    insert_check_ins,
    salesforce_integration,
)

HS_TOKEN = "pat-na1-engine-44aa55bb-66cc"


def salesforce_company(db, sandbox, n, **limits):
    register(
        sandbox.url,
        "salesforce",
        "sf",
        {"clientId": SF_CREDS["client_id"], "clientSecret": SF_CREDS["client_secret"]},
        **limits,
    )
    integration = salesforce_integration(sandbox.url, **SF_CREDS)
    company_id, tech = create_company(db, "SF Co", {"salesforce": integration})
    insert_check_ins(db, check_in_rows(company_id, tech, n, messy=False, start=recent()))
    return company_id, integration


def hubspot_company(db, sandbox, rows, **settings):
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    integration = hubspot_integration(sandbox.url, HS_TOKEN, **settings)
    company_id, tech = create_company(db, "HS Co", {"hubspot": integration})
    for row in rows:
        row.update(company_id=company_id, technician_id=tech)
    insert_check_ins(db, iter(rows))
    return company_id, integration


def sync(db, company_id, crm, integration, run_id="r1", **options):
    return IntegrationSync(
        db, company_id=company_id, crm_type=crm, integration=integration, run_id=run_id, options=SyncOptions(**options)
    ).run()


def test_salesforce_daily_limit_stops_cleanly_then_resumes(db, sandbox):
    company_id, integration = salesforce_company(db, sandbox, 60, daily_api_requests=8)
    result = sync(db, company_id, "salesforce", integration, batch_size=10)
    assert "quota" in result.error and result.status in ("partial", "failed")
    forbidden = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["salesforce"]["sf"]
    statuses = Counter(r["status"] for r in ledger(db, company_id, "salesforce").values())
    assert "in_flight" not in statuses and statuses["pending"] > 0, statuses
    # No retry storm: the 403 REQUEST_LIMIT_EXCEEDED was not retried.
    assert forbidden["requests"] <= 9

    register(
        sandbox.url,
        "salesforce",
        "sf",
        {"clientId": SF_CREDS["client_id"], "clientSecret": SF_CREDS["client_secret"]},
        daily_api_requests=100000,
    )
    result = sync(db, company_id, "salesforce", integration, run_id="r2", batch_size=10)
    assert result.status == "success", result.error
    rows = ledger(db, company_id, "salesforce")
    assert set(rows) == check_in_ids(db, company_id) and {r["status"] for r in rows.values()} == {"synced"}
    keys = Counter(c["RankItPro_CheckIn_Key__c"] for c in records(sandbox.url, "salesforce", "sf", "Case"))
    assert len(keys) == 60 and set(keys.values()) == {1}


def test_token_expiring_mid_run_is_refreshed(db, sandbox):
    company_id, integration = salesforce_company(db, sandbox, 40, token_ttl_seconds=1)
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"latency_ms": 150, "rate": 1.0}, timeout=5)
    result = sync(db, company_id, "salesforce", integration, batch_size=5)
    assert result.status == "success", result.error
    assert result.synced == 40
    assert result.retries == 0  # a refresh is not a retry


def test_missing_external_id_fields_is_a_clear_configuration_error(db, sandbox):
    register(
        sandbox.url, "salesforce", "sf", {"clientId": SF_CREDS["client_id"], "clientSecret": SF_CREDS["client_secret"]}
    )
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={
            "crm": "salesforce",
            "account": "sf",
            "credentials": {"clientId": SF_CREDS["client_id"], "clientSecret": SF_CREDS["client_secret"]},
            "options": {"missing_external_ids": True},
        },
        timeout=5,
    ).raise_for_status()
    integration = salesforce_integration(sandbox.url, **SF_CREDS)
    company_id, tech = create_company(db, "No Fields Co", {"salesforce": integration})
    insert_check_ins(db, check_in_rows(company_id, tech, 3, messy=False, start=recent()))
    result = sync(db, company_id, "salesforce", integration)
    assert result.status == "config_error"
    assert "Case.RankItPro_CheckIn_Key__c" in result.error and "Account.RankItPro_Customer_Key__c" in result.error
    assert records(sandbox.url, "salesforce", "sf", "Case") == []


def _row(**kw):
    base = next(check_in_rows(0, 0, 1, messy=False, start=recent()))
    base.update(kw)
    return base


def test_existing_crm_customer_with_differently_formatted_phone_is_matched(db, sandbox):
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    requests.post(
        f"{sandbox.url}/_sandbox/records/hubspot/hs/contacts",
        json={"properties": {"firstname": "Rita", "lastname": "Ortiz", "phone": "(512) 555-0199"}},
        timeout=5,
    ).raise_for_status()
    company_id, integration = hubspot_company(
        db, sandbox, [_row(customer_name="Rita Ortiz", customer_email=None, customer_phone="512.555.0199")]
    )
    result = sync(db, company_id, "hubspot", integration)
    assert result.status == "success" and result.customers_found == 1 and result.customers_created == 0
    contacts = records(sandbox.url, "hubspot", "hs", "contacts")
    assert len(contacts) == 1
    note = records(sandbox.url, "hubspot", "hs", "notes")[0]
    assert note["associations"][0]["to"]["id"] == contacts[0]["id"]


def test_create_new_customers_off_quarantines_unknown_customers(db, sandbox):
    company_id, integration = hubspot_company(
        db, sandbox, [_row(customer_email="new.person@example.com")], createNewCustomers=False
    )
    result = sync(db, company_id, "hubspot", integration)
    assert result.quarantined == 1 and result.synced == 0 and result.status == "failed"
    (row,) = ledger(db, company_id, "hubspot").values()
    assert row["status"] == "quarantined" and row["error_kind"] == "no_match"
    assert "createNewCustomers is off" in row["last_error"]
    assert records(sandbox.url, "hubspot", "hs", "contacts") == []


def test_requeued_quarantined_row_is_retried_and_unchanged_rows_are_not(db, sandbox):
    company_id, integration = hubspot_company(
        db,
        sandbox,
        [_row(customer_email="a@example.com"), _row(customer_email=None, customer_phone=None, customer_name=None)],
    )
    first = sync(db, company_id, "hubspot", integration)
    assert first.synced == 1 and first.quarantined == 1
    second = sync(db, company_id, "hubspot", integration, run_id="r2")
    assert second.unchanged == 2 and second.api_calls == 0  # idle: no token, no run-start check, no identity
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE crm_sync.ledger SET requeue = true WHERE status = 'quarantined'"))
    third = sync(db, company_id, "hubspot", integration, run_id="r3")
    assert third.quarantined == 1 and third.unchanged == 1


def test_concurrent_run_of_the_same_integration_is_skipped(db, sandbox):
    company_id, integration = hubspot_company(db, sandbox, [_row(customer_email="a@example.com")])
    holder = db.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(hashtext('hubspot'), :c)"), {"c": company_id})
    try:
        result = sync(db, company_id, "hubspot", integration)
    finally:
        holder.close()
    assert result.status == "skipped" and "another sync" in result.error
    assert records(sandbox.url, "hubspot", "hs", "notes") == []


def test_check_in_without_creation_time_is_bad_source_data_and_the_others_sync(db, sandbox):
    company_id, integration = hubspot_company(
        db, sandbox, [_row(customer_email="dated@example.com"), _row(customer_email="undated@example.com")]
    )
    undated = max(check_in_ids(db, company_id))
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE check_ins SET created_at = NULL WHERE id = :id"), {"id": undated})
    result = sync(db, company_id, "hubspot", integration)
    assert result.synced == 1 and result.quarantined == 1
    row = ledger(db, company_id, "hubspot")[undated]
    assert row["status"] == "quarantined" and row["error_kind"] == "bad_source_data"
    assert row["last_error"].startswith("the check-in has no creation time (created_at is empty)")
    assert "not a timestamp" not in row["last_error"]
