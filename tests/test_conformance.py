"""One conformance suite that every CRM passes, so the hooks and destinations cannot drift apart.

Each check runs the real engine against the sandbox over HTTP and a real PostgreSQL,
for every case in ``tests/crm_cases/``: auth success and failure, token refresh mid-run,
429 with and without ``Retry-After``, 5xx then success, a timeout, one invalid record
in a batch, duplicate prevention on re-run and after a worker dies between the CRM write
and the ledger update, secrets absent from everything, and a foreign override host refused.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_hooks.base import CrmHook
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from e2e_helpers import check_in_ids, ledger, recent, records
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

CASES = all_cases()


@pytest.fixture(params=CASES, ids=[c.crm_type for c in CASES])
def case(request) -> CrmCase:
    return request.param


def register(sandbox, case: CrmCase, **limits) -> None:
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials, "limits": limits}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()


def company(db, sandbox, case: CrmCase, n: int = 8, *, integration=None, **limits):
    register(sandbox, case, **limits)
    integration = integration or case.integration(sandbox.url)
    company_id, tech = create_company(db, f"{case.crm_type} conformance", {case.crm_type: integration})
    rows = list(check_in_rows(company_id, tech, n, messy=False, start=recent(), repeat_share=0.3))
    return company_id, integration, rows


def insert(db, rows) -> None:
    insert_check_ins(db, iter(rows))


def sync(db, case: CrmCase, company_id: int, integration: dict | None = None, run_id: str = "c1", **options):
    """One engine run; the integration is re-read from the database, as the DAG does (rotated tokens)."""
    integration = integration or load_integration(db, company_id, case.crm_type)
    return IntegrationSync(
        db,
        company_id=company_id,
        crm_type=case.crm_type,
        integration=integration,
        run_id=run_id,
        options=SyncOptions(**options),
    ).run()


def markers(sandbox, case: CrmCase) -> Counter:
    return Counter(case.visit_marker(r) for r in records(sandbox.url, case.crm_type, case.account, case.visit_object))


def faults(sandbox, **fault) -> None:
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"crm": None, **fault}, timeout=5).raise_for_status()


def assert_exactly_once(db, sandbox, case: CrmCase, company_id: int, quarantined: int = 0) -> None:
    rows = ledger(db, company_id, case.crm_type)
    assert set(rows) == check_in_ids(db, company_id)
    statuses = Counter(r["status"] for r in rows.values())
    assert statuses == Counter(
        {"synced": len(rows) - quarantined, **({"quarantined": quarantined} if quarantined else {})}
    )
    found = markers(sandbox, case)
    assert set(found.values()) <= {1}, found
    synced_keys = {f"rankitpro-{company_id}-{cid}" for cid, r in rows.items() if r["status"] == "synced"}
    assert set(found) == synced_keys


def test_auth_success_then_rerun_sends_nothing(db, sandbox, case):
    company_id, _, rows = company(db, sandbox, case)
    insert(db, rows)
    first = sync(db, case, company_id)
    assert first.status == "success", first.error
    assert first.synced == 8 and first.visits_created == 8
    assert_exactly_once(db, sandbox, case, company_id)
    customers = len(records(sandbox.url, case.crm_type, case.account, case.customer_object))
    second = sync(db, case, company_id, run_id="c2")
    assert second.unchanged == 8 and second.synced == 0 and second.customers_created == 0
    assert len(records(sandbox.url, case.crm_type, case.account, case.customer_object)) == customers
    assert_exactly_once(db, sandbox, case, company_id)


def test_bad_credentials_stop_only_this_integration(db, sandbox, case):
    company_id, _, rows = company(db, sandbox, case, 3)
    insert(db, rows)
    result = sync(db, case, company_id, case.bad_integration(sandbox.url))
    assert result.status == "failed" and "credentials" in result.error.lower(), result.error
    assert markers(sandbox, case) == Counter()
    assert {r["status"] for r in ledger(db, company_id, case.crm_type).values()} <= {"pending"}


def test_token_refresh_mid_run(db, sandbox, case):
    if case.short_token_limits is None:
        pytest.skip(f"{case.crm_type} authenticates with a static key that does not expire")
    company_id, _, rows = company(db, sandbox, case, 10, **case.short_token_limits)
    insert(db, rows)
    faults(sandbox, latency_ms=250, rate=1.0)  # the run outlives several 1-second tokens
    result = sync(db, case, company_id, batch_size=2)
    assert result.status == "success", result.error
    assert_exactly_once(db, sandbox, case, company_id)


@pytest.mark.parametrize("retry_after", [0.05, None], ids=["with-retry-after", "without-retry-after"])
def test_429_is_waited_out(db, sandbox, case, retry_after, sleeps, instant_rate_limits):
    company_id, _, rows = company(db, sandbox, case)
    insert(db, rows)
    faults(sandbox, status=429, count=3, **({"retry_after": retry_after} if retry_after is not None else {}))
    result = sync(db, case, company_id)
    assert result.status == "success", result.error
    assert result.rate_limited >= 3 and result.retries >= 3
    if retry_after is not None:
        # the CRM's Retry-After, honoured as given (plus at most 10% jitter), never a whole window
        assert any(retry_after <= s <= retry_after * 1.1 for s in sleeps), sleeps
    assert_exactly_once(db, sandbox, case, company_id)


def test_5xx_then_success(db, sandbox, case, sleeps):
    company_id, _, rows = company(db, sandbox, case)
    insert(db, rows)
    faults(sandbox, status=503, count=2)
    result = sync(db, case, company_id)
    assert result.status == "success", result.error
    assert result.retries >= 2
    assert_exactly_once(db, sandbox, case, company_id)


def test_timeout_is_retried(db, sandbox, case, sleeps, monkeypatch):
    monkeypatch.setattr(CrmHook, "timeout", (2.0, 0.3))
    company_id, _, rows = company(db, sandbox, case)
    insert(db, rows)
    faults(sandbox, latency_ms=900, count=1)
    result = sync(db, case, company_id)
    assert result.status == "success", result.error
    assert result.retries >= 1
    assert_exactly_once(db, sandbox, case, company_id)


def test_one_invalid_record_is_quarantined_alone(db, sandbox, case):
    company_id, _, rows = company(db, sandbox, case)
    rows[3]["notes"] = "Customer asked for SANDBOX-INVALID paperwork."
    insert(db, rows)
    result = sync(db, case, company_id)
    assert result.synced == 7 and result.quarantined == 1 and result.status == "partial"
    bad = [r for r in ledger(db, company_id, case.crm_type).values() if r["status"] == "quarantined"]
    assert len(bad) == 1 and bad[0]["error_kind"] == "crm_rejected" and bad[0]["last_error"]
    assert_exactly_once(db, sandbox, case, company_id, quarantined=1)


def test_worker_dying_between_crm_write_and_ledger_is_recovered(db, sandbox, case, monkeypatch):
    company_id, _, rows = company(db, sandbox, case, 6)
    insert(db, rows)
    real_finish = IntegrationSync._finish

    def die_after_the_crm_write(self, *args, **kwargs):
        raise SystemExit("worker killed before the ledger update")

    monkeypatch.setattr(IntegrationSync, "_finish", die_after_the_crm_write)
    with pytest.raises(SystemExit):
        sync(db, case, company_id, batch_size=3)
    assert sum(markers(sandbox, case).values()) == 3  # written to the CRM, not to the ledger
    assert {r["status"] for r in ledger(db, company_id, case.crm_type).values()} == {"in_flight"}
    monkeypatch.setattr(IntegrationSync, "_finish", real_finish)
    result = sync(db, case, company_id, run_id="c2", batch_size=3)
    assert result.status == "success", result.error
    assert result.visits_recovered == 3 and result.visits_created == 3
    assert_exactly_once(db, sandbox, case, company_id)


def test_secrets_never_leave_the_hook(db, sandbox, case, caplog):
    caplog.set_level(logging.DEBUG)
    company_id, _, rows = company(db, sandbox, case, 4)
    rows[1]["notes"] = "SANDBOX-INVALID"
    insert(db, rows)
    results = [sync(db, case, company_id), sync(db, case, company_id, case.bad_integration(sandbox.url), run_id="c2")]
    with db.connect() as conn:
        stored = json.dumps(
            [
                [str(v) for v in r]
                for r in conn.execute(sa.text("SELECT * FROM crm_sync.ledger")).all()
                + conn.execute(sa.text("SELECT * FROM crm_sync.runs")).all()
            ]
        )
    everything = caplog.text + stored + repr(results)
    for secret in case.secrets + ("wrong-secret-000",):
        assert secret not in everything, secret


def test_foreign_override_host_is_refused_before_any_request(db, sandbox, case, monkeypatch):
    company_id, _, rows = company(db, sandbox, case, 2)
    insert(db, rows)
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "crm-sandbox.internal:8765")
    result = sync(db, case, company_id)
    assert result.status == "config_error" and "CRM_SYNC_ALLOWED_HOSTS" in result.error, result.error
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()[case.crm_type][case.account]
    assert stats["requests"] == 0


def test_account_identity_is_read_from_the_crm_once_per_hook(sandbox, case):
    """Every hook learns its CRM account from the CRM (issue #10 section 4), once per hook instance."""
    from crm_sync.destinations import destination_for
    from crm_sync.settings import parse_sync_settings

    register(sandbox, case)
    integration = case.integration(sandbox.url)
    settings, _ = parse_sync_settings(integration.get("syncSettings"))
    # A throw-away writer: Jobber rotates its refresh token on the first call.
    destination = destination_for(case.crm_type, integration, settings, credentials_writer=lambda creds: None)
    try:
        identity = destination.account_identity()
        calls = destination.hook.stats.api_calls
        assert identity and destination.account_identity() == identity
        assert destination.hook.stats.api_calls == calls  # cached per hook instance
        secrets_and_keys = [str(v) for v in case.sandbox_credentials.values()]
        if case.crm_type in ("servicetitan", "fieldedge"):
            # No "who am I" endpoint: the configured tenant, accepted only after the CRM answered for it.
            assert identity in secrets_and_keys and calls >= 1
        else:
            assert all(identity not in v for v in secrets_and_keys)  # read from the CRM's answer
    finally:
        destination.close()
