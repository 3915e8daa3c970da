"""Reconciliation (crm_reconciliation_report) on real parts, plus unit tests of its pure functions.

The scenario: seed PostgreSQL and the sandbox, sync, then break things behind the sync's back (delete a
CRM record, edit a check-in, edit a CRM record, add a duplicate customer in the CRM, delete a check-in,
lose a check-in below the sync's horizon, have the CRM refuse a row) and check that the report finds
exactly those, in the right class; then requeue, sync again, and check the repairs and a clean report.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from types import SimpleNamespace

import pytest
import requests
import sqlalchemy as sa

from crm_cases import CrmCase, all_cases
from crm_sync import reconcile
from crm_sync.contacts import normalize_phone
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from crm_sync.reconcile import (
    Finding,
    Reservoir,
    alert_problems,
    classify_read_back,
    classify_source_row,
    comparable,
    date_range,
    duplicate_customers,
    field_differences,
)
from e2e_helpers import company_json, ledger, recent, records
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

CASES = {c.crm_type: c for c in all_cases()}

#: Per CRM: stored fields of a visit record (with marker ``key``) edited by hand behind the sync's back (drift).
DRIFT_EDIT = {
    "hubspot": lambda key: {"hs_note_body": "Edited by hand in HubSpot"},
    "salesforce": lambda key: {"Description": "Edited by hand in Salesforce"},
    "servicetitan": lambda key: {"summary": "Edited by hand in ServiceTitan"},
    "jobber": lambda key: {"instructions": "Edited by hand in Jobber"},
    "fieldedge": lambda key: {"trackingId": "edited-by-hand"},
    "housecallpro": lambda key: {"notes": [{"id": "nte_hand", "content": f"[Rank It Pro sync key: {key}]\n\nEdited"}]},
}
#: Per CRM: a customer record (admin seed body) carrying ``phone``, created behind the sync's back.
DUPLICATE_CUSTOMER = {
    "hubspot": lambda phone: {
        "properties": {"firstname": "Dup", "lastname": "Licate", "phone": phone, "email": "dup.licate@example.net"}
    },
    "salesforce": lambda phone: {
        "FirstName": "Dup",
        "LastName": "Licate",
        "Phone": phone,
        "Email": "dup.licate@example.net",
    },
    "servicetitan": lambda phone: {
        "name": "Dup Licate",
        "type": "Residential",
        "contacts": [{"id": 990001, "type": "Phone", "value": phone}],
    },
    "jobber": lambda phone: {"firstName": "Dup", "lastName": "Licate", "phones": [{"number": phone}]},
    "housecallpro": lambda phone: {"first_name": "Dup", "last_name": "Licate", "mobile_number": phone},
}

#: Per CRM that can be searched by the marker: a copy of a stored visit record (admin export), as a seed body.
DUPLICATE_VISIT = {
    "servicetitan": lambda job: {
        **{k: v for k, v in job.items() if k not in ("id", "externalData")},
        "externalData": {
            "applicationGuid": job["externalData"][0]["applicationGuid"],
            "externalData": [{"key": e["key"], "value": e["value"]} for e in job["externalData"]],
        },
    },
    "jobber": lambda job: {k: v for k, v in job.items() if k not in ("id", "createdAt", "updatedAt", "jobNumber")},
}
#: CRMs whose report cannot look for two visit records of one check-in (no marker search, no unique marker).
VISIT_DUPLICATES_UNCHECKED = {"housecallpro", "fieldedge"}


# ============================================================================ real parts
def register(sandbox, case: CrmCase) -> None:
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()


def sync(db, case: CrmCase, company_id: int, run_id: str):
    integration = load_integration(db, company_id, case.crm_type)
    return IntegrationSync(
        db, company_id=company_id, crm_type=case.crm_type, integration=integration, run_id=run_id, options=SyncOptions()
    ).run()


def report(db, case: CrmCase, company_id: int, run_id: str, sample_size: int = 0) -> reconcile.ReconcileResult:
    start, end = date_range(None, None, 30)
    return reconcile.reconcile_integration(
        db,
        company_id=company_id,
        crm_type=case.crm_type,
        run_id=run_id,
        dag_id="test",
        range_start=start,
        range_end=end,
        sample_size=sample_size,
    )


def discrepancies(db, reconciliation_id: int) -> dict[str, set]:
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT class, check_in_id, crm_id, detail FROM crm_sync.discrepancies WHERE reconciliation_id = :r"
            ),
            {"r": reconciliation_id},
        ).all()
    out: dict[str, set] = {}
    for cls, check_in_id, crm_id, _ in rows:
        out.setdefault(cls, set()).add(check_in_id if check_in_id is not None else crm_id)
    return out


def admin(sandbox, method: str, case: CrmCase, obj: str, record_id: str = "", **kwargs) -> requests.Response:
    url = f"{sandbox.url}/_sandbox/records/{case.crm_type}/{case.account}/{obj}"
    url += f"/{record_id}" if record_id else ""
    response = requests.request(method, url, timeout=10, **kwargs)
    assert response.status_code < 300, response.text
    return response


def add_duplicate_customer(db, sandbox, case: CrmCase, company_id: int) -> tuple[str, str]:
    """A second CRM customer with the phone (typed differently) of a customer the sync uses; returns both ids."""
    with db.connect() as conn:
        phone_key, used_customer = conn.execute(
            sa.text(
                "SELECT match_key, crm_customer_id FROM crm_sync.customer_map WHERE company_id = :c AND crm_type = :t "
                "AND match_key LIKE 'phone:%' ORDER BY match_key LIMIT 1"
            ),
            {"c": company_id, "t": case.crm_type},
        ).one()
    e164 = phone_key.split(":", 1)[1]
    national = f"({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    assert normalize_phone(national)[0] == e164
    body = DUPLICATE_CUSTOMER[case.crm_type](national)
    created = admin(sandbox, "POST", case, case.customer_object, json=body).json()
    return str(used_customer), str(created.get("id") or created.get("Id") or created.get("customerId"))


def visit_marker_counts(sandbox, case: CrmCase) -> Counter:
    return Counter(case.visit_marker(r) for r in records(sandbox.url, case.crm_type, case.account, case.visit_object))


@pytest.mark.parametrize("crm_type", sorted(CASES))
def test_report_finds_exactly_what_was_broken_and_requeue_repairs_it(db, sandbox, crm_type):
    case = CASES[crm_type]
    register(sandbox, case)
    company_id, tech = create_company(db, f"{crm_type} reconciliation", {crm_type: case.integration(sandbox.url)})
    rows = list(check_in_rows(company_id, tech, 16, messy=False, start=recent(), repeat_share=0.3))
    rows[3]["notes"] = "The CRM refuses this one: SANDBOX-INVALID"
    insert_check_ins(db, iter(rows))
    first = sync(db, case, company_id, "sync-1")
    assert first.synced == 15 and first.quarantined == 1, first

    # A report right after a clean sync finds only the refused row.
    clean = report(db, case, company_id, "report-0")
    assert clean.counts == {"quarantined": 1}, clean.as_dict()
    assert clean.eligible_count == 16 and clean.synced_count == 15 and clean.crm_checked == 15
    before = company_json(db, company_id)

    synced = sorted(cid for cid, r in ledger(db, company_id, crm_type).items() if r["status"] == "synced")
    quarantined = next(cid for cid, r in ledger(db, company_id, crm_type).items() if r["status"] == "quarantined")
    by_id = ledger(db, company_id, crm_type)
    deleted_in_crm, edited_check_in, drifted, deleted_check_in = synced[0], synced[1], synced[2], synced[3]
    # 1. missing in CRM: the visit record is deleted in the CRM.
    admin(sandbox, "DELETE", case, case.visit_object, by_id[deleted_in_crm]["crm_visit_id"])
    # 2. stale: the check-in is edited after its sync.
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE check_ins SET notes = 'Edited after the sync' WHERE id = :i"), {"i": edited_check_in}
        )
    # 3. drift: the CRM record is edited by hand.
    edit = DRIFT_EDIT[crm_type](f"rankitpro-{company_id}-{drifted}")
    admin(sandbox, "PATCH", case, case.visit_object, by_id[drifted]["crm_visit_id"], json=edit)
    # 4. orphan: the check-in is deleted in the app.
    with db.begin() as conn:
        conn.execute(sa.text("DELETE FROM check_ins WHERE id = :i"), {"i": deleted_check_in})
    # 5. never synced: a check-in at or below the sync's horizon without a ledger row (a lost row).
    lost = dict(rows[0], notes="Lost row", created_at=recent())
    insert_check_ins(db, iter([lost]))
    with db.begin() as conn:
        lost_id = conn.execute(
            sa.text("SELECT max(id) FROM check_ins WHERE company_id = :c"), {"c": company_id}
        ).scalar()
        conn.execute(
            sa.text("UPDATE crm_sync.integration_state SET settled_id = :i WHERE company_id = :c AND crm_type = :t"),
            {"i": lost_id, "c": company_id, "t": crm_type},
        )
    # 6. duplicate: a second CRM customer with the phone of a customer the sync uses (another format).
    duplicate_id = used_customer = None
    if crm_type in DUPLICATE_CUSTOMER:
        used_customer, duplicate_id = add_duplicate_customer(db, sandbox, case, company_id)
    # 7. duplicate: a second visit record with the same marker, where the CRM can be searched by it.
    twin = None
    if crm_type in DUPLICATE_VISIT:
        twin = synced[4]
        stored = next(
            r
            for r in records(sandbox.url, crm_type, case.account, case.visit_object)
            if str(r["id"]) == by_id[twin]["crm_visit_id"]
        )
        admin(sandbox, "POST", case, case.visit_object, json=DUPLICATE_VISIT[crm_type](stored))

    found = report(db, case, company_id, "report-1")
    classes = discrepancies(db, found.reconciliation_id)
    assert classes["missing_in_crm"] == {deleted_in_crm}
    assert classes["stale"] == {edited_check_in}
    assert classes["drift"] == {drifted}
    assert classes["orphan"] == {deleted_check_in}
    assert classes["never_synced"] == {lost_id}
    assert classes["quarantined"] == {quarantined}
    customer_dups = {d for d in classes.get("duplicate", ()) if isinstance(d, str)}
    if duplicate_id:
        (dup,) = customer_dups
        assert used_customer in dup.split(",") and duplicate_id in dup.split(","), (dup, used_customer, duplicate_id)
    else:
        assert not customer_dups
    assert classes.get("duplicate", set()) - customer_dups == ({twin} if twin else set())
    assert set(classes) == set(reconcile.CLASSES) - (set() if duplicate_id or twin else {"duplicate"})
    assert found.counts == {cls: len(v) for cls, v in classes.items()}
    expected_notes = ({"duplicate customers not checked"} if crm_type not in DUPLICATE_CUSTOMER else set()) | (
        {"duplicate visit records not checked"} if crm_type in VISIT_DUPLICATES_UNCHECKED else set()
    )
    assert {n.split(":")[0] for n in found.notes} == expected_notes, found.notes
    # The report wrote nothing into the app: no history entry, lastSyncedAt unchanged.
    assert company_json(db, company_id) == before

    # Requeue (the operator's requeue: true), then the next incremental sync repairs them.
    requeued = reconcile.requeue(db, [found.reconciliation_id])
    assert requeued == Counter({"missing_in_crm": 1, "stale": 1, "never_synced": 1})
    assert reconcile.requeue(db, [found.reconciliation_id]) == Counter(), "a second requeue touches nothing"
    sync(db, case, company_id, "sync-2")
    markers = visit_marker_counts(sandbox, case)
    for cid in (deleted_in_crm, edited_check_in, lost_id):
        assert markers[f"rankitpro-{company_id}-{cid}"] == 1, (cid, markers)  # re-created once, updated, sent
    assert all(n == (2 if key == f"rankitpro-{company_id}-{twin}" else 1) for key, n in markers.items() if key), markers
    after = ledger(db, company_id, crm_type)
    assert {after[c]["status"] for c in (deleted_in_crm, edited_check_in, lost_id)} == {"synced"}
    assert after[deleted_in_crm]["crm_visit_id"] != by_id[deleted_in_crm]["crm_visit_id"]

    again = report(db, case, company_id, "report-2")
    classes = discrepancies(db, again.reconciliation_id)
    assert not {"missing_in_crm", "stale", "never_synced"} & set(classes), classes
    assert classes["drift"] == {drifted} and classes["orphan"] == {deleted_check_in}
    assert classes["quarantined"] == {quarantined}
    assert len(classes.get("duplicate", ())) == bool(duplicate_id) + bool(twin)
    with db.connect() as conn:
        stamped = conn.execute(
            sa.text("SELECT class, requeued_at IS NOT NULL FROM crm_sync.discrepancies WHERE reconciliation_id = :r"),
            {"r": found.reconciliation_id},
        ).all()
    assert {cls for cls, done in stamped if done} == {"missing_in_crm", "stale", "never_synced"}


def test_sampled_read_back_and_unreadable_parts_are_recorded_not_fatal(db, sandbox):
    case = CASES["hubspot"]
    register(sandbox, case)
    company_id, tech = create_company(db, "sampled", {"hubspot": case.integration(sandbox.url)})
    insert_check_ins(db, check_in_rows(company_id, tech, 12, messy=False, start=recent()))
    sync(db, case, company_id, "s1")
    result = report(db, case, company_id, "r-sampled", sample_size=5)
    assert result.crm_checked == 5 and result.crm_sampled and result.synced_count == 12 and not result.notes
    with db.connect() as conn:
        row = conn.execute(
            sa.text("SELECT crm_checked, crm_sampled, error FROM crm_sync.reconciliation_runs WHERE id = :i"),
            {"i": result.reconciliation_id},
        ).one()
    assert tuple(row) == (5, True, None)

    # A CRM that cannot be read (every call 503) leaves the source x ledger classes and says why.
    requests.post(
        f"{sandbox.url}/_sandbox/faults", json={"crm": "hubspot", "status": 503, "rate": 1.0}, timeout=10
    ).raise_for_status()
    import os

    os.environ["CRM_SYNC_MAX_ATTEMPTS"] = "1"
    try:
        down = report(db, case, company_id, "r-down")
    finally:
        os.environ.pop("CRM_SYNC_MAX_ATTEMPTS")
    assert down.crm_checked == 0 and down.synced_count == 12
    assert any("not read back" in n and "503" in n for n in down.notes), down.notes


# ============================================================================ pure functions
def _row(**kw):
    base = {
        "id": 10,
        "ledger_status": "synced",
        "synced_hash": "h1",
        "crm_visit_id": "n1",
        "created_at": datetime(2026, 11, 1, 8, 0),
    }
    return {**base, **kw}


def test_classify_source_row():
    assert classify_source_row(_row(), "h1", 100) is None
    stale = classify_source_row(_row(), "h2", 100)
    assert stale.cls == "stale" and stale.check_in_id == 10 and stale.crm_id == "n1"
    never = classify_source_row(_row(ledger_status=None), "h", 100)
    assert never.cls == "never_synced" and "up to id 100" in never.detail
    assert classify_source_row(_row(ledger_status=None, id=101), "h", 100) is None, "above the horizon: not yet read"
    q = classify_source_row(_row(ledger_status="quarantined", error_kind="no_identity", last_error="no email"), "h", 5)
    assert q.cls == "quarantined" and q.detail == "no_identity: no email"
    assert classify_source_row(_row(ledger_status="failed"), "x", 100) is None
    assert reconcile.is_eligible(_row(ledger_status=None, id=101), 100) is False
    assert reconcile.is_eligible(_row(ledger_status="pending", id=101), 100) is True


def test_comparable_and_field_differences():
    assert comparable("2026-11-20T08:00:00.000Z") == comparable("2026-11-20T08:00:00+00:00")
    assert comparable(" text \r\n") == "text"
    assert comparable(3) == comparable(3.0)
    assert (
        field_differences(
            {"a": "x", "b": "2026-11-20T08:00:00Z", "c": "keep"}, {"a": "x ", "b": "2026-11-20T08:00:00.000Z"}
        )
        == []
    )
    assert field_differences({"a": "x", "b": "y"}, {"a": "x", "b": "z"}) == ["b"]
    assert field_differences({"a": "x"}, {"a": None}) == ["a"]


def test_classify_read_back():
    checked = [(1, "a", {"body": "v1"}), (2, "b", {"body": "v2"}), (3, "c", None), (4, "d", {"body": "v4"})]
    found = {"a": {"body": "v1"}, "b": {"body": "changed"}, "c": {"body": "whatever"}}
    findings = classify_read_back(checked, found, "HubSpot")
    assert [(f.cls, f.check_in_id, f.crm_id) for f in findings] == [("drift", 2, "b"), ("missing_in_crm", 4, "d")]
    assert "in: body" in findings[0].detail and "HubSpot has no such record" in findings[1].detail


def test_duplicate_customers_groups_by_normalised_keys_for_used_customers_only():
    people = [
        SimpleNamespace(crm_id="1", email="Ann@Example.com ", phone="(512) 555-0100"),
        SimpleNamespace(crm_id="2", email="ann@example.com", phone=None),
        SimpleNamespace(crm_id="3", email=None, phone="+1 512 555 0100"),
        SimpleNamespace(crm_id="7", email="zed@example.com", phone="512-555-0199"),
        SimpleNamespace(crm_id="8", email="ZED@example.com", phone=None),
    ]
    findings = duplicate_customers(people, {"1"}, "HubSpot")
    assert sorted(f.crm_id for f in findings) == ["1,2", "1,3"]
    assert all(f.cls == "duplicate" and f.check_in_id is None for f in findings)
    assert "email:ann@example.com" in findings[0].detail and "the sync uses 1" in findings[0].detail
    assert duplicate_customers(people, {"99"}) == [], "duplicates the sync does not touch are not reported"


def test_duplicate_visits_and_visit_key():
    keys = {reconcile.visit_key(4, 10): 10, reconcile.visit_key(4, 11): 11, reconcile.visit_key(4, 12): 12}
    assert list(keys) == ["rankitpro-4-10", "rankitpro-4-11", "rankitpro-4-12"]
    found = {"rankitpro-4-10": ["7"], "rankitpro-4-11": ["9", "8", "9"]}
    (finding,) = reconcile.duplicate_visits(keys, found, "Jobber")
    assert (finding.cls, finding.check_in_id, finding.crm_id) == ("duplicate", 11, "8,9")
    assert finding.detail == "2 Jobber visit records carry the marker rankitpro-4-11 of check-in 11: 8, 9"


def test_alert_problems():
    rows = [
        {
            "company_id": 1,
            "crm_type": "hubspot",
            "eligible_count": 100,
            "synced_count": 97,
            "counts": {"missing_in_crm": 0},
        },
        {
            "company_id": 2,
            "crm_type": "salesforce",
            "eligible_count": 50,
            "synced_count": 50,
            "counts": json.dumps({"missing_in_crm": 2}),
        },
        {"company_id": 3, "crm_type": "jobber", "eligible_count": 0, "synced_count": 0, "counts": {}},
    ]
    problems = alert_problems(rows, min_success_rate=0.98, fail_on_missing=True)
    assert problems == [
        "company 1 x hubspot: success rate 97.0% < 98.0% (97 of 100 eligible check-ins synced)",
        "company 2 x salesforce: 2 check-in(s) missing in the CRM although the ledger says synced",
    ]
    assert alert_problems(rows, min_success_rate=0.95, fail_on_missing=False) == []
    assert alert_problems(rows, min_success_rate=None, fail_on_missing=True)[0].startswith("company 2")


def test_reservoir_is_bounded_and_uniform_enough():
    r = Reservoir(10, seed="x")
    for i in range(1000):
        r.add(i)
    assert len(r.items) == 10 and r.sampled and r.seen == 1000 and len(set(r.items)) == 10
    assert max(r.items) > 100, "later items get in"
    everything = Reservoir(0)
    for i in range(30):
        everything.add(i)
    assert everything.items == list(range(30)) and not everything.sampled


def test_date_range():
    today = date(2026, 11, 25)
    assert date_range(None, None, 30, today=today) == (date(2026, 10, 27), date(2026, 11, 26))
    assert date_range("2026-11-01", "2026-11-10", 30, today=today) == (date(2026, 11, 1), date(2026, 11, 11))
    with pytest.raises(ValueError, match="date_from 2026-11-12 is after date_to 2026-11-10"):
        date_range("2026-11-12", "2026-11-10", 30)
    with pytest.raises(ValueError, match="date_to must be a date"):
        date_range(None, "yesterday", 30)


def test_finding_rejects_unknown_class():
    with pytest.raises(ValueError, match="unknown discrepancy class"):
        Finding("weird", "x")


def test_report_never_touches_history_or_last_synced_at(db, sandbox):
    """Also when there is nothing to compare: the app's JSON stays byte for byte."""
    case = CASES["hubspot"]
    register(sandbox, case)
    integration = dict(case.integration(sandbox.url), lastSyncedAt="2026-11-20T08:00:00.000Z")
    company_id, _ = create_company(db, "quiet", {"hubspot": integration})
    with db.connect() as conn:
        before = conn.execute(
            sa.text("SELECT crm_integrations, crm_sync_history FROM companies WHERE id = :c"), {"c": company_id}
        ).one()
    result = report(db, case, company_id, "quiet-1")
    assert result.source_count == 0 and result.counts == {}
    with db.connect() as conn:
        after = conn.execute(
            sa.text("SELECT crm_integrations, crm_sync_history FROM companies WHERE id = :c"), {"c": company_id}
        ).one()
    assert tuple(after) == tuple(before)


