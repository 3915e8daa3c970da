"""Unit tests of crm_sync.prepare, crm_sync.contacts, crm_sync.text and crm_sync.settings.

Messy check-in rows and settings JSON.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from crm_sync.contacts import normalize_email, normalize_phone, split_name
from crm_sync.models import SyncSettings
from crm_sync.prepare import (
    CHECK_IN_COLUMNS,
    CHECK_IN_FIELDS,
    SECTION_LIMIT,
    photo_urls,
    prepare_check_in,
    resolve_check_in_field,
    source_hash,
)
from crm_sync.settings import KNOWN_CRM_TYPES, parse_integrations, parse_sync_settings
from crm_sync.text import clean_text, truncate_visibly, utf16_len


def make_row(**overrides):
    row = {
        "id": 101,
        "company_id": 7,
        "job_type": "AC Repair",
        "notes": "Replaced the capacitor.",
        "customer_name": "Ann Lee",
        "customer_email": "ann@example.com",
        "customer_phone": "(512) 555-0100",
        "work_performed": "Cleaned coils",
        "materials_used": "Capacitor 45/5 MFD",
        "latitude": Decimal("30.2672"),
        "longitude": Decimal("-97.7431"),
        "location": "Austin, TX",
        "address": "100 Congress Ave",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "address_verified": True,
        "location_source": "gps",
        "photos": ["https://cdn.example.com/p/1.jpg"],
        "before_photos": [],
        "after_photos": [],
        "problem_description": "No cooling",
        "solution_description": "New capacitor",
        "customer_feedback": "Great service",
        "follow_up_required": False,
        "follow_up_notes": None,
        "is_blog": False,
        "generated_content": None,
        "wordpress_sync_status": None,
        "wordpress_post_id": None,
        "wordpress_post_url": None,
        "technician_id": 3,
        "location_id": None,
        "created_at": datetime(2026, 11, 20, 14, 5, 0),
        "technician_name": "Bob Tech",
    }
    row.update(overrides)
    return row


# =========================================================================== emails
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Lee@Example.COM  ", "ann.lee@example.com"),
        ("ANN@EXAMPLE.COM", "ann@example.com"),
        ("<ann@example.com>", "ann@example.com"),
        ("mailto:Ann@Example.com", "ann@example.com"),
        ("<mailto:ann@example.com>", "ann@example.com"),
        ("Ann Lee <ann@example.com>", "ann@example.com"),
        ("ann @ example.com", "ann@example.com"),
        ("ann@example.com.", "ann@example.com"),
        ("josé@example.com", "josé@example.com"),
        ("\tann@example.com\n", "ann@example.com"),
    ],
)
def test_normalize_email_accepts_messy_valid_addresses(raw, expected):
    assert normalize_email(raw) == (expected, [])


@pytest.mark.parametrize(
    ("raw", "kept", "dropped"),
    [
        ("a@example.com, b@example.org", "a@example.com", "b@example.org"),
        ("a@example.com; b@example.org", "a@example.com", "b@example.org"),
        ("a@example.com b@example.org", "a@example.com", "b@example.org"),
        ("A@Example.com,B@Example.org", "a@example.com", "b@example.org"),
        ("bad@, good@example.com", "good@example.com", "bad@"),
    ],
)
def test_normalize_email_two_addresses_keeps_first_valid(raw, kept, dropped):
    email, warnings = normalize_email(raw)
    assert email == kept
    assert len(warnings) == 1
    assert "2 addresses" in warnings[0] and dropped in warnings[0] and "dropped" in warnings[0]


def test_normalize_email_same_address_twice_is_not_a_warning():
    assert normalize_email("a@example.com; A@example.com") == ("a@example.com", [])


@pytest.mark.parametrize(
    "raw",
    [
        "foo@",
        "foo",
        "@example.com",
        "a@b",
        "ann@exa mple",
        "ann@@example.com",
        "ann@example..com",
        "ann@site.test",
        "n/a",
        "none",
    ],
)
def test_normalize_email_invalid_is_dropped_with_warning(raw):
    email, warnings = normalize_email(raw)
    assert email is None
    assert len(warnings) == 1
    assert warnings[0].startswith("customer_email '")
    assert "is not a valid email address" in warnings[0] and warnings[0].endswith(": dropped")


def test_normalize_email_warning_quotes_raw_value():
    _, warnings = normalize_email("foo@")
    assert warnings[0].startswith("customer_email 'foo@' is not a valid email address")


def test_normalize_email_warning_truncates_huge_value():
    _, warnings = normalize_email("x" * 5000 + "@")
    assert len(warnings[0]) < 250
    assert "…" in warnings[0]


@pytest.mark.parametrize("raw", [None, "", "   ", "\n"])
def test_normalize_email_missing_is_silent(raw):
    assert normalize_email(raw) == (None, [])


# =========================================================================== phones
@pytest.mark.parametrize(
    "raw",
    [
        "(512) 555-0100",
        "512.555.0100",
        "512-555-0100",
        "5125550100",
        "+1 512 555 0100",
        "1-512-555-0100",
        "1 (512) 555-0100",
        "+1 (512) 555-0100",
        "512 555 0100",
        "(512)555-0100",
        "512/555-0100",
        "15125550100",
        "+15125550100",
        "tel:+1-512-555-0100",
        "  512-555-0100  ",
        "(512) 555-0100 cell",
        "cell: 512-555-0100",
        5125550100,
        "５１２５５５０１００",
    ],
)
def test_normalize_phone_common_us_formats(raw):
    assert normalize_phone(raw) == ("+15125550100", None, [])


@pytest.mark.parametrize(
    ("raw", "extension"),
    [
        ("512 555 0100 x23", "23"),
        ("512-555-0100 ext. 23", "23"),
        ("512-555-0100 ext 23", "23"),
        ("512-555-0100 #23", "23"),
        ("512-555-0100x23", "23"),
        ("512-555-0100 extension 4567", "4567"),
        ("+1 512 555 0100 x 23", "23"),
        ("+1-512-555-0100;ext=23", "23"),
    ],
)
def test_normalize_phone_extensions(raw, extension):
    assert normalize_phone(raw) == ("+15125550100", extension, [])


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+49 30 123456", "+4930123456"),
        ("+61 2 9374 4000", "+61293744000"),
        ("+1 800 555 0100", "+18005550100"),
    ],
)
def test_normalize_phone_international(raw, e164):
    assert normalize_phone(raw)[0] == e164


def test_normalize_phone_other_default_region():
    assert normalize_phone("020 7946 0958", default_region="GB")[0] == "+442079460958"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("555-0100", "no area code"),
        ("12345", "too short"),
        ("abc", "no phone number found"),
        ("call me", "no phone number found"),
        ("512 555 01000", None),
        ("(000) 000-0000", None),
        ("+1 999 555 0100", None),
        ("0044 20 7946 0958", None),
        ("911", None),
    ],
)
def test_normalize_phone_invalid_is_dropped_with_warning(raw, reason):
    e164, extension, warnings = normalize_phone(raw)
    assert (e164, extension) == (None, None)
    assert len(warnings) == 1 and warnings[0].startswith("customer_phone '") and "dropped" in warnings[0]
    if reason:
        assert reason in warnings[0]


@pytest.mark.parametrize(("raw", "kind"), [(True, "bool"), (["5125550100"], "list"), ({"n": 1}, "dict")])
def test_normalize_phone_non_text_is_dropped(raw, kind):
    assert normalize_phone(raw) == (None, None, [f"customer_phone is not text (got {kind}): dropped"])


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_normalize_phone_missing_is_silent(raw):
    assert normalize_phone(raw) == (None, None, [])


@pytest.mark.parametrize(
    "raw",
    [
        "512-555-0100, 737-555-0123",
        "512-555-0100 / 737-555-0123",
        "512-555-0100 or 737 555 0123",
        "5125550100 7375550123",
    ],
)
def test_normalize_phone_two_numbers_keeps_first(raw):
    e164, _, warnings = normalize_phone(raw)
    assert e164 == "+15125550100"
    assert len(warnings) == 1 and "+17375550123" in warnings[0] and "2 phone numbers" in warnings[0]


def test_fictional_555_01xx_numbers_are_accepted_in_every_area_code():
    for area in ("212", "312", "512", "737", "415"):
        for line in ("0100", "0150", "0199"):
            assert normalize_phone(f"({area}) 555-{line}")[0] == f"+1{area}555{line}"


# =========================================================================== names
@pytest.mark.parametrize(
    ("raw", "first", "last"),
    [
        ("John Smith", "John", "Smith"),
        ("Smith, John", "John", "Smith"),
        ("SMITH, JOHN", "John", "Smith"),
        ("John", "John", None),
        ("  John    Smith  ", "John", "Smith"),
        ("JOHN SMITH", "John", "Smith"),
        ("john smith", "John", "Smith"),
        ("john o'brien", "John", "O'Brien"),
        ("MARY-KATE OLSEN", "Mary-Kate", "Olsen"),
        ("McDonald, Ronald", "Ronald", "McDonald"),
        ("José Núñez", "José", "Núñez"),
        ("JOSÉ NÚÑEZ", "José", "Núñez"),
        ("Zoë Ångström", "Zoë", "Ångström"),
        ("李 小龙", "李", "小龙"),
        ("Mary Ann van der Berg", "Mary Ann", "van der Berg"),
        ("MARY ANN VAN DER BERG", "Mary Ann", "van der Berg"),
        ("Ludwig van Beethoven", "Ludwig", "van Beethoven"),
        ("John Michael Smith", "John", "Michael Smith"),
        ("Mr. John Smith", "John", "Smith"),
        ("Mrs Jane Doe", "Jane", "Doe"),
        ("Dr. Jane Doe, MD", "Jane", "Doe"),
        ("John Smith Jr.", "John", "Smith Jr."),
        ("John Smith, Jr.", "John", "Smith Jr."),
        ("Smith Jr., John", "John", "Smith Jr."),
        ("JOHN SMITH III", "John", "Smith III"),
        ("Ann Lee <ann@example.com>", "Ann", "Lee"),
        ("Smith,", "Smith", None),
    ],
)
def test_split_name(raw, first, last):
    assert split_name(raw) == (first, last, [])


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n"])
def test_split_name_missing(raw):
    assert split_name(raw) == (None, None, [])


@pytest.mark.parametrize("raw", ["Mr.", "12345", "ann@example.com", "---"])
def test_split_name_unusable_is_dropped_with_warning(raw):
    first, last, warnings = split_name(raw)
    assert (first, last) == (None, None)
    assert len(warnings) == 1 and warnings[0].startswith("customer_name '") and "dropped" in warnings[0]


def test_split_name_keeps_mixed_case_as_typed():
    assert split_name("DeShawn McAllister-Jones")[:2] == ("DeShawn", "McAllister-Jones")


# =========================================================================== text
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("  plain text  ", "plain text"),
        ("line one\r\nline two\rline three", "line one\nline two\nline three"),
        ("a\n\n\n\n\nb", "a\n\nb"),
        ("<p>Replaced <b>capacitor</b></p><p>Tested</p>", "Replaced capacitor\n\nTested"),
        ("Line 1<br>Line 2<br/>Line 3<BR />Line 4", "Line 1\nLine 2\nLine 3\nLine 4"),
        ("<div>A</div><div>B</div>", "A\nB"),
        ("<ul><li>filter</li><li>belt</li></ul>", "- filter\n- belt"),
        ("Price &lt; $50 &amp; fast&nbsp;service", "Price < $50 & fast service"),
        ("AT&amp;T line", "AT&T line"),
        ("<p>ok</p><script>alert('x')</script><style>p {color: red}</style>", "ok"),
        ('<p>see <a href="https://example.com/r">report</a></p>', "see report (https://example.com/r)"),
        ("temp < 50 and > 30", "temp < 50 and > 30"),
        ("x<y and y>z<br>next", "x<y and y>z\nnext"),
        ("Replaced <3/4 inch> valve", "Replaced <3/4 inch> valve"),
        ("null\x00byte\x07s", "nullbytes"),
        ("Zoë said “thanks” 👍", "Zoë said “thanks” 👍"),
        (12345, "12345"),
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_clean_text_limit_truncates_visibly():
    text = clean_text("word " * 1000, limit=200)
    assert len(text) <= 200 and "truncated by Rank It Pro sync" in text


@pytest.mark.parametrize("limit", [65_536, 32_000, 1_000, 200])
def test_truncate_visibly_70k_characters(limit):
    text = ("The technician replaced the capacitor and tested the unit. " * 1200)[:70_000]
    out, truncated = truncate_visibly(text, limit)
    assert truncated
    assert len(out) <= limit
    kept = out.split("\n…[truncated", 1)[0]
    assert text.startswith(kept)
    assert "70,000 characters" in out
    hidden = 70_000 - len(kept)
    assert f"{hidden:,} not shown]" in out
    assert out.endswith("not shown]")


def test_truncate_visibly_short_text_unchanged():
    assert truncate_visibly("short", 10) == ("short", False)
    assert truncate_visibly("x" * 10, 10) == ("x" * 10, False)


def test_truncate_visibly_counts_utf16_units():
    text = "😀" * 40_000  # 80,000 UTF-16 units
    out, truncated = truncate_visibly(text, 32_000)
    assert truncated and utf16_len(out) <= 32_000 and len(out) <= 32_000
    assert "40,000 characters" in out


def test_truncate_visibly_tiny_limit_is_a_bare_cut():
    assert truncate_visibly("abcdefgh", 3) == ("abc", True)
    assert truncate_visibly("abc", 0) == ("", True)


def test_truncate_visibly_prefers_word_boundary():
    out, _ = truncate_visibly("alpha beta gamma delta " * 50, 150)
    assert out.split("\n…", 1)[0].endswith(("alpha", "beta", "gamma", "delta"))


# =========================================================================== photos
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            ["https://a.example/1.jpg", "https://a.example/2.jpg"],
            ["https://a.example/1.jpg", "https://a.example/2.jpg"],
        ),
        (
            [{"url": "https://a.example/1.jpg"}, {"url": "http://a.example/2.jpg"}],
            ["https://a.example/1.jpg", "http://a.example/2.jpg"],
        ),
        (
            ["https://a.example/1.jpg", {"url": "https://a.example/2.jpg"}],
            ["https://a.example/1.jpg", "https://a.example/2.jpg"],
        ),
        ("https://a.example/1.jpg", ["https://a.example/1.jpg"]),
        ({"url": "https://a.example/1.jpg"}, ["https://a.example/1.jpg"]),
        (
            '["https://a.example/1.jpg", {"url": "https://a.example/2.jpg"}]',
            ["https://a.example/1.jpg", "https://a.example/2.jpg"],
        ),
        ('"https://a.example/1.jpg"', ["https://a.example/1.jpg"]),
        ("https://a.example/1.jpg, https://a.example/2.jpg", ["https://a.example/1.jpg", "https://a.example/2.jpg"]),
        (
            {"0": "https://a.example/1.jpg", "1": "https://a.example/2.jpg"},
            ["https://a.example/1.jpg", "https://a.example/2.jpg"],
        ),
        (None, []),
        ([], []),
        ("", []),
        ("[]", []),
        (["https://a.example/1.jpg", "https://a.example/1.jpg"], ["https://a.example/1.jpg"]),
    ],
)
def test_photo_urls_shapes(raw, expected):
    urls, warnings = photo_urls(raw)
    assert urls == expected
    assert warnings == []


def test_photo_urls_drops_junk_with_warnings():
    urls, warnings = photo_urls(
        [
            "https://a.example/1.jpg",
            "javascript:alert(1)",
            "ftp://a.example/x",
            "data:image/png;base64,AAAA",
            "//cdn.example/x.jpg",
            42,
            {"name": "no url"},
            "not a url",
        ],
        names=("photos",),
    )
    assert urls == ["https://a.example/1.jpg"]
    assert len(warnings) == 6  # 5 items and a summary
    assert warnings[0] == "photos[1] 'javascript:alert(1)' is not an http(s) URL: dropped"
    assert warnings[-1] == "... and 2 more photo items dropped"


def test_photo_urls_dedupes_across_values_in_order():
    urls, warnings = photo_urls(
        ["https://a.example/1.jpg"],
        '["https://a.example/2.jpg", "https://a.example/1.jpg"]',
        {"url": "https://a.example/3.jpg"},
    )
    assert urls == ["https://a.example/1.jpg", "https://a.example/2.jpg", "https://a.example/3.jpg"]
    assert warnings == []


def test_photo_urls_malformed_json_string_is_dropped():
    urls, warnings = photo_urls('["https://a.example/1.jpg"', names=("after_photos",))
    assert urls == [] and len(warnings) == 1 and warnings[0].startswith("after_photos ")


# =========================================================================== source hash
def test_source_hash_is_stable_and_key_order_independent():
    row = make_row()
    reordered = dict(reversed(list(row.items())))
    assert source_hash(row) == source_hash(reordered) == source_hash(dict(row))
    assert len(source_hash(row)) == 64


def test_source_hash_known_value_is_stable_across_runs():
    row = {"job_type": "AC Repair", "notes": "ok", "photos": [{"url": "https://a.example/1.jpg"}]}
    assert source_hash(row) == source_hash(json.loads(json.dumps(row)))
    # A pinned digest: changing what is hashed, or how, re-sends every row in the look-back window,
    # so it must be a deliberate change (bump the version prefix in prepare._HASH_VERSION).
    assert source_hash(row) == "910568167b8b5a7cd28df2e80ee848e4fa7c88a4e178699b5ec9e9bed4dbf707"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("notes", "edited"),
        ("customer_email", "new@example.com"),
        ("customer_phone", "512-555-0199"),
        ("customer_name", "Ann Lee-Park"),
        ("work_performed", "more"),
        ("materials_used", "x"),
        ("address", "1 Other St"),
        ("city", "Dallas"),
        ("state", "OK"),
        ("zip", "78702"),
        ("photos", ["https://a.example/9.jpg"]),
        ("before_photos", ["https://a.example/8.jpg"]),
        ("after_photos", ["https://a.example/7.jpg"]),
        ("problem_description", "p"),
        ("solution_description", "s"),
        ("customer_feedback", "meh"),
        ("follow_up_required", True),
        ("follow_up_notes", "call back"),
        ("job_type", "Plumbing"),
    ],
)
def test_source_hash_changes_when_sent_content_changes(column, value):
    row = make_row()
    assert source_hash(row) != source_hash({**row, column: value})


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("ledger_status", "synced"),
        ("synced_hash", "abc"),
        ("requeue", True),
        ("wordpress_post_id", 99),
        ("is_blog", True),
        ("technician_name", "Renamed Tech"),
    ],
)
def test_source_hash_ignores_columns_not_sent(column, value):
    row = make_row()
    assert source_hash(row) == source_hash({**row, column: value})


def test_source_hash_photos_json_text_equals_decoded():
    photos = [{"url": "https://a.example/1.jpg"}]
    assert source_hash(make_row(photos=photos)) == source_hash(make_row(photos=json.dumps(photos)))


def test_source_hash_missing_key_equals_none():
    row = make_row()
    without = {k: v for k, v in row.items() if k != "follow_up_notes"}
    assert source_hash(row) == source_hash(without)


# =========================================================================== check-in fields
def test_check_in_fields_cover_every_column_in_camel_case():
    assert set(CHECK_IN_FIELDS.values()) == set(CHECK_IN_COLUMNS) | {"technician_name"}
    for camel, column in {
        "customerFeedback": "customer_feedback",
        "materialsUsed": "materials_used",
        "workPerformed": "work_performed",
        "jobType": "job_type",
        "followUpRequired": "follow_up_required",
        "beforePhotos": "before_photos",
        "zip": "zip",
        "createdAt": "created_at",
    }.items():
        assert CHECK_IN_FIELDS[camel] == column


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("customerFeedback", "customerFeedback"),
        ("customer_feedback", "customerFeedback"),
        (" notes ", "notes"),
        ("bogus", None),
        (5, None),
    ],
)
def test_resolve_check_in_field(name, expected):
    assert resolve_check_in_field(name) == expected


# =========================================================================== prepare_check_in
@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("email", ["email:ann@example.com"]),
        ("phone", ["phone:+15125550100"]),
        ("name", ["name:ann lee"]),
        ("all", ["email:ann@example.com", "phone:+15125550100"]),
    ],
)
def test_match_keys_per_strategy(strategy, expected):
    prepared = prepare_check_in(
        make_row(customer_email=" ANN@Example.com", customer_name="LEE,  ANN"),
        SyncSettings(customer_match_strategy=strategy),
    )
    assert prepared.match_keys == expected
    assert prepared.customer_key == expected[0]
    assert prepared.error is None


def test_all_strategy_uses_the_name_only_without_email_and_phone():
    prepared = prepare_check_in(
        make_row(customer_email=None, customer_phone="n/a", customer_name="LEE,  ANN"),
        SyncSettings(customer_match_strategy="all"),
    )
    assert prepared.match_keys == ["name:ann lee"]


def test_match_key_name_collapses_spaces_and_lowercases():
    prepared = prepare_check_in(
        make_row(customer_name="  Mary  Ann   van der Berg "), SyncSettings(customer_match_strategy="name")
    )
    assert prepared.match_keys == ["name:mary ann van der berg"]


@pytest.mark.parametrize(
    ("strategy", "row", "error"),
    [
        (
            "email",
            {"customer_email": "bob@"},
            "no usable customer email for match strategy 'email' (customer_email 'bob@' invalid)",
        ),
        (
            "email",
            {"customer_email": None},
            "no usable customer email for match strategy 'email' (customer_email missing)",
        ),
        (
            "phone",
            {"customer_phone": "555-01"},
            "no usable customer phone for match strategy 'phone' (customer_phone '555-01' invalid)",
        ),
        (
            "phone",
            {"customer_phone": "  "},
            "no usable customer phone for match strategy 'phone' (customer_phone missing)",
        ),
        ("name", {"customer_name": ""}, "no usable customer name for match strategy 'name' (customer_name missing)"),
        (
            "name",
            {"customer_name": "Mr."},
            "no usable customer name for match strategy 'name' (customer_name 'Mr.' invalid)",
        ),
        (
            "all",
            {"customer_email": "x", "customer_phone": None, "customer_name": None},
            "no usable customer email, phone or name for match strategy 'all' "
            "(customer_email 'x' invalid; customer_phone missing; customer_name missing)",
        ),
    ],
)
def test_no_usable_key_is_a_quarantine_reason(strategy, row, error):
    prepared = prepare_check_in(make_row(**row), SyncSettings(customer_match_strategy=strategy))
    assert prepared.match_keys == []
    assert prepared.customer_key is None
    assert prepared.error == error


def test_strategy_all_uses_what_exists():
    prepared = prepare_check_in(
        make_row(customer_email="bad@", customer_phone=None, customer_name="Ann Lee"), SyncSettings()
    )
    assert prepared.match_keys == ["name:ann lee"]
    assert prepared.error is None
    assert any("customer_email 'bad@'" in w for w in prepared.warnings)


def test_prepare_builds_customer():
    prepared = prepare_check_in(
        make_row(customer_phone="512.555.0100 ext. 7", address=" 100  Congress Ave ", zip=78701), SyncSettings()
    )
    c = prepared.customer
    assert (c.email, c.phone, c.phone_extension) == ("ann@example.com", "+15125550100", "7")
    assert (c.first_name, c.last_name, c.full_name) == ("Ann", "Lee", "Ann Lee")
    assert (c.street, c.city, c.state, c.zip, c.country) == ("100 Congress Ave", "Austin", "TX", "78701", None)
    assert prepared.check_in_id == 101 and prepared.company_id == 7
    assert prepared.visit_key == "rankitpro-7-101"
    assert prepared.source_hash == source_hash(
        make_row(customer_phone="512.555.0100 ext. 7", address=" 100  Congress Ave ", zip=78701)
    )


def test_prepare_visit_title_body_and_fields():
    row = make_row(
        notes="<p>Replaced <b>capacitor</b></p>",
        follow_up_required=True,
        follow_up_notes="Check in 6 months",
        before_photos='["https://cdn.example.com/p/0.jpg"]',
        after_photos=None,
    )
    visit = prepare_check_in(row, SyncSettings()).visit
    assert visit.title == "AC Repair – 2026-11-20"
    assert visit.job_type == "AC Repair"
    assert visit.occurred_at == datetime(2026, 11, 20, 14, 5, tzinfo=UTC)
    assert visit.photo_urls == ("https://cdn.example.com/p/1.jpg", "https://cdn.example.com/p/0.jpg")
    body = visit.body
    for expected in (
        "Job type: AC Repair",
        "Technician: Bob Tech",
        "Visit date: 2026-11-20 14:05 UTC",
        "Address: 100 Congress Ave, Austin, TX 78701",
        "Problem:\nNo cooling",
        "Work performed:\nCleaned coils",
        "Solution:\nNew capacitor",
        "Materials:\nCapacitor 45/5 MFD",
        "Notes:\nReplaced capacitor",
        "Customer feedback:\nGreat service",
        "Follow-up: required\nCheck in 6 months",
        "Photos:\nhttps://cdn.example.com/p/1.jpg",
    ):
        assert expected in body
    assert "<b>" not in body
    assert body.index("Problem:") < body.index("Work performed:") < body.index("Notes:") < body.index("Photos:")
    f = visit.fields
    assert set(f) == set(CHECK_IN_FIELDS)
    assert f["customerFeedback"] == "Great service"
    assert f["materialsUsed"] == "Capacitor 45/5 MFD"
    assert f["workPerformed"] == "Cleaned coils"
    assert f["jobType"] == "AC Repair"
    assert f["followUpRequired"] is True
    assert f["notes"] == "Replaced capacitor"
    assert f["customerEmail"] == "ann@example.com" and f["customerPhone"] == "+15125550100"
    assert f["beforePhotos"] == ["https://cdn.example.com/p/0.jpg"] and f["afterPhotos"] is None
    assert f["createdAt"] == visit.occurred_at
    assert f["technicianName"] == "Bob Tech"
    assert f["latitude"] == Decimal("30.2672")


def test_prepare_without_sync_photos_has_no_photos():
    prepared = prepare_check_in(
        make_row(photos=["javascript:x", "https://a.example/1.jpg"]), SyncSettings(sync_photos=False)
    )
    assert prepared.visit.photo_urls == ()
    assert "Photos:" not in prepared.visit.body
    assert prepared.visit.fields["photos"] is None
    assert not any("photo" in w for w in prepared.warnings)


def test_prepare_collects_warnings_from_all_normalisers():
    prepared = prepare_check_in(
        make_row(
            customer_email="a@example.com, b@example.com",
            customer_phone="12",
            customer_name="12345",
            photos=["ftp://x"],
        ),
        SyncSettings(),
    )
    text = " | ".join(prepared.warnings)
    for expected in ("customer_email", "customer_phone '12'", "customer_name '12345'", "photos[0] 'ftp://x'"):
        assert expected in text
    assert prepared.match_keys == ["email:a@example.com"]


def test_prepare_missing_optional_fields():
    row = {
        "id": 5,
        "company_id": 1,
        "job_type": "",
        "customer_email": "a@example.com",
        "created_at": datetime(2026, 1, 2, 3, 4),
    }
    prepared = prepare_check_in(row, SyncSettings())
    assert prepared.error is None
    assert prepared.visit.title == "Service visit – 2026-01-02"
    assert prepared.customer.first_name is None and prepared.warnings == []


def test_prepare_70k_notes_are_cut_per_section_and_keep_later_sections():
    notes = "n" * 70_000
    prepared = prepare_check_in(make_row(notes=notes), SyncSettings())
    body = prepared.visit.body
    assert "70,000 characters" in body
    assert "Customer feedback:\nGreat service" in body and "Photos:" in body
    assert len(body) < 70_000 and len(body) < SECTION_LIMIT + 2_000
    assert prepared.visit.fields["notes"] == notes  # custom field mapping gets the full text


def test_prepare_html_and_unicode_in_notes():
    prepared = prepare_check_in(
        make_row(notes="Zoë&#39;s unit<br>Ölfilter: ✓<script>x()</script>", customer_name="JOSÉ NÚÑEZ"), SyncSettings()
    )
    assert "Notes:\nZoë's unit\nÖlfilter: ✓" in prepared.visit.body
    assert prepared.customer.full_name == "José Núñez"


@pytest.mark.parametrize(
    ("created_at", "date"),
    [
        (datetime(2026, 3, 8, 7, 30), "2026-03-08"),  # US spring-forward day (2 a.m. local)
        (datetime(2026, 11, 1, 6, 30), "2026-11-01"),  # US fall-back day (the repeated 1 a.m. hour)
        (datetime(2026, 3, 29, 0, 30), "2026-03-29"),  # EU spring-forward day
        (datetime(2026, 11, 20, 23, 59, 59), "2026-11-20"),
        (datetime(2026, 11, 21, 0, 0, 0), "2026-11-21"),
    ],
)
@pytest.mark.parametrize("local_tz", ["UTC", "America/Chicago", "Pacific/Kiritimati", "America/Los_Angeles"])
def test_dates_stay_utc_whatever_the_local_zone(created_at, date, local_tz, monkeypatch):
    monkeypatch.setenv("TZ", local_tz)
    time.tzset()
    try:
        visit = prepare_check_in(make_row(created_at=created_at), SyncSettings()).visit
    finally:
        monkeypatch.undo()
        time.tzset()
    assert visit.occurred_at == created_at.replace(tzinfo=UTC)
    assert visit.occurred_at.utcoffset() == timedelta(0)
    assert visit.title.endswith(date)
    assert f"Visit date: {date}" in visit.body


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2026, 3, 8, 1, 30, tzinfo=timezone(timedelta(hours=-6))),
        "2026-03-08T07:30:00",
        "2026-03-08T07:30:00Z",
        "2026-03-08 07:30:00+00:00",
    ],
)
def test_created_at_aware_or_text(created_at):
    visit = prepare_check_in(make_row(created_at=created_at), SyncSettings()).visit
    assert visit.occurred_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("created_at", [None, "yesterday", 12])
def test_created_at_unusable_is_an_error(created_at):
    prepared = prepare_check_in(make_row(created_at=created_at), SyncSettings())
    assert prepared.visit is None
    assert prepared.error and "created_at" in prepared.error


def test_prepare_never_raises_on_odd_values():
    row = make_row(
        customer_name=["not", "a", "name"],
        customer_email={"a": 1},
        customer_phone=12.5,
        photos={"weird": object()},
        customer_feedback=b"caf\xc3\xa9",
    )
    prepared = prepare_check_in(row, SyncSettings())
    assert prepared.check_in_id == 101
    assert isinstance(prepared.source_hash, str)
    assert prepared.customer.first_name is None and prepared.customer.email is None
    assert prepared.error == (
        "no usable customer email, phone or name for match strategy 'all' "
        "(customer_email '{'a': 1}' invalid; customer_phone '12.5' invalid; "
        "customer_name '['not', 'a', 'name']' invalid)"
    )
    assert "customer_name is not text (got list): dropped" in prepared.warnings
    assert "Customer feedback:\ncafé" in prepared.visit.body


def test_prepare_reports_an_unexpected_failure_as_the_row_error(monkeypatch):
    import crm_sync.prepare as prepare

    def boom(*_args, **_kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(prepare, "photo_urls", boom)
    prepared = prepare.prepare_check_in(make_row(), SyncSettings())
    assert prepared.error == "could not prepare check-in: RuntimeError: unexpected"
    assert prepared.visit is None and prepared.match_keys == []


# =========================================================================== settings
ALL_DEFAULTS = SyncSettings()


@pytest.mark.parametrize("raw", [None, {}, {"customFieldMapping": None}, {"customFieldMapping": {}}])
def test_sync_settings_defaults(raw):
    assert parse_sync_settings(raw) == (ALL_DEFAULTS, [])


def test_sync_settings_documented_defaults():
    s = ALL_DEFAULTS
    assert (
        s.sync_customers,
        s.create_new_customers,
        s.update_existing_customers,
        s.sync_check_ins_as_jobs,
        s.sync_photos,
        s.customer_match_strategy,
        s.custom_field_mapping,
    ) == (True, True, True, True, True, "all", {})


def test_sync_settings_full():
    raw = {
        "syncCustomers": False,
        "createNewCustomers": False,
        "updateExistingCustomers": False,
        "syncCheckInsAsJobs": False,
        "syncPhotos": False,
        "customerMatchStrategy": "phone",
        "customFieldMapping": {"customerFeedback": "rip_customer_feedback", "materials_used": "rip_materials"},
    }
    settings, warnings = parse_sync_settings(raw)
    assert warnings == []
    assert settings == SyncSettings(
        False,
        False,
        False,
        False,
        False,
        "phone",
        {"customerFeedback": "rip_customer_feedback", "materialsUsed": "rip_materials"},
    )


def test_sync_settings_partial_keeps_other_defaults():
    settings, warnings = parse_sync_settings({"syncPhotos": False, "customerMatchStrategy": "email"})
    assert warnings == []
    assert settings == SyncSettings(sync_photos=False, customer_match_strategy="email")


@pytest.mark.parametrize(
    ("raw", "attr", "expected", "warning"),
    [
        ({"syncPhotos": "yes"}, "sync_photos", True, "syncSettings.syncPhotos must be true or false, got 'yes'"),
        ({"syncCustomers": 0}, "sync_customers", True, "syncSettings.syncCustomers must be true or false, got number"),
        ({"createNewCustomers": None}, "create_new_customers", True, "got null"),
        ({"updateExistingCustomers": []}, "update_existing_customers", True, "got array"),
        ({"syncCheckInsAsJobs": "false"}, "sync_check_ins_as_jobs", False, "instead of a boolean: read as false"),
        ({"syncPhotos": " TRUE "}, "sync_photos", True, "instead of a boolean: read as true"),
        (
            {"customerMatchStrategy": "fuzzy"},
            "customer_match_strategy",
            "all",
            "syncSettings.customerMatchStrategy 'fuzzy' is not one of email, phone, name, all: default 'all' used",
        ),
        ({"customerMatchStrategy": 3}, "customer_match_strategy", "all", "customerMatchStrategy number"),
        (
            {"customFieldMapping": "customerFeedback=x"},
            "custom_field_mapping",
            {},
            "syncSettings.customFieldMapping must be an object, got string",
        ),
        ({"customFieldMapping": ["customerFeedback"]}, "custom_field_mapping", {}, "got array"),
        (
            {"customFieldMapping": {"customerFeedback": 5}},
            "custom_field_mapping",
            {},
            "syncSettings.customFieldMapping.customerFeedback must be a CRM field name",
        ),
        ({"customFieldMapping": {"customerFeedback": " "}}, "custom_field_mapping", {}, "got an empty string"),
        (
            {"customFieldMapping": {"favouriteColour": "rip_colour"}},
            "custom_field_mapping",
            {},
            "'favouriteColour' is not a Rank It Pro check-in field",
        ),
    ],
)
def test_sync_settings_bad_values_use_defaults_with_warning(raw, attr, expected, warning):
    settings, warnings = parse_sync_settings(raw)
    assert getattr(settings, attr) == expected
    assert len(warnings) == 1 and warning in warnings[0]


def test_sync_settings_strategy_is_case_insensitive():
    assert parse_sync_settings({"customerMatchStrategy": " Email "}) == (
        SyncSettings(customer_match_strategy="email"),
        [],
    )


def test_sync_settings_mapping_keeps_good_entries():
    settings, warnings = parse_sync_settings(
        {
            "customFieldMapping": {
                "customerFeedback": " rip_feedback ",
                "notes": None,
                "bogus": "x",
                "workPerformed": "rip_work",
            }
        }
    )
    assert settings.custom_field_mapping == {"customerFeedback": "rip_feedback", "workPerformed": "rip_work"}
    assert len(warnings) == 2


def test_sync_settings_mapping_duplicates():
    settings, warnings = parse_sync_settings(
        {"customFieldMapping": {"customerFeedback": "rip_a", "customer_feedback": "rip_b", "notes": "RIP_A"}}
    )
    assert settings.custom_field_mapping == {"customerFeedback": "rip_a"}
    assert len(warnings) == 2


@pytest.mark.parametrize(
    ("raw", "warning"), [("nonsense", "got string"), ([1, 2], "got array"), (True, "got boolean"), (3, "got number")]
)
def test_sync_settings_not_an_object(raw, warning):
    settings, warnings = parse_sync_settings(raw)
    assert settings == ALL_DEFAULTS
    assert warnings == [f"syncSettings must be an object, {warning}: defaults used"]


def test_sync_settings_json_encoded_string_is_decoded():
    settings, warnings = parse_sync_settings('{"syncPhotos": false}')
    assert settings == SyncSettings(sync_photos=False)
    assert warnings == ["syncSettings is a JSON-encoded string instead of an object: decoded"]


def test_sync_settings_unknown_keys_warn():
    settings, warnings = parse_sync_settings({"syncInvoices": True})
    assert settings == ALL_DEFAULTS
    assert warnings == ["syncSettings has keys this sync does not know: 'syncInvoices' (ignored)"]


def test_known_crm_types():
    assert KNOWN_CRM_TYPES == ("servicetitan", "housecallpro", "jobber", "fieldedge", "hubspot", "salesforce")


@pytest.mark.parametrize("raw", [None, "", "   ", "{}", " {} \n"])
def test_parse_integrations_empty(raw):
    assert parse_integrations(raw) == ({}, None)


def test_parse_integrations_valid():
    data = {
        "hubspot": {"status": "active", "credentials": {"accessToken": "pat-na1-x"}, "syncSettings": {}},
        "salesforce": {"status": "inactive"},
    }
    assert parse_integrations(json.dumps(data)) == (data, None)


@pytest.mark.parametrize(
    "raw",
    [
        '{"hubspot": {"credentials": {"accessToken": "pat-na1-supersecret"}',
        "{'hubspot': 1}",
        "not json at all",
        '{"hubspot": {"credentials": {"accessToken": "pat-na1-supersecret"}}} trailing',
        "[" * 100_000,
    ],
)
def test_parse_integrations_malformed(raw):
    integrations, error = parse_integrations(raw)
    assert integrations == {}
    assert error.startswith("crm_integrations is not valid JSON: ")
    assert "supersecret" not in error and "pat-na1" not in error
    assert len(error) < 120


@pytest.mark.parametrize(
    ("raw", "kind"), [("[]", "array"), ('"text"', "string"), ("42", "number"), ("null", "null"), ("true", "boolean")]
)
def test_parse_integrations_not_an_object(raw, kind):
    assert parse_integrations(raw) == ({}, f"crm_integrations must be a JSON object keyed by CRM type, got {kind}")


def test_parse_integrations_keeps_bad_entries_for_the_caller():
    integrations, error = parse_integrations('{"hubspot": "oops", "jobber": {"status": "active"}}')
    assert error is None
    assert integrations == {"hubspot": "oops", "jobber": {"status": "active"}}


def test_parse_integrations_accepts_bytes_and_decoded_objects():
    assert parse_integrations(b'{"jobber": {}}') == ({"jobber": {}}, None)
    assert parse_integrations({"jobber": {}}) == ({"jobber": {}}, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(512) 555-0100", "+15125550100"),
        ("+44 20 7946 0958", "+442079460958"),
        (5125550100, "+15125550100"),
        ("", None),
        (None, None),
        ("call me", None),
    ],
)
def test_to_e164_reads_a_phone_as_a_crm_stores_it(raw, expected):
    from crm_sync.contacts import to_e164

    assert to_e164(raw) == expected


@pytest.mark.parametrize(
    ("created_at", "what"),
    [(None, "created_at is empty"), ("  ", "created_at is empty"), ("yesterday", "created_at 'yesterday' is not")],
)
def test_created_at_unusable_is_bad_source_data_in_an_analysts_words(created_at, what):
    prepared = prepare_check_in(make_row(created_at=created_at), SyncSettings())
    assert prepared.error_kind == "bad_source_data"
    assert prepared.error.startswith("the check-in has no creation time (") and what in prepared.error


def test_created_at_missing_wins_over_a_missing_identity_and_names_both():
    row = make_row(created_at=None, customer_email=None, customer_phone=None, customer_name=None)
    prepared = prepare_check_in(row, SyncSettings())
    assert prepared.error_kind == "bad_source_data" and "; also no usable customer email" in prepared.error
    dated = prepare_check_in(make_row(customer_email=None, customer_phone=None, customer_name=None), SyncSettings())
    assert dated.error_kind == "no_identity"
