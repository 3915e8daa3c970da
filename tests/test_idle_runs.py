"""Idle runs cost nothing (issue 11, section 5): an incremental run with nothing to send makes no CRM call.

Every CRM of ``tests/crm_cases`` on real parts: PostgreSQL, the sandbox over HTTP (its per-account request
counts and issued tokens are the CRM's own log of calls), and the sync as the DAG task runs it
(:func:`crm_sync.customer_import.sync_with_index`: the first sync's customer index, then the engine).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_sync.customer_import import sync_with_index
from crm_sync.discovery import companies_with_work
from crm_sync.integration_sync import IntegrationResult, IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from e2e_helpers import check_in_ids, company_json, ledger, recent, records
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

CASES = all_cases()


@pytest.fixture(params=CASES, ids=[c.crm_type for c in CASES])
def case(request) -> CrmCase:
    return request.param


def crm_log(sandbox) -> tuple[dict[tuple[str, str], Any], int]:
    """What the sandbox saw: per account its API requests by endpoint, and how many tokens exist (a token
    fetch adds one; static keys are there from the start)."""
    state = sandbox.state
    with state.lock:
        per_account = {key: (acct.stats.requests, dict(acct.stats.by_endpoint)) for key, acct in state.accounts.items()}
        return per_account, len(state.tokens)


def setup(db, sandbox, case: CrmCase, n: int = 6) -> int:
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    company_id, tech = create_company(db, f"{case.crm_type} idle", {case.crm_type: case.integration(sandbox.url)})
    insert_check_ins(db, check_in_rows(company_id, tech, n, messy=False, start=recent(), repeat_share=0.3))
    return company_id


def new_rows(db, company_id: int, n: int, seed: int = 11, **override: Any) -> None:
    with db.connect() as conn:
        tech = conn.execute(sa.text("SELECT id FROM technicians WHERE company_id = :c"), {"c": company_id}).scalar()
    rows = list(check_in_rows(company_id, tech, n, seed=seed, messy=False, start=recent(), repeat_share=0.0))
    insert_check_ins(db, iter({**r, **override} for r in rows))


def sync(db, case: CrmCase, company_id: int, run_id: str) -> IntegrationResult:
    """The sync task's steps (the integration re-read from the database, as the DAG does)."""
    integration = load_integration(db, company_id, case.crm_type)
    return sync_with_index(
        db, company_id, case.crm_type, integration, run_id=run_id, dag_id="test", options=SyncOptions()
    )


def engine_sync(db, case: CrmCase, company_id: int, run_id: str) -> IntegrationResult:
    """The engine alone (no customer index first)."""
    integration = load_integration(db, company_id, case.crm_type)
    return IntegrationSync(
        db, company_id=company_id, crm_type=case.crm_type, integration=integration, run_id=run_id
    ).run()


def markers(sandbox, case: CrmCase) -> Counter:
    return Counter(case.visit_marker(r) for r in records(sandbox.url, case.crm_type, case.account, case.visit_object))


def assert_each_visit_once(db, sandbox, case: CrmCase, company_id: int) -> None:
    found = markers(sandbox, case)
    assert set(found.values()) == {1}, found
    assert set(found) == {f"rankitpro-{company_id}-{cid}" for cid in check_in_ids(db, company_id)}


def settled_id(db, company_id: int, crm_type: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT settled_id FROM crm_sync.integration_state WHERE company_id = :c AND crm_type = :t"),
                {"c": company_id, "t": crm_type},
            ).scalar()
            or 0
        )


def last_synced_at(db, company_id: int, crm_type: str) -> Any:
    integrations, _ = company_json(db, company_id)
    return integrations[crm_type].get("lastSyncedAt")


def busy(db, case: CrmCase, company_id: int) -> list[int]:
    """The companies discovery gives a task to (crm_sync.discovery, issue 14): idle ones get none."""
    return [w.company_id for w in companies_with_work(db, case.crm_type, [company_id], lookback_days=7)]


def test_second_run_with_nothing_new_makes_no_crm_call(db, sandbox, case):
    company_id = setup(db, sandbox, case)
    assert busy(db, case, company_id) == [company_id]  # a first run
    first = sync(db, case, company_id, "i1")
    assert first.status == "success" and first.synced == 6, first.error
    # Idle now: the DAG starts no task for it at all (discovery in SQL agrees with the engine's own peek).
    assert busy(db, case, company_id) == []
    before, before_state, freshness = crm_log(sandbox), ledger(db, company_id, case.crm_type), None
    freshness = last_synced_at(db, company_id, case.crm_type)

    second = sync(db, case, company_id, "i2")

    assert second.status == "success", second.error
    assert second.api_calls == 0 and second.unchanged == 6 and second.synced == 0
    assert crm_log(sandbox) == before  # no token fetch, no prepare() check, no account identity
    assert ledger(db, company_id, case.crm_type) == before_state
    # Recorded as today: a run row bound to the account, and the app's lastSyncedAt moved on.
    assert second.crm_account == first.crm_account
    with db.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, api_calls, crm_account FROM crm_sync.runs WHERE run_id = 'i2' AND company_id = :c"),
            {"c": company_id},
        ).one()
    assert tuple(row) == ("success", 0, first.crm_account)
    assert last_synced_at(db, company_id, case.crm_type) != freshness


