"""Rows quarantined for the CRM's state (``crm_state``) are retried when their customer changes, others are not.

Real engine, real PostgreSQL, the CRM sandbox over HTTP, for the CRMs whose jobs need a service address
(Housecall Pro: an address; Jobber: a property; ServiceTitan: a location, and a customer needs one too).
A new customer's first check-in has no street: quarantined ``crm_state``. A later check-in of the same
customer with a full address gives the customer one; the next run sends the first check-in, exactly once,
with no operator action. A ``crm_rejected`` row of a customer that changed is not retried, and an idle run
after that changes nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases, seed_record
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from crm_sync.quarantine import QuarantineKind
from e2e_helpers import ledger, recent, records
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

ADDRESS_CRMS = [c for c in all_cases() if c.crm_type in ("housecallpro", "jobber", "servicetitan")]
NO_ADDRESS = {"address": None, "city": None, "state": None, "zip": None}


@pytest.fixture(params=ADDRESS_CRMS, ids=[c.crm_type for c in ADDRESS_CRMS])
def case(request) -> CrmCase:
    return request.param


def _company(db, sandbox, case: CrmCase) -> tuple[int, int]:
    body: dict[str, Any] = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    return create_company(db, f"{case.crm_type} state", {case.crm_type: case.integration(sandbox.url)})


def _insert(db, company_id: int, tech: int, *rows: dict[str, Any]) -> list[int]:
    """Insert check-ins in order; their ids."""
    made = []
    for i, overrides in enumerate(rows):
        row = next(check_in_rows(company_id, tech, 1, messy=False, start=recent()))
        row.update({"notes": f"Visit {i}: replaced the capacitor.", **overrides})
        made.append(row)
    insert_check_ins(db, iter(made))
    with db.connect() as conn:
        ids = conn.execute(
            sa.text("SELECT id FROM check_ins WHERE company_id = :c ORDER BY id DESC LIMIT :n"),
            {"c": company_id, "n": len(rows)},
        ).scalars()
        return sorted(ids)


def _sync(db, case: CrmCase, company_id: int, run_id: str):
    integration = load_integration(db, company_id, case.crm_type)
    return IntegrationSync(
        db, company_id=company_id, crm_type=case.crm_type, integration=integration, run_id=run_id, options=SyncOptions()
    ).run()


def _markers(sandbox, case: CrmCase) -> Counter:
    return Counter(case.visit_marker(r) for r in records(sandbox.url, case.crm_type, case.account, case.visit_object))


def _key(company_id: int, check_in_id: int) -> str:
    return f"rankitpro-{company_id}-{check_in_id}"


def test_a_crm_state_row_is_sent_once_its_customer_gets_an_address(db, sandbox, case):
    company_id, tech = _company(db, sandbox, case)
    nora = {"customer_name": "Nora Quinn", "customer_email": "nora.quinn@example.com", "customer_phone": "512-555-0141"}
    omar = {"customer_name": "Omar Reyes", "customer_email": "omar.reyes@example.com", "customer_phone": "512-555-0177"}
    # Run 1: Nora's first visit (no street: no address / property / location for a job) and Omar's visit
    # the CRM refuses for a field (crm_rejected).
    a, c = _insert(db, company_id, tech, {**nora, **NO_ADDRESS}, {**omar, "notes": "Needs SANDBOX-INVALID paperwork."})
    first = _sync(db, case, company_id, "s1")
    rows = ledger(db, company_id, case.crm_type)
    assert rows[a]["status"] == "quarantined" and rows[a]["error_kind"] == QuarantineKind.CRM_STATE, rows[a]
    assert rows[c]["status"] == "quarantined" and rows[c]["error_kind"] == QuarantineKind.CRM_REJECTED, rows[c]
    assert first.quarantined == 2 and _markers(sandbox, case) == Counter()

    # Run 2, idle: the quarantined rows are not touched (their customers did not change).
    idle = _sync(db, case, company_id, "s2")
    assert idle.synced == 0 and idle.quarantined == 0 and ledger(db, company_id, case.crm_type) == rows

    # Run 3: Nora again without a street (a2), then with her full address (b); Omar with a new address
    # (his customer changes in the CRM too). a2 lands in the same run: b gave Nora an address.
    a2, b, e = _insert(
        db,
        company_id,
        tech,
        {**nora, **NO_ADDRESS},
        {**nora, "address": "4100 Burnet Rd", "city": "Austin", "state": "TX", "zip": "78756"},
        {**omar, "address": "77 Guadalupe St", "city": "Austin", "state": "TX", "zip": "78701"},
    )
    third = _sync(db, case, company_id, "s3")
    rows = ledger(db, company_id, case.crm_type)
    assert {rows[i]["status"] for i in (a2, b, e)} == {"synced"}, {i: rows[i]["last_error"] for i in (a2, b, e)}
    assert rows[a]["status"] == "quarantined"  # read before Nora changed: waits for the next run
    assert third.quarantined == 0, third.quarantine_reasons

    # Run 4: a is sent because Nora changed after it was quarantined; c (crm_rejected) is not, though
    # Omar's customer_map entries were written after c was quarantined too.
    with db.connect() as conn:
        omar_changed = conn.execute(
            sa.text(
                "SELECT max(updated_at) FROM crm_sync.customer_map WHERE company_id = :c AND crm_type = :t "
                "AND crm_customer_id = :id"
            ),
            {"c": company_id, "t": case.crm_type, "id": rows[e]["crm_customer_id"]},
        ).scalar()
    assert omar_changed > rows[c]["quarantined_at"]
    before_c = rows[c]
    fourth = _sync(db, case, company_id, "s4")
    rows = ledger(db, company_id, case.crm_type)
    assert fourth.synced == 1 and fourth.visits_created == 1 and fourth.quarantined == 0
    assert rows[a]["status"] == "synced" and rows[a]["crm_customer_id"] == rows[b]["crm_customer_id"]
    assert rows[c] == before_c
    found = _markers(sandbox, case)
    assert {k: found[k] for k in (_key(company_id, i) for i in (a, a2, b, e))} == dict.fromkeys(
        (_key(company_id, i) for i in (a, a2, b, e)), 1
    )
    assert _key(company_id, c) not in found
    customers = len(records(sandbox.url, case.crm_type, case.account, case.customer_object))

    # Run 5, idle: nothing changes, in the ledger or in the CRM.
    fifth = _sync(db, case, company_id, "s5")
    assert fifth.synced == 0 and fifth.quarantined == 0 and fifth.customers_created == 0
    assert ledger(db, company_id, case.crm_type) == rows
    assert _markers(sandbox, case) == found
    assert len(records(sandbox.url, case.crm_type, case.account, case.customer_object)) == customers


def test_servicetitan_customer_found_without_a_location_gets_one_from_a_later_check_in(db, sandbox):
    """A customer typed into ServiceTitan without a location is matched by phone; a check-in without a
    street cannot place a job (crm_state). A later check-in with an address adds the location (before,
    the remembered customer without one refused every later job too), and the first row follows."""
    (case,) = [c for c in ADDRESS_CRMS if c.crm_type == "servicetitan"]
    company_id, tech = _company(db, sandbox, case)
    seeded = seed_record(
        sandbox.url,
        "servicetitan",
        case.account,
        "customers",
        {"name": "Pia Lund", "type": "Residential", "contacts": [{"type": "Phone", "value": "(512) 555-0190"}]},
    )
    pia = {"customer_name": "Pia Lund", "customer_email": None, "customer_phone": "512.555.0190"}
    (a,) = _insert(db, company_id, tech, {**pia, **NO_ADDRESS})
    _sync(db, case, company_id, "t1")
    rows = ledger(db, company_id, case.crm_type)
    assert rows[a]["error_kind"] == QuarantineKind.CRM_STATE and rows[a]["crm_customer_id"] == str(seeded["id"])

    (b,) = _insert(
        db, company_id, tech, {**pia, "address": "9 Rainey St", "city": "Austin", "state": "TX", "zip": "78701"}
    )
    second = _sync(db, case, company_id, "t2")
    assert second.synced == 1 and ledger(db, company_id, case.crm_type)[b]["status"] == "synced"
    locations = [
        loc
        for loc in records(sandbox.url, "servicetitan", case.account, "locations")
        if str(loc.get("customerId")) == str(seeded["id"])
    ]
    assert len(locations) == 1
    with db.connect() as conn:
        parents = set(
            conn.execute(
                sa.text("SELECT crm_parent_id FROM crm_sync.customer_map WHERE company_id = :c AND crm_type = :t"),
                {"c": company_id, "t": case.crm_type},
            ).scalars()
        )
    assert parents == {str(locations[0]["id"])}  # remembered: the next job needs no look-up

    third = _sync(db, case, company_id, "t3")
    rows = ledger(db, company_id, case.crm_type)
    assert third.synced == 1 and rows[a]["status"] == "synced"
    assert _markers(sandbox, case) == Counter({_key(company_id, a): 1, _key(company_id, b): 1})
    fourth = _sync(db, case, company_id, "t4")
    assert fourth.synced == 0 and ledger(db, company_id, case.crm_type) == rows
