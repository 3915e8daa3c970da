"""Check-ins into Jobber: a client (with the service address as a property) and a job per visit.

Jobber has no batch mutations, but one GraphQL document carries many aliased ones, so
each step below is one request per engine batch (25 rows) unless the query-cost cap
splits it (:meth:`JobberHook.chunks`):

* match: ``clients(searchTerm)`` per match key, verified exactly against the client's
  emails / phones / name (Jobber's search is fuzzy and has no email filter);
* new customers: ``clientCreate`` with emails, phones and the address as a property;
* visits: the clients' properties are read once per client per run (``client(id)``), a
  property is created for an address the client does not have yet (``propertyCreate``),
  then ``jobCreate`` on that property and, unless ``crmSettings.closeJobs`` is false,
  ``jobClose`` (the work is done: past visits completed).

New check-ins of repeat customers (from the customer map) cost 3 to 5 requests per batch
of 25: the clients' properties (also read by a customer update), ``clientEdit`` when a
name, email or phone changed, ``propertyCreate`` for a new address, ``jobCreate``,
``jobClose`` -- 0.12 to 0.2 per check-in (0.26 measured on the sandbox with generated data).

Idempotency. Clients have no external id: a client is created only for match keys the
CRM search confirmed absent moments before (the engine's :meth:`match_customers` call,
repeated here when older than :data:`ABSENT_TTL_SECONDS`), and a create whose outcome is
unknown is found by the same search next run. Each job carries the visit key in its
title; :meth:`find_visits` looks it up with ``jobs(searchTerm)`` and, for keys the search
does not return, scans the jobs created since the check-in (``filter: {createdAt}``),
so an uncertain write is found whatever Jobber's search covers (UNCONFIRMED); a recovered job
still open (a crash between ``jobCreate`` and ``jobClose``) is closed then. A request
that fails after earlier chunks of the same step landed returns the rest ``uncertain``
(kept in_flight, looked up next run), never ``pending``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import phonenumbers

from crm_hooks.errors import CrmError
from crm_hooks.jobber import JobberHook
from crm_hooks.jobber_graphql import MutationOutcome
from crm_sync.destinations.base import (
    CrmCustomerRecord,
    CustomerRef,
    Destination,
    Progress,
    distinct_customers,
    in_chunks,
    isolate_bad_records,
    no_progress,
)
from crm_sync.mapping import jobber as mapping
from crm_sync.match_key import MatchKey
from crm_sync.models import Customer, PreparedCheckIn, RecordResult
from crm_sync.quarantine import QuarantineKind

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A match key the search confirmed absent this long ago still counts as absent for a create.
ABSENT_TTL_SECONDS = 120.0
#: Jobs created this long before the oldest uncertain check-in are scanned too (clock skew).
SCAN_MARGIN = timedelta(days=1)
PROPERTIES_PER_CLIENT = 20
#: ``Job.jobStatus`` of a job ``jobClose`` has closed (``archived``; the sandbox too) [Jobber schema 2022-03-10].
CLOSED_STATUSES = frozenset({"archived"})


class JobberDestination(Destination):
    crm_type = "jobber"
    hook: JobberHook

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: client id -> [(property id, address key)], learned this run
        self._properties: dict[str, list[tuple[str, str | None]]] = {}
        #: match key -> when the CRM search last confirmed no client has it
        self._absent: dict[str, float] = {}
        #: keys the search found a client for: the engine chose not to use that client when it still
        #: creates (a household member kept apart, crm_sync.identity), so they are not searched again
        self._hit: set[str] = set()

    # ------------------------------------------------------------------ settings
    def check_facts(self) -> dict[str, Any]:
        """Check access and the pinned API version (``query { account { id name } }``, which also names the
        account: no second call for :meth:`account_identity`). The facts: the version Jobber answered as,
        and Jobber's own version warning."""
        account = self.hook.account()
        if account.get("id"):
            self.hook.assume_account_identity(str(account["id"]))
        return {
            "reported_api_version": self.hook.reported_api_version,
            "vendor_version_warning": self.hook.vendor_version_warning,
        }

    def use_facts(self, facts: Mapping[str, Any]) -> None:
        """The version warning (pinned version old, or Jobber answered as another one), once per run;
        validate the job settings."""
        if self.hook.reported_api_version is None and facts.get("reported_api_version"):
            self.hook.reported_api_version = str(facts["reported_api_version"])
        if self.hook.vendor_version_warning is None and facts.get("vendor_version_warning"):
            self.hook.vendor_version_warning = str(facts["vendor_version_warning"])
        self.warnings.extend(self.hook.version_warnings())
        self.hook.crm_settings.require("invoicingType", "invoicingSchedule")
        if self.settings.custom_field_mapping:
            self.warnings.append(
                "customFieldMapping: Jobber custom fields are not written by this version; the "
                "mapped values are added to the job instructions as 'name: value' lines"
            )
        if self.settings.sync_check_ins_as_jobs and not self.settings.sync_customers:
            self.warnings.append(
                "syncCustomers is off, but a Jobber job needs a client's property: check-ins "
                "cannot become jobs and are quarantined"
            )

    # ------------------------------------------------------------------ customers
    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        """``clients(searchTerm)`` per key, one document; a hit must carry the key exactly."""
        terms = {key: _search_term(key) for key, _ in wanted}
        found = self.hook.search_clients([t for t in terms.values() if t])
        now = time.monotonic()
        refs: dict[str, CustomerRef] = {}
        for key, _ in wanted:
            hit = next((c for c in found.get(terms[key] or "", []) if key in mapping.client_keys(c)), None)
            if hit is None:
                self._absent[key] = now
                self._hit.discard(key)
            else:
                emails = [e.get("address") for e in hit.get("emails") or [] if isinstance(e, dict)]
                refs[key] = CustomerRef.read(
                    str(hit["id"]),
                    email=next(filter(None, emails), ""),
                    names=(hit.get("firstName"), hit.get("lastName")),
                )
                self._absent.pop(key, None)
                self._hit.add(key)
        return refs

    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        """``clientCreate`` for customers the search did not find (looked up again when that is stale)."""
        results: dict[str, RecordResult] = {}
        customers = distinct_customers(rows)
        now = time.monotonic()
        # A key whose search found a client is not searched again: the engine creates anyway when it kept
        # this person apart from that client (a household sharing a phone, crm_sync.identity).
        recheck = {
            r.customer_key: [
                k
                for k in r.match_keys
                if k not in self._hit and now - self._absent.get(k, float("-inf")) > ABSENT_TTL_SECONDS
            ]
            for r in customers
        }
        stale = [r for r in customers if recheck[r.customer_key]]
        if stale:
            hits = self.match_customers([(k, r.customer) for r in stale for k in recheck[r.customer_key]])
            for row in stale:
                key = next((k for k in recheck[row.customer_key] if k in hits), None)
                if key:
                    results[row.customer_key] = RecordResult(row.customer_key, crm_id=hits[key].crm_id)
        todo = [r for r in customers if r.customer_key not in results]

        def send(chunk: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
            inputs = []
            for row in chunk:
                data, warnings = mapping.client_create_input(row.customer)
                row.warnings.extend(w for w in warnings if w not in row.warnings)
                inputs.append(data)
            out = {}
            for row, outcome in zip(chunk, self.hook.create_clients(inputs), strict=True):
                out[row.customer_key] = self._customer_result(row, outcome)
            return out

        # A client refused for an optional field is created once more without it (a refused clientCreate
        # created nothing); only that client is sent again.
        results.update(
            self._in_chunks(
                todo,
                self.hook.create_clients_cost(),
                lambda chunk: isolate_bad_records(chunk, send, lambda r: r.customer_key, crm_type=self.crm_type),
                lambda r: r.customer_key,
            )
        )
        return results

    def _customer_result(self, row: PreparedCheckIn, outcome: MutationOutcome) -> RecordResult:
        if not outcome.ok:
            return RecordResult(row.customer_key, error=outcome.error, uncertain=outcome.uncertain)
        client = outcome.record
        properties = [
            (str(p["id"]), mapping.address_key(p.get("address")))
            for p in ((client.get("clientProperties") or {}).get("nodes") or [])
        ]
        self._properties[str(client["id"])] = properties
        for key in row.match_keys:
            self._absent.pop(key, None)
        return RecordResult(
            row.customer_key,
            crm_id=str(client["id"]),
            created=True,
            extra={"parent_id": properties[0][0] if properties else None},
        )

    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        """Read the clients (``client(id)``), then ``clientEdit`` only what changed (names, a missing email/phone)."""
        clients = self._load_clients([ref.crm_id for ref, _ in items])
        results: dict[str, RecordResult] = {}
        edits: list[tuple[CustomerRef, dict[str, Any]]] = []
        for ref, row in items:
            client = clients.get(ref.crm_id)
            if client is None:
                results[ref.crm_id] = RecordResult(ref.crm_id, error=f"Jobber client {ref.crm_id} no longer exists")
                continue
            data = mapping.client_edit_input(row.customer, client)
            if data is None:
                results[ref.crm_id] = RecordResult(ref.crm_id, crm_id=ref.crm_id)
            else:
                edits.append((ref, data))

        def send(chunk: Sequence[tuple[CustomerRef, dict[str, Any]]]) -> dict[str, RecordResult]:
            outcomes = self.hook.edit_clients([(ref.crm_id, data) for ref, data in chunk])
            return {
                ref.crm_id: (
                    RecordResult(ref.crm_id, crm_id=ref.crm_id)
                    if o.ok
                    else RecordResult(ref.crm_id, error=o.error, uncertain=o.uncertain)
                )
                for (ref, _), o in zip(chunk, outcomes, strict=True)
            }

        results.update(self._in_chunks(edits, self.hook.CLIENT_EDIT_COST, send, lambda item: item[0].crm_id))
        return results

    def add_emails(self, items: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
        """Clients read (``client(id)``), then ``clientEdit`` with ``emailsToAdd`` for those without any email."""
        clients = self._load_clients([ref.crm_id for ref, _ in items])
        todo = [
            (ref, PreparedCheckIn(0, 0, "", Customer(email=email), None, []))
            for ref, email in items
            if ref.crm_id in clients and not clients[ref.crm_id].get("emails")
        ]
        results = {ref.crm_id: RecordResult(ref.crm_id, crm_id=ref.crm_id) for ref, _ in items if ref.crm_id in clients}
        results.update(self.update_customers(todo) if todo else {})
        return results

    def _load_clients(self, client_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``client(id)`` with properties for each id; remembers the properties for the visits."""
        loaded = self.hook.get_clients(client_ids, properties=PROPERTIES_PER_CLIENT)
        out = {}
        for cid, client in loaded.items():
            if client is None:
                continue
            out[cid] = client
            self._properties[cid] = [
                (str(p["id"]), mapping.address_key(p.get("address")))
                for p in ((client.get("clientProperties") or {}).get("nodes") or [])
            ]
        return out

    # ------------------------------------------------------------------ visits
    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        """Jobs whose title carries a row's visit key: ``jobs(searchTerm)``, then a scan of the jobs
        created since the oldest remaining check-in for keys the search did not return."""
        wanted = {r.visit_key: r for r in rows}
        found: dict[str, str] = {}
        for key, jobs in self.hook.search_jobs(list(wanted)).items():
            hit = next((j for j in jobs if mapping.has_marker(j.get("title"), key)), None)
            if hit is not None:
                found[key] = str(hit["id"])
        missing = [r for r in rows if r.visit_key not in found and r.visit is not None]
        if missing:
            since = min(r.visit.occurred_at for r in missing if r.visit) - SCAN_MARGIN
            remaining = {r.visit_key for r in missing}
            for job in self.hook.jobs_created_after(since):
                for key in mapping.markers_in(job.get("title")) & remaining:
                    found[key] = str(job["id"])
                    remaining.discard(key)
                if not remaining:
                    break
        return found

    def create_visits(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]], progress: Progress = no_progress
    ) -> dict[str, RecordResult]:
        """A job per row on the property matching its address (created when the client lacks it), then closed.

        The new properties and jobs are reported through ``progress`` once per step (before the jobs and
        before the close), so a crash between the steps leaves their ids in the ledger."""
        results: dict[str, RecordResult] = {}
        ready: list[tuple[PreparedCheckIn, CustomerRef]] = []
        for row, ref in items:
            if ref is None:
                results[row.visit_key] = RecordResult(
                    row.visit_key,
                    error="a Jobber job needs a client's property, and this check-in has no client "
                    "(syncCustomers is off or the customer could not be resolved)",
                    kind=QuarantineKind.CONFIG,
                )
            else:
                ready.append((row, ref))
        properties = self._properties_for(ready, results, progress)
        jobs = [(row, properties[row.visit_key]) for row, _ in ready if row.visit_key in properties]

        def send(chunk: Sequence[tuple[PreparedCheckIn, str]]) -> dict[str, RecordResult]:
            inputs = []
            options = self.hook.crm_settings
            for row, property_id in chunk:
                data, warnings = mapping.job_create_input(
                    row,
                    property_id,
                    custom_fields=self.settings.custom_field_mapping,
                    invoicing_type=options.invoicing_type,
                    invoicing_schedule=options.invoicing_schedule,
                )
                row.warnings.extend(w for w in warnings if w not in row.warnings)
                inputs.append(data)
            return {
                row.visit_key: _visit_result(row.visit_key, o, created=True)
                for (row, _), o in zip(chunk, self.hook.create_jobs(inputs), strict=True)
            }

        created = self._in_chunks(jobs, self.hook.JOB_WRITE_COST, send, lambda item: item[0].visit_key)
        for key, res in created.items():
            if res.ok:
                res.extra["parent_id"] = properties.get(key)  # the property the job went to
        results.update(created)
        progress({key: {"visit_id": res.crm_id} for key, res in created.items() if res.ok and res.crm_id})
        if self.hook.crm_settings.close_jobs:
            self._close([res.crm_id for res in created.values() if res.ok and res.crm_id])
        return results

    def _properties_for(
        self,
        ready: Sequence[tuple[PreparedCheckIn, CustomerRef]],
        results: dict[str, RecordResult],
        progress: Progress = no_progress,
    ) -> dict[str, str]:
        """visit_key -> property id: the client's property at the row's address, created when missing."""
        unknown = [ref.crm_id for _, ref in ready if ref.crm_id not in self._properties]
        if unknown:
            loaded = self._load_clients(unknown)
            for cid in unknown:
                if cid not in loaded:
                    self._properties[cid] = []
        chosen: dict[str, str] = {}
        to_create: dict[tuple[str, str], dict[str, str]] = {}
        waiting: dict[tuple[str, str], list[PreparedCheckIn]] = {}
        for row, ref in ready:
            known = self._properties.get(ref.crm_id, [])
            address = mapping.address_attributes(row.customer)
            key = mapping.address_key(address)
            if key is not None:
                match = next((pid for pid, akey in known if akey == key), None)
            else:  # no street: any property of the client will do, the one it was created with first
                ids = [pid for pid, _ in known]
                match = ref.parent_id if ref.parent_id in ids else (ids[0] if ids else None)
            if match is not None:
                chosen[row.visit_key] = match
            elif address is not None:
                create_key = key or "~" + "|".join(f"{k}={v}" for k, v in sorted(address.items())).casefold()
                to_create.setdefault((ref.crm_id, create_key), address)
                waiting.setdefault((ref.crm_id, create_key), []).append(row)
            else:
                results[row.visit_key] = RecordResult(
                    row.visit_key,
                    error=f"a Jobber job needs a service property: the check-in has no address and "
                    f"client {ref.crm_id} has no property in Jobber",
                    kind=QuarantineKind.CRM_STATE,  # cured by a later check-in that adds the address
                )

        def send(chunk: Sequence[tuple[tuple[str, str], dict[str, str]]]) -> dict[str, RecordResult]:
            outcomes = self.hook.create_properties([(cid, address) for (cid, _), address in chunk])
            out = {}
            for ((cid, key), _), outcome in zip(chunk, outcomes, strict=True):
                if outcome.ok:
                    self._properties.setdefault(cid, []).append((str(outcome.record["id"]), key))
                out[f"{cid}|{key}"] = (
                    RecordResult(f"{cid}|{key}", crm_id=str(outcome.record["id"]))
                    if outcome.ok
                    else RecordResult(f"{cid}|{key}", error=outcome.error, uncertain=outcome.uncertain)
                )
            return out

        made = self._in_chunks(
            list(to_create.items()), self.hook.PROPERTY_WRITE_COST, send, lambda item: f"{item[0][0]}|{item[0][1]}"
        )
        new: dict[str, dict[str, str | None]] = {}
        for (cid, key), rows in waiting.items():
            res = made.get(f"{cid}|{key}")
            for row in rows:
                if res is not None and res.ok and res.crm_id:
                    chosen[row.visit_key] = res.crm_id
                    new[row.visit_key] = {"parent_id": res.crm_id}
                else:
                    results[row.visit_key] = RecordResult(
                        row.visit_key,
                        uncertain=bool(res and res.uncertain),
                        error=f"Jobber property for the visit address: {res.error if res else 'not created'}",
                    )
        if new:
            progress(new)  # the property the job goes to (the customer's parent as the ledger records it)
        return chosen

    # ------------------------------------------------------------------ crash recovery
    def carries_marker(self, row: PreparedCheckIn, fields: Mapping[str, Any]) -> bool:
        return mapping.has_marker(fields.get("title"), row.visit_key)

    def complete_visits(self, visit_ids: Mapping[str, str]) -> None:
        """Close recovered jobs still open (an attempt interrupted between ``jobCreate`` and ``jobClose``)."""
        if not self.hook.crm_settings.close_jobs:
            return
        jobs = self.hook.get_jobs(list(visit_ids.values()))
        self._close([jid for jid, job in jobs.items() if job.get("jobStatus") not in CLOSED_STATUSES])

    def _close(self, job_ids: Sequence[str]) -> None:
        """``jobClose`` (past visits completed) for new jobs; a failure leaves the job open, with a log line."""
        for chunk in self.hook.chunks(list(job_ids), self.hook.JOB_WRITE_COST):
            try:
                outcomes = self.hook.close_jobs(chunk)
            except CrmError as exc:
                log.warning("jobber: %d new jobs stay open: %s", len(chunk), exc)
                continue
            failed = [o.error for o in outcomes if not o.ok]
            if failed:
                log.warning("jobber: %d new jobs stay open: %s", len(failed), failed[0])

    # ------------------------------------------------------------------ read-back
    def read_visits(self, crm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Jobs by id, many per GraphQL request (aliased ``job(id:)``): title (with the marker) and instructions."""
        return {
            jid: {"title": job.get("title"), "instructions": job.get("instructions")}
            for jid, job in self.hook.get_jobs(list(crm_ids)).items()
        }

    def iter_customers(self, page_size: int | None = None) -> Iterator[CrmCustomerRecord]:
        """Every client through the ``clients`` connection (``first``/``after``, 100 per page or fewer when
        the query-cost budget demands it); the first email and phone of each."""
        for client in self.hook.iter_all_clients(page_size or 100):
            emails = [e.get("address") for e in client.get("emails") or [] if isinstance(e, dict) and e.get("address")]
            phones = [p.get("number") for p in client.get("phones") or [] if isinstance(p, dict) and p.get("number")]
            name = " ".join(str(client[k]) for k in ("firstName", "lastName") if client.get(k)) or None
            yield CrmCustomerRecord(
                crm_id=str(client["id"]),
                name=name,
                email=emails[0] if emails else None,
                phone=phones[0] if phones else None,
            )

    def find_visit_records(self, visit_keys: Sequence[str]) -> dict[str, list[str]]:
        """Every job whose title carries the marker: aliased ``jobs(searchTerm:)`` (hits verified on the title)."""
        return {
            key: sorted({str(j["id"]) for j in jobs if mapping.has_marker(j.get("title"), key)})
            for key, jobs in self.hook.search_jobs(list(visit_keys)).items()
        }

    def visit_fields(self, row: PreparedCheckIn) -> dict[str, Any]:
        data, _ = mapping.job_edit_input(row, self.settings.custom_field_mapping)
        return {"title": data["title"], "instructions": data["instructions"]}

    def update_visits(
        self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        """``jobEdit`` title and instructions of the jobs of edited check-ins."""

        def send(chunk: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]) -> dict[str, RecordResult]:
            inputs = []
            for row, job_id, _ in chunk:
                data, warnings = mapping.job_edit_input(row, self.settings.custom_field_mapping)
                row.warnings.extend(w for w in warnings if w not in row.warnings)
                inputs.append((job_id, data))
            return {
                row.visit_key: _visit_result(row.visit_key, o)
                for (row, _, _), o in zip(chunk, self.hook.edit_jobs(inputs), strict=True)
            }

        return self._in_chunks(list(items), self.hook.JOB_WRITE_COST, send, lambda item: item[0].visit_key)

    # ------------------------------------------------------------------ helpers
    def _in_chunks(
        self,
        items: Sequence[T],
        unit_cost: int,
        send: Callable[[Sequence[T]], dict[str, RecordResult]],
        key: Callable[[T], str],
    ) -> dict[str, RecordResult]:
        """``send`` each cost-sized chunk, up to :attr:`lanes` at a time (Jobber's cost bucket, shared and
        locked, sets the pace): :func:`~crm_sync.destinations.base.in_chunks`."""
        return in_chunks(list(self.hook.chunks(list(items), unit_cost)), send, key, self.lanes)


def _visit_result(visit_key: str, outcome: MutationOutcome, *, created: bool = False) -> RecordResult:
    if outcome.ok:
        return RecordResult(visit_key, crm_id=str(outcome.record["id"]), created=created)
    return RecordResult(visit_key, error=outcome.error, uncertain=outcome.uncertain)


def _search_term(match_key: str) -> str | None:
    """What to type into Jobber's client search for a match key: the email, the phone's
    national digits (stored formats vary), or the name."""
    kind, value = MatchKey.parse(match_key)
    if kind == "phone":
        try:
            return str(phonenumbers.parse(value, None).national_number)
        except phonenumbers.NumberParseException:
            return value
    return value or None
