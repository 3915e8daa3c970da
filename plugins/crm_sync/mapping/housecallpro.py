"""Check-ins -> Housecall Pro payloads (customers, addresses, jobs). Pure functions, no I/O.

The visit becomes a job (``JobCreate``: ``customer_id`` and ``address_id`` are required) whose
``notes`` hold the visit body. The note starts with the sync's marker line
``[Rank It Pro sync key: rankitpro-<company>-<check-in>]``: Housecall Pro has no external-id
field and no idempotency key, so this line is how the destination recognises a job it already
wrote. The body is fitted after the marker, so truncation never cuts the marker.

Phones go out as the 10-digit national number for North American numbers (how Housecall Pro's
own forms take them) and in E.164 otherwise; extensions are dropped. Short text fields are cut
visibly at :data:`TEXT_FIELD_LIMIT`. Limits marked UNCONFIRMED live in
:mod:`crm_hooks.housecallpro`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, timedelta
from typing import Any

from crm_hooks.housecallpro import DEFAULT_COUNTRY, DEFAULT_TAG, NOTE_LIMIT, TEXT_FIELD_LIMIT
from crm_sync.contacts import to_e164
from crm_sync.mapping.common import fit_text, national_digits
from crm_sync.match_key import MatchKey
from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.text import echo, utf16_len, utf16_prefix

__all__ = [
    "NOTE_LIMIT",
    "address_payload",
    "customer_changes",
    "customer_matches",
    "customer_payload",
    "customer_update_payload",
    "hcp_phone",
    "job_note",
    "job_payload",
    "marker_line",
    "markers_in",
    "pick_address",
    "search_text",
]

_MARKER_LINE = "[Rank It Pro sync key: {key}]"
_MARKER = re.compile(r"\[Rank It Pro sync key: (rankitpro-\d+-\d+)\]")
_WS = re.compile(r"\s+")
_STREET_NOISE = re.compile(r"[.,#]")


# --------------------------------------------------------------------------- text helpers
hcp_phone = national_digits


def _fit(name: str, value: str | None, warnings: list[str]) -> str | None:
    if not value:
        return None
    if utf16_len(value) <= TEXT_FIELD_LIMIT:
        return value
    warnings.append(f"{name} {echo(value)} is longer than {TEXT_FIELD_LIMIT} characters: cut")
    return utf16_prefix(value, TEXT_FIELD_LIMIT - 1).rstrip() + "…"


# --------------------------------------------------------------------------- customers
#: USPS street suffix and direction abbreviations, so "12 Oak Street" and "12 oak st." are one address.
_STREET_WORDS = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "drive": "dr",
    "boulevard": "blvd",
    "lane": "ln",
    "court": "ct",
    "place": "pl",
    "parkway": "pkwy",
    "highway": "hwy",
    "circle": "cir",
    "terrace": "ter",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "suite": "ste",
    "apartment": "apt",
}


def _street_key(street: Any) -> str:
    words = _WS.sub(" ", _STREET_NOISE.sub(" ", str(street or ""))).strip().casefold().split(" ")
    return " ".join(_STREET_WORDS.get(w, w) for w in words if w)


def address_payload(
    customer: Customer, country: str = DEFAULT_COUNTRY, *, complete: bool = True, warnings: list[str] | None = None
) -> dict[str, str] | None:
    """The check-in's address as an ``AddressCreate`` body, or None.

    ``complete``: street, city, state and zip all present (what ``POST
    /customers/{id}/addresses`` requires, with country); otherwise a street is enough (the
    inline ``CustomerCreate.addresses`` item, which has no required keys).
    """
    parts = {"street": customer.street, "city": customer.city, "state": customer.state, "zip": customer.zip}
    if not customer.street or (complete and not all(parts.values())):
        return None
    notes = warnings if warnings is not None else []
    out = {k: _fit(f"address {k}", v, notes) for k, v in parts.items() if v}
    out["country"] = customer.country or country
    return out


def customer_payload(
    customer: Customer,
    *,
    tags: Sequence[str] = (DEFAULT_TAG,),
    notifications_enabled: bool = False,
    country: str = DEFAULT_COUNTRY,
) -> tuple[dict[str, Any], list[str]]:
    """A ``CustomerCreate`` body and warnings; fields the check-in lacks are left out.

    ``notifications_enabled`` is false unless asked: the sync must not make Housecall Pro
    message people a technician typed in.
    """
    warnings: list[str] = []
    payload: dict[str, Any] = {
        "first_name": _fit("customer first name", customer.first_name, warnings),
        "last_name": _fit("customer last name", customer.last_name, warnings),
        "company": _fit("customer company", customer.company, warnings),
        "email": customer.email,
        "mobile_number": hcp_phone(customer.phone),
        "notifications_enabled": bool(notifications_enabled),
        "tags": [t for t in tags if t],
    }
    address = address_payload(customer, country, complete=False, warnings=warnings)
    if address:
        payload["addresses"] = [address]
    return {k: v for k, v in payload.items() if v not in (None, "", [])}, warnings


def customer_update_payload(customer: Customer) -> dict[str, Any]:
    """A ``CustomerUpdate`` body: names and mobile number. The email is left alone (it is how
    Housecall Pro reaches the customer and how the sync matched them); addresses are added,
    never rewritten."""
    warnings: list[str] = []
    values = {
        "first_name": _fit("customer first name", customer.first_name, warnings),
        "last_name": _fit("customer last name", customer.last_name, warnings),
        "mobile_number": hcp_phone(customer.phone),
    }
    return {k: v for k, v in values.items() if v}


def customer_changes(record: Mapping[str, Any], customer: Customer) -> dict[str, Any]:
    """The part of :func:`customer_update_payload` that differs from a Housecall Pro ``Customer``
    (phones compared as numbers, not as typed)."""
    changes = {}
    for name, value in customer_update_payload(customer).items():
        current = record.get(name)
        same = to_e164(current) == to_e164(value) if name == "mobile_number" else current == value
        if not same:
            changes[name] = value
    return changes


def customer_matches(match_key: str, record: Mapping[str, Any]) -> bool:
    """Whether a Housecall Pro ``Customer`` is exactly the one a match key names.

    ``q`` is a free-text search, so every hit is checked: emails case-insensitively, phones
    as E.164 over mobile, home and work numbers, names as "first last" with whitespace collapsed.
    """
    kind, value = MatchKey.parse(match_key)
    if kind == "email":
        return str(record.get("email") or "").strip().lower() == value
    if kind == "phone":
        return any(to_e164(record.get(f)) == value for f in ("mobile_number", "home_number", "work_number"))
    if kind == "name":
        name = " ".join(str(record.get(f) or "") for f in ("first_name", "last_name"))
        return _WS.sub(" ", name).strip().lower() == value
    return False


def search_text(match_key: str, customer: Customer) -> str:
    """What to send as ``q`` for a match key: the email, the phone's digits, or "first last"."""
    kind, value = MatchKey.parse(match_key)
    if kind == "phone":
        return hcp_phone(value) or value
    if kind == "name":
        return customer.full_name or value
    return value


