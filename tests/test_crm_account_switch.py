"""A company reconnects its CRM integration to another account (issue #10, section 4).

End to end on real parts: PostgreSQL, the sandbox over HTTP hosting two accounts of one CRM (two
HubSpot portals, two ServiceTitan tenants) whose record ids collide, and the steps the sync task
runs (the automatic customer index, then the engine), as :class:`CrmSyncOperator` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from crm_cases import seed_record
from crm_sync.customer_import import ensure_customer_index
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from crm_sync.summary import format_table, runs_for
from e2e_helpers import check_in_ids, ledger, recent, records
from localdev.demo_data import check_in_rows, create_company, hubspot_integration, insert_check_ins


@dataclass(frozen=True)
class Switch:
    """Two accounts of one CRM and how to talk about their records."""

    crm: str
    credentials: tuple[dict[str, Any], dict[str, Any]]  # sandbox credentials of accounts A and B
    integration: Any  # (sandbox url, credentials) -> the app's integration
    customers: str
    visits: str
    unrelated: dict[str, Any]  # a customer typed into account B before the switch

    def visit_customer(self, visit: dict[str, Any]) -> str | None:
        """The customer a visit record hangs off."""
        if self.crm == "hubspot":
            assoc = visit.get("associations") or []
            return str(assoc[0]["to"]["id"]) if assoc else None
        return str(visit.get("customerId"))


def _hubspot(url: str, creds: dict[str, Any]) -> dict[str, Any]:
    return hubspot_integration(url, creds["accessToken"])


def _servicetitan(url: str, creds: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "ServiceTitan",
        "status": "active",
        "credentials": {**creds, "baseUrl": f"{url}/servicetitan", "authUrl": f"{url}/servicetitan"},
        "crmSettings": {"businessUnitId": 1001, "jobTypeId": 2001, "campaignId": 3001, "priority": "Normal"},
        "syncSettings": {"customerMatchStrategy": "all"},
    }


SWITCHES = [
    Switch(
        "hubspot",
        ({"accessToken": "pat-na1-portal-a-11aa22bb"}, {"accessToken": "pat-na1-portal-b-33cc44dd"}),
        _hubspot,
        "contacts",
        "notes",
        {"properties": {"firstname": "Unrelated", "lastname": "Person1", "email": "unrelated1@portal-b.example"}},
    ),
    # ServiceTitan: a field-service CRM whose ids are numbers counted per tenant, so tenants' ids collide.
    Switch(
        "servicetitan",
        (
            {
                "clientId": "cid.tenant-a",
                "clientSecret": "cs1.tenant-a-secret-1a2b",
                "tenantId": "1234567",
                "appKey": "ak1.switch-appkey-3c4d",
            },
            {
                "clientId": "cid.tenant-b",
                "clientSecret": "cs1.tenant-b-secret-5e6f",
                "tenantId": "7654321",
                "appKey": "ak1.switch-appkey-3c4d",
            },
        ),
        _servicetitan,
        "customers",
        "jobs",
        {
            "name": "Unrelated Person1",
            "type": "Residential",
            "address": {"street": "1 Elm St", "city": "Austin", "state": "TX", "zip": "78701", "country": "USA"},
        },
    ),
]


@pytest.fixture(params=SWITCHES, ids=[s.crm for s in SWITCHES])
def switch(request) -> Switch:
    return request.param


def run(db, company_id: int, crm: str, run_id: str):
    """What the sync task does: the automatic customer index (first sync only), then the engine."""
    integration = load_integration(db, company_id, crm)
    ensure_customer_index(db, company_id, crm, integration, run_id=run_id, dag_id="test")
    return IntegrationSync(
        db,
        company_id=company_id,
        crm_type=crm,
        integration=integration,
        run_id=run_id,
        dag_id="test",
        options=SyncOptions(),
    ).run()


def snapshot(url: str, s: Switch, account: str) -> tuple[list, list]:
    return records(url, s.crm, account, s.customers), records(url, s.crm, account, s.visits)


def test_reconnect_to_another_account_syncs_it_as_a_first_sync_and_never_touches_its_records(db, sandbox, switch):
    s, url = switch, sandbox.url
    for name, creds in zip(("acct-a", "acct-b"), s.credentials, strict=True):
        requests.post(
            f"{url}/_sandbox/accounts", json={"crm": s.crm, "account": name, "credentials": creds}, timeout=10
        ).raise_for_status()
    company_id, tech = create_company(db, f"{s.crm} switcher", {s.crm: s.integration(url, s.credentials[0])})

    def visits(phone_suffix: str | None = None) -> None:
        """One check-in for each of the same six customers (a new phone: their details changed)."""
        rows = list(check_in_rows(company_id, tech, 6, messy=False, start=recent(), repeat_share=0.0))
        for i, row in enumerate(rows):
            row["customer_phone"] = f"(512) 555-{phone_suffix}{i}" if phone_suffix else row["customer_phone"]
        insert_check_ins(db, iter(rows))

    visits()

    first = run(db, company_id, s.crm, "r1")
    assert first.status == "success", first.error
    account_a = getattr(first, "crm_account", None)
    a_customers, a_visits = snapshot(url, s, "acct-a")
    used_in_a = {str(c["id"]) for c in a_customers}
    # Account B already holds customers nobody synced; one has an id that account A's sync also used.
    unrelated: set[str] = set()
    while not unrelated & used_in_a:
        assert len(unrelated) < 40, "the sandbox accounts' ids never collide"
        unrelated.add(str(seed_record(url, s.crm, "acct-b", s.customers, s.unrelated)["id"]))
    before_b = {str(c["id"]): c for c in records(url, s.crm, "acct-b", s.customers)}

    # The company's admin reconnects the integration to account B.
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE companies SET crm_integrations = :i WHERE id = :c"),
            {"i": json.dumps({s.crm: s.integration(url, s.credentials[1])}), "c": company_id},
        )
    # The same customers come back with new phone numbers (issue #10: the old code renamed B's customer
    # with A's colliding id to one of these and hung that customer's visit off it).
    visits("017")
    second = run(db, company_id, s.crm, "r2")
    account_b = getattr(second, "crm_account", None)

    # B's own customer is untouched: not renamed, no visit of another person attached.
    b_customers, b_visits = snapshot(url, s, "acct-b")
    by_id = {str(c["id"]): c for c in b_customers}
    assert {i: by_id[i] for i in unrelated} == {i: before_b[i] for i in unrelated}
    assert not {s.visit_customer(v) for v in b_visits} & unrelated
    assert second.status == "success", second.error
    # B gets every check-in as a first sync would, each exactly once, on customers created in B.
    assert len(b_visits) == len(check_in_ids(db, company_id))
    assert len(b_customers) == len(before_b) + 6
    # A is untouched by the run against B.
    assert snapshot(url, s, "acct-a") == (a_customers, a_visits)

    assert account_a and account_b and account_a != account_b
    # The live ledger and map are B's; A's rows are kept as its history.
    rows = ledger(db, company_id, s.crm)
    assert set(rows) == check_in_ids(db, company_id)
    assert {r["crm_account"] for r in rows.values()} == {account_b}
    assert {r["status"] for r in rows.values()} == {"synced"}
    with db.connect() as conn:
        archived = conn.execute(
            sa.text("SELECT crm_account, count(*) FROM crm_sync.ledger_archive WHERE company_id = :c GROUP BY 1"),
            {"c": company_id},
        ).all()
        map_accounts = set(
            conn.execute(
                sa.text("SELECT DISTINCT crm_account FROM crm_sync.customer_map WHERE company_id = :c"),
                {"c": company_id},
            ).scalars()
        )
        imports = conn.execute(
            sa.text("SELECT crm_account, status FROM crm_sync.customer_imports WHERE company_id = :c ORDER BY id"),
            {"c": company_id},
        ).all()
    assert archived == [(account_a, 6)]
    assert map_accounts == {account_b}
    # The new account's customers were indexed before its first sync (the unrelated one among them).
    assert [tuple(i) for i in imports] == [(account_a, "success"), (account_b, "success")]

    # The run says so: a warning, the run row, the summary table.
    assert second.previous_crm_account == account_a
    assert any(f"CRM account changed from {account_a} to {account_b}" in w for w in second.warnings)
    table = format_table(runs_for(db, "r2"))
    assert f"CRM account changed from {account_a} to {account_b}" in table

    # Told once: the next run of B is an ordinary one that sends nothing again.
    third = run(db, company_id, s.crm, "r3")
    assert third.previous_crm_account is None and not any("account changed" in w for w in third.warnings)
    assert third.synced == 0 and third.unchanged == len(rows)


def test_rows_written_before_accounts_were_recorded_are_adopted_by_the_first_run(db, sandbox):
    """Rows from before migration 0007 (no account) belong to the account the integration reports on the
    first run afterwards: nothing is re-sent, nothing is reported as a change."""
    s, url = SWITCHES[0], sandbox.url
    requests.post(
        f"{url}/_sandbox/accounts",
        json={"crm": s.crm, "account": "acct-a", "credentials": s.credentials[0]},
        timeout=10,
    ).raise_for_status()
    company_id, tech = create_company(db, "legacy", {s.crm: s.integration(url, s.credentials[0])})
    insert_check_ins(db, check_in_rows(company_id, tech, 4, messy=False, start=recent(), repeat_share=0.0))
    first = run(db, company_id, s.crm, "r1")
    assert first.synced == 4
    with db.begin() as conn:  # as if written before 0007
        for table in ("ledger", "customer_map", "customer_imports"):
            conn.execute(
                sa.text(f"UPDATE crm_sync.{table} SET crm_account = NULL WHERE company_id = :c"), {"c": company_id}
            )
        conn.execute(sa.text("DELETE FROM crm_sync.crm_accounts WHERE company_id = :c"), {"c": company_id})
    again = run(db, company_id, s.crm, "r2")
    assert again.synced == 0 and again.unchanged == 4 and again.previous_crm_account is None
    with db.connect() as conn:
        for table in ("ledger", "customer_map", "customer_imports"):
            accounts = set(
                conn.execute(
                    sa.text(f"SELECT DISTINCT crm_account FROM crm_sync.{table} WHERE company_id = :c"),
                    {"c": company_id},
                ).scalars()
            )
            assert accounts == {first.crm_account}, table
    assert len(records(url, s.crm, "acct-a", s.visits)) == 4


def _filled(data_type: str, column: str) -> Any:
    """A non-NULL value of ``data_type`` for ``column`` (status columns take a real ledger status)."""
    if column == "status":
        return "quarantined"
    return {
        "integer": 7,
        "bigint": 7,
        "boolean": True,
        "jsonb": json.dumps({column: "x"}),
        "timestamp with time zone": "2026-01-02T03:04:05+00:00",
        "uuid": "00000000-0000-4000-8000-000000000007",
    }.get(data_type, f"{column}-x")


@pytest.mark.parametrize("table", ["ledger", "customer_map"])
def test_every_column_survives_an_account_switch_and_back(db, table):
    """Archive (A -> B) then restore (B -> A) keeps every column of a live row (``quarantined_at`` was lost)."""
    from crm_sync.accounts import bind_account

    company_id, _ = create_company(db, f"switch {table} columns", {})
    of_company = sa.text(f"SELECT * FROM crm_sync.{table} WHERE company_id = :c")
    with db.begin() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'crm_sync' AND table_name = :t ORDER BY ordinal_position"
            ),
            {"t": table},
        ).all()
        archive = set(
            conn.execute(
                sa.text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'crm_sync' AND table_name = :t"
                ),
                {"t": f"{table}_archive"},
            ).scalars()
        )
        assert {c for c, _ in columns} <= archive  # the archive can hold every live column
        values = {c: _filled(t, c) for c, t in columns}
        values.update(company_id=company_id, crm_type="hubspot", crm_account="A")
        cast = ("jsonb", "timestamp with time zone", "uuid")
        params = ", ".join(f"CAST(:{c} AS {t})" if t in cast else f":{c}" for c, t in columns)
        conn.execute(sa.text(f"INSERT INTO crm_sync.{table} ({', '.join(values)}) VALUES ({params})"), values)
        before = conn.execute(of_company, {"c": company_id}).one()
    assert None not in before  # every column filled: a column the SQL forgets would come back NULL
    bind_account(db, company_id, "hubspot", "A")
    bind_account(db, company_id, "hubspot", "B")  # A's rows leave for the archive
    with db.connect() as conn:
        assert not conn.execute(of_company, {"c": company_id}).all()
    bind_account(db, company_id, "hubspot", "A")  # and come back
    with db.connect() as conn:
        after = conn.execute(of_company, {"c": company_id}).one()
    assert after._asdict() == before._asdict()
