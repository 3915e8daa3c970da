"""Check-ins into Salesforce: Account + Contact for the customer, a Case for each visit.

Calls per batch of up to 200 check-ins (the sObject Collections limit): one SOQL
query per match key kind, one Account and one Contact collection upsert for new
customers, one Case collection upsert. Every write is an upsert by an External
ID field the org must have (see the README's Salesforce setup), so a retry
never creates a second record: ``RankItPro_Customer_Key__c`` on Account and
Contact, ``RankItPro_CheckIn_Key__c`` on Case. :meth:`prepare` checks they exist
and fails the integration with the list of missing fields otherwise.

From ``crmSettings.bulkThreshold`` (default :data:`crm_hooks.salesforce.DEFAULT_BULK_THRESHOLD`)
records in one batch on (crm_backfill's Salesforce batches are 5,000), new Accounts, their
Contacts and the Cases each go in one Bulk API 2.0 upsert job keyed by the same External IDs
instead: about 7 calls per job instead of one per 200 records.

The org's daily API allocation is shared with every other integration: the hook
reads ``Sforce-Limit-Info`` and this destination stops the run cleanly once the
configured share (``crmSettings.dailyBudgetShare``, default 0.9) is used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import phonenumbers

from crm_hooks.errors import ConfigurationError, QuotaExhaustedError
from crm_hooks.salesforce import SalesforceHook
from crm_hooks.soql import soql_in
from crm_sync.contacts import to_e164
from crm_sync.destinations.base import (
    CrmCustomerRecord,
    CustomerRef,
    Destination,
    Progress,
    chunked,
    distinct_customers,
    in_chunks,
    in_lanes,
    no_progress,
)
from crm_sync.mapping import salesforce as mapping
from crm_sync.match_key import MatchKey
from crm_sync.models import Customer, PreparedCheckIn, RecordResult
from crm_sync.quarantine import named_fields

CUSTOMER_KEY_FIELD = mapping.CUSTOMER_KEY_FIELD
CHECKIN_KEY_FIELD = mapping.CHECKIN_KEY_FIELD
REQUIRED_FIELDS = {"Account": CUSTOMER_KEY_FIELD, "Contact": CUSTOMER_KEY_FIELD, "Case": CHECKIN_KEY_FIELD}
#: Values per SOQL IN list, keeping the GET URL well under Salesforce's 16,384-character limit
#: (phones go out in ~10 typed variants each).
VALUES_PER_QUERY = {"email": 100, "phone": 40, "name": 100, "key": 200}


class SalesforceDestination(Destination):
    crm_type = "salesforce"
    batch_calls_in_lanes = True
    overlap_visit_writes = 2  # a Case is upserted alone: nothing a customer look-up reads
    marker_field = CHECKIN_KEY_FIELD
    hook: SalesforceHook
    one_lookup_for_all_keys = True

    def check_facts(self) -> dict[str, Any]:
        """``GET /sobjects/{Account,Contact,Case}/describe``: the External ID fields must exist (else a
        :class:`ConfigurationError`, never kept); the facts: which ``customFieldMapping`` Case fields exist."""
        missing = []
        case_fields: set[str] = set()
        for sobject, field in REQUIRED_FIELDS.items():
            fields = {f["name"]: f for f in self.hook.describe(sobject).get("fields", [])}
            if sobject == "Case":
                case_fields = set(fields)
            if not fields.get(field, {}).get("externalId"):
                missing.append(f"{sobject}.{field}")
        if missing:
            raise ConfigurationError(
                "salesforce: the org lacks the External ID fields the sync needs to stay exactly-once: "
                f"{', '.join(missing)} (Text(255), External ID, Unique); see the README's Salesforce setup"
            )
        # Only what customFieldMapping names is kept (it is part of the facts' fingerprint); names compare
        # case-insensitively, as in Salesforce.
        wanted = {str(t).casefold() for t in self.settings.custom_field_mapping.values()}
        return {"case_fields": sorted(f for f in case_fields if f.casefold() in wanted)}

    def use_facts(self, facts: Mapping[str, Any]) -> None:
        """The Case fields ``customFieldMapping`` may write; a warning for each one the org lacks."""
        self.case_fields = set(facts.get("case_fields") or ())
        for field, target in self.settings.custom_field_mapping.items():
            if target not in self.case_fields:
                self.warnings.append(
                    f"customFieldMapping: Case field '{target}' (for {field}) does not exist in "
                    "this org; the field is not sent"
                )

    def stale_fact(self, error: str | None) -> bool:
        """Salesforce answered that one of the sync's External ID fields is not there (deleted since checked)."""
        text = error or ""
        return any(f in text for f in (CUSTOMER_KEY_FIELD, CHECKIN_KEY_FIELD)) and any(
            s in text for s in ("INVALID_FIELD", "No such column", "does not exist", "NOT_FOUND", "not found")
        )

    def _query_each(self, queries: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Each SOQL query's records (every page), up to :attr:`lanes` queries at a time, each within the
        daily budget (:meth:`_guard`)."""

        def query(soql: str) -> list[dict[str, Any]]:
            self._guard()
            return list(self.hook.query(soql))

        return in_lanes(query, queries, self.lanes)

    def _guard(self) -> None:
        if self.hook.budget_exhausted():
            raise QuotaExhaustedError(
                "salesforce: the sync's share of the org's daily API requests is used up; "
                "remaining rows wait for the next run"
            )

    # ------------------------------------------------------------------ customers
    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        """``GET query`` on Contact by email, phone (typed variants) or name, and by the sync's customer key.
        Kinds that fit one query together go in one (``OR``): a few check-ins cost one lookup, whatever keys
        their people have (:attr:`one_lookup_for_all_keys`)."""
        found: dict[str, CustomerRef] = {}
        by_kind: dict[str, list[str]] = {"email": [], "phone": [], "name": []}
        for key, _ in wanted:
            kind, value = MatchKey.parse(key)
            by_kind.setdefault(kind, []).append(value)
        select = f"SELECT Id, AccountId, Email, Phone, FirstName, LastName, {CUSTOMER_KEY_FIELD} FROM Contact WHERE "
        clauses: list[tuple[float, str]] = []  # (share of one query's URL budget, condition)
        for kind, values in by_kind.items():
            limit = VALUES_PER_QUERY.get(kind, 100)
            for chunk in chunked(values, limit):
                if kind == "email":
                    where = soql_in("Email", chunk)
                elif kind == "phone":
                    where = soql_in("Phone", [v for p in chunk for v in phone_variants(p)])
                elif kind == "name":
                    where = soql_in("Name", chunk)
                else:
                    continue
                where = f"{where} OR {soql_in(CUSTOMER_KEY_FIELD, [f'{kind}:{v}' for v in chunk])}"
                clauses.append((len(chunk) / limit, where))
        # Each kind's VALUES_PER_QUERY keeps one query's URL under Salesforce's limit: clauses whose shares
        # add up to at most one query go together.
        queries: list[list[str]] = []
        used = 1.0
        for share, where in clauses:
            if used + share > 1.0:
                queries.append([])
                used = 0.0
            queries[-1].append(where)
            used += share

        soql = [select + " OR ".join(f"({c})" for c in conditions) for conditions in queries]
        for records in self._query_each(soql):
            for rec in records:
                ref = CustomerRef.read(
                    rec["Id"],
                    rec.get("AccountId"),
                    email=rec.get("Email"),
                    names=(rec.get("FirstName"), rec.get("LastName")),
                )
                for key in _contact_keys(rec):
                    found.setdefault(key, ref)
        return found

    def _create_customers_bulk(self, customers: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        """Accounts, then their Contacts, each with one Bulk API 2.0 upsert job keyed by
        ``RankItPro_Customer_Key__c`` (idempotent like the Collections upserts). A refused row is that
        customer's error; a row a job never processed is uncertain (retried next run, by the same key)."""
        results: dict[str, RecordResult] = {}
        self._guard()
        accounts = self.hook.bulk_upsert(
            "Account", CUSTOMER_KEY_FIELD, [mapping.account_record(r.customer, r.customer_key) for r in customers]
        )
        account_ids = {rec.get(CUSTOMER_KEY_FIELD): rec.get("sf__Id") for rec in accounts.successful}
        for rec in accounts.failed:
            key = rec.get(CUSTOMER_KEY_FIELD, "")
            results[key] = RecordResult(key, error=f"Salesforce Account refused: {rec.get('sf__Error')}"[:400])
        contacts = []
        for row in customers:
            if account_ids.get(row.customer_key):
                record, warnings = mapping.contact_record(row.customer, row.customer_key, account_ids[row.customer_key])
                row.warnings.extend(warnings)
                contacts.append(record)
        if contacts:
            self._guard()
            outcome = self.hook.bulk_upsert("Contact", CUSTOMER_KEY_FIELD, contacts)
            for rec in outcome.successful:
                key = rec.get(CUSTOMER_KEY_FIELD, "")
                results[key] = RecordResult(
                    key,
                    crm_id=rec.get("sf__Id") or None,
                    created=rec.get("sf__Created") == "true",
                    extra={"parent_id": account_ids.get(key)},
                )
            for rec in outcome.failed:
                key = rec.get(CUSTOMER_KEY_FIELD, "")
                results[key] = RecordResult(key, error=f"Salesforce Contact refused: {rec.get('sf__Error')}"[:400])
        for row in customers:
            results.setdefault(
                row.customer_key,
                RecordResult(row.customer_key, uncertain=True, error="not processed by the Bulk API job"),
            )
        return results

    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        customers = distinct_customers(rows)
        if len(customers) >= self.hook.crm_settings.bulk_threshold:
            return self._create_customers_bulk(customers)

        def send(chunk: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
            # Upserts by the customer key: a record sent once more (without a refused optional field, see
            # isolate_bad_records) updates what its first send created, never a second Account or Contact.
            out: dict[str, RecordResult] = {}
            self._guard()
            accounts = self.hook.upsert_records(
                "Account", CUSTOMER_KEY_FIELD, [mapping.account_record(r.customer, r.customer_key) for r in chunk]
            )
            contacts_for: list[tuple[PreparedCheckIn, str]] = []
            for row, res in zip(chunk, accounts, strict=True):
                if res.get("success"):
                    contacts_for.append((row, res["id"]))
                else:
                    out[row.customer_key] = RecordResult(row.customer_key, error=_errors_text("Account", res))
            if not contacts_for:
                return out
            records = []
            for row, account_id in contacts_for:
                record, warnings = mapping.contact_record(row.customer, row.customer_key, account_id)
                row.warnings.extend(w for w in warnings if w not in row.warnings)
                records.append(record)
            self._guard()
            contacts = self.hook.upsert_records("Contact", CUSTOMER_KEY_FIELD, records)
            for (row, account_id), res in zip(contacts_for, contacts, strict=True):
                if res.get("success"):
                    out[row.customer_key] = RecordResult(
                        row.customer_key,
                        crm_id=res["id"],
                        created=bool(res.get("created")),
                        extra={"parent_id": account_id},
                    )
                else:
                    out[row.customer_key] = RecordResult(row.customer_key, error=_errors_text("Contact", res))
            return out

        return self.batch_writes(customers, send, lambda r: r.customer_key)

    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        def send(chunk: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
            records = []
            for ref, row in chunk:
                record, _ = mapping.contact_record(row.customer, row.customer_key, ref.parent_id)
                # Keep the Contact's identity and parent as they are in the CRM.
                update = {k: v for k, v in record.items() if k not in (CUSTOMER_KEY_FIELD, "AccountId")}
                records.append({**update, "Id": ref.crm_id})
            self._guard()
            return {
                ref.crm_id: RecordResult(ref.crm_id, crm_id=ref.crm_id)
                if res.get("success")
                else RecordResult(ref.crm_id, error=_errors_text("Contact", res))
                for (ref, _), res in zip(chunk, self.hook.update_records(records), strict=True)
            }

        return in_chunks(list(chunked(items, self.hook.batch_size)), send, lambda item: item[0].crm_id, self.lanes)

    def add_emails(self, items: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
        """``SELECT Id, Email FROM Contact WHERE Id IN (...)``, then an sObject Collections update of ``Email``
        alone for Contacts without one (``RankItPro_Customer_Key__c`` and ``AccountId`` are not sent)."""

        def read_then_update(chunk: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
            results: dict[str, RecordResult] = {}
            self._guard()
            held = {
                str(rec["Id"])[:15]: rec.get("Email")
                for rec in self.hook.query(
                    f"SELECT Id, Email FROM Contact WHERE {soql_in('Id', [r.crm_id for r, _ in chunk])}"
                )
            }
            todo = []
            for ref, email in chunk:
                if ref.crm_id[:15] not in held:
                    results[ref.crm_id] = RecordResult(ref.crm_id, error=f"Salesforce Contact {ref.crm_id} not found")
                elif held[ref.crm_id[:15]]:
                    results[ref.crm_id] = RecordResult(ref.crm_id, crm_id=ref.crm_id)  # has one: left alone
                else:
                    todo.append((ref, email))
            for part in chunked(todo, self.hook.batch_size):
                self._guard()
                updated = self.hook.update_records(
                    [{"attributes": {"type": "Contact"}, "Id": ref.crm_id, "Email": email} for ref, email in part]
                )
                for (ref, _), res in zip(part, updated, strict=True):
                    results[ref.crm_id] = (
                        RecordResult(ref.crm_id, crm_id=ref.crm_id)
                        if res.get("success")
                        else RecordResult(ref.crm_id, error=_errors_text("Contact", res))
                    )
            return results

        chunks = list(chunked(items, VALUES_PER_QUERY["key"]))
        return in_chunks(chunks, read_then_update, lambda item: item[0].crm_id, self.lanes)

    # ------------------------------------------------------------------ visits
    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        keys = [r.visit_key for r in rows]
        cases = self._query_each(
            [
                f"SELECT Id, {CHECKIN_KEY_FIELD} FROM Case WHERE {soql_in(CHECKIN_KEY_FIELD, chunk)}"
                for chunk in chunked(keys, VALUES_PER_QUERY["key"])
            ]
        )
        return {rec[CHECKIN_KEY_FIELD]: rec["Id"] for records in cases for rec in records}

    #: crm_backfill's default batch for Salesforce: big enough for the bulk path.
    backfill_batch_size = 5000

    def _case_record(self, row: PreparedCheckIn, ref: CustomerRef | None) -> dict[str, Any]:
        record, warnings = mapping.case_record(
            row,
            ref.parent_id if ref else None,
            ref.crm_id if ref else None,
            self.settings.custom_field_mapping,
            self.case_fields,
            status=self.hook.crm_settings.case_status,
            origin=self.hook.crm_settings.case_origin,
        )
        row.warnings.extend(w for w in warnings if w not in row.warnings)
        return record

    def _create_visits_bulk(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        """One Bulk API 2.0 upsert job keyed by ``RankItPro_CheckIn_Key__c`` (idempotent like the
        Collections upsert). Each failed row is that row's error (quarantined); a row the job never
        reached (failed, aborted or still running job) is uncertain: the next run looks it up first."""
        records = [self._case_record(row, ref) for row, ref in items]
        self._guard()
        outcome = self.hook.bulk_upsert("Case", CHECKIN_KEY_FIELD, records)
        results: dict[str, RecordResult] = {}
        for rec in outcome.successful:
            key = rec.get(CHECKIN_KEY_FIELD, "")
            results[key] = RecordResult(key, crm_id=rec.get("sf__Id") or None, created=rec.get("sf__Created") == "true")
        for rec in outcome.failed:
            key = rec.get(CHECKIN_KEY_FIELD, "")
            results[key] = RecordResult(
                key, error=f"Salesforce Case refused: {rec.get('sf__Error') or 'no reason'}"[:400]
            )
        state = outcome.job.get("state")
        for row, _ in items:
            if row.visit_key not in results:
                why = outcome.job.get("errorMessage") or f"job {outcome.job.get('id')} ended {state}"
                results[row.visit_key] = RecordResult(
                    row.visit_key, uncertain=True, error=f"not processed by the Bulk API job ({why})"[:400]
                )
        return results

    def create_visits(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]], progress: Progress = no_progress
    ) -> dict[str, RecordResult]:
        """Upsert by the check-in key: creating twice is impossible by construction."""
        if len(items) >= self.hook.crm_settings.bulk_threshold:
            return self._create_visits_bulk(items)

        def send(chunk: Sequence[tuple[PreparedCheckIn, CustomerRef | None]]) -> dict[str, RecordResult]:
            records = [self._case_record(row, ref) for row, ref in chunk]
            self._guard()
            return {
                row.visit_key: RecordResult(row.visit_key, crm_id=res["id"], created=bool(res.get("created")))
                if res.get("success")
                else RecordResult(row.visit_key, error=_errors_text("Case", res))
                for (row, _), res in zip(
                    chunk, self.hook.upsert_records("Case", CHECKIN_KEY_FIELD, records), strict=True
                )
            }

        return in_chunks(list(chunked(items, self.hook.batch_size)), send, lambda item: item[0].visit_key, self.lanes)

    def update_visits(
        self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        return self.create_visits([(row, ref) for row, _, ref in items])

    # ------------------------------------------------------------------ read-back
    unique_visit_marker = True  # Case.RankItPro_CheckIn_Key__c is a unique External ID

    #: The Case fields the sync owns and the reconciliation compares (Status is the org's to change).
    READ_BACK_FIELDS = ("Subject", "Description", CHECKIN_KEY_FIELD)

    def read_visits(self, crm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Cases by id with SOQL ``SELECT Id, Subject, ... FROM Case WHERE Id IN (...)`` (200 ids per query,
        about 4,500 characters of URL), following ``nextRecordsUrl``. A deleted Case is simply not returned.
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm ;
        SOQL ``IN``: https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/
        sforce_api_calls_soql_select_comparisonoperators.htm
        """
        # Ids may be 15 (case-sensitive) or 18 characters; the first 15 identify the record.
        wanted = {str(i)[:15]: str(i) for i in crm_ids}
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunked(list(wanted.values()), VALUES_PER_QUERY["key"]):
            self._guard()
            soql = f"SELECT Id, {', '.join(self.READ_BACK_FIELDS)} FROM Case WHERE {soql_in('Id', chunk)}"
            for rec in self.hook.query(soql):
                asked = wanted.get(str(rec.get("Id") or "")[:15])
                if asked:
                    found[asked] = {k: rec.get(k) for k in self.READ_BACK_FIELDS}
        return found

    def iter_customers(self, page_size: int | None = None) -> Iterator[CrmCustomerRecord]:
        """Every Contact, its Account as parent: SOQL ``SELECT Id, AccountId, FirstName, LastName, Email, Phone
        [, RankItPro_Customer_Key__c] FROM Contact ORDER BY CreatedDate, Id`` following ``nextRecordsUrl``
        (Salesforce sizes the pages, 2,000 records by default; ``page_size`` does not apply). The marker field
        is selected only when the org has it (one describe call), since an unknown field fails the query.
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm ;
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm
        """
        fields = {f.get("name") for f in self.hook.describe("Contact").get("fields", [])}
        select = ["Id", "AccountId", "FirstName", "LastName", "Email", "Phone"]
        if CUSTOMER_KEY_FIELD in fields:
            select.append(CUSTOMER_KEY_FIELD)
        self._guard()
        for rec in self.hook.query(f"SELECT {', '.join(select)} FROM Contact ORDER BY CreatedDate, Id"):
            name = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
            yield CrmCustomerRecord(
                crm_id=rec["Id"],
                parent_id=rec.get("AccountId") or None,
                name=name,
                email=rec.get("Email") or None,
                phone=rec.get("Phone") or None,
                sync_key=rec.get(CUSTOMER_KEY_FIELD) or None,
            )

    def visit_fields(self, row: PreparedCheckIn) -> dict[str, Any]:
        record, _ = mapping.case_record(row, None, None, {}, None)
        return {k: record.get(k) for k in self.READ_BACK_FIELDS}


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
        keys.append(str(MatchKey.email(rec["Email"].strip().lower())))
    if phone := to_e164(rec.get("Phone")):
        keys.append(str(MatchKey.phone(phone)))
    name = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p)
    if name:
        keys.append(str(MatchKey.name(name)))
    if rec.get(CUSTOMER_KEY_FIELD):
        keys.append(rec[CUSTOMER_KEY_FIELD])
    return keys


def _errors_text(sobject: str, result: dict[str, Any]) -> str:
    errors = result.get("errors") or []
    parts = [
        f"{e.get('statusCode') or e.get('errorCode')}{named_fields(e.get('fields') or [])}: {e.get('message')}"
        for e in errors[:3]
    ]
    return f"Salesforce {sobject} refused: " + ("; ".join(parts) if parts else "no reason given")[:400]