# ============================================================================ the DAG, for real
@pytest.mark.e2e
def test_reconciliation_dag_alerts_requeues_and_comes_back_clean(db, db_url, sandbox, airflow_home, tmp_path):
    from e2e_helpers import run_dag, seed

    ids = seed(db, sandbox.url, hubspot=12, salesforce=0, broken=False)
    company_id = ids["hubspot"]
    code, out = run_dag(airflow_home, db_url, tmp_path)
    assert code == 0, out[-3000:]
    synced = {cid: r for cid, r in ledger(db, company_id, "hubspot").items() if r["status"] == "synced"}
    victim = min(synced)
    requests.delete(
        f"{sandbox.url}/_sandbox/records/hubspot/hs/notes/{synced[victim]['crm_visit_id']}", timeout=10
    ).raise_for_status()
    before = company_json(db, company_id)

    # Missing in the CRM crosses the default threshold: the alert task fails with a clear message.
    code, out = run_dag(
        airflow_home,
        db_url,
        tmp_path,
        dag_id="crm_reconciliation_report",
        conf={"crm_types": ["hubspot"], "requeue": True, "min_success_rate": 0.5},
    )
    assert code != 0, out[-3000:]
    assert "CRM reconciliation thresholds crossed in 1 case(s)" in out, out[-5000:]
    assert f"company {company_id} x hubspot: 1 check-in(s) missing in the CRM although the ledger says synced" in out
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.class, d.check_in_id, d.requeued_at IS NOT NULL FROM "
                "crm_sync.discrepancies d JOIN crm_sync.reconciliation_runs r "
                "ON r.id = d.reconciliation_id WHERE r.dag_id = 'crm_reconciliation_report' "
                "AND d.class = 'missing_in_crm'"
            )
        ).all()
    assert rows == [("missing_in_crm", victim, True)]
    assert company_json(db, company_id) == before, "the report adds no history entry and keeps lastSyncedAt"
    assert ledger(db, company_id, "hubspot")[victim]["requeue"] is True

    # The next incremental sync re-creates the record once; the next report passes its alert.
    code, out = run_dag(airflow_home, db_url, tmp_path)
    assert code == 0, out[-3000:]
    notes = records(sandbox.url, "hubspot", "hs", "notes")
    keys = Counter(n["properties"].get("rankitpro_checkin_key") for n in notes)
    assert keys[f"rankitpro-{company_id}-{victim}"] == 1 and max(keys.values()) == 1
    code, out = run_dag(
        airflow_home,
        db_url,
        tmp_path,
        dag_id="crm_reconciliation_report",
        conf={"crm_types": ["hubspot"], "min_success_rate": 0.5},
    )
    assert code == 0, out[-5000:]
    assert "company x CRM reconciliations within thresholds" in out
    reports = sorted((airflow_home / "reports").glob("*/report.html"), key=lambda f: f.stat().st_mtime)
    assert reports and str(company_id) in reports[-1].read_text(), "the report task wrote this run's report"
    with db.connect() as conn:
        last = conn.execute(
            sa.text("SELECT counts FROM crm_sync.reconciliation_runs ORDER BY id DESC LIMIT 1")
        ).scalar()
    assert "missing_in_crm" not in last, last