def test_one_new_row_checks_the_account_binding_and_syncs(db, sandbox, case):
    company_id = setup(db, sandbox, case)
    assert sync(db, case, company_id, "i1").synced == 6
    new_rows(db, company_id, 1)
    before = crm_log(sandbox)
    assert busy(db, case, company_id) == [company_id]  # the new row gives it a task

    result = sync(db, case, company_id, "i2")

    assert result.status == "success", result.error
    assert result.synced == 1 and result.unchanged == 6 and result.api_calls > 0
    assert crm_log(sandbox) != before
    assert_each_visit_once(db, sandbox, case, company_id)


def test_account_change_is_found_by_the_next_run_with_work(db, sandbox, case):
    """An idle run cannot notice a reconnect to another account (it asks the CRM nothing); a run with a row
    to send asks, meets the change, and reads the candidates again as the new account's.

    The engine alone: the task's customer index would meet the change first (it indexes an account once)."""
    company_id = setup(db, sandbox, case)
    first = sync(db, case, company_id, "i1")
    assert first.synced == 6
    with db.begin() as conn:  # as if bound to the account the company used before reconnecting
        conn.execute(
            sa.text("UPDATE crm_sync.crm_accounts SET crm_account = 'account-before' WHERE company_id = :c"),
            {"c": company_id},
        )
    new_rows(db, company_id, 1)
    result = engine_sync(db, case, company_id, "i3")

    assert result.status == "success", result.error
    assert result.previous_crm_account == "account-before" and result.crm_account == first.crm_account
    assert any("CRM account changed" in w for w in result.warnings)
    # Read again from the start as this account's: the six synced rows unchanged, counted once, nothing re-sent.
    assert result.synced == 1 and result.unchanged == 6 and result.candidates == 7
    assert_each_visit_once(db, sandbox, case, company_id)


@pytest.mark.parametrize("status", ["pending", "in_flight", "failed"])
def test_an_unfinished_row_is_work(db, sandbox, case, status):
    company_id = setup(db, sandbox, case, n=3)
    assert sync(db, case, company_id, "i1").synced == 3
    check_in_id = min(check_in_ids(db, company_id))
    if status == "pending":  # a run stopped before the request went out: the CRM has no such visit
        visit_id = ledger(db, company_id, case.crm_type)[check_in_id]["crm_visit_id"]
        requests.delete(
            f"{sandbox.url}/_sandbox/records/{case.crm_type}/{case.account}/{case.visit_object}/{visit_id}",
            timeout=10,
        ).raise_for_status()
    with db.begin() as conn:  # in_flight / failed: the visit may be in the CRM, the ledger did not hear back
        conn.execute(
            sa.text(
                "UPDATE crm_sync.ledger SET status = :s, crm_visit_id = NULL, synced_hash = NULL "
                "WHERE company_id = :c AND check_in_id = :i"
            ),
            {"s": status, "c": company_id, "i": check_in_id},
        )
    assert busy(db, case, company_id) == [company_id]  # unfinished: discovery gives it a task

    result = sync(db, case, company_id, "i2")

    assert result.status == "success", result.error
    assert result.api_calls > 0 and result.synced == 1 and result.unchanged == 2
    assert ledger(db, company_id, case.crm_type)[check_in_id]["status"] == "synced"
    assert_each_visit_once(db, sandbox, case, company_id)


def test_a_row_without_identity_is_quarantined_without_a_crm_call(db, sandbox, case):
    company_id = setup(db, sandbox, case, n=3)
    assert sync(db, case, company_id, "i1").synced == 3
    horizon = settled_id(db, company_id, case.crm_type)
    new_rows(db, company_id, 1, customer_name=None, customer_email=None, customer_phone=None, customer_address=None)
    before = crm_log(sandbox)

    result = sync(db, case, company_id, "i2")

    assert result.api_calls == 0 and crm_log(sandbox) == before
    assert result.quarantined == 1 and result.unchanged == 3
    kinds = {r["status"]: r["error_kind"] for r in ledger(db, company_id, case.crm_type).values() if r["error_kind"]}
    assert kinds == {"quarantined": "no_identity"}
    assert all(k.startswith("no_identity") for k in result.quarantine_reasons)
    # The id horizon still moves on: the next run does not read the row again.
    assert settled_id(db, company_id, case.crm_type) > horizon
    assert sync(db, case, company_id, "i3").candidates == 4  # the look-back window re-reads, unchanged
