"""Unit tests of crm_sync.mapping: HubSpot and Salesforce payloads from prepared check-ins."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from check_in_rows import prepare_valid, row_factory
from check_in_rows import with_body as replace_body
from crm_sync.mapping import common, hubspot, salesforce
from crm_sync.models import Customer, PreparedCheckIn, SyncSettings
from crm_sync.prepare import prepare_check_in
from crm_sync.text import utf16_len

MARKER = re.compile(r"…\[truncated by Rank It Pro sync: [\d,]+ characters, [\d,]+ not shown\]")


make_row = row_factory(
    materials_used="Flex lines",
    before_photos=[],
    after_photos=[],
    problem_description="Leaking tank",
    solution_description="Replaced",
    follow_up_required=True,
    follow_up_notes=None,
    latitude=Decimal("30.2672"),
    created_at=datetime(2026, 11, 20, 14, 5, 9, 123456),
)


def prepared(**overrides) -> PreparedCheckIn:
    return prepare_valid(make_row(**overrides))


def with_body(body: str) -> PreparedCheckIn:
    """A prepared check-in whose visit body is exactly ``body`` (to test the mappers' own limits)."""
    return replace_body(prepared(), body)


FULL = Customer(
    email="ann@example.com",
    phone="+15125550100",
    phone_extension="23",
    first_name="Ann",
    last_name="Lee",
    street="100 Congress Ave",
    city="Austin",
    state="TX",
    zip="78701",
    country="US",
)


# =========================================================================== shared helpers
@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 3, 8, 7, 30), "2026-03-08T07:30:00.000Z"),
        (datetime(2026, 11, 1, 6, 30, 0, 999999, tzinfo=UTC), "2026-11-01T06:30:00.999Z"),
        (datetime(2026, 3, 8, 1, 30, tzinfo=timezone(timedelta(hours=-6))), "2026-03-08T07:30:00.000Z"),
    ],
)
def test_iso_utc(moment, expected):
    assert common.iso_utc(moment) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (Decimal("30.2670"), "30.2670"),
        ("x", "x"),
        (["https://a/1", "https://a/2"], "https://a/1\nhttps://a/2"),
        ([], ""),
        (datetime(2026, 3, 8, 7, 30, tzinfo=UTC), "2026-03-08T07:30:00.000Z"),
        ({"b": 1, "a": 2}, '{"a": 2, "b": 1}'),
    ],
)
def test_to_text(value, text):
    assert common.to_text(value) == text


@pytest.mark.parametrize(
    ("value", "out"),
    [
        (True, True),
        (3, 3),
        (1.5, 1.5),
        (Decimal("2.50"), 2.5),
        ("x", "x"),
        (None, None),
        (float("nan"), None),
        (["a", "b"], "a\nb"),
    ],
)
def test_to_json_value(value, out):
    assert common.to_json_value(value) == out


def test_fit_text_shrinks_until_rendered_fits():
    text = "<&>" * 30_000  # escapes to 4-5x its length
    out, truncated = common.fit_text(text, 10_000, hubspot.body_html)
    assert truncated and utf16_len(out) <= 10_000 and "truncated by Rank It Pro sync" in out


def test_map_custom_fields_is_shared():
    assert hubspot.map_custom_fields is salesforce.map_custom_fields is common.map_custom_fields


# =========================================================================== HubSpot contact
def test_contact_properties_full():
    assert hubspot.contact_properties(FULL) == {
        "email": "ann@example.com",
        "firstname": "Ann",
        "lastname": "Lee",
        "phone": "+15125550100",
        "address": "100 Congress Ave",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "country": "US",
    }


@pytest.mark.parametrize(
    ("customer", "expected"),
    [
        (Customer(), {}),
        (Customer(email="ann@example.com"), {"email": "ann@example.com"}),
        (Customer(phone="+442079460958", first_name="Ann"), {"phone": "+442079460958", "firstname": "Ann"}),
    ],
)
def test_contact_properties_omit_missing(customer, expected):
    assert hubspot.contact_properties(customer) == expected


