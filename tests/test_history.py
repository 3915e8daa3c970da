"""Write-back into the app's columns: format, 100-entry cap, concurrent admin edits kept."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from crm_sync.history import (
    HISTORY_LIMIT,
    history_entry,
    iso_millis,
    with_entry,
    write_back,
)
from localdev.demo_data import create_company


def test_entry_format_matches_the_app():
    at = datetime(2026, 11, 20, 8, 0, 3, 4000, tzinfo=UTC)
    entry = history_entry("hubspot", "HubSpot", synced=39, errors=2, at=at)
    assert entry == {
        "id": 1795161603004,  # epoch ms of the timestamp, as the app defines it
        "crmType": "hubspot",
        "crmName": "HubSpot",
        "status": "partial",
        "itemsProcessed": 41,
        "errorCount": 2,
        "timestamp": "2026-11-20T08:00:03.004Z",
    }
    assert history_entry("salesforce", None, synced=0, errors=3, at=at)["status"] == "failed"
    assert history_entry("salesforce", None, synced=5, errors=0, at=at)["crmName"] == "Salesforce"
    assert iso_millis(at) == "2026-11-20T08:00:03.004Z"


def test_history_is_capped_newest_first_and_survives_garbage():
    old = json.dumps([{"id": i} for i in range(HISTORY_LIMIT)])
    new = json.loads(with_entry(old, {"id": "new"}))
    assert len(new) == HISTORY_LIMIT and new[0] == {"id": "new"} and new[-1] == {"id": HISTORY_LIMIT - 2}
    assert json.loads(with_entry("not json", {"id": 1})) == [{"id": 1}]
    assert json.loads(with_entry(None, {"id": 1})) == [{"id": 1}]


def test_write_back_keeps_a_concurrent_admin_edit(db):
    company_id, _ = create_company(
        db, "Acme", {"hubspot": {"name": "HubSpot", "status": "active", "credentials": {"accessToken": "old-token"}}}
    )
    # The admin saves new credentials while our write-back waits for the row lock.
    admin = db.connect()
    tx = admin.begin()
    raw = admin.execute(
        sa.text("SELECT crm_integrations FROM companies WHERE id = :c FOR UPDATE"), {"c": company_id}
    ).scalar()
    data = json.loads(raw)
    data["hubspot"]["credentials"]["accessToken"] = "new-token"
    admin.execute(
        sa.text("UPDATE companies SET crm_integrations = :i WHERE id = :c"), {"i": json.dumps(data), "c": company_id}
    )
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    worker = threading.Thread(
        target=write_back,
        args=(db, company_id, "hubspot"),
        kwargs={"synced": 3, "errors": 0, "at": at, "set_last_synced": True, "add_history": True},
    )
    worker.start()
    worker.join(0.5)
    assert worker.is_alive(), "write-back waits for the admin's transaction"
    tx.commit()
    admin.close()
    worker.join(10)
    with db.connect() as conn:
        integrations, history = conn.execute(
            sa.text("SELECT crm_integrations, crm_sync_history FROM companies WHERE id = :c"), {"c": company_id}
        ).one()
    integrations = json.loads(integrations)
    assert integrations["hubspot"]["credentials"]["accessToken"] == "new-token"
    assert integrations["hubspot"]["lastSyncedAt"] == "2026-11-25T12:00:00.000Z"
    assert json.loads(history)[0]["status"] == "success"
