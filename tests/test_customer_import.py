"""Customer import: the match keys (pure), then every CRM through the sandbox over HTTP with a real PostgreSQL.

The per-CRM check is the one the import exists for: a customer typed into the CRM as
"(512) 555-0142" checks in as "+1 512-555-0142"; after the import the sync resolves the
customer from the map (no CRM lookup, no create) and attaches the visit to that record.
"""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_sync.customer_import import (
    DuplicateTracker,
    customer_match_keys,
    ensure_customer_index,
    format_imports,
    import_customers,
    imports_for,
    mask_key,
)
from crm_sync.destinations.base import CrmCustomerRecord
from crm_sync.integration_sync import IntegrationSync
from crm_sync.integrations import load_integration
from e2e_helpers import ledger, recent, records
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

CASES = all_cases()
CRM_PHONE = "(512) 555-0142"
CHECK_IN_PHONE = "+1 512-555-0142"


# ---------------------------------------------------------------------- pure: keys, duplicates, masking
@pytest.mark.parametrize(
    "typed", ["(512) 555-0142", "512.555.0142", "+1 512-555-0142", "15125550142", "512 555 0142 ext. 9"]
)
def test_phone_keys_are_the_keys_the_sync_builds_for_check_ins(typed):
    from crm_sync.models import SyncSettings
    from crm_sync.prepare import prepare_check_in

    record = CrmCustomerRecord("1", name="Dana Whitfield", phone=typed)
    row = {
        "id": 1,
        "company_id": 1,
        "customer_name": "Dana Whitfield",
        "customer_phone": CHECK_IN_PHONE,
        "created_at": "2026-11-20T10:00:00",
    }
    sync_keys = prepare_check_in(row, SyncSettings()).match_keys
    assert customer_match_keys(record, "all") == sync_keys == ["phone:+15125550142"]


def test_keys_follow_the_match_strategy():
    record = CrmCustomerRecord("7", name="DOE, JANE", email="  Jane.Doe@Example.COM ", phone="(512) 555-0100")
    assert customer_match_keys(record, "all") == ["email:jane.doe@example.com", "phone:+15125550100"]
    assert customer_match_keys(record, "email") == ["email:jane.doe@example.com"]
    assert customer_match_keys(record, "phone") == ["phone:+15125550100"]
    assert customer_match_keys(record, "name") == ["name:jane doe"]
    # 'all' keys a person by name only when there is no usable email or phone (as the sync does).
    assert customer_match_keys(CrmCustomerRecord("8", name="Ann Lee", email="not-an-email", phone="12"), "all") == [
        "name:ann lee"
    ]
    assert customer_match_keys(CrmCustomerRecord("9"), "all") == []
    # The sync's own marker, when the record carries one, is a key too.
    assert customer_match_keys(CrmCustomerRecord("10", phone="512-555-0100", sync_key="name:ann lee"), "all") == [
        "phone:+15125550100",
        "name:ann lee",
    ]


def test_duplicates_are_customers_sharing_an_email_or_phone_not_a_name():
    tracker = DuplicateTracker()
    people = [
        CrmCustomerRecord("1", name="Sam Ortiz", email="sam@x.com"),
        CrmCustomerRecord("2", name="Sam Ortiz", email="SAM@X.COM", phone="512-555-0199"),
        CrmCustomerRecord("3", name="Samuel Ortiz", phone="(512) 555 0199"),
        CrmCustomerRecord("4", name="Sam Ortiz"),
        CrmCustomerRecord("5", name="Lee Park", email="lee@x.com"),
    ]
    for p in people:
        tracker.add(p.crm_id, customer_match_keys(p, "all"))
    groups, customers, examples = tracker.report()
    assert (groups, customers) == (2, 3)  # sam@x.com: 1+2; +15125550199: 2+3; "4" shares only a name
    assert {tuple(e["crm_ids"]) for e in examples} == {("1", "2"), ("2", "3")}
    assert {e["key"] for e in examples} == {"email:s***@x.com", "phone:+1***0199"}


def test_mask_key_hides_the_address_and_number():
    assert mask_key("email:jane.doe@example.com") == "email:j***@example.com"
    assert mask_key("phone:+15125550142") == "phone:+1***0142"
    assert mask_key("name:jane doe") == "name:j***"


# ---------------------------------------------------------------------- every CRM through the sandbox
@pytest.fixture(params=CASES, ids=[c.crm_type for c in CASES])
def case(request) -> CrmCase:
    return request.param


def register(sandbox, case: CrmCase) -> None:
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()


