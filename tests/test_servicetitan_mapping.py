"""Unit tests of crm_sync.mapping.servicetitan (and the destination's crmSettings parsing): pure, no I/O."""

from __future__ import annotations

import re

import pytest

from check_in_rows import prepare_valid, row_factory
from check_in_rows import with_body as replace_body
from crm_hooks.errors import ConfigurationError
from crm_hooks.servicetitan import JobDefaults, parse_job_defaults
from crm_sync.mapping import servicetitan as st
from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.text import utf16_len

GUID = "d19cfe73-bca1-5bdf-9620-6e8180f1b112"
MARKER = re.compile(r"…\[truncated by Rank It Pro sync: [\d,]+ characters, [\d,]+ not shown\]")
DEFAULTS = JobDefaults(business_unit_id=1001, job_type_id=2001, campaign_id=3001, priority="Normal")


make_row = row_factory(
    notes="Installed <50 gal> unit & tested.",
    customer_name="LEE, ANN",
    customer_email=" Ann@Example.com ",
    customer_phone="(512) 555-0100 x23",
    photos=[],
    customer_feedback="Great",
)


def prepared(**overrides) -> PreparedCheckIn:
    return prepare_valid(make_row(**overrides))


def with_body(body: str) -> PreparedCheckIn:
    """A prepared check-in whose visit body is exactly ``body`` (to test the mappers' own limits)."""
    return replace_body(prepared(), body)


# ---------------------------------------------------------------------- customers
def test_customer_payload_has_bill_to_address_location_contacts_and_marker():
    payload, warnings, error = st.customer_payload(prepared(), GUID)
    assert error is None and warnings == []
    address = {"street": "100 Congress Ave", "city": "Austin", "state": "TX", "zip": "78701", "country": "USA"}
    assert payload == {
        "name": "Ann Lee",
        "type": "Residential",
        "address": address,
        "locations": [{"name": "Ann Lee", "address": address}],
        "contacts": [
            {"type": "Email", "value": "ann@example.com"},
            {"type": "Phone", "value": "5125550100", "memo": "ext. 23"},
        ],
        "externalData": {
            "applicationGuid": GUID,
            "externalData": [{"key": "rankitpro_customer_key", "value": "email:ann@example.com"}],
        },
    }
    assert payload["locations"][0]["address"] is not payload["address"]


def test_customer_payload_settings_country_and_type():
    payload, _, _ = st.customer_payload(prepared(), GUID, country="Canada", customer_type="Commercial")
    assert payload["address"]["country"] == "Canada" and payload["type"] == "Commercial"


@pytest.mark.parametrize(
    ("overrides", "missing"), [({"zip": None}, "zip"), ({"address": "", "city": None}, "street, city")]
)
def test_customer_without_a_complete_address_is_refused_with_the_missing_parts(overrides, missing):
    payload, _, error = st.customer_payload(prepared(**overrides), GUID)
    assert payload is None
    assert error.startswith("ServiceTitan needs a street, city, state and zip") and error.endswith(f"has no {missing}")


def test_customer_name_falls_back_to_email_then_phone():
    assert st.customer_name(Customer(email="a@x.com", phone="+15125550100")) == "a@x.com"
    assert st.customer_name(Customer(phone="+15125550100")) == "5125550100"
    assert st.customer_name(Customer()) == st.DEFAULT_CUSTOMER_NAME
    payload, _, _ = st.customer_payload(prepared(customer_name=None), GUID)
    assert payload["name"] == "ann@example.com" and payload["locations"][0]["name"] == "100 Congress Ave"


def test_phone_value_is_national_digits_for_nanp_and_e164_otherwise():
    assert st.phone_value("+15125550100") == "5125550100"
    assert st.phone_value("+442071838750") == "+442071838750"
    assert st.phone_value(None) is None


def test_long_values_are_cut_visibly_with_a_warning():
    item = prepared(customer_name="Ann " + "Lee" * 200, address="1 " + "Long Street " * 40)
    payload, warnings, _ = st.customer_payload(item, GUID)
    assert utf16_len(payload["name"]) <= st.LIMITS["name"] and payload["name"].endswith("…")
    assert utf16_len(payload["address"]["street"]) <= st.LIMITS["street"]
    assert any(w.startswith("name ") for w in warnings) and any(w.startswith("street ") for w in warnings)


def test_marker_values_are_the_key_or_a_stable_hash():
    assert st.marker_value("email:ann@example.com") == "email:ann@example.com"
    long_key = "email:" + "a" * 200 + "@example.com"
    hashed = st.marker_value(long_key)
    assert hashed.startswith("sha256:") and len(hashed) == 47 and hashed == st.marker_value(long_key)
    assert st.marker_value("name:lee, ann").startswith("sha256:")  # list filters split on commas


