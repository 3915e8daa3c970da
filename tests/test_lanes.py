"""Per-record writes in lanes (``crm_sync.destinations.base.per_record`` / ``in_lanes``): no network, no timing.

A CRM without batch endpoints is written one call per record; a 429's ``Retry-After`` or a 5xx backoff inside
one call used to stop the whole sync. With lanes one record's wait holds up only its lane. What must not change:
every record written once, a customer's records in order in one lane, the error semantics of the loop.
"""

from __future__ import annotations

import threading

import pytest

from crm_hooks.errors import BadCredentialsError, BadRecordError, BudgetExhaustedError, RetryableError
from crm_sync.destinations.base import CustomerRef, in_lanes, per_record
from crm_sync.models import RecordResult

Item = tuple[str, CustomerRef]  # (record key, the customer it belongs to)


def items(customers: int, each: int) -> list[Item]:
    return [(f"c{c}-{n}", CustomerRef(f"C{c}")) for c in range(customers) for n in range(each)]


def key(item: Item) -> str:
    return item[0]


def test_every_record_is_written_once_and_a_customers_records_stay_in_order():
    written: list[tuple[str, str]] = []
    threads: set[str] = set()
    lock = threading.Lock()

    second_lane = threading.Event()

    def send(item: Item) -> RecordResult:
        with lock:
            written.append((item[1].crm_id, item[0]))
            threads.add(threading.current_thread().name)
            if len(threads) > 1:
                second_lane.set()
        if len(written) == 1:  # the first record waits for another lane to start (a fast send could let one
            second_lane.wait(timeout=30)  # thread take every lane before the others start)
        return RecordResult(item[0], crm_id="id-" + item[0], created=True)

    todo = items(6, 4)
    results = per_record(todo, send, key, lanes=4)
    assert sorted(results) == sorted(k for k, _ in todo) and all(r.ok for r in results.values())
    assert sorted(k for _, k in written) == sorted(k for k, _ in todo)  # once each
    for c in range(6):
        assert [k for cid, k in written if cid == f"C{c}"] == [f"c{c}-{n}" for n in range(4)]
    assert len(threads) > 1


def test_a_record_waiting_out_a_429_does_not_hold_up_the_others():
    todo = items(5, 2)
    others_done = threading.Event()
    done: set[str] = set()
    lock = threading.Lock()

    def send(item: Item) -> RecordResult:
        if item[0] == "c0-0":
            # Waits (as for a Retry-After) until every other customer's records are written: in one lane,
            # they would come after it and this would time out.
            assert others_done.wait(timeout=30), "the other records were held up behind this one"
        with lock:
            done.add(item[0])
            if {k for k, _ in todo if not k.startswith("c0-")} <= done:
                others_done.set()
        return RecordResult(item[0], crm_id=item[0])

    results = per_record(todo, send, key, lanes=3)
    assert all(r.ok for r in results.values()) and len(results) == 10


def test_one_lane_is_the_sequential_loop():
    order: list[str] = []

    def send(item: Item) -> RecordResult:
        order.append(item[0])
        return RecordResult(item[0], crm_id=item[0])

    todo = items(3, 2)
    per_record(todo, send, key, lanes=1)
    assert order == [k for k, _ in todo]


def test_a_refused_record_is_that_records_error_only():
    def send(item: Item) -> RecordResult:
        if item[0] == "c1-0":
            raise BadRecordError("400 email is invalid", status=400)
        return RecordResult(item[0], crm_id=item[0])

    results = per_record(items(3, 2), send, key, lanes=3)
    assert results["c1-0"].error == "400 email is invalid" and not results["c1-0"].uncertain
    assert sum(r.ok for r in results.values()) == 5


def test_a_transient_failure_stops_new_records_and_leaves_the_rest_uncertain():
    sent: list[str] = []

    def send(item: Item) -> RecordResult:
        sent.append(item[0])
        if item[0] == "c0-0":
            raise RetryableError("503 after 5 attempts")
        return RecordResult(item[0], crm_id=item[0])

    todo = items(4, 3)
    results = per_record(todo, send, key, lanes=2)
    assert len(results) == len(todo)
    assert results["c0-0"].uncertain and "503" in results["c0-0"].error
    for k, _ in todo:
        assert results[k].ok if k in sent and k != "c0-0" else results[k].uncertain
    assert "c0-1" not in sent  # the failed record's lane went no further