# ============================================================================ read_visits request shapes
def _destination(crm_type: str, hook):
    from crm_sync.destinations import destination_class
    from crm_sync.models import SyncSettings

    return destination_class(crm_type)(hook, SyncSettings())


def _query(call) -> dict:
    from urllib.parse import parse_qs, urlsplit

    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


@pytest.mark.usefixtures("instant_rate_limits")
def test_hubspot_read_visits_is_one_batch_read_by_id(rsps):
    import responses

    import test_hubspot_hook as hs

    props = {"hs_note_body": "b", "hs_timestamp": "2026-11-20T08:00:00Z", "rankitpro_checkin_key": "k"}
    rsps.add(
        responses.POST,
        f"{hs.API}/crm/v3/objects/notes/batch/read",
        status=207,
        json={
            "status": "COMPLETE",
            "results": [{"id": "11", "properties": props}],
            "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": ["12"]}}],
        },
    )
    found = _destination("hubspot", hs.hook()).read_visits(["11", "12", "11"])
    assert found == {"11": props}
    (call,) = rsps.calls
    assert json.loads(call.request.body) == {
        "inputs": [{"id": "11"}, {"id": "12"}],
        "propertiesWithHistory": [],
        "properties": ["hs_note_body", "hs_timestamp", "rankitpro_checkin_key"],
    }
    assert _query(call) == {"archived": "false"}


