"""MatchKey: the one parse and the one format of the sync's customer match keys."""

from __future__ import annotations

import pytest

from crm_sync.match_key import MatchKey, MatchKind, keys_for_customer
from crm_sync.models import Customer


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("email:ann@example.com", "email", "ann@example.com"),
        ("phone:+15125550100", "phone", "+15125550100"),
        ("name:mary ann van der berg", "name", "mary ann van der berg"),
        ("email:odd:colon@example.com", "email", "odd:colon@example.com"),  # only the first ":" separates
        ("no-kind", "no-kind", ""),
    ],
)
def test_parse(text, kind, value):
    key = MatchKey.parse(text)
    assert (key.kind, key.value) == (kind, value)


@pytest.mark.parametrize("text", ["email:ann@example.com", "phone:+442079460958", "name:ann lee", "email:a:b"])
def test_format_round_trips(text):
    assert str(MatchKey.parse(text)) == MatchKey.parse(text).format() == text


def test_constructors_write_the_stored_text_form():
    assert str(MatchKey.email("ann@example.com")) == "email:ann@example.com"
    assert str(MatchKey.phone("+15125550100")) == "phone:+15125550100"
    assert str(MatchKey.name("  Ann \t  LEE ")) == "name:ann lee"
    assert MatchKey.parse("email:x@y.z").kind == MatchKind.EMAIL


def test_identity_kinds():
    assert MatchKey.email("a@b.c").identifies_a_person and MatchKey.phone("+15125550100").identifies_a_person
    assert not MatchKey.name("john smith").identifies_a_person


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("all", ["email:ann@example.com", "phone:+15125550100"]),
        ("email", ["email:ann@example.com"]),
        ("phone", ["phone:+15125550100"]),
        ("name", ["name:ann lee"]),
    ],
)
def test_keys_for_customer(strategy, expected):
    customer = Customer(email="ann@example.com", phone="+15125550100", first_name="Ann", last_name="Lee")
    assert keys_for_customer(customer, strategy) == expected


def test_a_name_is_a_key_of_strategy_all_only_without_email_and_phone():
    assert keys_for_customer(Customer(first_name="Ann", last_name="Lee"), "all") == ["name:ann lee"]
    assert keys_for_customer(Customer(), "all") == []