def test_contact_properties_from_messy_row():
    item = prepared(
        customer_name="LEE, ANN",
        customer_email=" Ann@Example.COM; other@example.com",
        customer_phone="512.555.0100 x23",
    )
    assert hubspot.contact_properties(item.customer) == {
        "email": "ann@example.com",
        "firstname": "Ann",
        "lastname": "Lee",
        "phone": "+15125550100",
        "address": "100 Congress Ave",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
    }


# =========================================================================== HubSpot note
def test_note_properties_basics():
    props, warnings = hubspot.note_properties(prepared(), {}, None)
    assert warnings == []
    assert set(props) == {"hs_timestamp", "hs_note_body", "rankitpro_checkin_key"}
    assert props["hs_timestamp"] == "2026-11-20T14:05:09.123Z"
    assert props["rankitpro_checkin_key"] == "rankitpro-9-42"
    body = props["hs_note_body"]
    assert body.startswith("Job type: Water Heater Install<br>Technician: Bob Tech<br>")
    assert "Fast &amp; friendly" in body and "\n" not in body


def test_note_body_escapes_html_from_the_check_in():
    props, _ = hubspot.note_properties(
        prepared(
            notes="<p>Temp &lt; 40</p><script>alert(1)</script>",
            customer_feedback="5 < 6 & <img src=x onerror=alert(1)>",
        ),
        {},
        None,
    )
    body = props["hs_note_body"]
    assert "<script" not in body and "<img" not in body and "<p>" not in body
    assert "Temp &lt; 40" in body


@pytest.mark.parametrize(
    ("created_at", "stamp"),
    [
        (datetime(2026, 3, 8, 7, 30), "2026-03-08T07:30:00.000Z"),
        (datetime(2026, 11, 1, 6, 30), "2026-11-01T06:30:00.000Z"),
    ],
)
def test_note_timestamp_across_dst(created_at, stamp):
    props, _ = hubspot.note_properties(prepared(created_at=created_at), {}, None)
    assert props["hs_timestamp"] == stamp


def test_note_70k_notes_fit():
    item = prepared(notes="n" * 70_000)
    props, warnings = hubspot.note_properties(item, {}, None)
    body = props["hs_note_body"]
    assert utf16_len(body) <= hubspot.NOTE_BODY_LIMIT
    assert MARKER.search(body) and "70,000 characters" in body
    assert "Photos:" in body  # later sections survive a huge notes field
    assert warnings == []


@pytest.mark.parametrize(
    "body",
    ["x" * 70_000, "line\n" * 20_000, "<&>" * 30_000, "😀" * 40_000, ("word " * 10 + "\n") * 2_000],
)
def test_note_body_always_fits_hubspot_limit(body):
    props, warnings = hubspot.note_properties(with_body(body), {}, None)
    out = props["hs_note_body"]
    assert len(out) <= hubspot.NOTE_BODY_LIMIT and utf16_len(out) <= hubspot.NOTE_BODY_LIMIT
    assert MARKER.search(out)
    assert warnings == ["note body is longer than HubSpot's 65,536 characters: truncated visibly"]


def test_note_custom_fields():
    item = prepared()
    mapping = {
        "customerFeedback": "rip_customer_feedback",
        "followUpRequired": "rip_follow_up",
        "materialsUsed": "rip_materials",
        "followUpNotes": "rip_follow_up_notes",
        "photos": "rip_photos",
        "latitude": "rip_lat",
        "createdAt": "rip_created",
    }
    known = {
        "rip_customer_feedback",
        "rip_follow_up",
        "rip_materials",
        "rip_follow_up_notes",
        "rip_photos",
        "rip_lat",
        "rip_created",
    }
    props, warnings = hubspot.note_properties(item, mapping, known)
    assert warnings == []
    assert props["rip_customer_feedback"] == "Fast & friendly"
    assert props["rip_follow_up"] == "true"
    assert props["rip_materials"] == "Flex lines"
    assert "rip_follow_up_notes" not in props  # None is skipped
    assert props["rip_photos"] == "https://cdn.example.com/1.jpg"
    assert props["rip_lat"] == "30.2672"
    assert props["rip_created"] == "2026-11-20T14:05:09.123Z"
    assert all(isinstance(v, str) for v in props.values())


