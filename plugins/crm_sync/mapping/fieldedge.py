"""Check-ins -> FieldEdge Open API bodies (customer, lead). Pure functions, no I/O.

FieldEdge's public API cannot create or complete a work order (work orders are
retrieve-by-id only), so a visit is written as a **lead** (a service request) for
the customer. Documented lead fields carry it
(https://docs.gravitee-fe.dev/creates-a-new-lead-with-customer-details-appointment-preferences-and-service-information-28355560e0):

* ``trackingId``: the sync's marker (``PreparedCheckIn.visit_key``), echoed by ``GET /v1/leads/{id}``;
* ``customer``: the FieldEdge customer (``customerRefId`` = its id, ``isExistingCustomer``) and contact details;
* ``appointment``: the visit's local date/time as ``preferredDate`` / ``preferredTime`` in the
  configured ``timezone``, and the visit report (title, notes, work, materials, photo links)
  in ``availabilityNotes``, the lead's only documented free-text field;
* ``metaData``: ``rankitproCheckInKey``, ``jobType`` and the ``customFieldMapping`` targets
  (string values, as in FieldEdge's examples).

Customers (https://docs.gravitee-fe.dev/customer-1981961m0): first and last names must be
2-50 characters without digits (a name that cannot fit is left out, with a warning); an
email or a phone is required (a customer with neither is refused here, before any call);
phones in international format (E.164); marketing opt-ins are always false (the check-in
captures no consent). UNCONFIRMED limits (no published lengths) are constants below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from crm_hooks.fieldedge import DEFAULT_LEAD_SOURCE
from crm_sync.contacts import to_e164
from crm_sync.mapping.common import (
    fit_text,
    map_custom_fields,
    national_digits,
    to_text,
)
from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.text import echo

__all__ = [
    "CHECKIN_KEY_METADATA",
    "NAME_MAX",
    "NAME_MIN",
    "NOTES_LIMIT",
    "customer_payload",
    "customer_update",
    "lead_payload",
    "lead_phone",
    "record_payload",
]

NAME_MIN, NAME_MAX = 2, 50
#: UNCONFIRMED: FieldEdge publishes no length for ``appointment.availabilityNotes``.
NOTES_LIMIT = 4_000
#: UNCONFIRMED: longest metaData value sent (custom field mapping).
METADATA_VALUE_LIMIT = 1_000
#: metaData key holding the visit key (the same value as ``trackingId``), readable in FieldEdge.
CHECKIN_KEY_METADATA = "rankitproCheckInKey"
NOTES_HEADER = "Completed visit logged in Rank It Pro (not a booking request)"
_RESERVED_METADATA = (CHECKIN_KEY_METADATA, "jobType")
_DIGIT = re.compile(r"\d")
#: Check-in values laid over the stored customer on update.
_OVERLAID = ("firstName", "lastName", "companyName", "email", "phoneNumber", "address1", "city", "state", "zip")
#: Customer body keys (POST / PUT /v1/customers), in the documented order.
CUSTOMER_KEYS = (
    "firstName",
    "lastName",
    "companyName",
    "email",
    "phoneNumber",
    "preferredContactMethods",
    "address1",
    "address2",
    "city",
    "state",
    "zip",
    "marketingEmailOptIn",
    "marketingSmsOptIn",
)


lead_phone = national_digits


def fit_name(value: str | None, label: str, warnings: list[str]) -> str | None:
    """A first/last name FieldEdge accepts (2-50 characters, no digits), or None with a warning."""
    if not value:
        return None
    name = " ".join(value.split())
    if _DIGIT.search(name):
        warnings.append(f"{label} {echo(name)} contains digits, which FieldEdge refuses in names: not sent")
        return None
    if len(name) < NAME_MIN:
        warnings.append(f"{label} {echo(name)} is shorter than FieldEdge's {NAME_MIN} characters: not sent")
        return None
    if len(name) > NAME_MAX:
        warnings.append(f"{label} {echo(name)} is longer than FieldEdge's {NAME_MAX} characters: cut")
        name = name[: NAME_MAX - 1].rstrip() + "…"
    return name


def _contact_methods(email: str | None, phone: str | None) -> list[str]:
    return (["Email"] if email else []) + (["Phone"] if phone else [])


def customer_payload(customer: Customer) -> tuple[dict[str, Any], list[str], str | None]:
    """The ``POST /v1/customers`` body, warnings, and the reason it cannot be sent (else None)."""
    warnings: list[str] = []
    values = {
        "firstName": fit_name(customer.first_name, "customer first name", warnings),
        "lastName": fit_name(customer.last_name, "customer last name", warnings),
        "companyName": customer.company,
        "email": customer.email,
        "phoneNumber": customer.phone,
        "preferredContactMethods": _contact_methods(customer.email, customer.phone),
        "address1": customer.street,
        "city": customer.city,
        "state": customer.state,
        "zip": customer.zip,
        "marketingEmailOptIn": False,
        "marketingSmsOptIn": False,
    }
    payload = {k: v for k, v in values.items() if v not in (None, "", [])}
    error = None
    if not (customer.email or customer.phone):
        error = (
            "FieldEdge needs an email or a phone number to create a customer, and the check-in has "
            "neither (a name alone is not enough)"
        )
    return payload, warnings, error


def record_payload(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored FieldEdge customer (search / GET shape) as a ``PUT /v1/customers/{id}`` body."""
    methods = record.get("preferredContactMethods")
    if not isinstance(methods, list):
        flags = (("Email", "contactOnEmail"), ("Phone", "contactOnPhone"), ("SMS", "contactOnSms"))
        methods = [name for name, flag in flags if record.get(flag) is True]
    values = {
        "firstName": record.get("firstName"),
        "lastName": record.get("lastName"),
        "companyName": record.get("companyName"),
        "email": record.get("primaryEmail") or record.get("email"),
        "phoneNumber": _e164(record.get("primaryPhone") or record.get("phoneNumber")),
        "preferredContactMethods": methods,
        "address1": record.get("address1"),
        "address2": record.get("address2"),
        "city": record.get("city"),
        "state": record.get("state"),
        "zip": record.get("zip"),
        "marketingEmailOptIn": record.get("marketingEmailOptIn"),
        "marketingSmsOptIn": record.get("marketingSmsOptIn"),
    }
    return {k: v for k, v in values.items() if v not in (None, "", [])}


