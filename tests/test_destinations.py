"""Destination helpers that keep one bad record from failing a whole batch."""

from __future__ import annotations

from crm_hooks.errors import BadRecordError, RetryableError
from crm_sync.destinations.base import chunked, distinct_customers, isolate_bad_records, per_record
from crm_sync.destinations.salesforce import phone_variants
from crm_sync.models import Customer, PreparedCheckIn, RecordResult


def test_all_or_nothing_batch_is_split_until_the_bad_record_stands_alone():
    calls = []

    def send(items):
        calls.append(list(items))
        if 5 in items:
            raise BadRecordError("HubSpot VALIDATION_ERROR: Property values were not valid", status=400)
        return {str(i): RecordResult(str(i), crm_id=f"id{i}") for i in items}

    results = isolate_bad_records(list(range(1, 9)), send, key=str)
    assert {k for k, r in results.items() if r.ok} == {"1", "2", "3", "4", "6", "7", "8"}
    assert "VALIDATION_ERROR" in results["5"].error
    assert len(calls) == 7  # 1 + 2*log2(8): never one call per record
    assert isolate_bad_records([], send, key=str) == {}


def test_chunked_and_distinct_customers():
    assert [list(c) for c in chunked(list(range(5)), 2)] == [[0, 1], [2, 3], [4]]
    rows = [
        PreparedCheckIn(i, 1, "h", Customer(email=f"{i % 2}@x.com"), None, [f"email:{i % 2}@x.com"]) for i in range(4)
    ]
    assert [r.check_in_id for r in distinct_customers(rows)] == [2, 3]


def test_phone_variants_cover_common_typings():
    variants = phone_variants("+15125550100")
    for typed in ("+15125550100", "(512) 555-0100", "512-555-0100", "5125550100", "512.555.0100"):
        assert typed in variants
    assert phone_variants("+442079460958")[0] == "+442079460958"


def test_per_record_loop_keeps_what_landed_and_marks_the_rest_uncertain():
    def send_one(i):
        if i == 2:
            raise BadRecordError("refused", status=400)
        if i == 4:
            raise RetryableError("timed out")
        return RecordResult(str(i), crm_id=f"id{i}")

    results = per_record([1, 2, 3, 4, 5], send_one, key=str)
    assert results["1"].ok and results["3"].ok
    assert results["2"].error == "refused" and not results["2"].uncertain
    assert results["4"].uncertain and results["5"].uncertain and not results["5"].ok
