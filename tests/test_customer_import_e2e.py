"""Customer import end to end on real parts: PostgreSQL, the sandbox over HTTP, `airflow dags test`.

HubSpot: a customer typed into the CRM as "(512) 555-0142" checks in as "+1 512-555-0142".
After the import the sync resolves her from the customer map (no CRM lookup at all, so
neither the search index lag nor the stored format matters) and attaches the visit to the
contact that was there; nobody is created.
"""

from __future__ import annotations

import json

import pytest
import requests
import sqlalchemy as sa

from e2e_helpers import HS_TOKEN, ledger, recent, records, register, run_dag
from localdev.demo_data import check_in_rows, create_company, hubspot_integration, insert_check_ins

pytestmark = pytest.mark.e2e

CRM_PHONE = "(512) 555-0142"  # as typed in the CRM
CHECK_IN_PHONE = "+1 512-555-0142"  # as typed by the technician
#: Contacts already in the portal: Dana (the one who checks in), two pairs sharing a phone typed
#: differently (HubSpot itself refuses a second contact with the same email), one with a name only.
PRE_EXISTING = [
    {"firstname": "Dana", "lastname": "Whitfield", "phone": CRM_PHONE},
    {"firstname": "Sam", "lastname": "Ortiz", "email": "Sam.Ortiz@Example.com", "phone": "512.555.0199"},
    {"firstname": "Samuel", "lastname": "Ortiz", "phone": "(512) 555 0199"},
    {"firstname": "Lee", "lastname": "Park", "phone": "512-555-0177"},
    {"firstname": "Leah", "lastname": "Park", "phone": "+1 (512) 555-0177"},
    {"firstname": "Nobody"},
]


def seed_contacts(sandbox_url: str, account: str) -> dict[str, str]:
    """Seed PRE_EXISTING straight into the sandbox (admin route, no API call counted); first name -> id."""
    resp = requests.post(
        f"{sandbox_url}/_sandbox/records/hubspot/{account}/contacts",
        json=[{"properties": p} for p in PRE_EXISTING],
        timeout=10,
    )
    resp.raise_for_status()
    return {c["properties"]["firstname"]: c["id"] for c in resp.json()}


def dana_company(db, sandbox_url: str, name: str, token: str = HS_TOKEN) -> int:
    company_id, tech = create_company(db, name, {"hubspot": hubspot_integration(sandbox_url, token)})
    row = next(check_in_rows(company_id, tech, 1, messy=False, start=recent()))
    row.update(customer_name="Dana Whitfield", customer_email=None, customer_phone=CHECK_IN_PHONE)
    insert_check_ins(db, iter([row]))
    return company_id


def imports(db, company_id: int) -> list[dict]:
    with db.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text("SELECT * FROM crm_sync.customer_imports WHERE company_id = :c ORDER BY id"), {"c": company_id}
            ).mappings()
        ]


def customer_map(db, company_id: int) -> dict[str, tuple[str, bool]]:
    with db.connect() as conn:
        return {
            r.match_key: (r.crm_customer_id, r.created_by_sync)
            for r in conn.execute(
                sa.text("SELECT * FROM crm_sync.customer_map WHERE company_id = :c"), {"c": company_id}
            )
        }


def sync_run(db, company_id: int) -> dict:
    with db.connect() as conn:
        return dict(
            conn.execute(
                sa.text("SELECT * FROM crm_sync.runs WHERE company_id = :c ORDER BY id DESC LIMIT 1"), {"c": company_id}
            )
            .mappings()
            .one()
        )


def dana_notes(sandbox_url: str, account: str, dana_id: str) -> list[dict]:
    return [
        n
        for n in records(sandbox_url, "hubspot", account, "notes")
        if any(a["to"]["id"] == dana_id for a in n.get("associations", []))
    ]