def customer_update(record: Mapping[str, Any], customer: Customer) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``PUT`` body that brings ``record`` up to date with the check-in, or None when nothing changes.

    PUT replaces the customer, so the body starts from what FieldEdge holds (company name,
    address line 2, contact preferences and marketing consent are kept) and the check-in's
    non-empty values are laid over it. Values are compared ignoring case and spacing.
    """
    ours, warnings, _ = customer_payload(customer)
    current = record_payload(record)
    merged = {**current, **{k: ours[k] for k in _OVERLAID if ours.get(k)}}
    merged.setdefault("preferredContactMethods", ours.get("preferredContactMethods") or [])
    merged.setdefault("marketingEmailOptIn", False)
    merged.setdefault("marketingSmsOptIn", False)
    if all(_same(current.get(k), merged.get(k)) for k in _OVERLAID):
        return None, warnings
    return {k: merged[k] for k in CUSTOMER_KEYS if merged.get(k) not in (None, "")}, warnings


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()
    return a == b


def _e164(raw: Any) -> str | None:
    """E.164 when the phone parses, else as FieldEdge holds it."""
    return to_e164(raw) or (str(raw) if raw else None)


def lead_payload(
    prepared: PreparedCheckIn,
    customer_id: str | None,
    custom_fields: Mapping[str, str],
    *,
    source: str = DEFAULT_LEAD_SOURCE,
    zone: tzinfo | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The ``POST /v1/leads`` body for one check-in's visit, and warnings.

    :param customer_id: the FieldEdge customer the lead belongs to (None when customers are not synced).
    :param zone: the company's time zone for ``preferredDate`` / ``preferredTime`` (UTC when None).
    """
    visit = prepared.visit
    if visit is None:
        raise ValueError(f"check-in {prepared.check_in_id} has no visit to map ({prepared.error})")
    zone = zone or ZoneInfo("UTC")
    warnings: list[str] = []
    local = visit.occurred_at.astimezone(zone)
    notes, truncated = fit_text(f"{NOTES_HEADER}\n{visit.title}\n\n{visit.body}", NOTES_LIMIT)
    if truncated:
        warnings.append(
            f"visit report is longer than the {NOTES_LIMIT:,} characters sent to FieldEdge's lead "
            "notes: truncated visibly"
        )
    c = prepared.customer
    address = {"addressLine1": c.street, "city": c.city, "state": c.state, "postalCode": c.zip, "country": c.country}
    person = {
        "customerRefId": customer_id,
        "firstName": fit_name(c.first_name, "customer first name", warnings),
        "lastName": fit_name(c.last_name, "customer last name", warnings),
        "email": c.email,
        "phone": lead_phone(c.phone),
        "marketingEmailOptedIn": False,
        "address": {k: v for k, v in address.items() if v} or None,
    }
    metadata = {CHECKIN_KEY_METADATA: prepared.visit_key, "jobType": visit.job_type}
    custom, custom_warnings = map_custom_fields(
        visit.fields,
        custom_fields,
        None,
        target_label="FieldEdge lead metaData key",
        reserved=_RESERVED_METADATA,
        value_limit=METADATA_VALUE_LIMIT,
        convert=to_text,
    )
    metadata.update(custom)
    payload: dict[str, Any] = {
        "trackingId": prepared.visit_key,
        "source": source,
        "preferredContactMethod": "Phone" if c.phone else "Email" if c.email else None,
        "isExistingCustomer": customer_id is not None,
        "customer": {k: v for k, v in person.items() if v is not None},
        "appointment": {
            "preferredDate": local.strftime("%Y-%m-%d"),
            "preferredTime": local.strftime("%H:%M"),
            "timezone": getattr(zone, "key", None) or str(zone),
            "availabilityNotes": notes,
        },
        "metaData": metadata,
    }
    return {k: v for k, v in payload.items() if v is not None}, warnings + custom_warnings
