"""A small, fixed Rank It Pro data set for identity resolution: one person must become one CRM customer.

Deterministic (no randomness, no file read): :func:`identity_check_ins` gives two waves of check-ins for
one company, each row a ``check_ins`` insert (:func:`localdev.demo_data.insert_check_ins`). The shapes:

* returning customers whose check-ins sometimes carry an email and sometimes not, in both orders
  within one batch (Linda: email first; Jean-Luc: phone only first) and across batches and runs;
* one phone typed in several formats: ``(303) 555-0325``, ``303.555.0325``, ``+1 303 555 0325``,
  ``3035550325``, ``303-555-0325``;
* a household phone shared by two people with different emails and names (Mark and Ana Rivera: two
  customers under the default ``householdPhoneRule``), plus a row of Mark without an email;
* one person with two emails and the same name on one phone (Sam Patel: one customer by the same-name rule);
* a returning customer at a second address (Linda, Tom), an email-only customer who later gives a phone
  (Priya), a phone-only customer who later gives an email (Carlos: the email is added to the customer);
* a customer the office typed into the CRM before the first sync (Olga, :data:`IN_CRM_BEFORE`: a phone
  as typed, no email): found by the CRM's phone lookup, never created, given the email.

:data:`PEOPLE` is the truth: the distinct people the CRM must end up with (``same_name`` rule), and
:data:`HOUSEHOLD_PHONES` the phones legitimately shared by two of them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

#: person -> (first, last, email) as the check-ins carry them; the phone digits per person below
PEOPLE: dict[str, tuple[str, str, str | None]] = {
    "linda": ("Linda", "Kowalski", "linda.kowalski@example.com"),
    "jeanluc": ("Jean-Luc", "Ng", "jean-luc.ng@example.com"),
    "mark": ("Mark", "Rivera", "mark.rivera@example.com"),
    "ana": ("Ana", "Rivera", "ana.rivera@example.com"),
    "tom": ("Tom", "Baker", "tom.baker@example.com"),
    "priya": ("Priya", "Shah", "priya.shah@example.com"),
    "carlos": ("Carlos", "Diaz", "carlos.diaz@example.com"),
    "sam": ("Sam", "Patel", "sam.patel@example.com"),
    "grace": ("Grace", "Lee", "grace.lee@example.com"),
    "olga": ("Olga", "Petrova", "olga.petrova@example.com"),
}
SAM_WORK_EMAIL = "s.patel.work@example.com"
DIGITS = {
    "linda": "3035550325",
    "jeanluc": "3035550326",
    "mark": "3035550400",
    "ana": "3035550400",
    "tom": "3035550410",
    "priya": "3035550430",
    "carlos": "3035550420",
    "sam": "3035550450",
    "grace": "3035550440",
    "olga": "3035550460",
}
#: people already in the CRM before the first sync (typed by the office: name and phone as typed, no email):
#: the sync must find them by phone, not create them, and add the email
IN_CRM_BEFORE: dict[str, str] = {"olga": "303.555.0460"}
#: E.164 phones two different people share (a household): the only phone allowed on two customers
HOUSEHOLD_PHONES = frozenset({"+13035550400"})
STREETS = {
    "linda": ("41 Aspen Way", "17 Birch Ct"),
    "tom": ("12 Oak St", "980 Pine Ave"),
}


def _typed(digits: str, style: int) -> str:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return (f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"{a}{b}{c}", f"{a}-{b}-{c}")[style % 5]


# (person, with email?, phone format or None for no phone, address index, email override)
WAVE_1: tuple[tuple[str, bool, int | None, int, str | None], ...] = (
    ("linda", True, 0, 0, None),  # batch of 4: email first, then the same person without one
    ("linda", False, 1, 0, None),
    ("jeanluc", False, 2, 0, None),  # ... and the other order
    ("jeanluc", True, 3, 0, None),
    ("mark", True, 0, 0, None),  # household: one phone, two emails, two names
    ("ana", True, 1, 0, None),
    ("mark", False, 2, 0, None),  # Mark without an email: Mark's customer (same name)
    ("tom", True, 3, 0, None),
    ("priya", True, None, 0, None),  # email only
    ("carlos", False, 4, 0, None),  # phone only
    ("sam", True, 0, 0, None),  # two emails, one name, one phone: one person
    ("sam", True, 1, 0, SAM_WORK_EMAIL),
    ("linda", False, 3, 1, None),  # a later batch: second address, no email
    ("tom", False, 4, 1, None),
    ("olga", True, 0, 0, None),  # in the CRM already, without an email: found by phone, gains the email
    ("olga", False, 2, 0, None),
)
WAVE_2: tuple[tuple[str, bool, int | None, int, str | None], ...] = (
    ("priya", True, 2, 0, None),  # now with a phone
    ("carlos", True, 2, 0, None),  # now with an email: found by phone, the email is added
    ("jeanluc", False, 0, 0, None),
    ("grace", False, 1, 0, None),  # new, phone only, then with an email in the same batch
    ("grace", True, 4, 0, None),
    ("mark", True, 3, 0, None),
    ("linda", True, 2, 1, None),
    ("ana", True, 4, 0, None),
)


def _row(company_id: int, technician_id: int, spec: tuple, at: datetime) -> dict[str, Any]:
    person, with_email, style, address, email_override = spec
    first, last, email = PEOPLE[person]
    street = STREETS.get(person, (f"{len(person) * 7 + 100} Main St",))[address]
    return {
        "job_type": "AC Repair",
        "notes": f"Checked the unit for {first}.",
        "customer_name": f"{first} {last}",
        "customer_email": (email_override or email) if with_email else None,
        "customer_phone": _typed(DIGITS[person], style) if style is not None else None,
        "work_performed": "Diagnosed and repaired.",
        "materials_used": "Capacitor 45/5",
        "address": street,
        "city": "Denver",
        "state": "CO",
        "zip": "80202",
        "photos": json.dumps([]),
        "customer_feedback": None,
        "follow_up_required": False,
        "technician_id": technician_id,
        "company_id": company_id,
        "created_at": at,
    }


def identity_check_ins(company_id: int, technician_id: int, start: datetime, wave: int) -> list[dict[str, Any]]:
    """Wave 1 or 2 of the data set for one company (wave 2 is inserted after wave 1 was synced)."""
    specs = WAVE_1 if wave == 1 else WAVE_2
    offset = 0 if wave == 1 else len(WAVE_1)
    return [
        _row(company_id, technician_id, spec, start + timedelta(minutes=7 * (offset + i)))
        for i, spec in enumerate(specs)
    ]


__all__ = ["DIGITS", "HOUSEHOLD_PHONES", "IN_CRM_BEFORE", "PEOPLE", "identity_check_ins"]