def test_the_time_budget_leaves_unstarted_records_not_sent():
    def send(item: Item) -> RecordResult:
        if item[0] == "c1-0":
            raise BudgetExhaustedError("time budget reached before another request")
        return RecordResult(item[0], crm_id=item[0])

    results = per_record(items(3, 2), send, key, lanes=1)
    assert results["c1-0"].not_sent and not results["c1-0"].uncertain
    assert results["c2-1"].not_sent and results["c0-0"].ok


def test_an_integration_stopping_error_after_another_lane_wrote_keeps_what_landed():
    wrote = threading.Event()

    def send(item: Item) -> RecordResult:
        if item[1].crm_id == "C1":
            assert wrote.wait(timeout=30)
            raise BadCredentialsError("401 token revoked")
        result = RecordResult(item[0], crm_id=item[0])
        wrote.set()
        return result

    todo = [("a", CustomerRef("C0")), ("b", CustomerRef("C1")), ("c", CustomerRef("C1"))]
    results = per_record(todo, send, key, lanes=2)
    assert results["a"].ok
    assert results["b"].uncertain and "token revoked" in results["b"].error and results["c"].uncertain


def test_an_integration_stopping_error_before_any_write_is_raised():
    def send(item: Item) -> RecordResult:
        raise BadCredentialsError("401 token revoked")

    with pytest.raises(BadCredentialsError):
        per_record(items(3, 1), send, key, lanes=3)


def test_in_lanes_keeps_the_order_of_its_answers():
    assert in_lanes(lambda n: n * n, list(range(20)), 4) == [n * n for n in range(20)]
    with pytest.raises(ValueError):
        in_lanes(lambda n: int("x") if n == 3 else n, list(range(6)), 3)


# ---------------------------------------------------------------- batch calls in lanes (in_chunks: HubSpot, Jobber)
def test_batch_chunks_in_lanes_a_waiting_chunk_does_not_hold_up_the_others():
    from crm_sync.destinations.base import in_chunks

    chunks = [[f"k{c}-{n}" for n in range(3)] for c in range(6)]
    others_done = threading.Event()
    done: set[int] = set()
    lock = threading.Lock()

    def send(chunk: list[str]) -> dict[str, RecordResult]:
        first = int(chunk[0][1:].split("-")[0])
        if first == 0:
            assert others_done.wait(timeout=30), "the other chunks were held up behind this one"
        with lock:
            done.add(first)
            if done >= set(range(1, 6)):
                others_done.set()
        return {k: RecordResult(k, crm_id="id-" + k, created=True) for k in chunk}

    results = in_chunks(chunks, send, lambda k: k, lanes=3)
    assert sorted(results) == sorted(k for c in chunks for k in c) and all(r.ok for r in results.values())


def test_batch_chunks_a_failure_after_one_landed_leaves_the_rest_uncertain_before_it_is_raised():
    from crm_sync.destinations.base import in_chunks

    chunks = [["a1", "a2"], ["b1", "b2"], ["c1"]]
    first_landed = threading.Event()

    def send(chunk: list[str]) -> dict[str, RecordResult]:
        if chunk[0] == "a1":
            first_landed.set()
            return {k: RecordResult(k, crm_id="id-" + k) for k in chunk}
        assert first_landed.wait(timeout=30)
        raise RetryableError("503 after retries")

    results = in_chunks(chunks, send, lambda k: k, lanes=2)
    assert results["a1"].ok and results["a2"].ok  # what landed stays recorded
    assert all(results[k].uncertain and not results[k].ok for k in ("b1", "b2", "c1"))  # looked up, not resent

    def refuse(chunk: list[str]) -> dict[str, RecordResult]:
        raise BadCredentialsError("401")

    with pytest.raises(BadCredentialsError):  # nothing landed: the engine decides for the whole batch
        in_chunks(chunks, refuse, lambda k: k, lanes=2)