def test_location_payload_and_customer_update():
    assert st.location_payload(5, prepared().customer) == {
        "name": "Ann Lee",
        "customerId": 5,
        "address": {"street": "100 Congress Ave", "city": "Austin", "state": "TX", "zip": "78701", "country": "USA"},
    }
    assert st.location_payload(5, Customer(first_name="Ann")) is None
    assert st.customer_update(prepared().customer) == {"name": "Ann Lee"}
    assert st.customer_update(Customer(first_name="Ann", email="a@x.com")) == {}


# ---------------------------------------------------------------------- jobs
def test_job_payload_has_every_required_field_and_the_visit_marker():
    item = prepared()
    payload, warnings = st.job_payload(item, 11, 12, DEFAULTS, GUID, {})
    assert warnings == []
    assert {
        k: payload[k] for k in ("customerId", "locationId", "businessUnitId", "jobTypeId", "priority", "campaignId")
    } == {
        "customerId": 11,
        "locationId": 12,
        "businessUnitId": 1001,
        "jobTypeId": 2001,
        "priority": "Normal",
        "campaignId": 3001,
    }
    assert payload["appointments"] == [{"start": "2026-11-20T14:05:09.000Z", "end": "2026-11-20T15:05:09.000Z"}]
    assert payload["externalData"] == {
        "applicationGuid": GUID,
        "externalData": [{"key": "rankitpro_checkin_key", "value": "rankitpro-9-42"}],
    }
    assert "customFields" not in payload
    summary = payload["summary"]
    assert summary.startswith("Job type: Water Heater Install<br>Technician: Bob Tech<br>")
    assert "Installed &lt;50 gal&gt; unit &amp; tested." in summary and "\n" not in summary


def test_job_payload_appointment_length_and_technicians():
    defaults = JobDefaults(1, 2, 3, "High", appointment_minutes=90, technician_ids=(55, 56))
    payload, _ = st.job_payload(prepared(), 1, 2, defaults, GUID, {})
    assert payload["appointments"] == [
        {"start": "2026-11-20T14:05:09.000Z", "end": "2026-11-20T15:35:09.000Z", "technicianIds": [55, 56]}
    ]


def test_long_summary_is_truncated_visibly_within_the_limit():
    payload, warnings = st.job_payload(with_body("x <y> " * 5000), 1, 2, DEFAULTS, GUID, {})
    assert utf16_len(payload["summary"]) <= st.LIMITS["summary"]
    assert MARKER.search(payload["summary"]) and warnings == [
        "job summary is longer than 10,000 characters: truncated visibly"
    ]


def test_custom_fields_go_to_job_custom_field_type_ids():
    payload, warnings = st.job_payload(
        prepared(), 1, 2, DEFAULTS, GUID, {"customerFeedback": "88", "materialsUsed": "not-a-type-id", "nope": "90"}
    )
    assert payload["customFields"] == [{"typeId": 88, "value": "Great"}]
    assert any("nope" in w for w in warnings)


def test_job_update_sends_summary_and_custom_fields_only():
    payload, _ = st.job_update(prepared(notes="Edited"), {"customerFeedback": "88"})
    assert set(payload) == {"summary", "customFields"} and "Edited" in payload["summary"]
    item = prepared()
    item.visit = None
    with pytest.raises(ValueError):
        st.job_update(item, {})


# ---------------------------------------------------------------------- crmSettings
def test_job_defaults_from_crm_settings():
    assert parse_job_defaults(
        {
            "businessUnitId": "1001",
            "jobTypeId": 2001,
            "campaignId": 3001,
            "priority": "Normal",
            "appointmentMinutes": 30,
            "technicianIds": [7],
        }
    ) == JobDefaults(1001, 2001, 3001, "Normal", 30, (7,))


def test_missing_job_settings_are_named_together():
    with pytest.raises(ConfigurationError) as info:
        parse_job_defaults({"businessUnitId": 1001, "priority": ""})
    assert "crmSettings is missing jobTypeId, campaignId, priority" in str(info.value)


def test_malformed_job_settings_are_named():
    with pytest.raises(ConfigurationError, match="jobTypeId"):
        parse_job_defaults({"businessUnitId": 1, "jobTypeId": "repair", "campaignId": 3, "priority": "Normal"})
    with pytest.raises(ConfigurationError, match="appointmentMinutes"):
        parse_job_defaults(
            {"businessUnitId": 1, "jobTypeId": 2, "campaignId": 3, "priority": "Normal", "appointmentMinutes": 0}
        )