@pytest.mark.usefixtures("instant_rate_limits")
def test_salesforce_read_visits_is_soql_by_id(rsps):
    import responses

    import test_salesforce_hook as sf

    sf.token_ok(rsps)
    fields = {"Subject": "s", "Description": "d", "RankItPro_CheckIn_Key__c": "rankitpro-1-2"}
    record = {"attributes": {"type": "Case"}, "Id": "500xx0000001AAAAA2", **fields}
    rsps.add(
        responses.GET,
        f"{sf.DATA}/query",
        headers=sf.LIMIT_HEADER,
        json={"done": True, "totalSize": 1, "records": [record]},
    )
    found = _destination("salesforce", sf.cc_hook()).read_visits(["500xx0000001AAA", "500xx0000002BBBAA3"])
    assert found == {"500xx0000001AAA": fields}
    assert _query(sf.data_calls(rsps)[0])["q"] == (
        "SELECT Id, Subject, Description, RankItPro_CheckIn_Key__c FROM Case "
        "WHERE Id IN ('500xx0000001AAA', '500xx0000002BBBAA3')"
    )


@pytest.mark.usefixtures("instant_rate_limits")
def test_servicetitan_read_visits_lists_jobs_by_ids_with_the_app_guid(rsps):
    import responses

    import test_servicetitan_hook as st

    st.token(rsps)
    h = st.hook()
    rsps.add(
        responses.GET,
        st.JOBS,
        json=st.page(
            [{"id": 7, "summary": "x", "externalData": [{"key": "rankitpro_checkin_key", "value": "rankitpro-1-2"}]}]
        ),
    )
    found = _destination("servicetitan", h).read_visits(["7", "8"])
    assert found == {"7": {"summary": "x", "marker": "rankitpro-1-2"}}
    call = next(c for c in rsps.calls if c.request.url.startswith(st.JOBS))
    assert _query(call) == {
        "ids": "7,8",
        "externalDataApplicationGuid": h.application_guid,
        "page": "1",
        "pageSize": _query(call)["pageSize"],
    }