def test_note_custom_fields_false_is_sent():
    props, _ = hubspot.note_properties(prepared(follow_up_required=False), {"followUpRequired": "rip_fu"}, None)
    assert props["rip_fu"] == "false"


@pytest.mark.parametrize(
    ("mapping", "known", "warning"),
    [
        (
            {"favouriteColour": "rip_colour"},
            None,
            "customFieldMapping: 'favouriteColour' is not a Rank It Pro check-in field: skipped",
        ),
        (
            {"customerFeedback": "rip_missing"},
            {"rip_other"},
            "customFieldMapping: HubSpot note property 'rip_missing' (for customerFeedback) does not exist in "
            "the CRM: skipped",
        ),
        (
            {"customerFeedback": "RIP_feedback"},
            {"rip_feedback"},
            "customFieldMapping: HubSpot note property 'RIP_feedback' (for customerFeedback) does not exist in "
            "the CRM: skipped",
        ),
        (
            {"notes": "hs_note_body"},
            None,
            "customFieldMapping: HubSpot note property 'hs_note_body' is written by the sync itself: notes skipped",
        ),
        (
            {"notes": "rankitpro_checkin_key"},
            None,
            "customFieldMapping: HubSpot note property 'rankitpro_checkin_key' is written by the sync itself: "
            "notes skipped",
        ),
    ],
)
def test_note_custom_fields_unknown_are_skipped_with_warning(mapping, known, warning):
    item = prepared()
    props, warnings = hubspot.note_properties(item, mapping, known)
    assert warnings == [warning]
    assert set(props) == {"hs_timestamp", "hs_note_body", "rankitpro_checkin_key"}
    assert props["hs_note_body"].startswith("Job type:")


def test_note_custom_fields_good_ones_survive_a_bad_one():
    props, warnings = hubspot.note_properties(
        prepared(), {"bogusField": "rip_x", "customerFeedback": "rip_fb", "jobType": "rip_nope"}, {"rip_fb"}
    )
    assert props["rip_fb"] == "Fast & friendly"
    assert "rip_x" not in props and "rip_nope" not in props
    assert len(warnings) == 2 and "'bogusField'" in warnings[0] and "'rip_nope'" in warnings[1]


def test_note_custom_field_value_is_fitted():
    item = prepared(notes="n" * 70_000)
    props, warnings = hubspot.note_properties(item, {"notes": "rip_notes"}, None)
    assert utf16_len(props["rip_notes"]) <= hubspot.PROPERTY_VALUE_LIMIT and MARKER.search(props["rip_notes"])
    assert warnings == [
        "customFieldMapping: notes is longer than 65,536 characters: truncated for HubSpot note property 'rip_notes'"
    ]


def test_note_without_visit_is_a_programming_error():
    item = prepare_check_in(make_row(created_at=None), SyncSettings())
    with pytest.raises(ValueError):
        hubspot.note_properties(item, {}, None)


# =========================================================================== Salesforce Account / Contact
def test_account_record_full():
    assert salesforce.account_record(FULL, "email:ann@example.com") == {
        "attributes": {"type": "Account"},
        "Name": "Ann Lee",
        "Phone": "+15125550100",
        "BillingStreet": "100 Congress Ave",
        "BillingCity": "Austin",
        "BillingState": "TX",
        "BillingPostalCode": "78701",
        "BillingCountry": "US",
        "RankItPro_Customer_Key__c": "email:ann@example.com",
    }


