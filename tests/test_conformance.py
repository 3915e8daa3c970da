"""One conformance suite that every CRM passes, so the hooks and destinations cannot drift apart.

Each check runs the real engine against the sandbox over HTTP and a real PostgreSQL,
for every case in ``tests/crm_cases/``: auth success and failure, token refresh mid-run,
429 with and without ``Retry-After``, 5xx then success, a timeout, one invalid record
in a batch, duplicate prevention on re-run and after a worker dies between the CRM write
and the ledger update (and at every write of a new customer plus visit, with a returning
customer who has two candidate records: ``CrmCase.kill_points``), secrets absent from
everything, and a foreign override host refused.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_hooks.base import CrmHook
from crm_hooks.registry import hook_class
from crm_sync.destinations import destination_class
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from crm_sync.ledger import Ledger
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
    monkeypatch.setattr(CrmHook, "timeout", (2.0, 0.75))
    company_id, _, rows = company(db, sandbox, case)
    insert(db, rows)
    faults(sandbox, latency_ms=2000, count=1)
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
    # Written to the CRM, not to the ledger: the first batch, and the second too where visit creates overlap
    # the next batch (its creates went out before the first batch was finished).
    sent = 6 if destination_class(case.crm_type).overlap_visit_writes > 1 else 3
    assert sum(markers(sandbox, case).values()) == sent
    assert {r["status"] for r in ledger(db, company_id, case.crm_type).values()} == {"in_flight"}
    monkeypatch.setattr(IntegrationSync, "_finish", real_finish)
    result = sync(db, case, company_id, run_id="c2", batch_size=3)
    assert result.status == "success", result.error
    assert result.visits_recovered == sent and result.visits_created == 6 - sent
    assert_exactly_once(db, sandbox, case, company_id)


#: The kill point every CRM has: all CRM writes done, the worker dies before the ledger records them.
LEDGER_COMMIT = "ledger-commit"


def kill_scenarios():
    for case in CASES:
        for point in (*case.kill_points, LEDGER_COMMIT):
            yield pytest.param(case, point, id=f"{case.crm_type}-{point}")


def kill_after(m: pytest.MonkeyPatch, case: CrmCase, point: str) -> None:
    """The hook call ``point`` (``method`` or ``method:first argument``) reaches the CRM, then the worker dies
    (SystemExit: no ``except Exception`` of the engine catches it, as no code runs after a SIGKILL)."""
    if point == LEDGER_COMMIT:

        def killed(*args, **kwargs):
            raise SystemExit("worker killed before the ledger update")

        m.setattr(Ledger, "finish", killed)
        return
    cls = hook_class(case.crm_type)
    method, _, first_arg = point.partition(":")
    real = getattr(cls, method)

    def killed_after(self, *args, **kwargs):
        answer = real(self, *args, **kwargs)
        if not first_arg or (args and args[0] == first_arg):
            raise SystemExit(f"worker killed after {point}")
        return answer

    m.setattr(cls, method, killed_after)


def returning_and_new_customer(company_id: int, tech: int) -> list[dict]:
    """A returning customer (phone only, then with email; phones typed three ways) around a new one."""
    base = next(check_in_rows(company_id, tech, 1, messy=False, start=recent()))

    def row(i: int, name: str, email: str | None, phone: str, street: str) -> dict:
        return {
            **base,
            "customer_name": name,
            "customer_email": email,
            "customer_phone": phone,
            "address": street,
            "created_at": base["created_at"] + timedelta(minutes=7 * i),
        }

    return [
        row(0, "Lena Ortiz", None, "(512) 555-0142", "77 Ridge Ln"),
        row(1, "Marcus Bell", "marcus.bell@example.com", "512.555.0199", "12 Oak St"),
        row(2, "Lena Ortiz", "lena.ortiz@example.com", "+1 512 555 0142", "77 Ridge Ln"),
    ]


def swap_candidates(db, company_id: int, crm_type: str, twins: list[tuple[str, str | None]]) -> None:
    """Point the customer map's entries for one candidate record at the other, as when a later check-in of the
    same person moved the phone key to the other record before the crash (issue 13, Housecall Pro): the
    re-run resolves each row to the other customer than the one its interrupted attempt wrote under."""
    (a, parent_a), (b, parent_b) = twins
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE crm_sync.customer_map SET crm_customer_id = CASE WHEN crm_customer_id = :a THEN :b ELSE :a END,"
                " crm_parent_id = CASE WHEN crm_customer_id = :a THEN :pb ELSE :pa END"
                " WHERE company_id = :c AND crm_type = :t AND crm_customer_id IN (:a, :b)"
            ),
            {"a": a, "b": b, "pa": parent_a, "pb": parent_b, "c": company_id, "t": crm_type},
        )


@pytest.mark.parametrize(("case", "point"), list(kill_scenarios()))
def test_worker_killed_at_each_write_is_recovered_without_duplicates(db, sandbox, case, point, monkeypatch):
    """Killed right after each write of a new-customer-plus-visit sequence (customer, address / location /
    property, visit, its second step) or before the ledger commit, then re-run resolving the returning
    customer to another of its candidate records: every check-in ends with exactly one visit record and
    the ledger all synced; no customer is created twice."""
    register(sandbox, case)
    integration = case.integration(sandbox.url)
    company_id, tech = create_company(db, f"{case.crm_type} kill {point}", {case.crm_type: integration})
    twins = [
        case.seed_candidate(sandbox.url, "Lena", "Ortiz", "512-555-0142", None),
        case.seed_candidate(sandbox.url, "Lena", "Ortiz", "(512) 555-0142", "lena.ortiz@example.com"),
    ]
    insert(db, returning_and_new_customer(company_id, tech))
    with monkeypatch.context() as m:
        kill_after(m, case, point)
        with pytest.raises(SystemExit):
            sync(db, case, company_id, batch_size=3)  # one batch, whatever the CRM's own batch size
    assert {r["status"] for r in ledger(db, company_id, case.crm_type).values()} == {"in_flight"}
    # Before the re-run the customer map moves the person to the other record, and a third record with the
    # same phone appears in the CRM (the newest: a CRM search by phone now returns it first).
    swap_candidates(db, company_id, case.crm_type, twins)
    case.seed_candidate(sandbox.url, "Lena", "Ortiz", "512 555 0142", None)
    result = sync(db, case, company_id, run_id="k2")
    assert result.status == "success", (result.error, result.quarantine_reasons)
    assert_exactly_once(db, sandbox, case, company_id)
    assert len(records(sandbox.url, case.crm_type, case.account, case.customer_object)) == 4  # 3 seeded + 1 new
    visit_records = records(sandbox.url, case.crm_type, case.account, case.visit_object)
    if case.visit_finished is not None:  # the step after the create (Jobber's close) is done for recovered visits
        assert all(map(case.visit_finished, visit_records))
    # A recovered visit stays with the customer it was written under, and the ledger says which one.
    owners = {case.visit_marker(r): case.visit_customer(r) for r in visit_records}
    rows = ledger(db, company_id, case.crm_type)
    assert {f"rankitpro-{company_id}-{cid}": r["crm_customer_id"] for cid, r in rows.items()} == owners
    visits = markers(sandbox, case)
    again = sync(db, case, company_id, run_id="k3")
    assert again.unchanged == 3 and again.synced == 0 and markers(sandbox, case) == visits


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
