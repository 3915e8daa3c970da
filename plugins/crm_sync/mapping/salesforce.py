"""Check-ins -> Salesforce sObject records (Account, Contact, Case). Pure functions, no I/O.

Records carry ``"attributes": {"type": ...}`` as sObject Collections need, and
the sync's external id fields (:data:`CUSTOMER_KEY_FIELD` on Account and
Contact, :data:`CHECKIN_KEY_FIELD` on Case) so collection upserts by external
id are idempotent. Standard text fields are cut to their Salesforce lengths
(an over-long value would make Salesforce refuse the record); ``Description``
is fitted into 32,000 characters with a visible marker. Custom field values
keep JSON types (booleans and numbers native) since Salesforce fields are typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_sync.mapping.common import fit_text, map_custom_fields, to_json_value
from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.text import echo, utf16_len, utf16_prefix

__all__ = [
    "CHECKIN_KEY_FIELD",
    "CUSTOMER_KEY_FIELD",
    "DEFAULT_ACCOUNT_NAME",
    "DESCRIPTION_LIMIT",
    "FIELD_LIMITS",
    "SUBJECT_LIMIT",
    "account_record",
    "case_record",
    "contact_record",
]

#: Long Text Area length of ``Case.Description``.
DESCRIPTION_LIMIT = 32_000
SUBJECT_LIMIT = 255
#: Longest value for a mapped custom field (the maximum Long Text Area length).
CUSTOM_VALUE_LIMIT = 131_072
#: External id fields the sync's setup creates (unique, external id).
CUSTOMER_KEY_FIELD = "RankItPro_Customer_Key__c"  # on Account and Contact
CHECKIN_KEY_FIELD = "RankItPro_CheckIn_Key__c"  # on Case
DEFAULT_ACCOUNT_NAME = "Rank It Pro customer"

#: Standard field lengths (characters).
FIELD_LIMITS: dict[str, int] = {
    "Name": 255,
    "FirstName": 40,
    "LastName": 80,
    "Email": 80,
    "Phone": 40,
    "BillingStreet": 255,
    "BillingCity": 40,
    "BillingState": 80,
    "BillingPostalCode": 20,
    "BillingCountry": 80,
    "MailingStreet": 255,
    "MailingCity": 40,
    "MailingState": 80,
    "MailingPostalCode": 20,
    "MailingCountry": 80,
    "Subject": SUBJECT_LIMIT,
    "Status": 40,
    "Origin": 40,
}
_RESERVED_CASE_FIELDS = (
    "Id",
    "attributes",
    "Subject",
    "Description",
    "Status",
    "Origin",
    "AccountId",
    "ContactId",
    CHECKIN_KEY_FIELD,
)


def _fit(name: str, value: str, warnings: list[str] | None = None) -> str:
    limit = FIELD_LIMITS.get(name)
    if limit is None or utf16_len(value) <= limit:
        return value
    if warnings is not None:
        warnings.append(f"{name} {echo(value)} is longer than Salesforce's {limit} characters: cut")
    return utf16_prefix(value, limit - 1).rstrip() + "…"


def _record(sobject: str, values: Mapping[str, Any], warnings: list[str] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"attributes": {"type": sobject}}
    for name, value in values.items():
        if value is None or value == "":
            continue
        record[name] = _fit(name, value, warnings) if isinstance(value, str) else value
    return record


def _address(prefix: str, customer: Customer) -> dict[str, str | None]:
    return {
        f"{prefix}Street": customer.street,
        f"{prefix}City": customer.city,
        f"{prefix}State": customer.state,
        f"{prefix}PostalCode": customer.zip,
        f"{prefix}Country": customer.country,
    }


def _require_key(customer_key: str | None) -> str:
    if not customer_key:
        raise ValueError("a customer key is required (the row has no match key)")
    return customer_key


def account_record(customer: Customer, customer_key: str) -> dict[str, Any]:
    """Account for the customer: Name = full name, else email, else phone, else "Rank It Pro customer"."""
    name = customer.full_name or customer.email or customer.phone or DEFAULT_ACCOUNT_NAME
    return _record(
        "Account",
        {
            "Name": name,
            "Phone": customer.phone,
            **_address("Billing", customer),
            CUSTOMER_KEY_FIELD: _require_key(customer_key),
        },
    )


def contact_record(customer: Customer, customer_key: str, account_id: str | None) -> tuple[dict[str, Any], list[str]]:
    """Contact for the customer, and warnings. ``LastName`` (required) falls back to the first name,
    then the email's local part, then "Unknown"."""
    warnings: list[str] = []
    first, last = customer.first_name, customer.last_name
    if not last:
        if first:
            first, last = None, first
        elif customer.email:
            last = customer.email.split("@", 1)[0]
            warnings.append(
                f"customer has no name: Salesforce Contact LastName set to the email's local part {echo(last)}"
            )
        else:
            last = "Unknown"
            warnings.append("customer has no name or email: Salesforce Contact LastName set to 'Unknown'")
    email = customer.email
    if email and utf16_len(email) > FIELD_LIMITS["Email"]:
        warnings.append(f"customer_email {echo(email)} is longer than Salesforce's 80 characters: not sent")
        email = None
    record = _record(
        "Contact",
        {
            "FirstName": first,
            "LastName": last,
            "Email": email,
            "Phone": customer.phone,
            **_address("Mailing", customer),
            "AccountId": account_id,
            CUSTOMER_KEY_FIELD: _require_key(customer_key),
        },
        warnings,
    )
    return record, warnings


def case_record(
    prepared: PreparedCheckIn,
    account_id: str | None,
    contact_id: str | None,
    custom_fields: Mapping[str, str],
    known_case_fields: set[str] | None,
    status: str = "Closed",
    origin: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Case for one check-in's visit, and warnings (truncation, skipped custom fields).

    ``known_case_fields`` are the Case field API names (from describe); when None
    the mapped names are not checked. Names compare case-insensitively, as in Salesforce.
    """
    visit = prepared.visit
    if visit is None:
        raise ValueError(f"check-in {prepared.check_in_id} has no visit to map ({prepared.error})")
    warnings: list[str] = []
    description, truncated = fit_text(visit.body, DESCRIPTION_LIMIT)
    if truncated:
        warnings.append(
            f"case description is longer than Salesforce's {DESCRIPTION_LIMIT:,} characters: truncated visibly"
        )
    record = _record(
        "Case",
        {
            "Subject": visit.title,
            "Description": description,
            "Status": status,
            "Origin": origin,
            "AccountId": account_id,
            "ContactId": contact_id,
            CHECKIN_KEY_FIELD: prepared.visit_key,
        },
    )
    custom, custom_warnings = map_custom_fields(
        visit.fields,
        custom_fields,
        known_case_fields,
        target_label="Salesforce Case field",
        reserved=_RESERVED_CASE_FIELDS,
        case_insensitive=True,
        value_limit=CUSTOM_VALUE_LIMIT,
        convert=to_json_value,
    )
    record.update(custom)
    return record, warnings + custom_warnings