def test_import_dag_then_sync_attaches_the_visit_to_the_existing_customer(db, db_url, sandbox, airflow_home, tmp_path):
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    ids = seed_contacts(sandbox.url, "hs")
    good = dana_company(db, sandbox.url, "Dana's HVAC")
    broken = dana_company(db, sandbox.url, "Wrong Token Co", token="pat-na1-not-a-valid-token-000")

    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id="crm_customer_import", conf={"crm_types": ["hubspot"]})
    assert code == 0, out[-3000:]

    [done] = imports(db, good)
    assert done["status"] == "success" and done["trigger"] == "dag", done
    assert done["customers_indexed"] == len(PRE_EXISTING)
    assert done["customers_without_keys"] == 0  # "Nobody" has a name key (strategy 'all', no email or phone)
    # Two groups: the Ortiz phone and the Park phone (each typed two ways); four customers.
    assert (done["duplicate_groups"], done["duplicate_customers"]) == (2, 4)
    shared = {tuple(sorted(e["crm_ids"])) for e in done["duplicate_examples"]}
    assert shared == {tuple(sorted([ids["Sam"], ids["Samuel"]])), tuple(sorted([ids["Lee"], ids["Leah"]]))}
    assert "5550199" not in json.dumps(done["duplicate_examples"])  # masked in reports
    mapped = customer_map(db, good)
    assert mapped["phone:+15125550142"] == (ids["Dana"], False)
    assert mapped["email:sam.ortiz@example.com"] == (ids["Sam"], False)
    assert mapped["phone:+15125550199"] == (ids["Sam"], False)  # the first listed wins
    assert mapped["phone:+15125550177"] == (ids["Lee"], False)
    assert done["keys_added"] == len(mapped)

    # The broken company is recorded as failed with the reason; it did not stop the good one.
    [failed] = imports(db, broken)
    assert failed["status"] == "failed" and "credential" in failed["error"].lower(), failed
    assert customer_map(db, broken) == {}
    assert "customer import summary" in out

    code, out = run_dag(airflow_home, db_url, tmp_path, conf={"company_ids": [good], "crm_types": ["hubspot"]})
    assert code == 0, out[-3000:]
    assert len(records(sandbox.url, "hubspot", "hs", "contacts")) == len(PRE_EXISTING)  # nobody created
    run = sync_run(db, good)
    # Resolved from the imported map: no CRM lookup hit, no create.
    assert (run["customers_found"], run["customers_created"], run["synced"]) == (0, 0, 1), run
    [row] = ledger(db, good, "hubspot").values()
    assert row["status"] == "synced" and row["crm_customer_id"] == ids["Dana"]
    assert [n["id"] for n in dana_notes(sandbox.url, "hs", ids["Dana"])] == [row["crm_visit_id"]]
    assert len(imports(db, good)) == 1  # the sync saw the finished import: no second one


def test_first_incremental_sync_imports_by_itself_and_a_broken_company_does_not_stop_it(
    db, db_url, sandbox, airflow_home, tmp_path
):
    register(sandbox.url, "hubspot", "hs", {"accessToken": HS_TOKEN})
    ids = seed_contacts(sandbox.url, "hs")
    good = dana_company(db, sandbox.url, "Auto Import Co")
    broken = dana_company(db, sandbox.url, "Wrong Token Co", token="pat-na1-not-a-valid-token-000")

    code, out = run_dag(airflow_home, db_url, tmp_path, conf={"crm_types": ["hubspot"]})
    assert code == 0, out[-3000:]
    [auto] = imports(db, good)
    assert auto["status"] == "success" and auto["trigger"] == "auto" and auto["run_id"], auto
    assert len(records(sandbox.url, "hubspot", "hs", "contacts")) == len(PRE_EXISTING)
    run = sync_run(db, good)
    assert (run["customers_found"], run["customers_created"], run["synced"]) == (0, 0, 1), run
    [row] = ledger(db, good, "hubspot").values()
    assert row["status"] == "synced" and row["crm_customer_id"] == ids["Dana"]

    [failed] = imports(db, broken)
    assert failed["status"] == "failed" and failed["trigger"] == "auto" and failed["error"]
    broken_run = sync_run(db, broken)  # its sync still ran, and stopped on the credentials as before
    assert broken_run["status"] == "failed" and "credentials" in broken_run["error"], broken_run

    # The next run: one query, no second import for the good company; the broken one tries again.
    calls_before = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["hubspot"]["hs"]["by_endpoint"]
    code, out = run_dag(airflow_home, db_url, tmp_path, conf={"crm_types": ["hubspot"]})
    assert code == 0, out[-3000:]
    assert len(imports(db, good)) == 1 and len(imports(db, broken)) == 2
    calls_after = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["hubspot"]["hs"]["by_endpoint"]
    assert calls_after.get("GET /hubspot/crm/v3/objects/contacts") == calls_before.get(
        "GET /hubspot/crm/v3/objects/contacts"
    )


def test_import_dag_covers_every_crm(db, db_url, sandbox, airflow_home, tmp_path):
    """One `crm_customer_import` run over a company on each CRM: each imports in its own pool, or says it cannot."""
    from crm_cases import all_cases

    seeded: dict[str, tuple[int, str | None]] = {}
    for case in all_cases():
        body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
        if case.sandbox_options:
            body["options"] = case.sandbox_options
        requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
        company_id, _ = create_company(db, f"{case.crm_type} import", {case.crm_type: case.integration(sandbox.url)})
        crm_id = case.seed_customer(sandbox.url, "Dana", "Whitfield", CRM_PHONE) if case.seed_customer else None
        seeded[case.crm_type] = (company_id, crm_id)

    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id="crm_customer_import")
    assert code == 0, out[-3000:]
    for crm_type, (company_id, crm_id) in seeded.items():
        [done] = imports(db, company_id)
        if crm_id is None:
            assert done["status"] == "unsupported" and done["api_calls"] == 0, done
            continue
        assert done["status"] == "success" and done["customers_indexed"] == 1, (crm_type, done)
        assert customer_map(db, company_id)["phone:+15125550142"] == (crm_id, False), crm_type
