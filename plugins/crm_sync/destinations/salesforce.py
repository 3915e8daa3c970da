"""Check-ins into Salesforce: Account + Contact for the customer, a Case for each visit.

Calls per batch of up to 200 check-ins (the sObject Collections limit): one SOQL
query per match key kind, one Account and one Contact collection upsert for new
customers, one Case collection upsert. Every write is an upsert by an External
ID field the org must have (see the README's Salesforce setup), so a retry
never creates a second record: ``RankItPro_Customer_Key__c`` on Account and
Contact, ``RankItPro_CheckIn_Key__c`` on Case. :meth:`prepare` checks they exist
and fails the integration with the list of missing fields otherwise.

The org's daily API allocation is shared with every other integration: the hook
reads ``Sforce-Limit-Info`` and this destination stops the run cleanly once the
configured share (``crmSettings.dailyBudgetShare``, default 0.9) is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import phonenumbers

from crm_hooks.errors import ConfigurationError, QuotaExhaustedError
from crm_hooks.salesforce import SalesforceHook, soql_in
from crm_sync.destinations.base import (
    CustomerRef,
    Destination,
    chunked,
    distinct_customers,
)
from crm_sync.mapping import salesforce as mapping
from crm_sync.models import Customer, PreparedCheckIn, RecordResult

CUSTOMER_KEY_FIELD = mapping.CUSTOMER_KEY_FIELD
CHECKIN_KEY_FIELD = mapping.CHECKIN_KEY_FIELD
REQUIRED_FIELDS = {"Account": CUSTOMER_KEY_FIELD, "Contact": CUSTOMER_KEY_FIELD, "Case": CHECKIN_KEY_FIELD}
#: Values per SOQL IN list, keeping the GET URL well under Salesforce's 16,384-character limit
#: (phones go out in ~10 typed variants each).
VALUES_PER_QUERY = {"email": 100, "phone": 40, "name": 100, "key": 200}


class SalesforceDestination(Destination):
    crm_type = "salesforce"
    hook: SalesforceHook

    def prepare(self) -> None:
        missing = []
        self.case_fields: set[str] = set()
        for sobject, field in REQUIRED_FIELDS.items():
            fields = {f["name"]: f for f in self.hook.describe(sobject).get("fields", [])}
            if sobject == "Case":
                self.case_fields = set(fields)
            if not fields.get(field, {}).get("externalId"):
                missing.append(f"{sobject}.{field}")
        if missing:
            raise ConfigurationError(
                "salesforce: the org lacks the External ID fields the sync needs to stay exactly-once: "
                f"{', '.join(missing)} (Text(255), External ID, Unique); see the README's Salesforce setup")
        for field, target in self.settings.custom_field_mapping.items():
            if target not in self.case_fields:
                self.warnings.append(f"customFieldMapping: Case field '{target}' (for {field}) does not exist in "
                                     "this org; the field is not sent")

    def _guard(self) -> None:
        if self.hook.budget_exhausted():
            raise QuotaExhaustedError("salesforce: the sync's share of the org's daily API requests is used up; "
                                      "remaining rows wait for the next run")

    # ------------------------------------------------------------------ customers
    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        found: dict[str, CustomerRef] = {}
        by_kind: dict[str, list[str]] = {"email": [], "phone": [], "name": []}
        for key, _ in wanted:
            kind, value = key.split(":", 1)
            by_kind.setdefault(kind, []).append(value)
        select = f"SELECT Id, AccountId, Email, Phone, FirstName, LastName, {CUSTOMER_KEY_FIELD} FROM Contact WHERE "
        for kind, values in by_kind.items():
            for chunk in chunked(values, VALUES_PER_QUERY.get(kind, 100)):
                if kind == "email":
                    where = soql_in("Email", chunk)
                elif kind == "phone":
                    where = soql_in("Phone", [v for p in chunk for v in phone_variants(p)])
                elif kind == "name":
                    where = soql_in("Name", chunk)
                else:
                    continue
                where = f"{where} OR {soql_in(CUSTOMER_KEY_FIELD, [f'{kind}:{v}' for v in chunk])}"
                self._guard()
                for rec in self.hook.query(select + where):
                    ref = CustomerRef(rec["Id"], rec.get("AccountId"))
                    for key in _contact_keys(rec):
                        found.setdefault(key, ref)
        return found

    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        results: dict[str, RecordResult] = {}
        for chunk in chunked(distinct_customers(rows), self.batch_size):
            self._guard()
            accounts = self.hook.upsert_records(
                "Account", CUSTOMER_KEY_FIELD, [mapping.account_record(r.customer, r.customer_key) for r in chunk])
            contacts_for: list[tuple[PreparedCheckIn, str]] = []
            for row, res in zip(chunk, accounts, strict=True):
                if res.get("success"):
                    contacts_for.append((row, res["id"]))
                else:
                    results[row.customer_key] = RecordResult(row.customer_key, error=_errors_text("Account", res))
            if not contacts_for:
                continue
            records = []
            for row, account_id in contacts_for:
                record, warnings = mapping.contact_record(row.customer, row.customer_key, account_id)
                row.warnings.extend(warnings)
                records.append(record)
            self._guard()
            contacts = self.hook.upsert_records("Contact", CUSTOMER_KEY_FIELD, records)
            for (row, account_id), res in zip(contacts_for, contacts, strict=True):
                if res.get("success"):
                    results[row.customer_key] = RecordResult(row.customer_key, crm_id=res["id"],
                                                             created=bool(res.get("created")),
                                                             extra={"parent_id": account_id})
                else:
                    results[row.customer_key] = RecordResult(row.customer_key, error=_errors_text("Contact", res))
        return results

    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        results: dict[str, RecordResult] = {}
        for chunk in chunked(items, self.batch_size):
            records = []
            for ref, row in chunk:
                record, _ = mapping.contact_record(row.customer, row.customer_key, ref.parent_id)
                # Keep the Contact's identity and parent as they are in the CRM.
                update = {k: v for k, v in record.items() if k not in (CUSTOMER_KEY_FIELD, "AccountId")}
                records.append({**update, "Id": ref.crm_id})
            self._guard()
            for (ref, _), res in zip(chunk, self.hook.update_records(records), strict=True):
                results[ref.crm_id] = (RecordResult(ref.crm_id, crm_id=ref.crm_id) if res.get("success")
                                       else RecordResult(ref.crm_id, error=_errors_text("Contact", res)))
        return results

    # ------------------------------------------------------------------ visits
    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        found: dict[str, str] = {}
        keys = [r.visit_key for r in rows]
        for chunk in chunked(keys, VALUES_PER_QUERY["key"]):
            self._guard()
            soql = f"SELECT Id, {CHECKIN_KEY_FIELD} FROM Case WHERE {soql_in(CHECKIN_KEY_FIELD, chunk)}"
            for rec in self.hook.query(soql):
                found[rec[CHECKIN_KEY_FIELD]] = rec["Id"]
        return found

    def create_visits(self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]]) -> dict[str, RecordResult]:
        """Upsert by the check-in key: creating twice is impossible by construction."""
        results: dict[str, RecordResult] = {}
        for chunk in chunked(items, self.batch_size):
            records = []
            for row, ref in chunk:
                record, warnings = mapping.case_record(
                    row, ref.parent_id if ref else None, ref.crm_id if ref else None,
                    self.settings.custom_field_mapping, self.case_fields,
                    status=self.crm_settings.get("caseStatus", "Closed"), origin=self.crm_settings.get("caseOrigin"))
                row.warnings.extend(w for w in warnings if w not in row.warnings)
                records.append(record)
            self._guard()
            for (row, _), res in zip(chunk, self.hook.upsert_records("Case", CHECKIN_KEY_FIELD, records), strict=True):
                results[row.visit_key] = (
                    RecordResult(row.visit_key, crm_id=res["id"], created=bool(res.get("created")))
                    if res.get("success") else RecordResult(row.visit_key, error=_errors_text("Case", res)))
        return results

    def update_visits(self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]) -> dict[str, RecordResult]:
        return self.create_visits([(row, ref) for row, _, ref in items])


def phone_variants(e164: str) -> list[str]:
    """The ways a phone is commonly typed into Salesforce (it stores phones as entered)."""
    variants = [e164]
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return variants
    national = str(number.national_number)
    variants.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    variants.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
    if number.country_code == 1 and len(national) == 10:
        a, b, c = national[:3], national[3:6], national[6:]
        variants += [national, f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}", f"1{national}", f"+1 {a}-{b}-{c}"]
    return list(dict.fromkeys(variants))


def _contact_keys(rec: dict[str, Any]) -> list[str]:
    keys = []
    if rec.get("Email"):
        keys.append(f"email:{rec['Email'].strip().lower()}")
    if rec.get("Phone"):
        try:
            number = phonenumbers.parse(rec["Phone"], "US")
            keys.append("phone:" + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        except phonenumbers.NumberParseException:
            pass
    name = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p).lower()
    if name:
        keys.append(f"name:{' '.join(name.split())}")
    if rec.get(CUSTOMER_KEY_FIELD):
        keys.append(rec[CUSTOMER_KEY_FIELD])
    return keys


def _errors_text(sobject: str, result: dict[str, Any]) -> str:
    errors = result.get("errors") or []
    parts = [f"{e.get('statusCode') or e.get('errorCode')}: {e.get('message')}" for e in errors[:3]]
    return f"Salesforce {sobject} refused: " + ("; ".join(parts) if parts else "no reason given")[:400]