@pytest.mark.parametrize(
    ("customer", "name"),
    [
        (Customer(first_name="Ann"), "Ann"),
        (Customer(last_name="Lee"), "Lee"),
        (Customer(email="ann@example.com", phone="+15125550100"), "ann@example.com"),
        (Customer(phone="+15125550100"), "+15125550100"),
        (Customer(), "Rank It Pro customer"),
    ],
)
def test_account_name_fallbacks(customer, name):
    record = salesforce.account_record(customer, "k")
    assert record["Name"] == name
    assert record[salesforce.CUSTOMER_KEY_FIELD] == "k"


def test_account_record_needs_a_key():
    with pytest.raises(ValueError):
        salesforce.account_record(FULL, "")


def test_account_record_cuts_long_standard_fields():
    record = salesforce.account_record(Customer(first_name="A" * 300, city="C" * 100, zip="7" * 30), "k")
    assert len(record["Name"]) == 255 and record["Name"].endswith("…")
    assert len(record["BillingCity"]) == 40 and len(record["BillingPostalCode"]) == 20


def test_contact_record_full():
    record, warnings = salesforce.contact_record(FULL, "email:ann@example.com", "001000000000001")
    assert warnings == []
    assert record == {
        "attributes": {"type": "Contact"},
        "FirstName": "Ann",
        "LastName": "Lee",
        "Email": "ann@example.com",
        "Phone": "+15125550100",
        "MailingStreet": "100 Congress Ave",
        "MailingCity": "Austin",
        "MailingState": "TX",
        "MailingPostalCode": "78701",
        "MailingCountry": "US",
        "AccountId": "001000000000001",
        "RankItPro_Customer_Key__c": "email:ann@example.com",
    }


@pytest.mark.parametrize(
    ("customer", "first", "last", "warned"),
    [
        (Customer(first_name="Ann", last_name="Lee"), "Ann", "Lee", False),
        (Customer(first_name="Cher"), None, "Cher", False),
        (Customer(email="ann.lee@example.com"), None, "ann.lee", True),
        (Customer(phone="+15125550100"), None, "Unknown", True),
        (Customer(), None, "Unknown", True),
    ],
)
def test_contact_last_name_fallbacks(customer, first, last, warned):
    record, warnings = salesforce.contact_record(customer, "k", None)
    assert record.get("FirstName") == first
    assert record["LastName"] == last
    assert "AccountId" not in record
    assert bool(warnings) == warned


def test_contact_unknown_warning_text():
    _, warnings = salesforce.contact_record(Customer(), "k", None)
    assert warnings == ["customer has no name or email: Salesforce Contact LastName set to 'Unknown'"]


def test_contact_long_values():
    long_email = "a" * 70 + "@example.com"
    record, warnings = salesforce.contact_record(Customer(email=long_email, last_name="L" * 100), "k", None)
    assert "Email" not in record
    assert len(record["LastName"]) == 80
    assert len(warnings) == 2


# =========================================================================== Salesforce Case
def test_case_record_basics():
    record, warnings = salesforce.case_record(prepared(), "001A", "003C", {}, None)
    assert warnings == []
    assert record["attributes"] == {"type": "Case"}
    assert record["Subject"] == "Water Heater Install – 2026-11-20"
    assert record["Status"] == "Closed"
    assert "Origin" not in record
    assert record["AccountId"] == "001A" and record["ContactId"] == "003C"
    assert record["RankItPro_CheckIn_Key__c"] == "rankitpro-9-42"
    assert record["Description"].startswith("Job type: Water Heater Install\nTechnician: Bob Tech\n")
    assert "Fast & friendly" in record["Description"]


def test_case_record_status_origin_and_missing_parents():
    record, _ = salesforce.case_record(prepared(), None, None, {}, None, status="Completed", origin="Rank It Pro")
    assert record["Status"] == "Completed" and record["Origin"] == "Rank It Pro"
    assert "AccountId" not in record and "ContactId" not in record


def test_case_subject_is_cut_to_255():
    record, _ = salesforce.case_record(prepared(job_type="J" * 400), None, None, {}, None)
    assert len(record["Subject"]) <= 255 and record["Subject"].endswith("…")