@pytest.mark.usefixtures("instant_rate_limits")
def test_housecallpro_read_visits_gets_each_job_and_404_means_gone(rsps):
    import responses

    import test_housecallpro_hook as hcp

    rsps.add(
        responses.GET,
        f"{hcp.API}/jobs/job_1",
        json={
            "id": "job_1",
            "notes": [
                {"id": "n1", "content": "other"},
                {"id": "n2", "content": "[Rank It Pro sync key: rankitpro-1-2]\n\nbody"},
            ],
        },
    )
    rsps.add(responses.GET, f"{hcp.API}/jobs/job_2", status=404, json={"error": {"message": "Job not found"}})
    found = _destination("housecallpro", hcp.hook()).read_visits(["job_1", "job_2"])
    assert found == {"job_1": {"note": "[Rank It Pro sync key: rankitpro-1-2]\n\nbody", "marker": "rankitpro-1-2"}}
    assert [c.request.method for c in rsps.calls] == ["GET", "GET"]


@pytest.mark.usefixtures("instant_rate_limits")
def test_jobber_read_visits_aliases_job_by_id(rsps):
    import responses

    import test_jobber_hook as jb

    rsps.add(responses.POST, jb.TOKEN, json={"access_token": jb.jwt(3600), "refresh_token": jb.ROTATED})
    rsps.add(
        responses.POST,
        jb.GRAPHQL,
        json=jb.gql({"j0": {"id": "Z2lk1", "title": "t (rankitpro-1-2)", "instructions": "i"}, "j1": None}),
    )
    found = _destination("jobber", jb.hook(writer=lambda creds: None)).read_visits(["Z2lk1", "Z2lk2"])
    assert found == {"Z2lk1": {"title": "t (rankitpro-1-2)", "instructions": "i"}}
    sent = json.loads(next(c for c in rsps.calls if c.request.url == jb.GRAPHQL).request.body)
    assert "j0: job(id: $j0) { id title instructions jobStatus }" in sent["query"]
    assert "j1: job(id: $j1) { id title instructions jobStatus }" in sent["query"]
    assert sent["variables"] == {"j0": "Z2lk1", "j1": "Z2lk2"}


