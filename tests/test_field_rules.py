"""The per-CRM field rules, the shared name rule and the retry without a refused optional field. Pure: no network."""

from __future__ import annotations

import pytest

from check_in_rows import prepare_valid, row_factory
from crm_hooks.errors import BadRecordError, RetryableError
from crm_sync.destinations.base import isolate_bad_records, per_record
from crm_sync.field_rules import RULES, apply_field_rules, check_customer, is_business_name, refused_fields
from crm_sync.models import Customer, PreparedCheckIn, RecordResult

row = row_factory()
CRMS = sorted(RULES)
LAST_NAME_REQUIRED = {"fieldedge", "salesforce"}
COMPANY_FIELD = {"fieldedge", "housecallpro", "hubspot", "jobber"}


def test_every_crm_declares_its_fields_in_one_shape():
    assert set(CRMS) == {"fieldedge", "housecallpro", "hubspot", "jobber", "salesforce", "servicetitan"}
    for rules in RULES.values():
        assert {"first_name", "last_name", "email", "phone"} <= {f.attr for f in rules.fields}, rules.crm_type
        assert rules.last_name_required == (rules.crm_type in LAST_NAME_REQUIRED)
        assert (rules.company_field is not None) == (rules.crm_type in COMPANY_FIELD)


@pytest.mark.parametrize(
    ("name", "business"),
    [
        ("Bob the Plumber", True),
        ("Acme Heating LLC", True),
        ("Smith & Sons", True),
        ("Lone Star Plumbing", True),
        ("Ann Lee", False),
        ("Mary Ann van der Berg", False),
        ("Madonna", False),
        ("Heating", False),  # one word: a (strange) person's name, not a business
        (None, False),
    ],
)
def test_business_names(name, business):
    assert is_business_name(name) is business


@pytest.mark.parametrize("crm", CRMS)
def test_a_single_name_is_the_last_name_only_where_the_crm_requires_one(crm):
    customer, note, warnings = check_customer(crm, Customer(first_name="Madonna", email="m@example.com"))
    if crm in LAST_NAME_REQUIRED:
        assert (customer.first_name, customer.last_name) == (None, "Madonna")
        assert warnings and "single name" in warnings[0] and "last name" in warnings[0]
    else:
        assert (customer.first_name, customer.last_name) == ("Madonna", None) and warnings == []
    assert note is None


@pytest.mark.parametrize("crm", CRMS)
def test_a_business_name_goes_to_the_company_field_where_there_is_one(crm):
    customer, _, warnings = check_customer(
        crm, Customer(first_name="Bob", last_name="the Plumber", phone="+15125550100")
    )
    if crm in COMPANY_FIELD:
        assert customer.company == "Bob the Plumber" and customer.last_name == "Bob the Plumber"
        assert customer.first_name is None
        assert any("reads as a business" in w and RULES[crm].company_field in w for w in warnings)
    else:
        assert customer.company is None and (customer.first_name, customer.last_name) == ("Bob", "the Plumber")


@pytest.mark.parametrize("crm", sorted(LAST_NAME_REQUIRED))
def test_no_name_where_one_is_required_comes_from_the_email_else_unknown(crm):
    customer, _, warnings = check_customer(crm, Customer(email="ann.lee42@example.com"))
    assert customer.last_name == "Ann Lee" and "required last name" in warnings[-1]
    customer, _, _ = check_customer(crm, Customer(phone="+15125550100"))
    assert customer.last_name == "Unknown"


def test_hubspot_needs_a_name_or_an_email():
    customer, _, warnings = check_customer("hubspot", Customer(phone="+15125550100"))
    assert customer.last_name == "Unknown" and "one of which HubSpot requires" in warnings[0]
    customer, _, warnings = check_customer("hubspot", Customer(phone="+15125550100", email="a@x.com"))
    assert customer.last_name is None and warnings == []


def test_fieldedge_names_lose_digits_and_too_short_first_names_move_to_the_required_last_name():
    customer, _, warnings = check_customer("fieldedge", Customer(first_name="Ann", last_name="Lee3", email="a@x.com"))
    assert customer.last_name == "Lee" and "digits removed" in warnings[0]
    customer, _, warnings = check_customer("fieldedge", Customer(first_name="J", email="j@x.com"))
    # "J" is a single name, so the last name; FieldEdge's 2-character minimum drops it, and the email's
    # local part is too short to stand in: "Unknown".
    assert customer.last_name == "Unknown" and customer.first_name is None
    assert any("shorter than FieldEdge's 2 characters" in w for w in warnings)


