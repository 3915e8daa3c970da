"""Unit tests of crm_sync.mapping.fieldedge: customer and lead bodies from prepared check-ins."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest

from check_in_rows import prepare_valid, row_factory
from check_in_rows import with_body as replace_body
from crm_sync.mapping import fieldedge
from crm_sync.models import Customer, PreparedCheckIn

MARKER = re.compile(r"…\[truncated by Rank It Pro sync: [\d,]+ characters, [\d,]+ not shown\]")
FULL = Customer(
    email="ann@example.com",
    phone="+15125550100",
    first_name="Ann",
    last_name="Lee",
    street="100 Congress Ave",
    city="Austin",
    state="TX",
    zip="78701",
    country="US",
)


make_row = row_factory(materials_used="Flex lines", follow_up_required=False)


def prepared(**overrides) -> PreparedCheckIn:
    return prepare_valid(make_row(**overrides))


def with_body(body: str) -> PreparedCheckIn:
    return replace_body(prepared(), body)


# =========================================================================== customers
def test_customer_payload_full():
    payload, warnings, error = fieldedge.customer_payload(FULL)
    assert error is None and warnings == []
    assert payload == {
        "firstName": "Ann",
        "lastName": "Lee",
        "email": "ann@example.com",
        "phoneNumber": "+15125550100",
        "preferredContactMethods": ["Email", "Phone"],
        "address1": "100 Congress Ave",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "marketingEmailOptIn": False,
        "marketingSmsOptIn": False,
    }
    assert "customerId" not in payload  # FieldEdge: never send customerId on create


def test_customer_payload_without_email_or_phone_is_refused_before_any_call():
    payload, _, error = fieldedge.customer_payload(Customer(first_name="Ann", last_name="Lee"))
    assert error and "email or a phone" in error
    assert "preferredContactMethods" not in payload


@pytest.mark.parametrize(
    ("first", "sent", "warning"),
    [
        ("J", None, "shorter than FieldEdge's 2"),
        ("Ann2", None, "contains digits"),
        ("A" * 60, "A" * 49 + "…", "longer than FieldEdge's 50"),
        ("  Mary   Jo ", "Mary Jo", None),
    ],
)
def test_names_follow_fieldedge_rules(first, sent, warning):
    payload, warnings, _ = fieldedge.customer_payload(Customer(email="a@example.com", first_name=first))
    assert payload.get("firstName") == sent
    if warning:
        assert any(warning in w for w in warnings), warnings
        assert len(sent or "") <= fieldedge.NAME_MAX
    else:
        assert warnings == []


def test_phone_only_customer_prefers_phone():
    payload, _, error = fieldedge.customer_payload(Customer(phone="+15125550100", last_name="Lee"))
    assert error is None
    assert payload["preferredContactMethods"] == ["Phone"] and "email" not in payload


def test_record_payload_reads_the_search_shape():
    record = {
        "id": "c9a1",
        "firstName": "John",
        "lastName": "Doe",
        "companyName": "Acme Heating Services",
        "address1": "123 Main St",
        "address2": "Suite 200",
        "city": "Dallas",
        "state": "TX",
        "zip": "75201",
        "primaryPhone": "+1-214-555-0198",
        "primaryEmail": "john.doe@acmeheating.com",
        "contactOnPhone": True,
        "contactOnSms": True,
        "marketingEmailOptIn": True,
    }
    assert fieldedge.record_payload(record) == {
        "firstName": "John",
        "lastName": "Doe",
        "companyName": "Acme Heating Services",
        "email": "john.doe@acmeheating.com",
        "phoneNumber": "+12145550198",
        "preferredContactMethods": ["Phone", "SMS"],
        "address1": "123 Main St",
        "address2": "Suite 200",
        "city": "Dallas",
        "state": "TX",
        "zip": "75201",
        "marketingEmailOptIn": True,
    }


def test_customer_update_keeps_what_fieldedge_holds_and_lays_the_check_in_over_it():
    record = {
        "firstName": "Ann",
        "lastName": "Lee",
        "companyName": "Lee Bakery",
        "address2": "Unit 5",
        "primaryEmail": "ann@example.com",
        "primaryPhone": "+1-512-555-0100",
        "address1": "1 Old Rd",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "contactOnEmail": True,
        "marketingEmailOptIn": True,
    }
    body, _ = fieldedge.customer_update(record, FULL)
    assert body["address1"] == "100 Congress Ave"  # from the check-in
    assert body["companyName"] == "Lee Bakery" and body["address2"] == "Unit 5"  # kept: PUT replaces
    assert body["marketingEmailOptIn"] is True and body["marketingSmsOptIn"] is False
    assert body["preferredContactMethods"] == ["Email"]
    assert list(body) == [k for k in fieldedge.CUSTOMER_KEYS if k in body]


def test_customer_update_is_none_when_nothing_changes():
    record = {
        "firstName": "ann",
        "lastName": "LEE",
        "primaryEmail": "Ann@Example.com",
        "primaryPhone": "+1-512-555-0100",
        "address1": "100  Congress Ave",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
    }
    assert fieldedge.customer_update(record, FULL) == (None, [])


# =========================================================================== leads
def test_lead_payload_shape():
    item = prepared()
    payload, warnings = fieldedge.lead_payload(item, "cust-1", {}, zone=ZoneInfo("America/Chicago"))
    assert warnings == []
    assert payload["trackingId"] == "rankitpro-9-42" == item.visit_key
    assert payload["source"] == "rankitpro" and payload["isExistingCustomer"] is True
    assert payload["preferredContactMethod"] == "Phone"
    assert payload["customer"] == {
        "customerRefId": "cust-1",
        "firstName": "Ann",
        "lastName": "Lee",
        "email": "ann@example.com",
        "phone": "5125550100",
        "marketingEmailOptedIn": False,
        "address": {"addressLine1": "100 Congress Ave", "city": "Austin", "state": "TX", "postalCode": "78701"},
    }
    appointment = payload["appointment"]
    assert (appointment["preferredDate"], appointment["preferredTime"]) == ("2026-11-20", "08:05")  # CST = UTC-6
    assert appointment["timezone"] == "America/Chicago"
    notes = appointment["availabilityNotes"]
    assert (
        notes.startswith(fieldedge.NOTES_HEADER)
        and "Removed old tank" in notes
        and "https://cdn.example.com/1.jpg" in notes
    )
    assert payload["metaData"] == {"rankitproCheckInKey": "rankitpro-9-42", "jobType": "Water Heater Install"}


def test_lead_without_customer_sync_is_not_an_existing_customer_and_defaults_to_utc():
    payload, _ = fieldedge.lead_payload(prepared(customer_phone=None), None, {})
    assert payload["isExistingCustomer"] is False and "customerRefId" not in payload["customer"]
    assert payload["preferredContactMethod"] == "Email"
    assert payload["appointment"]["timezone"] == "UTC" and payload["appointment"]["preferredTime"] == "14:05"


def test_lead_phone_format():
    assert fieldedge.lead_phone("+15125550100") == "5125550100"
    assert fieldedge.lead_phone("+442079460958") == "+442079460958"
    assert fieldedge.lead_phone(None) is None


def test_long_visit_report_is_truncated_visibly_never_refused():
    payload, warnings = fieldedge.lead_payload(with_body("All joints pressure-tested. " * 3000), "c", {})
    notes = payload["appointment"]["availabilityNotes"]
    assert len(notes) <= fieldedge.NOTES_LIMIT and MARKER.search(notes)
    assert any("truncated visibly" in w for w in warnings)


def test_custom_fields_go_to_metadata_and_reserved_keys_are_kept():
    mapping = {
        "customerFeedback": "feedback",
        "followUpRequired": "followUp",
        "notes": "rankitproCheckInKey",
        "noSuchField": "x",
    }
    payload, warnings = fieldedge.lead_payload(prepared(), "c", mapping)
    meta = payload["metaData"]
    assert meta["feedback"] == "Fast & friendly" and meta["followUp"] == "false"
    assert meta["rankitproCheckInKey"] == "rankitpro-9-42"
    assert any("written by the sync itself" in w for w in warnings)
    assert any("not a Rank It Pro check-in field" in w for w in warnings)


def test_lead_names_are_fitted_like_customer_names():
    payload, warnings = fieldedge.lead_payload(prepared(customer_name="J Lee3"), "c", {})
    assert "firstName" not in payload["customer"] and "lastName" not in payload["customer"]
    assert len(warnings) == 2 and "shorter" in warnings[0] and "digits" in warnings[1]
    assert payload["customer"]["email"] == "ann@example.com"  # the lead still identifies the person


def test_lead_without_visit_is_a_programming_error():
    item = prepared()
    item.visit = None
    with pytest.raises(ValueError):
        fieldedge.lead_payload(item, "c", {})
