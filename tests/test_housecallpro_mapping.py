"""Check-ins -> Housecall Pro payloads: pure functions on messy input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_hooks.housecallpro import NOTE_LIMIT, TEXT_FIELD_LIMIT
from crm_sync.mapping import housecallpro as m
from crm_sync.models import Customer, SyncSettings
from crm_sync.prepare import prepare_check_in
from crm_sync.text import utf16_len


def row(**overrides):
    base = {
        "id": 1234,
        "company_id": 42,
        "job_type": "AC Repair",
        "customer_name": "SMITH, ANN",
        "customer_email": " Ann.Smith@Example.com ",
        "customer_phone": "(512) 555-0100 x12",
        "notes": "Replaced capacitor.",
        "address": "12 Oak St",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "created_at": datetime(2026, 11, 20, 14, 30),
    }
    return {**base, **overrides}


def prepared(**overrides):
    return prepare_check_in(row(**overrides), SyncSettings())


def test_customer_payload_from_a_messy_check_in():
    payload, warnings = m.customer_payload(prepared().customer)
    assert payload == {
        "first_name": "Ann",
        "last_name": "Smith",
        "email": "ann.smith@example.com",
        "mobile_number": "5125550100",
        "notifications_enabled": False,
        "tags": ["Rank It Pro"],
        "addresses": [{"street": "12 Oak St", "city": "Austin", "state": "TX", "zip": "78701", "country": "US"}],
    }
    assert warnings == []


def test_customer_payload_leaves_out_what_the_check_in_lacks():
    payload, _ = m.customer_payload(Customer(email="a@x.com"), tags=["RIP"], notifications_enabled=True)
    assert payload == {"email": "a@x.com", "notifications_enabled": True, "tags": ["RIP"]}
    # a street alone is enough for the inline address (CustomerCreate has no required address keys)
    payload, _ = m.customer_payload(Customer(last_name="Lee", street="1 Elm"), country="CA")
    assert payload["addresses"] == [{"street": "1 Elm", "country": "CA"}]


def test_long_names_are_cut_visibly_with_a_warning():
    payload, warnings = m.customer_payload(Customer(first_name="A" * 400, last_name="B"))
    assert utf16_len(payload["first_name"]) == TEXT_FIELD_LIMIT and payload["first_name"].endswith("…")
    assert warnings and "first name" in warnings[0]


def test_phones_national_for_north_america_e164_otherwise():
    assert m.hcp_phone("+15125550100") == "5125550100"
    assert m.hcp_phone("+442079460958") == "+442079460958"
    assert m.hcp_phone(None) is None


def test_update_payload_never_touches_the_email():
    assert m.customer_update_payload(prepared().customer) == {
        "first_name": "Ann",
        "last_name": "Smith",
        "mobile_number": "5125550100",
    }
    assert m.customer_update_payload(Customer(email="a@x.com")) == {}


def test_address_payload_complete_or_none():
    customer = prepared().customer
    assert m.address_payload(customer) == {
        "street": "12 Oak St",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "country": "US",
    }
    assert m.address_payload(Customer(street="12 Oak St", city="Austin")) is None
    assert m.address_payload(Customer(street="12 Oak St"), complete=False) == {"street": "12 Oak St", "country": "US"}
    assert m.address_payload(Customer(city="Austin"), complete=False) is None


@pytest.mark.parametrize(
    "key,record,expected",
    [
        ("email:ann@x.com", {"email": "Ann@X.com "}, True),
        ("email:ann@x.com", {"email": "ann2@x.com"}, False),
        ("phone:+15125550100", {"mobile_number": None, "work_number": "(512) 555-0100"}, True),
        ("phone:+15125550100", {"mobile_number": "5125550101"}, False),
        ("name:ann smith", {"first_name": "Ann", "last_name": " Smith"}, True),
        ("name:ann smith", {"first_name": "Anne", "last_name": "Smith"}, False),
        ("key:whatever", {"email": "x"}, False),
    ],
)
def test_search_hits_are_checked_exactly(key, record, expected):
    assert m.customer_matches(key, record) is expected


def test_search_text_per_key_kind():
    customer = Customer(first_name="Ann", last_name="Smith")
    assert m.search_text("email:ann@x.com", customer) == "ann@x.com"
    assert m.search_text("phone:+15125550100", customer) == "5125550100"
    assert m.search_text("name:ann smith", customer) == "Ann Smith"


def test_pick_address_prefers_the_check_in_street():
    addresses = [
        {"id": "adr_1", "type": "billing", "street": "9 Elm Dr", "zip": "78702"},
        {"id": "adr_2", "type": "service", "street": "12 Oak St.", "zip": "78701-1234"},
        {"street": "no id"},
    ]
    assert m.pick_address(addresses, Customer(street="12  oak st", zip="78701")) == "adr_2"
    assert m.pick_address(addresses, Customer(street="12 Oak Street")) == "adr_2"
    assert m.pick_address(addresses, Customer(street="9 Elm Drive")) == "adr_1"
    assert m.pick_address(addresses, Customer(street="12 Oak St", zip="99999")) is None  # another property
    assert m.pick_address(addresses, Customer(street="55 Pine")) is None
    assert m.pick_address(addresses, Customer()) == "adr_2"  # no street: the service address
    assert m.pick_address([{"id": "adr_9", "type": "billing"}], Customer()) == "adr_9"
    assert m.pick_address([], Customer()) is None


def test_job_payload_carries_marker_tags_and_optional_fields():
    item = prepared()
    payload, warnings = m.job_payload(
        item, "cus_1", "adr_1", tags=["Rank It Pro"], job_type_id="jbt_9", schedule_minutes=90
    )
    assert payload["customer_id"] == "cus_1" and payload["address_id"] == "adr_1"
    assert payload["tags"] == ["Rank It Pro"] and payload["job_fields"] == {"job_type_id": "jbt_9"}
    assert payload["schedule"] == {
        "scheduled_start": "2026-11-20T14:30:00Z",
        "scheduled_end": "2026-11-20T16:00:00Z",
        "arrival_window": 0,
    }
    assert payload["notes"].startswith("[Rank It Pro sync key: rankitpro-42-1234]\n\n")
    assert "Replaced capacitor." in payload["notes"] and warnings == []
    assert m.markers_in(payload["notes"]) == {"rankitpro-42-1234"}
    bare, _ = m.job_payload(item, "cus_1", "adr_1")
    assert "schedule" not in bare and "job_fields" not in bare


def test_huge_note_is_truncated_after_the_marker():
    item = prepared(notes="All joints pressure-tested. " * 5000)
    note, warnings = m.job_note(item)
    assert utf16_len(note) <= NOTE_LIMIT
    assert m.markers_in(note) == {item.visit_key}
    assert warnings and "truncated" in warnings[0]


def test_markers_are_exact():
    text = "[Rank It Pro sync key: rankitpro-42-12] and rankitpro-42-99 typed by hand"
    assert m.markers_in(text) == {"rankitpro-42-12"}
    assert m.markers_in(None) == set()
    assert m.marker_line("rankitpro-1-2") == "[Rank It Pro sync key: rankitpro-1-2]"


def test_visit_time_is_utc():
    item = prepared(created_at=datetime(2026, 11, 20, 14, 30, tzinfo=UTC))
    payload, _ = m.job_payload(item, "c", "a", schedule_minutes=30)
    assert payload["schedule"]["scheduled_start"] == "2026-11-20T14:30:00Z"


def test_a_row_without_a_visit_cannot_be_mapped():
    item = prepared(created_at="not a date")
    with pytest.raises(ValueError, match="no visit"):
        m.job_note(item)


def test_customer_changes_compare_phones_as_numbers():
    customer = prepared().customer
    record = {"first_name": "Ann", "last_name": "Smith", "mobile_number": "(512) 555-0100", "email": "other@x.com"}
    assert m.customer_changes(record, customer) == {}
    assert m.customer_changes({**record, "last_name": "Smyth", "mobile_number": None}, customer) == {
        "last_name": "Smith",
        "mobile_number": "5125550100",
    }
