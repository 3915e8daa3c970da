"""Check-ins -> HubSpot CRM properties (contacts and notes, API v3). Pure functions, no I/O.

The visit becomes a note: ``hs_timestamp`` is ISO-8601 UTC with milliseconds
(HubSpot also takes epoch milliseconds; ISO reads better in logs),
``hs_note_body`` is the visit body as simple HTML (escaped, newlines as
``<br>``) fitted into HubSpot's 65,536-character limit with a visible marker,
and :data:`NOTE_KEY_PROPERTY` carries the sync's marker (a custom note property
the destination creates) so a note is never written twice.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from crm_sync.mapping.common import fit_text, iso_utc, map_custom_fields, to_text
from crm_sync.models import Customer, PreparedCheckIn

__all__ = [
    "NOTE_BODY_LIMIT",
    "NOTE_KEY_PROPERTY",
    "NOTE_TO_CONTACT_ASSOCIATION",
    "PROPERTY_VALUE_LIMIT",
    "VISIT_KEY_PROPERTY",
    "body_html",
    "contact_properties",
    "note_properties",
]

#: Longest ``hs_note_body`` HubSpot stores (characters).
NOTE_BODY_LIMIT = 65_536
#: Longest value of a text property (custom field mapping values are fitted to it).
PROPERTY_VALUE_LIMIT = 65_536
#: The custom note property holding ``PreparedCheckIn.visit_key`` (unique; created by the destination).
NOTE_KEY_PROPERTY = "rankitpro_checkin_key"
VISIT_KEY_PROPERTY = NOTE_KEY_PROPERTY
#: HUBSPOT_DEFINED association type id note -> contact.
NOTE_TO_CONTACT_ASSOCIATION = 202

_RESERVED_NOTE_PROPERTIES = ("hs_note_body", "hs_timestamp", NOTE_KEY_PROPERTY)


def contact_properties(customer: Customer) -> dict[str, str]:
    """Contact properties for a create/upsert; fields the check-in does not have are left out.

    ``phone`` is E.164 (the extension has no standard property and is not sent).
    """
    values = {
        "email": customer.email,
        "firstname": customer.first_name,
        "lastname": customer.last_name,
        "company": customer.company,
        "phone": customer.phone,
        "address": customer.street,
        "city": customer.city,
        "state": customer.state,
        "zip": customer.zip,
        "country": customer.country,
    }
    return {k: v for k, v in values.items() if v not in (None, "")}


def body_html(text: str) -> str:
    """Plain text as simple HTML for ``hs_note_body``: escaped, newlines as ``<br>``."""
    return html.escape(text, quote=False).replace("\n", "<br>")


def note_properties(
    prepared: PreparedCheckIn,
    custom_fields: Mapping[str, str],
    known_note_properties: set[str] | None,
) -> tuple[dict[str, str], list[str]]:
    """Note properties for one check-in, and warnings (truncation, skipped custom fields).

    ``known_note_properties`` are the portal's note property names (from the
    properties API); when None the mapped names are not checked.
    """
    visit = prepared.visit
    if visit is None:
        raise ValueError(f"check-in {prepared.check_in_id} has no visit to map ({prepared.error})")
    warnings: list[str] = []
    body, truncated = fit_text(visit.body, NOTE_BODY_LIMIT, body_html)
    if truncated:
        warnings.append(f"note body is longer than HubSpot's {NOTE_BODY_LIMIT:,} characters: truncated visibly")
    properties = {
        "hs_timestamp": iso_utc(visit.occurred_at),
        "hs_note_body": body,
        NOTE_KEY_PROPERTY: prepared.visit_key,
    }
    custom, custom_warnings = map_custom_fields(
        visit.fields,
        custom_fields,
        known_note_properties,
        target_label="HubSpot note property",
        reserved=_RESERVED_NOTE_PROPERTIES,
        value_limit=PROPERTY_VALUE_LIMIT,
        convert=to_text,
    )
    properties.update(custom)
    return properties, warnings + custom_warnings
