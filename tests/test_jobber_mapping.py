"""Unit tests of crm_sync.mapping.jobber: GraphQL inputs for clients, properties and jobs."""

from __future__ import annotations

import re
from dataclasses import replace

from check_in_rows import prepare_valid, row_factory
from crm_sync.mapping import jobber as mapping
from crm_sync.models import Customer, PreparedCheckIn, SyncSettings
from crm_sync.text import utf16_len

TRUNCATED = re.compile(r"…\[truncated by Rank It Pro sync: [\d,]+ characters, [\d,]+ not shown\]")


make_row = row_factory(customer_email="Ann@Example.com ")


def prepared(settings: SyncSettings | None = None, **overrides) -> PreparedCheckIn:
    return prepare_valid(make_row(**overrides), settings)


# ----------------------------------------------------------------------------- clients
def test_client_create_input_has_emails_phones_and_the_service_address_as_property():
    data, warnings = mapping.client_create_input(prepared().customer)
    address = {"street1": "100 Congress Ave", "city": "Austin", "province": "TX", "postalCode": "78701"}
    assert data == {
        "firstName": "Ann",
        "lastName": "Lee",
        "emails": [{"description": "MAIN", "primary": True, "address": "ann@example.com"}],
        "phones": [{"description": "MAIN", "primary": True, "number": "(512) 555-0100"}],
        "properties": [{"address": address}],
        "billingAddress": address,
    }
    assert warnings == []


def test_client_without_address_gets_no_property_and_extension_stays_readable():
    item = prepared(address=None, city=None, state=None, zip=None, customer_phone="512-555-0100 x12")
    data, _ = mapping.client_create_input(item.customer)
    assert "properties" not in data and "billingAddress" not in data
    assert data["phones"][0]["number"] == "(512) 555-0100 ext. 12"


def test_client_without_a_name_is_named_after_its_email_with_a_warning():
    data, warnings = mapping.client_create_input(Customer(email="solo@example.com"))
    assert data["lastName"] == "solo@example.com" and "firstName" not in data
    assert warnings and "no name" in warnings[0]
    data, _ = mapping.client_create_input(Customer(phone="+442071838750"))
    assert data["lastName"] == "+44 20 7183 8750"  # international numbers in international format


def test_long_names_and_address_lines_are_cut_visibly():
    long = "Q" * 600
    data, _ = mapping.client_create_input(Customer(first_name=long, street=long, zip="1"))
    assert utf16_len(data["firstName"]) <= mapping.NAME_LIMIT and TRUNCATED.search(data["firstName"])
    assert utf16_len(data["properties"][0]["address"]["street1"]) <= mapping.NAME_LIMIT


def test_client_keys_read_jobber_formats():
    client = {
        "firstName": "Ann ",
        "lastName": "Lee",
        "emails": [{"address": " ANN@example.com"}],
        "phones": [{"number": "512.555.0100"}, {"number": "not a phone"}],
    }
    assert mapping.client_keys(client) == {"email:ann@example.com", "phone:+15125550100", "name:ann lee"}


def test_client_edit_input_adds_what_is_missing_and_keeps_what_the_office_typed():
    item = prepared()
    same = {
        "firstName": "Ann",
        "lastName": "Lee",
        "emails": [{"address": "ann@example.com"}],
        "phones": [{"number": "+1 512 555 0100"}],
    }
    assert mapping.client_edit_input(item.customer, same) is None
    other = {"firstName": "Annie", "lastName": "Lee", "emails": [{"address": "office@example.com"}], "phones": []}
    assert mapping.client_edit_input(item.customer, other) == {
        "firstName": "Ann",
        "emailsToAdd": [{"description": "MAIN", "primary": False, "address": "ann@example.com"}],
        "phonesToAdd": [{"description": "MAIN", "primary": False, "number": "(512) 555-0100"}],
    }


def test_address_key_ignores_case_spacing_and_prefers_the_postal_code():
    a = mapping.address_key({"street1": "100  Congress Ave", "city": "Austin", "postalCode": "78701"})
    b = mapping.address_key({"street1": "100 congress ave", "city": "AUSTIN", "postalCode": "78701 "})
    assert a == b == "100 congress ave|78701"
    assert mapping.address_key({"street1": "1 Main", "city": "Austin"}) == "1 main|austin"
    assert mapping.address_key({"city": "Austin"}) is None and mapping.address_key(None) is None


# ----------------------------------------------------------------------------- jobs
def test_job_create_input_carries_marker_body_date_and_settings():
    item = prepared()
    data, warnings = mapping.job_create_input(item, "UHJvcDE=", invoicing_schedule="ON_COMPLETION")
    assert data["propertyId"] == "UHJvcDE="
    assert data["title"] == "Water Heater Install – 2026-11-20 (rankitpro-9-42)"
    assert data["instructions"] == item.visit.body
    assert data["timeframe"] == {"startAt": "2026-11-20"}
    assert data["scheduling"] == {"createVisits": True, "notifyTeam": False}
    assert data["invoicing"] == {"invoicingType": "FIXED_PRICE", "invoicingSchedule": "ON_COMPLETION"}
    assert warnings == []
    assert mapping.has_marker(data["title"], item.visit_key)


def test_marker_is_matched_as_a_whole_token():
    assert mapping.has_marker("AC (rankitpro-1-2)", "rankitpro-1-2")
    assert not mapping.has_marker("AC (rankitpro-1-23)", "rankitpro-1-2")
    assert not mapping.has_marker("AC (rankitpro-11-2)", "rankitpro-1-2")
    assert not mapping.has_marker(None, "rankitpro-1-2")
    assert mapping.markers_in("a rankitpro-1-2 b (rankitpro-3-4)") == {"rankitpro-1-2", "rankitpro-3-4"}


def test_huge_visit_text_and_title_are_truncated_visibly_not_refused():
    item = prepared(notes="All joints tested. " * 5000, job_type="Very long job type " * 30)
    data, warnings = mapping.job_create_input(item, "p")
    assert utf16_len(data["instructions"]) <= mapping.INSTRUCTIONS_LIMIT and TRUNCATED.search(data["instructions"])
    assert utf16_len(data["title"]) <= mapping.TITLE_LIMIT
    assert data["title"].endswith(f"({item.visit_key})")  # the marker always survives
    assert len(warnings) == 2


def test_custom_field_mapping_becomes_detail_lines_in_the_instructions():
    settings = SyncSettings(custom_field_mapping={"customerFeedback": "Feedback", "noSuchField": "X"})
    item = prepared(settings)
    data, warnings = mapping.job_create_input(item, "p", custom_fields=settings.custom_field_mapping)
    assert data["instructions"].endswith("\n\nDetails:\nFeedback: Fast & friendly")
    assert any("noSuchField" in w for w in warnings)


def test_job_edit_input_rewrites_title_and_instructions_only():
    item = prepared()
    edited = replace(item, visit=replace(item.visit, body="Edited body"))
    data, _ = mapping.job_edit_input(edited)
    assert data == {"title": "Water Heater Install – 2026-11-20 (rankitpro-9-42)", "instructions": "Edited body"}