def dana(db, sandbox, case: CrmCase, name: str = "Dana's HVAC") -> int:
    """A company on this CRM with one check-in by Dana, phone typed as the technician types it."""
    company_id, tech = create_company(db, name, {case.crm_type: case.integration(sandbox.url)})
    row = next(check_in_rows(company_id, tech, 1, messy=False, start=recent()))
    row.update(customer_name="Dana Whitfield", customer_email=None, customer_phone=CHECK_IN_PHONE)
    insert_check_ins(db, iter([row]))
    return company_id


def customer_map(db, company_id: int) -> dict[str, tuple[str, bool]]:
    with db.connect() as conn:
        return {
            r.match_key: (r.crm_customer_id, r.created_by_sync)
            for r in conn.execute(
                sa.text("SELECT * FROM crm_sync.customer_map WHERE company_id = :c"), {"c": company_id}
            )
        }


def test_import_prevents_a_duplicate_of_a_customer_typed_differently_in_the_crm(db, sandbox, case):
    register(sandbox, case)
    company_id = dana(db, sandbox, case)
    integration = load_integration(db, company_id, case.crm_type)
    if case.seed_customer is None:
        # The CRM cannot list customers (FieldEdge): said so, recorded as final, no request made.
        result = import_customers(db, company_id, case.crm_type, integration, trigger="auto")
        assert result.status == "unsupported" and "lists customers" in result.error, result
        assert result.api_calls == 0
        assert ensure_customer_index(db, company_id, case.crm_type, integration) is None  # not retried
        return
    seeded = case.seed_customer(sandbox.url, "Dana", "Whitfield", CRM_PHONE)
    before = len(records(sandbox.url, case.crm_type, case.account, case.customer_object))

    # As the operator does: the automatic import, then the sync with the same integration object
    # (credentials the import rotated, e.g. Jobber's refresh token, must reach the sync).
    result = ensure_customer_index(db, company_id, case.crm_type, integration, run_id="imp-1")
    assert result is not None and result.status == "success", result
    assert (result.customers_indexed, result.duplicate_groups) == (1, 0)
    assert customer_map(db, company_id)["phone:+15125550142"] == (seeded, False)

    sync = IntegrationSync(
        db, company_id=company_id, crm_type=case.crm_type, integration=integration, run_id="sync-1"
    ).run()
    assert sync.status == "success", sync.error
    # From the imported map: no CRM lookup hit, nothing created, the visit on the seeded customer.
    assert (sync.customers_found, sync.customers_created, sync.synced) == (0, 0, 1)
    assert len(records(sandbox.url, case.crm_type, case.account, case.customer_object)) == before
    [row] = ledger(db, company_id, case.crm_type).values()
    assert row["status"] == "synced" and row["crm_customer_id"] == seeded and row["crm_visit_id"]
    # The sync's own mapping is kept as the import left it: imported, not created by the sync.
    assert customer_map(db, company_id)["phone:+15125550142"] == (seeded, False)


def test_ensure_runs_once_and_never_overwrites_a_mapping_the_sync_made(db, sandbox):
    case = next(c for c in CASES if c.crm_type == "hubspot")
    register(sandbox, case)
    company_id = dana(db, sandbox, case)
    integration = load_integration(db, company_id, "hubspot")
    seeded = case.seed_customer(sandbox.url, "Dana", "Whitfield", CRM_PHONE)
    with db.begin() as conn:  # the sync already mapped this phone to another contact
        conn.execute(
            sa.text(
                "INSERT INTO crm_sync.customer_map (company_id, crm_type, match_key, crm_customer_id, "
                "created_by_sync) VALUES (:c, 'hubspot', 'phone:+15125550142', '999', true)"
            ),
            {"c": company_id},
        )
    first = ensure_customer_index(db, company_id, "hubspot", integration, run_id="r1")
    assert first is not None and first.status == "success" and first.trigger == "auto"
    assert (first.keys_added, first.keys_already_mapped) == (0, 1)
    assert customer_map(db, company_id) == {"phone:+15125550142": ("999", True)}
    assert seeded != "999"
    calls = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["hubspot"][case.account]["requests"]
    assert ensure_customer_index(db, company_id, "hubspot", integration, run_id="r2") is None
    assert (
        requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["hubspot"][case.account]["requests"] == calls
    )  # no CRM call once an import finished
    [row] = imports_for(db, "r1")
    assert row["status"] == "success" and row["finished_at"] is not None
    assert "hubspot" in format_imports([row])


