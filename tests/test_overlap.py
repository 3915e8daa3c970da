"""Batches whose visit creates overlap the next batches (:mod:`crm_sync.overlap`): the driver on its own, then
the engine with it against the sandbox (HubSpot, whose destination overlaps them)."""

from __future__ import annotations

import threading

import pytest
import requests

from crm_hooks.errors import BadCredentialsError
from crm_hooks.registry import hook_class
from crm_sync.destinations import destination_for
from crm_sync.destinations.base import Destination
from crm_sync.destinations.hubspot import HubSpotDestination
from crm_sync.destinations.salesforce import SalesforceDestination
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from crm_sync.overlap import run_overlapped
from crm_sync.settings import parse_sync_settings
from e2e_helpers import check_in_ids, ledger, records
from localdev.demo_data import check_in_rows
from test_account_facts import CASES, new_rows, setup
from test_engine import hubspot_company


class Stop(Exception):
    pass


class Abandoned(Exception):
    pass


def _batch(name: str, log: list[str], fail: str | None = None):
    """A batch's steps as the engine's: customers, pause, visits (a send in flight: pause), complete."""
    log.append(f"{name}:customers")
    if fail == "customers":
        raise Stop(name)
    try:
        yield
        log.append(f"{name}:visits")
        yield
        if fail == "complete":
            raise Stop(name)
        log.append(f"{name}:complete")
    except Abandoned:
        log.append(f"{name}:abandoned")
        raise Stop(name) from None


def _abandon(steps):
    steps.throw(Abandoned())


def _source(log, n, fail=None, raise_after=None):
    for i in range(n):
        if raise_after is not None and i == raise_after:
            raise RuntimeError("budget")
        yield _batch(f"b{i}", log, fail.get(i) if fail else None)


# ---------------------------------------------------------------------- the driver
def test_one_in_flight_next_batch_decides_customers_while_the_one_before_sends():
    log: list[str] = []
    run_overlapped(_source(log, 3), _abandon, Stop, in_flight=1)
    assert log == [
        "b0:customers",
        "b0:visits",
        "b1:customers",  # while b0's visits are in flight
        "b0:complete",  # b0 complete before b1 writes a visit
        "b1:visits",
        "b2:customers",
        "b1:complete",
        "b2:visits",
        "b2:complete",
    ]


def test_two_in_flight_batches_complete_in_order_and_never_more_than_two_send():
    log: list[str] = []
    run_overlapped(_source(log, 4), _abandon, Stop, in_flight=2)
    assert log == [
        "b0:customers",
        "b0:visits",
        "b1:customers",
        "b1:visits",
        "b2:customers",
        "b0:complete",
        "b2:visits",
        "b3:customers",
        "b1:complete",
        "b3:visits",
        "b2:complete",
        "b3:complete",
    ]
    completed = [e for e in log if e.endswith(":complete")]
    assert completed == ["b0:complete", "b1:complete", "b2:complete", "b3:complete"]
    sending = 0
    for event in log:
        sending += event.endswith(":visits") - event.endswith(":complete")
        assert sending <= 2


def test_a_batch_that_stops_the_run_abandons_the_next_and_completes_the_one_in_flight():
    log: list[str] = []
    with pytest.raises(Stop, match="b1"):
        run_overlapped(_source(log, 6, fail={1: "complete"}), _abandon, Stop, in_flight=2)
    assert "b2:visits" in log and "b2:complete" in log  # in flight when b1 stopped: its outcome recorded
    assert "b3:abandoned" in log and "b3:visits" not in log  # paused before its visits: finished as not sent
    assert not any(e.startswith(("b4", "b5")) for e in log)  # never taken


def test_a_batch_failing_before_its_visits_lets_the_ones_in_flight_complete_first():
    log: list[str] = []
    with pytest.raises(Stop, match="b2"):
        run_overlapped(_source(log, 4, fail={2: "customers"}), _abandon, Stop, in_flight=2)
    assert log[-3:] == ["b2:customers", "b0:complete", "b1:complete"]


def test_the_source_stopping_completes_every_batch_in_flight():
    log: list[str] = []
    with pytest.raises(RuntimeError, match="budget"):
        run_overlapped(_source(log, 5, raise_after=2), _abandon, Stop, in_flight=2)
    assert log[-2:] == ["b0:complete", "b1:complete"]