def pick_address(addresses: Iterable[Mapping[str, Any]], customer: Customer) -> str | None:
    """The id of the customer's address for this check-in.

    The address with the check-in's street (and zip, when both have one); without a street on
    the check-in, the first service address, else the first address. None when the check-in
    names a street the customer does not have (the caller adds it) or there is no address.
    """
    candidates = [a for a in addresses if isinstance(a, Mapping) and a.get("id")]
    if customer.street:
        wanted = _street_key(customer.street)
        for address in candidates:
            if _street_key(address.get("street")) != wanted:
                continue
            if customer.zip and address.get("zip") and str(address["zip"]).strip()[:5] != customer.zip[:5]:
                continue
            return str(address["id"])
        return None
    service = [a for a in candidates if a.get("type") == "service"]
    chosen = (service or candidates)[:1]
    return str(chosen[0]["id"]) if chosen else None


# --------------------------------------------------------------------------- jobs
def marker_line(visit_key: str) -> str:
    """The first line of every job note the sync writes."""
    return _MARKER_LINE.format(key=visit_key)


def markers_in(text: Any) -> set[str]:
    """Visit keys of the marker lines in a note's text."""
    return set(_MARKER.findall(str(text or "")))


def job_note(prepared: PreparedCheckIn, limit: int = NOTE_LIMIT) -> tuple[str, list[str]]:
    """The job note: the marker line, a blank line, the visit body fitted into ``limit``."""
    visit = prepared.visit
    if visit is None:
        raise ValueError(f"check-in {prepared.check_in_id} has no visit to map ({prepared.error})")
    head = marker_line(prepared.visit_key) + "\n\n"
    body, truncated = fit_text(visit.body, limit - utf16_len(head))
    warnings = [f"job note is longer than {limit:,} characters: truncated visibly"] if truncated else []
    return head + body, warnings


def job_payload(
    prepared: PreparedCheckIn,
    customer_id: str,
    address_id: str,
    *,
    tags: Sequence[str] = (DEFAULT_TAG,),
    job_type_id: str | None = None,
    schedule_minutes: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A ``JobCreate`` body for one check-in, and warnings.

    ``schedule_minutes``: schedule the job at the visit's time for that long (UTC, ISO-8601);
    None leaves the job unscheduled.
    """
    note, warnings = job_note(prepared)
    payload: dict[str, Any] = {
        "customer_id": customer_id,
        "address_id": address_id,
        "notes": note,
        "tags": [t for t in tags if t],
    }
    if job_type_id:
        payload["job_fields"] = {"job_type_id": job_type_id}
    if schedule_minutes and prepared.visit is not None:
        start = prepared.visit.occurred_at.astimezone(UTC)
        end = start + timedelta(minutes=int(schedule_minutes))
        payload["schedule"] = {
            "scheduled_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scheduled_end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "arrival_window": 0,
        }
    return payload, warnings