def test_case_70k_notes_fit():
    record, warnings = salesforce.case_record(prepared(notes="n" * 70_000), None, None, {}, None)
    description = record["Description"]
    assert utf16_len(description) <= salesforce.DESCRIPTION_LIMIT
    assert "70,000 characters" in description and "Photos:" in description
    assert warnings == []


@pytest.mark.parametrize("body", ["x" * 70_000, "😀" * 40_000, "line\n" * 20_000])
def test_case_description_always_fits(body):
    record, warnings = salesforce.case_record(with_body(body), None, None, {}, None)
    description = record["Description"]
    assert len(description) <= 32_000 and utf16_len(description) <= 32_000
    assert MARKER.search(description)
    assert warnings == ["case description is longer than Salesforce's 32,000 characters: truncated visibly"]


def test_both_crms_fit_the_same_huge_check_in():
    item = prepared(notes="n" * 70_000, work_performed="w" * 70_000, customer_feedback="f" * 70_000)
    props, _ = hubspot.note_properties(item, {}, None)
    case, _ = salesforce.case_record(item, None, None, {}, None)
    assert utf16_len(props["hs_note_body"]) <= 65_536 and MARKER.search(props["hs_note_body"])
    assert utf16_len(case["Description"]) <= 32_000 and MARKER.search(case["Description"])


def test_case_custom_fields_are_typed_and_case_insensitive():
    mapping = {
        "customerFeedback": "rip_feedback__c",
        "followUpRequired": "RIP_Follow_Up__c",
        "latitude": "Lat__c",
        "followUpNotes": "Notes__c",
    }
    known = {"RIP_Feedback__c", "rip_follow_up__c", "Lat__c", "Notes__c", "Subject"}
    record, warnings = salesforce.case_record(prepared(), None, None, mapping, known)
    assert warnings == []
    assert record["RIP_Feedback__c"] == "Fast & friendly"  # the org's spelling is used
    assert record["rip_follow_up__c"] is True
    assert record["Lat__c"] == pytest.approx(30.2672)
    assert "Notes__c" not in record


@pytest.mark.parametrize(
    ("mapping", "known", "warning"),
    [
        (
            {"favouriteColour": "Colour__c"},
            None,
            "customFieldMapping: 'favouriteColour' is not a Rank It Pro check-in field: skipped",
        ),
        (
            {"customerFeedback": "Missing__c"},
            {"Other__c"},
            "customFieldMapping: Salesforce Case field 'Missing__c' (for customerFeedback) does not exist in "
            "the CRM: skipped",
        ),
        (
            {"notes": "description"},
            None,
            "customFieldMapping: Salesforce Case field 'description' is written by the sync itself: notes skipped",
        ),
        (
            {"notes": "RankItPro_CheckIn_Key__c"},
            {"RankItPro_CheckIn_Key__c"},
            "customFieldMapping: Salesforce Case field 'RankItPro_CheckIn_Key__c' is written by the sync itself: "
            "notes skipped",
        ),
    ],
)
def test_case_custom_fields_unknown_are_skipped_with_warning(mapping, known, warning):
    record, warnings = salesforce.case_record(prepared(), None, None, mapping, known)
    assert warnings == [warning]
    assert record["RankItPro_CheckIn_Key__c"] == "rankitpro-9-42"
    assert record["Description"].startswith("Job type:")


def test_case_custom_fields_with_settings_from_the_app():
    from crm_sync.settings import parse_sync_settings

    settings, warnings = parse_sync_settings(
        {"customFieldMapping": {"customerFeedback": "RIP_Feedback__c", "bogus": "Nope__c"}}
    )
    assert len(warnings) == 1
    record, case_warnings = salesforce.case_record(
        prepared(), None, None, settings.custom_field_mapping, {"RIP_Feedback__c"}
    )
    assert case_warnings == [] and record["RIP_Feedback__c"] == "Fast & friendly"