def test_a_failed_import_is_recorded_and_ensure_never_raises(db, sandbox):
    case = next(c for c in CASES if c.crm_type == "hubspot")
    register(sandbox, case)
    company_id = dana(db, sandbox, case)
    bad = case.bad_integration(sandbox.url)
    result = ensure_customer_index(db, company_id, "hubspot", bad, run_id="bad-1")
    assert result is not None and result.status == "failed" and "credential" in result.error.lower(), result
    for secret in case.secrets + ("wrong-secret-000",):
        assert secret not in result.error
    # A configuration the hook refuses before any request (a foreign host): recorded too, no exception.
    foreign = {**bad, "credentials": {**bad["credentials"], "baseUrl": "https://evil.example.com"}}
    result = ensure_customer_index(db, company_id, "hubspot", foreign, run_id="bad-2")
    assert result is not None and result.status == "failed"
    # Nothing finished: the next sync tries again.
    assert [r["status"] for r in imports_for(db, "bad-1") + imports_for(db, "bad-2")] == ["failed", "failed"]
    # Even a database that is gone does not stop the caller's sync.
    broken_engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert ensure_customer_index(broken_engine, company_id, "hubspot", bad) is None


# ---------------------------------------------------------------------- the DAG and its documented params
def test_dag_params_are_what_the_readme_documents():
    """README.md's params table (the format tests/test_distributed.py checks) equals the form."""
    import json
    import re
    import runpy

    from conftest import ROOT

    dag = runpy.run_path(str(ROOT / "dags" / "crm_customer_import.py"))["dag"]
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^### `crm_customer_import`\n(.*?)(?=^#{1,3} )", text, re.DOTALL | re.MULTILINE).group(1)
    table = re.search(
        r"^\| param \| type \| default \| meaning \|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", section, re.MULTILINE
    ).group(1)
    rows = {}
    for line in table.splitlines():
        name, type_, default, meaning = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[name.strip("`")] = (type_, default, meaning)
    assert list(rows) == list(dag.params)
    for name, (type_, default, meaning) in rows.items():
        param = dag.params.get_param(name)
        assert param.description == meaning and param.schema.get("title"), name
        want = json.loads(default.strip("`")) if default.startswith("`") else None
        assert param.value == want, name
        if type_.startswith("array of"):
            assert param.schema["type"] == "array" and param.schema["items"]["type"] == type_.split()[-1][:-1]
        elif type_.endswith("or empty"):
            assert param.schema["type"] == ["null", type_.split()[0]]
    structure = {t: sorted(dag.task_dict[t].downstream_task_ids) for t in dag.task_dict if t.startswith("discover")}
    assert all(down == [t.replace("discover", "import")] for t, down in structure.items())
    assert {dag.task_dict[t].pool for t in dag.task_dict if t.startswith("import_")} == {
        f"crm_{t.split('_', 1)[1]}" for t in dag.task_dict if t.startswith("import_")
    }


def test_sandbox_servicetitan_modified_contacts_feed_is_paged_and_needs_a_date(sandbox):
    """The sandbox route the ServiceTitan import reads: a date bound is required; {page, pageSize, hasMore, data}."""
    case = next(c for c in CASES if c.crm_type == "servicetitan")
    register(sandbox, case)
    first = case.seed_customer(sandbox.url, "Dana", "Whitfield", CRM_PHONE)
    case.seed_customer(sandbox.url, "Lee", "Park", "512-555-0177")
    creds = case.sandbox_credentials
    token = requests.post(
        f"{sandbox.url}/servicetitan/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds["clientId"],
            "client_secret": creds["clientSecret"],
        },
        timeout=10,
    ).json()["access_token"]
    url = f"{sandbox.url}/servicetitan/crm/v2/tenant/{creds['tenantId']}/customers/contacts"
    headers = {"Authorization": f"Bearer {token}", "ST-App-Key": creds["appKey"]}
    assert requests.get(url, headers=headers, timeout=10).status_code == 400
    page1 = requests.get(
        url, headers=headers, params={"modifiedOnOrAfter": "2000-01-01T00:00:00Z", "pageSize": 1}, timeout=10
    ).json()
    assert (page1["page"], page1["pageSize"], page1["hasMore"]) == (1, 1, True)
    assert page1["data"][0]["customerId"] == int(first) and page1["data"][0]["value"] == CRM_PHONE
    assert page1["data"][0]["type"] == "Phone" and page1["data"][0]["phoneSettings"]["phoneNumber"] == CRM_PHONE
    page2 = requests.get(
        url, headers=headers, params={"modifiedOnOrAfter": "2000-01-01T00:00:00Z", "pageSize": 1, "page": 2}, timeout=10
    ).json()
    assert page2["hasMore"] is False and page2["data"][0]["value"] == "512-555-0177"
    none = requests.get(url, headers=headers, params={"modifiedBefore": "2000-01-01T00:00:00Z"}, timeout=10).json()
    assert none["data"] == [] and none["hasMore"] is False
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["servicetitan"][case.account]
    assert stats["by_endpoint"]["GET /servicetitan/crm/v2/tenant/{tenant}/customers/contacts"] == 4