def test_a_stop_while_completing_the_rest_does_not_hide_the_first():
    log: list[str] = []
    with pytest.raises(Stop, match="b3"):
        run_overlapped(_source(log, 5, fail={3: "customers", 2: "complete"}), _abandon, Stop, in_flight=2)
    assert "b1:complete" in log and "b2:complete" not in log


def test_batches_without_visits_need_no_pause():
    log: list[str] = []

    def empty(name):
        log.append(name)
        return
        yield

    run_overlapped(iter([empty("e0"), _batch("b1", log), empty("e2")]), _abandon, Stop, in_flight=1)
    assert log == ["e0", "b1:customers", "b1:visits", "e2", "b1:complete"]


def test_which_destinations_overlap_visit_creates():
    # Only where a visit create makes nothing a later customer look-up reads (no parent record).
    assert Destination.overlap_visit_writes == 0
    assert HubSpotDestination.overlap_visit_writes >= 1 and SalesforceDestination.overlap_visit_writes >= 1
    from crm_sync.destinations.fieldedge import FieldEdgeDestination
    from crm_sync.destinations.housecallpro import HousecallProDestination
    from crm_sync.destinations.jobber import JobberDestination
    from crm_sync.destinations.servicetitan import ServiceTitanDestination

    for per_record in (FieldEdgeDestination, HousecallProDestination, JobberDestination, ServiceTitanDestination):
        assert per_record.overlap_visit_writes == 0


# ---------------------------------------------------------------------- the engine
class _Watched(HubSpotDestination):
    """The real HubSpot destination; counts visit creates in flight and may refuse the ``revoke_at``-th."""

    revoke_at: int | None = None

    def setup(self):
        self.lock = threading.Lock()
        self.calls, self.sending, self.most, self.threads = 0, 0, 0, set()
        return self

    def create_visits(self, items, progress=None):
        with self.lock:
            self.calls += 1
            call = self.calls
            self.sending += 1
            self.most = max(self.most, self.sending)
            self.threads.add(threading.current_thread().name.split("_")[0])
        try:
            if call == self.revoke_at:
                raise BadCredentialsError("hubspot: HTTP 401 (test: the token was revoked)")
            return super().create_visits(items, progress) if progress else super().create_visits(items)
        finally:
            with self.lock:
                self.sending -= 1


def _watched(integration, revoke_at=None):
    settings, _ = parse_sync_settings(integration.get("syncSettings"))
    real = destination_for("hubspot", integration, settings)
    dest = _Watched(real.hook, settings).setup()
    dest.revoke_at = revoke_at
    return dest


def _sync(db, company_id, integration, dest, run_id):
    return IntegrationSync(
        db,
        company_id=company_id,
        crm_type="hubspot",
        integration=integration,
        run_id=run_id,
        options=SyncOptions(batch_size=4),
        destination=dest,
    ).run()


def _notes_by_check_in(sandbox_url):
    counts: dict[str, int] = {}
    for note in records(sandbox_url, "hubspot", "hs", "notes"):
        key = note["properties"].get("rankitpro_checkin_key")
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_engine_sends_visit_creates_in_threads_and_every_check_in_lands_once(db, sandbox):
    rows = list(check_in_rows(0, 0, 40, messy=False, repeat_share=0.3))
    company_id, integration = hubspot_company(db, sandbox, rows)
    dest = _watched(integration)
    result = _sync(db, company_id, integration, dest, "overlap")
    assert result.status == "success", result.error
    assert result.synced == 40
    assert dest.threads == {"crm-visit-writes"} and dest.calls == 10
    assert 1 <= dest.most <= HubSpotDestination.overlap_visit_writes
    statuses = ledger(db, company_id, "hubspot")
    assert set(statuses) == check_in_ids(db, company_id) and {r["status"] for r in statuses.values()} == {"synced"}
    notes = _notes_by_check_in(sandbox.url)
    assert len(notes) == 40 and set(notes.values()) == {1}
    note_ids = {n["id"] for n in records(sandbox.url, "hubspot", "hs", "notes")}
    assert {r["crm_visit_id"] for r in statuses.values()} == note_ids


