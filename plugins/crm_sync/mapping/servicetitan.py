"""Check-ins -> ServiceTitan v2 request bodies (customer, location, job). Pure functions, no I/O.

Shapes (ServiceTitan's OpenAPI exports ``tenant-{crm,jpm}-v2.yml``,
https://github.com/compwright/servicetitan/tree/d86908e/spec, and the newer generated types):

* ``CreateCustomerRequest``: ``name``, bill-to ``address`` and at least one location are required; an
  address needs ``street, city, state, zip, country`` (``CustomerAddress``). The visit address is both
  the bill-to address and the service location. Contacts are ``{type: Email|Phone|MobilePhone|Fax,
  value, memo}``.
* ``JobCreateRequest``: ``customerId, locationId, businessUnitId, jobTypeId, priority, campaignId`` and
  ``appointments[{start, end}]`` (UTC) are required; ``summary`` is HTML; ``customFields`` are
  ``{typeId, value}``.
* Both carry ``externalData {applicationGuid, externalData: [{key, value}]}``: the sync's marker
  (:data:`CUSTOMER_MARKER_KEY` = the customer key, :data:`VISIT_MARKER_KEY` = the visit key), looked up
  before anything is created again.

Text limits are not documented by ServiceTitan (**UNCONFIRMED**, all in :data:`LIMITS`): values are cut
visibly to them rather than risking a refused record.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from crm_hooks.servicetitan import JobDefaults
from crm_sync.mapping.common import (
    fit_text,
    iso_utc,
    map_custom_fields,
    national_digits,
    to_text,
)
from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.text import echo, utf16_len, utf16_prefix

__all__ = [
    "CUSTOMER_MARKER_KEY",
    "DEFAULT_CUSTOMER_NAME",
    "LIMITS",
    "VISIT_MARKER_KEY",
    "address",
    "customer_name",
    "customer_payload",
    "customer_update",
    "external_data",
    "job_payload",
    "job_update",
    "location_payload",
    "marker_value",
    "phone_value",
    "summary_html",
]

#: externalData keys of the sync's markers (scoped by the integration's applicationGuid).
CUSTOMER_MARKER_KEY = "rankitpro_customer_key"
VISIT_MARKER_KEY = "rankitpro_checkin_key"
DEFAULT_CUSTOMER_NAME = "Rank It Pro customer"

#: UNCONFIRMED text limits (characters, UTF-16 units): ServiceTitan documents none.
LIMITS: dict[str, int] = {
    "name": 255,
    "street": 255,
    "unit": 50,
    "city": 100,
    "state": 50,
    "zip": 20,
    "country": 50,
    "contact": 255,
    "memo": 255,
    "summary": 10_000,
    "custom_value": 4_000,
    "marker": 100,
}
_ADDRESS_PARTS = ("street", "city", "state", "zip")


phone_value = national_digits


def _fit(name: str, value: str | None, warnings: list[str]) -> str | None:
    if value is None:
        return None
    limit = LIMITS[name]
    if utf16_len(value) <= limit:
        return value
    warnings.append(f"{name} {echo(value)} is longer than {limit} characters: cut for ServiceTitan")
    return utf16_prefix(value, limit - 1).rstrip() + "…"


def marker_value(key: str) -> str:
    """The externalData value for a sync key: the key itself, or ``sha256:<40 hex>`` when it is longer than
    :data:`LIMITS` ``marker`` or holds a comma (list filters split values on commas)."""
    if utf16_len(key) <= LIMITS["marker"] and "," not in key:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def external_data(guid: str, key: str, value: str) -> dict[str, Any]:
    """``ExternalDataUpdateRequest`` with one item (the sync's marker)."""
    return {"applicationGuid": guid, "externalData": [{"key": key, "value": marker_value(value)}]}


def customer_name(customer: Customer) -> str:
    """Full name, else the email, else the phone, else :data:`DEFAULT_CUSTOMER_NAME`."""
    return customer.full_name or customer.email or phone_value(customer.phone) or DEFAULT_CUSTOMER_NAME


def address(customer: Customer, country: str, warnings: list[str]) -> tuple[dict[str, str] | None, list[str]]:
    """``CustomerAddress`` from the visit address, or ``(None, missing parts)`` when incomplete."""
    missing = [part for part in _ADDRESS_PARTS if not getattr(customer, part)]
    if missing:
        return None, missing
    values = {part: _fit(part, getattr(customer, part), warnings) for part in _ADDRESS_PARTS}
    values["country"] = _fit("country", customer.country or country, warnings)
    return {k: v for k, v in values.items() if v is not None}, []


def _contacts(customer: Customer, warnings: list[str]) -> list[dict[str, str]]:
    contacts = []
    if customer.email:
        if utf16_len(customer.email) <= LIMITS["contact"]:
            contacts.append({"type": "Email", "value": customer.email})
        else:
            warnings.append(f"customer_email {echo(customer.email)} is too long for ServiceTitan: not sent")
    phone = phone_value(customer.phone)
    if phone:
        contact = {"type": "Phone", "value": phone}
        if customer.phone_extension:
            contact["memo"] = _fit("memo", f"ext. {customer.phone_extension}", warnings) or ""
        contacts.append(contact)
    return contacts


def customer_payload(
    prepared: PreparedCheckIn, guid: str, *, country: str = "USA", customer_type: str = "Residential"
) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """``CreateCustomerRequest`` for a check-in's customer: ``(payload, warnings, error)``.

    The visit address is the bill-to address and the one location. Without a complete address
    (street, city, state, zip) ServiceTitan cannot take the customer: ``error`` says which parts
    are missing and the payload is ``None``.
    """
    customer = prepared.customer
    if not prepared.customer_key:
        raise ValueError("a customer key is required (the row has no match key)")
    warnings: list[str] = []
    addr, missing = address(customer, country, warnings)
    if addr is None:
        return (
            None,
            warnings,
            (
                "ServiceTitan needs a street, city, state and zip to create a customer "
                f"(bill-to address and service location); the check-in has no {', '.join(missing)}"
            ),
        )
    name = _fit("name", customer_name(customer), warnings) or DEFAULT_CUSTOMER_NAME
    location_name = _fit("name", customer.full_name or addr["street"], warnings) or name
    payload: dict[str, Any] = {
        "name": name,
        "type": customer_type,
        "address": addr,
        "locations": [{"name": location_name, "address": dict(addr)}],
        "contacts": _contacts(customer, warnings),
        "externalData": external_data(guid, CUSTOMER_MARKER_KEY, prepared.customer_key),
    }
    return payload, warnings, None


def location_payload(customer_id: int, customer: Customer, country: str = "USA") -> dict[str, Any] | None:
    """``CreateLocationRequest`` at the visit address for an existing customer (``None`` if incomplete)."""
    warnings: list[str] = []
    addr, _ = address(customer, country, warnings)
    if addr is None:
        return None
    name = _fit("name", customer.full_name or addr["street"], warnings) or DEFAULT_CUSTOMER_NAME
    return {"name": name, "address": addr, "customerId": int(customer_id)}


def customer_update(customer: Customer) -> dict[str, Any]:
    """``UpdateCustomerRequest`` for an existing customer: the name, when the check-in has a full one.

    Contacts live behind their own endpoints and the bill-to address is the customer's, not the
    visit's: neither is rewritten from a check-in.
    """
    if not (customer.first_name and customer.last_name):
        return {}
    return {"name": _fit("name", customer.full_name, []) or DEFAULT_CUSTOMER_NAME}


def summary_html(text: str) -> tuple[str, bool]:
    """The visit body as the job's HTML ``summary``: escaped, newlines as ``<br>``, fitted to the limit."""
    return fit_text(text, LIMITS["summary"], lambda s: html.escape(s, quote=False).replace("\n", "<br>"))


def _custom_fields(
    prepared: PreparedCheckIn, custom_fields: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """``customFieldMapping`` onto job custom fields, addressed by their numeric type id."""
    assert prepared.visit is not None
    numeric = {k: v for k, v in custom_fields.items() if isinstance(v, str) and v.strip().isdigit()}
    values, warnings = map_custom_fields(
        prepared.visit.fields,
        numeric,
        None,
        target_label="ServiceTitan job custom field type",
        value_limit=LIMITS["custom_value"],
        convert=to_text,
    )
    return [{"typeId": int(type_id), "value": value} for type_id, value in values.items()], warnings


def job_payload(
    prepared: PreparedCheckIn,
    customer_id: int,
    location_id: int,
    defaults: JobDefaults,
    guid: str,
    custom_fields: Mapping[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """``JobCreateRequest`` for one check-in, and warnings (truncation, skipped custom fields).

    The appointment starts at the visit time and lasts ``defaults.appointment_minutes``.
    """
    visit = prepared.visit
    if visit is None:
        raise ValueError(f"check-in {prepared.check_in_id} has no visit to map ({prepared.error})")
    summary, truncated = summary_html(visit.body)
    warnings = [f"job summary is longer than {LIMITS['summary']:,} characters: truncated visibly"] if truncated else []
    appointment: dict[str, Any] = {
        "start": iso_utc(visit.occurred_at),
        "end": iso_utc(visit.occurred_at + timedelta(minutes=defaults.appointment_minutes)),
    }
    if defaults.technician_ids:
        appointment["technicianIds"] = list(defaults.technician_ids)
    fields, field_warnings = _custom_fields(prepared, custom_fields)
    payload: dict[str, Any] = {
        "customerId": int(customer_id),
        "locationId": int(location_id),
        "businessUnitId": defaults.business_unit_id,
        "jobTypeId": defaults.job_type_id,
        "priority": defaults.priority,
        "campaignId": defaults.campaign_id,
        "appointments": [appointment],
        "summary": summary,
        "externalData": external_data(guid, VISIT_MARKER_KEY, prepared.visit_key),
    }
    if fields:
        payload["customFields"] = fields
    return payload, warnings + field_warnings


def job_update(prepared: PreparedCheckIn, custom_fields: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """``UpdateJobRequest`` for an edited check-in: summary and custom fields (the marker is kept as is)."""
    if prepared.visit is None:
        raise ValueError(f"check-in {prepared.check_in_id} has no visit to map ({prepared.error})")
    summary, truncated = summary_html(prepared.visit.body)
    warnings = [f"job summary is longer than {LIMITS['summary']:,} characters: truncated visibly"] if truncated else []
    fields, field_warnings = _custom_fields(prepared, custom_fields)
    payload: dict[str, Any] = {"summary": summary}
    if fields:
        payload["customFields"] = fields
    return payload, warnings + field_warnings