@pytest.mark.usefixtures("instant_rate_limits")
def test_fieldedge_read_visits_gets_each_lead_and_404_means_gone(rsps):
    import responses

    import test_fieldedge_hook as fe

    fe.token_ok(rsps)
    rsps.add(responses.GET, f"{fe.LEADS}/L1", json={"data": {"leadId": "L1", "trackingId": "rankitpro-1-2"}})
    rsps.add(responses.GET, f"{fe.LEADS}/L2", status=404, json={"message": "Lead not found"})
    found = _destination("fieldedge", fe.hook()).read_visits(["L1", "L2"])
    assert found == {"L1": {"trackingId": "rankitpro-1-2"}}


def test_sandbox_admin_edit_record_refuses_unknown_records_and_empty_edits(sandbox):
    case = CASES["hubspot"]
    register(sandbox, case)
    base = f"{sandbox.url}/_sandbox/records/hubspot/{case.account}/notes"
    created = requests.post(base, json={"properties": {"hs_note_body": "a"}}, timeout=10).json()
    edited = requests.patch(f"{base}/{created['id']}", json={"hs_note_body": "b"}, timeout=10)
    assert edited.status_code == 200 and edited.json()["properties"]["hs_note_body"] == "b"
    assert requests.patch(f"{base}/999999", json={"hs_note_body": "b"}, timeout=10).status_code == 404
    assert requests.patch(f"{base}/{created['id']}", json={}, timeout=10).status_code == 400