def test_engine_stopped_mid_overlap_records_every_row_and_the_next_run_sends_each_once(db, sandbox):
    rows = list(check_in_rows(0, 0, 40, messy=False, repeat_share=0.3))
    company_id, integration = hubspot_company(db, sandbox, rows)
    # The third batch's visit create is refused: batches 0 and 1 were sent, 3 is in flight, 4 paused before
    # its visits (two creates in flight at most).
    result = _sync(db, company_id, integration, _watched(integration, revoke_at=3), "stopped")
    assert result.status == "partial" and "bad credentials" in (result.error or "")
    statuses = ledger(db, company_id, "hubspot")
    ids = sorted(check_in_ids(db, company_id))
    by_batch = [[statuses.get(i, {}).get("status") for i in ids[k : k + 4]] for k in range(0, 40, 4)]
    assert by_batch[0] == by_batch[1] == ["synced"] * 4
    assert by_batch[2] == ["in_flight"] * 4  # its create raised: looked up before any create next run
    assert by_batch[3] == ["synced"] * 4  # in flight when batch 2 stopped the run: completed
    assert by_batch[4] == ["pending"] * 4  # customers decided, no visit written: sent next run
    assert all(s in (None, "pending") for batch in by_batch[5:] for s in batch)
    notes = _notes_by_check_in(sandbox.url)
    assert len(notes) == 12 and set(notes.values()) == {1}

    again = _sync(db, company_id, integration, _watched(integration), "again")
    assert again.status == "success", again.error
    statuses = ledger(db, company_id, "hubspot")
    assert {r["status"] for r in statuses.values()} == {"synced"} and len(statuses) == 40
    notes = _notes_by_check_in(sandbox.url)
    assert len(notes) == 40 and set(notes.values()) == {1}  # nothing twice
    contacts = records(sandbox.url, "hubspot", "hs", "contacts")
    assert len({c["properties"].get("email") for c in contacts}) == len(contacts)  # no customer twice


def test_engine_overlaps_under_faults_and_sends_nothing_twice(db, sandbox):
    rows = list(check_in_rows(0, 0, 60, messy=False, repeat_share=0.3))
    company_id, integration = hubspot_company(db, sandbox, rows)
    for fault in ({"status": 503, "rate": 0.15}, {"status": 429, "rate": 0.15, "retry_after": 0}):
        requests.post(f"{sandbox.url}/_sandbox/faults", json={"crm": "hubspot", **fault}, timeout=10).raise_for_status()
    for attempt in range(4):  # a batch whose retries ran out is failed / in_flight, and sent by a later run
        _sync(db, company_id, integration, _watched(integration), f"faults-{attempt}")
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=10)
    final = _sync(db, company_id, integration, _watched(integration), "clean")
    assert final.status == "success", final.error
    statuses = ledger(db, company_id, "hubspot")
    assert {r["status"] for r in statuses.values()} == {"synced"} and len(statuses) == 60
    notes = _notes_by_check_in(sandbox.url)
    assert len(notes) == 60 and set(notes.values()) == {1}


def test_a_stale_fact_met_by_two_batches_in_flight_is_checked_once_and_both_sent_once(db, sandbox):
    """The notes marker property is deleted between two runs. Batches 0 and 1 both have their note creates in
    flight when the refusals come back: batch 0's completion checks the facts again (the property is created
    again) and re-sends; batch 1's, built before that check, is re-sent on it rather than quarantined."""
    case = next(c for c in CASES if c.crm_type == "hubspot")
    company_id = setup(db, sandbox, case)

    def run(run_id):
        sync = IntegrationSync(
            db,
            company_id=company_id,
            crm_type="hubspot",
            integration=load_integration(db, company_id, "hubspot"),
            run_id=run_id,
            options=SyncOptions(batch_size=4),
        )
        return sync.run(), sync.endpoint_calls

    assert run("p1")[0].status == "success"
    hook = hook_class("hubspot").from_integration(load_integration(db, company_id, "hubspot"))
    hook.request("DELETE", "/crm/v3/properties/notes/rankitpro_checkin_key", endpoint="DELETE property")
    new_rows(db, company_id, 16, seed=31)

    result, calls = run("p2")

    assert result.status == "success", (result.error, result.quarantine_reasons)
    assert result.synced == 16 and result.quarantined == 0 and result.failed == 0
    assert calls.get("POST /crm/v3/properties/notes") == 1  # checked again once, the property created once
    assert [w for w in result.warnings if "checked again" in w]
    markers = [case.visit_marker(r) for r in records(sandbox.url, "hubspot", case.account, case.visit_object)]
    expected = {f"rankitpro-{company_id}-{cid}" for cid in check_in_ids(db, company_id)}
    assert sorted(m for m in markers if m in expected) == sorted(expected)  # each visit once
