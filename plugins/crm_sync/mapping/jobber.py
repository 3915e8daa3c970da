"""Check-ins -> Jobber GraphQL inputs (clients, properties, jobs). Pure functions, no I/O.

The customer becomes a Jobber *client* (``ClientCreateInput``: names, ``emails``,
``phones``, the service address as a *property* and as the billing address); the visit
becomes a *job* on that property (``JobCreateAttributes``): the visit title plus the sync's
marker as the job title, the visit body as the job instructions, the visit date as the
job's start, visits created without notifying the team, invoicing as configured.

The marker ``rankitpro-<company>-<check-in>`` (``PreparedCheckIn.visit_key``) is written
into the job title, in parentheses, because Jobber has no external-id field on jobs
(none in the schema): :func:`has_marker` / :func:`markers_in` find it again, as a
whole token, so ``rankitpro-1-2`` never matches ``rankitpro-1-23``.

Jobber documents no length limits for these texts: :data:`TITLE_LIMIT`,
:data:`INSTRUCTIONS_LIMIT` and :data:`NAME_LIMIT` are conservative choices (UNCONFIRMED);
longer text is cut visibly, never refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import phonenumbers

from crm_sync.contacts import to_e164
from crm_sync.mapping.common import (
    fit_text,
    map_custom_fields,
    to_text,
)
from crm_sync.match_key import MatchKey
from crm_sync.models import Customer, PreparedCheckIn

__all__ = [
    "INSTRUCTIONS_LIMIT",
    "NAME_LIMIT",
    "TITLE_LIMIT",
    "address_attributes",
    "address_key",
    "client_create_input",
    "client_edit_input",
    "client_keys",
    "has_marker",
    "job_create_input",
    "job_edit_input",
    "job_title",
    "markers_in",
    "phone_text",
]

#: Longest job title written (UNCONFIRMED: Jobber documents none); the marker always fits.
TITLE_LIMIT = 255
#: Longest job instructions written (UNCONFIRMED: Jobber documents none).
INSTRUCTIONS_LIMIT = 20_000
#: Longest client name part / address line written (UNCONFIRMED).
NAME_LIMIT = 255
#: Longest value of one ``customFieldMapping`` line in the instructions.
CUSTOM_VALUE_LIMIT = 2_000

_MARKER = re.compile(r"(?<![\w-])rankitpro-\d+-\d+(?![\w-])")
_WS = re.compile(r"\s+")


# ----------------------------------------------------------------------------- markers


def job_title(prepared: PreparedCheckIn) -> tuple[str, bool]:
    """``"<visit title> (rankitpro-<company>-<check-in>)"`` within :data:`TITLE_LIMIT`; (title, truncated)."""
    suffix = f" ({prepared.visit_key})"
    visit_title = prepared.visit.title if prepared.visit else "Rank It Pro visit"
    title, truncated = fit_text(_WS.sub(" ", visit_title).strip(), TITLE_LIMIT - len(suffix))
    return title + suffix, truncated


def has_marker(text: Any, visit_key: str) -> bool:
    """True when ``visit_key`` appears in ``text`` as a whole token."""
    return visit_key in markers_in(text)


def markers_in(text: Any) -> set[str]:
    """Every sync marker (``rankitpro-<company>-<check-in>``) in ``text``."""
    return set(_MARKER.findall(str(text or "")))


# ----------------------------------------------------------------------------- customers


def phone_text(phone: str, extension: str | None = None) -> str:
    """E.164 -> how an office types it: ``(512) 555-0100`` in North America, else international;
    the extension (no field of its own in ``PhoneNumberCreateAttributes``) as `` ext. 12``."""
    try:
        number = phonenumbers.parse(phone, None)
        style = (
            phonenumbers.PhoneNumberFormat.NATIONAL
            if number.country_code == 1
            else phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
        text = phonenumbers.format_number(number, style)
    except phonenumbers.NumberParseException:
        text = phone
    return f"{text} ext. {extension}" if extension else text


def _line(value: str | None) -> str | None:
    if not value:
        return None
    text, _ = fit_text(_WS.sub(" ", value).strip(), NAME_LIMIT)
    return text or None


def address_attributes(customer: Customer) -> dict[str, str] | None:
    """``AddressAttributes`` (street1, city, province, postalCode, country) or None without any part."""
    values = {
        "street1": _line(customer.street),
        "city": _line(customer.city),
        "province": _line(customer.state),
        "postalCode": _line(customer.zip),
        "country": _line(customer.country),
    }
    kept = {k: v for k, v in values.items() if v}
    return kept or None


def address_key(address: Mapping[str, Any] | None) -> str | None:
    """What makes two service addresses the same property: street + postal code (or city), case and
    spacing ignored. None when there is no street (then any property of the client will do)."""
    if not address:
        return None
    street = _WS.sub(" ", str(address.get("street1") or "")).strip().casefold()
    if not street:
        return None
    postal = re.sub(r"[\s-]", "", str(address.get("postalCode") or "")).casefold()
    place = postal or _WS.sub(" ", str(address.get("city") or "")).strip().casefold()
    return f"{street}|{place}"


def client_create_input(customer: Customer) -> tuple[dict[str, Any], list[str]]:
    """``ClientCreateInput`` for a new client, and warnings.

    A customer without a name is named after its email (or phone) as ``lastName``: Jobber
    shows clients by name, and the office recognises the address.
    """
    warnings: list[str] = []
    first, last = _line(customer.first_name), _line(customer.last_name)
    data: dict[str, Any] = {}
    if first:
        data["firstName"] = first
    if last:
        data["lastName"] = last
    if customer.company:
        data["companyName"] = _line(customer.company)
    if not first and not last and not customer.company:
        fallback = customer.email or (phone_text(customer.phone) if customer.phone else None) or "Rank It Pro customer"
        data["lastName"] = _line(fallback)
        warnings.append("customer has no name: the Jobber client is named after its email or phone")
    if customer.email:
        data["emails"] = [{"description": "MAIN", "primary": True, "address": customer.email}]
    if customer.phone:
        data["phones"] = [
            {"description": "MAIN", "primary": True, "number": phone_text(customer.phone, customer.phone_extension)}
        ]
    address = address_attributes(customer)
    if address:
        data["properties"] = [{"address": address}]
        data["billingAddress"] = dict(address)
    return data, warnings


def client_keys(client: Mapping[str, Any]) -> set[str]:
    """The match keys a Jobber client answers to (``email:``, ``phone:``, ``name:``), as the sync writes them."""
    keys = {
        str(MatchKey.email(str(e.get("address") or "").strip().lower()))
        for e in client.get("emails") or []
        if isinstance(e, Mapping) and e.get("address")
    }
    keys |= {
        str(MatchKey.phone(p))
        for e in client.get("phones") or []
        if isinstance(e, Mapping)
        if (p := to_e164(e.get("number")))
    }
    name = " ".join(str(client.get(k) or "") for k in ("firstName", "lastName"))
    if name.strip():
        keys.add(str(MatchKey.name(name)))
    return keys


def client_edit_input(customer: Customer, client: Mapping[str, Any]) -> dict[str, Any] | None:
    """``ClientEditInput`` bringing ``client`` up to date with the check-in, or None when nothing changes.

    Names are overwritten when the check-in has them; an email or phone the client lacks is
    added (never replacing what the office entered); addresses are left alone (a new service
    address becomes a property of its own when the visit is written).
    """
    data: dict[str, Any] = {}
    for key, value in (("firstName", _line(customer.first_name)), ("lastName", _line(customer.last_name))):
        if value and value != (client.get(key) or None):
            data[key] = value
    known = client_keys(client)
    if customer.email and str(MatchKey.email(customer.email)) not in known:
        data["emailsToAdd"] = [{"description": "MAIN", "primary": False, "address": customer.email}]
    if customer.phone and str(MatchKey.phone(customer.phone)) not in known:
        data["phonesToAdd"] = [
            {"description": "MAIN", "primary": False, "number": phone_text(customer.phone, customer.phone_extension)}
        ]
    return data or None


# ----------------------------------------------------------------------------- jobs


def _instructions(prepared: PreparedCheckIn, custom_fields: Mapping[str, str]) -> tuple[str, list[str]]:
    visit = prepared.visit
    if visit is None:
        raise ValueError(f"check-in {prepared.check_in_id} has no visit to map ({prepared.error})")
    warnings: list[str] = []
    body = visit.body
    mapped, mapped_warnings = map_custom_fields(
        visit.fields,
        custom_fields,
        None,
        target_label="Jobber job detail",
        value_limit=CUSTOM_VALUE_LIMIT,
        convert=to_text,
    )
    warnings += mapped_warnings
    if mapped:
        body += "\n\nDetails:\n" + "\n".join(f"{name}: {value}" for name, value in mapped.items())
    text, truncated = fit_text(body, INSTRUCTIONS_LIMIT)
    if truncated:
        warnings.append(
            f"visit text is longer than {INSTRUCTIONS_LIMIT:,} characters: job instructions truncated visibly"
        )
    return text, warnings


def job_create_input(
    prepared: PreparedCheckIn,
    property_id: str,
    *,
    custom_fields: Mapping[str, str] | None = None,
    invoicing_type: str = "FIXED_PRICE",
    invoicing_schedule: str = "NEVER",
) -> tuple[dict[str, Any], list[str]]:
    """``JobCreateAttributes`` for one visit on ``property_id``, and warnings.

    The job starts on the visit's (UTC) date with one visit and no team notification
    (``scheduling {createVisits: true, notifyTeam: false}``): the work is already done.
    """
    title, title_cut = job_title(prepared)
    instructions, warnings = _instructions(prepared, custom_fields or {})
    if title_cut:
        warnings.append(f"visit title is longer than {TITLE_LIMIT} characters: job title truncated visibly")
    assert prepared.visit is not None
    data = {
        "propertyId": property_id,
        "title": title,
        "instructions": instructions,
        "timeframe": {"startAt": prepared.visit.occurred_at.strftime("%Y-%m-%d")},
        "scheduling": {"createVisits": True, "notifyTeam": False},
        "invoicing": {"invoicingType": invoicing_type, "invoicingSchedule": invoicing_schedule},
    }
    return data, warnings


def job_edit_input(
    prepared: PreparedCheckIn, custom_fields: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """``JobEditInput`` for an edited check-in: title (with the marker) and instructions."""
    title, _ = job_title(prepared)
    instructions, warnings = _instructions(prepared, custom_fields or {})
    return {"title": title, "instructions": instructions}, warnings
