"""Customer reads ahead (:mod:`crm_sync.lookahead`): the queue on its own, then the engine with it.

The engine tests run HubSpot (the CRM that reads ahead) against the sandbox over HTTP; the destination is
the real one, with its ``match_customers`` watched to see which thread asked which key.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from crm_hooks.errors import RetryableError
from crm_sync.destinations import destination_for
from crm_sync.destinations.hubspot import HubSpotDestination
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.lookahead import LookAhead, ReadAhead
from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.settings import parse_sync_settings
from e2e_helpers import check_in_ids, ledger, records
from localdev.demo_data import check_in_rows
from test_engine import hubspot_company


def _item(check_in_id: int, *keys: str) -> PreparedCheckIn:
    return PreparedCheckIn(
        check_in_id=check_in_id, company_id=1, source_hash="h", customer=Customer(), visit=None, match_keys=list(keys)
    )


def _prepare(batch):
    items = [_item(r["id"], *r["keys"]) for r in batch]
    return ReadAhead(items, items)


# ---------------------------------------------------------------------- the queue
def test_batches_come_in_order_with_what_was_read_and_later_reads_skip_earlier_batches_keys():
    asked: list[tuple[int, frozenset[str]]] = []

    def read(prepared, skip, cancelled):
        asked.append((prepared.items[0].check_in_id, skip))
        return {k: None for row in prepared.sending for k in row.match_keys if k not in skip}

    batches = [[{"id": i, "keys": [f"email:{i % 3}@x.io", f"phone:+1555000{i}"]}] for i in range(6)]
    with LookAhead(_prepare, read, depth=2) as ahead:
        got = list(ahead.batches(batches))
    assert [b[0]["id"] for b, _ in got] == list(range(6))
    assert [r.items[0].check_in_id for _, r in got] == list(range(6))
    skips = dict(asked)
    # Batch 3 shares email:0 with batch 0, but batch 0 was written before batch 3's read began: asked.
    assert "email:0@x.io" in got[3][1].answers
    # Each read skips the keys of the batches queued before it (at most ``depth`` of them).
    assert skips[0] == frozenset()
    assert skips[1] == {"email:0@x.io", "phone:+15550000"}
    assert skips[2] == {"email:0@x.io", "phone:+15550000", "email:1@x.io", "phone:+15550001"}
    assert all(len(skip) <= 4 for skip in skips.values())


def test_reads_run_ahead_of_the_batch_being_written():
    started: dict[int, threading.Event] = {i: threading.Event() for i in range(4)}

    def read(prepared, skip, cancelled):
        started[prepared.items[0].check_in_id].set()
        return {}

    batches = [[{"id": i, "keys": [f"email:{i}@x.io"]}] for i in range(4)]
    with LookAhead(_prepare, read, depth=2) as ahead:
        stream = ahead.batches(batches)
        next(stream)  # batch 0 handed out: the engine is writing it
        assert started[1].wait(5) and started[2].wait(5)
        time.sleep(0.1)
        assert not started[3].is_set()  # no more than ``depth`` ahead
        assert [b[0]["id"] for b, _ in stream] == [1, 2, 3]


def test_a_read_that_fails_answers_nothing_and_the_batches_go_on():
    def read(prepared, skip, cancelled):
        if prepared.items[0].check_in_id == 1:
            raise KeyError("a bug in a read")
        return {"email:x@x.io": None}

    batches = [[{"id": i, "keys": ["email:x@x.io"]}] for i in range(3)]
    with LookAhead(_prepare, read, depth=1) as ahead:
        got = [(b[0]["id"], dict(r.answers)) for b, r in ahead.batches(batches)]
    assert got == [(0, {"email:x@x.io": None}), (1, {}), (2, {"email:x@x.io": None})]


def test_leaving_early_cancels_reads_not_started_and_tells_running_ones():
    ran: list[int] = []
    running, seen_cancel = threading.Event(), threading.Event()

    def read(prepared, skip, cancelled):
        ran.append(prepared.items[0].check_in_id)
        if prepared.items[0].check_in_id == 1:
            running.set()
            if cancelled.wait(5):
                seen_cancel.set()
        return {}

    batches = [[{"id": i, "keys": [f"email:{i}@x.io"]}] for i in range(10)]
    with LookAhead(_prepare, read, depth=2) as ahead:
        next(ahead.batches(batches))  # the run stops after batch 0
        assert running.wait(5)
    assert seen_cancel.is_set()  # the read running was told, and the exit waited for it
    assert max(ran) <= 2  # batches past ``depth`` were never taken, let alone read


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError):
        LookAhead(_prepare, lambda *a: {}, depth=0)


# ---------------------------------------------------------------------- the engine
class _Watched(HubSpotDestination):
    """The real HubSpot destination; records each key asked of ``match_customers`` and the thread asking."""

    asked: list[tuple[str, str]]
    fail_ahead = False

    def match_customers(self, wanted):
        thread = threading.current_thread().name
        self.asked.extend((key, thread) for key, _ in wanted)
        if self.fail_ahead and thread.startswith("crm-lookahead"):
            raise RetryableError("hubspot: HTTP 503 (test)")
        return super().match_customers(wanted)


def _watched(integration, *, fail_ahead=False):
    settings, _ = parse_sync_settings(integration.get("syncSettings"))
    real = destination_for("hubspot", integration, settings)
    dest = _Watched(real.hook, settings)
    dest.asked, dest.fail_ahead = [], fail_ahead
    return dest


def _rows_with_a_returning_and_an_existing_customer(n=24):
    rows = list(check_in_rows(0, 0, n, messy=False, repeat_share=0.0))
    for i in (1, 9, 17):  # one new customer in batches 0, 2 and 4 (batches of 4 rows)
        rows[i].update(customer_email="returning@example.com", customer_name="Rita Returning")
    rows[13].update(customer_email=None, customer_phone="(512) 555-0177", customer_name="Ezra Existing")
    return rows


@pytest.mark.parametrize("fail_ahead", [False, True], ids=["reads-ahead", "reads-ahead-fail"])
def test_engine_reads_ahead_and_decides_every_customer_as_without_it(db, sandbox, fail_ahead):
    company_id, integration = hubspot_company(db, sandbox, _rows_with_a_returning_and_an_existing_customer())
    requests.post(
        f"{sandbox.url}/_sandbox/records/hubspot/hs/contacts",
        json={"properties": {"firstname": "Ezra", "lastname": "Existing", "phone": "512.555.0177"}},
        timeout=10,
    ).raise_for_status()
    dest = _watched(integration, fail_ahead=fail_ahead)
    result = IntegrationSync(
        db,
        company_id=company_id,
        crm_type="hubspot",
        integration=integration,
        run_id="lookahead",
        options=SyncOptions(batch_size=4),
        destination=dest,
    ).run()
    assert result.status == "success", result.error

    rows = ledger(db, company_id, "hubspot")
    assert set(rows) == check_in_ids(db, company_id) and {r["status"] for r in rows.values()} == {"synced"}
    contacts = records(sandbox.url, "hubspot", "hs", "contacts")
    returning = [c for c in contacts if c["properties"].get("email") == "returning@example.com"]
    assert len(returning) == 1  # one customer, created once, for the three batches
    existing = [c for c in contacts if c["properties"].get("lastname") == "Existing"]
    assert len(existing) == 1  # found by phone, not created again
    ezra = [c for c in check_in_ids(db, company_id) if rows[c]["crm_customer_id"] == existing[0]["id"]]
    assert len(ezra) == 1  # the check-in went to the customer found

    asked = dest.asked
    email = "email:returning@example.com"
    if fail_ahead:
        # Every read ahead failed: the engine asked for each key itself, with the same outcome.
        assert any(t.startswith("crm-lookahead") for _, t in asked)
        assert [k for k, t in asked if k == email and not t.startswith("crm-lookahead")] == [email]
    else:
        ahead = {k for k, t in asked if t.startswith("crm-lookahead")}
        live = [k for k, t in asked if not t.startswith("crm-lookahead")]
        assert "phone:+15125550177" in ahead and "phone:+15125550177" not in live
        # Asked once, for batch 0: later batches' reads skip it while batch 0 is queued before them, and
        # then the customer map (filled by batch 0) answers.
        assert [k for k, _ in asked].count(email) == 1
        assert email not in live


def test_hubspot_reads_ahead_and_other_crms_do_not():
    from crm_sync.destinations.base import Destination

    assert HubSpotDestination.lookahead_batches >= 1
    assert Destination.lookahead_batches == 0