@pytest.mark.parametrize("crm", CRMS)
def test_an_extension_moves_to_the_note_where_the_phone_field_has_none(crm):
    customer, note, warnings = check_customer(
        crm, Customer(first_name="Ann", last_name="Lee", phone="+15125550100", phone_extension="12")
    )
    assert customer.phone == "+15125550100"
    if RULES[crm].phone_takes_extension:
        assert customer.phone_extension == "12" and note is None and warnings == []
    else:
        assert customer.phone_extension is None and note == "Customer phone extension: 12"
        assert "extension '12'" in warnings[0] and "moved to the visit note" in warnings[0]


@pytest.mark.parametrize("crm", CRMS)
def test_a_foreign_number_is_dropped_only_where_the_crm_takes_north_american_numbers(crm):
    customer, note, warnings = check_customer(crm, Customer(first_name="Ann", last_name="Lee", phone="+442079460958"))
    if crm == "housecallpro":
        assert customer.phone is None and note == "Customer phone: +442079460958"
        assert "not a North American number" in warnings[0] and "mobile_number" in warnings[0]
    else:
        assert customer.phone == "+442079460958" and warnings == []


def test_over_long_values_are_cut_where_the_crm_allows_and_emails_dropped():
    long_email = "a" * 75 + "@example.com"
    customer, _, warnings = check_customer(
        "salesforce", Customer(first_name="F" * 45, last_name="Lee", email=long_email, city="C" * 50)
    )
    assert customer.first_name == "F" * 39 + "…" and customer.city == "C" * 39 + "…"
    assert customer.email is None and any("not sent" in w and "Email" in w for w in warnings)


def test_apply_field_rules_adds_the_note_and_warnings_to_the_row():
    item = prepare_valid(row(customer_name="Madonna", customer_phone="512-555-0100 ext 12"))
    checked = apply_field_rules("fieldedge", item)
    assert checked.customer.last_name == "Madonna" and checked.customer.phone_extension is None
    assert checked.visit.body.endswith("Customer phone extension: 12")
    assert len(checked.warnings) == len(item.warnings) + 2
    assert checked.match_keys == item.match_keys and checked.source_hash == item.source_hash
    assert apply_field_rules("unknown-crm", item) is item


@pytest.mark.parametrize(
    ("crm", "message", "attrs"),
    [
        ("housecallpro", "housecallpro HTTP 400: Mobile number is invalid", ["phone"]),
        ("housecallpro", "housecallpro HTTP 422: last_name is invalid", ["last_name"]),
        ("housecallpro", "housecallpro HTTP 404: customer not found", []),
        (
            "fieldedge",
            "fieldedge HTTP 400: One or more validation errors occurred.: lastName: lastName is required.",
            ["last_name"],
        ),
        ("fieldedge", "fieldedge HTTP 400: One or more validation errors occurred.: customer.phone: bad", ["phone"]),
        ("hubspot", "HubSpot VALIDATION_ERROR (field lastname): Property values were not valid", ["last_name"]),
        ("salesforce", "Salesforce Contact refused: INVALID_EMAIL_ADDRESS (field Email): bad", ["email"]),
        ("salesforce", "Salesforce Contact refused: REQUIRED_FIELD_MISSING (field LastName): x", ["last_name"]),
        ("hubspot", "hubspot HTTP 400: the lastnames of ... (not a whole word)", []),
    ],
)
def test_refused_fields_are_read_from_the_vendors_error_text(crm, message, attrs):
    assert [r.attr for r in refused_fields(crm, message)] == attrs


# --------------------------------------------------------------------------- the retry in the destination layer
def _item(**customer) -> PreparedCheckIn:
    return PreparedCheckIn(7, 1, "h", Customer(**customer), None, ["email:a@x.com"])


def test_per_record_sends_once_more_without_an_optional_refused_field():
    item = _item(email="a@x.com", first_name="Ann", last_name="SANDBOX-INVALID", phone="+15125550100")
    sent = []

    def send(i: PreparedCheckIn) -> RecordResult:
        sent.append(i.customer.last_name)
        if i.customer.last_name:
            raise BadRecordError("housecallpro HTTP 422: last_name is invalid", status=422)
        return RecordResult(i.visit_key, crm_id="c1")

    (res,) = per_record([item], send, lambda i: i.visit_key, crm_type="housecallpro").values()
    assert res.ok and sent == ["SANDBOX-INVALID", None]
    assert item.customer.last_name is None and item.customer.first_name == "Ann"
    assert "Housecall Pro refused last_name" in item.warnings[-1] and "sent again without it" in item.warnings[-1]


def test_a_refused_required_field_is_quarantined_with_the_field_named_and_not_resent():
    item = _item(email="a@x.com", last_name="SANDBOX-INVALID")
    sent = []

    def send(i):
        sent.append(1)
        raise BadRecordError("fieldedge HTTP 400: One or more validation errors occurred.: lastName: bad", status=400)

    (res,) = per_record([(item, None)], send, lambda i: i[0].visit_key, crm_type="fieldedge").values()
    assert not res.ok and len(sent) == 1
    assert "(field lastName) (a required field)" in res.error and item.warnings == []


def test_a_second_refusal_is_quarantined_and_a_refusal_naming_nothing_is_not_resent():
    item = _item(email="a@x.com", phone="+15125550100")
    calls = []

    def send(i):
        calls.append(1)
        raise BadRecordError("housecallpro HTTP 400: Mobile number is invalid", status=400)

    (res,) = per_record([item], send, lambda i: i.visit_key, crm_type="housecallpro").values()
    assert not res.ok and len(calls) == 2 and item.customer.phone is None

    other, calls = _item(email="b@x.com"), []

    def refuse(i):
        calls.append(1)
        raise BadRecordError("housecallpro HTTP 422: job type not found", status=422)

    (res,) = per_record([other], refuse, lambda i: i.visit_key, crm_type="housecallpro").values()
    assert res.error.endswith("job type not found") and len(calls) == 1


def test_without_crm_type_nothing_is_resent_and_transient_errors_are_untouched():
    item = _item(email="a@x.com", phone="+15125550100")

    def send(i):
        raise BadRecordError("housecallpro HTTP 400: Mobile number is invalid", status=400)

    (res,) = per_record([item], send, lambda i: i.visit_key).values()
    assert not res.ok and item.customer.phone == "+15125550100"

    def flaky(i):
        raise RetryableError("housecallpro HTTP 503: Mobile number is invalid", status=503)

    (res,) = per_record([item], flaky, lambda i: i.visit_key, crm_type="housecallpro").values()
    assert res.uncertain and item.customer.phone == "+15125550100"


def test_isolate_bad_records_resends_only_the_refused_record_without_its_field():
    good = [_item(email=f"g{i}@x.com", last_name="Lee") for i in range(3)]
    for n, g in enumerate(good):
        g.check_in_id = n
    bad = _item(email="bad@x.com", last_name="SANDBOX-INVALID")
    batches: list[list[int]] = []

    def send(batch):
        batches.append([i.check_in_id for i in batch])
        if any(i.customer.last_name == "SANDBOX-INVALID" for i in batch):
            raise BadRecordError("HubSpot VALIDATION_ERROR (field lastname): Property values were not valid")
        return {i.visit_key: RecordResult(i.visit_key, crm_id=f"c{i.check_in_id}") for i in batch}

    results = isolate_bad_records([*good, bad], send, lambda i: i.visit_key, crm_type="hubspot")
    assert all(r.ok for r in results.values()) and len(results) == 4
    assert bad.customer.last_name is None and "HubSpot refused lastname" in bad.warnings[-1]
    assert batches[-1] == [bad.check_in_id] and all(g.warnings == [] for g in good)


def test_a_batch_answered_per_record_resends_only_the_record_refused_for_an_optional_field():
    items = [_item(email=f"g{i}@x.com", last_name=name) for i, name in enumerate(["Lee", "SANDBOX-INVALID", "Day"])]
    for n, item in enumerate(items):
        item.check_in_id = n
    batches: list[list[int]] = []

    def send(batch):  # HubSpot's multi-status: a result per record, an error for the refused one
        batches.append([i.check_in_id for i in batch])
        return {
            i.visit_key: RecordResult(i.visit_key, error="HubSpot VALIDATION_ERROR (field lastname): not valid")
            if i.customer.last_name == "SANDBOX-INVALID"
            else RecordResult(i.visit_key, crm_id=f"c{i.check_in_id}")
            for i in batch
        }

    results = isolate_bad_records(items, send, lambda i: i.visit_key, crm_type="hubspot")
    assert all(r.ok for r in results.values()) and batches == [[0, 1, 2], [1]]
    assert items[1].customer.last_name is None and items[0].customer.last_name == "Lee"
