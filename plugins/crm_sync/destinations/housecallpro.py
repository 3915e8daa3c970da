"""Check-ins into Housecall Pro: a customer (with a service address) and a job for each visit.

Housecall Pro has no batch endpoint, no external-id field and no idempotency key, so every
write is one call (:func:`~crm_sync.destinations.base.per_record`) and the sync keeps its own
markers:

* **Jobs** carry the visit key in their note's first line
  (``[Rank It Pro sync key: rankitpro-<company>-<check-in>]``) and the tag
  ``crmSettings.tag`` (default "Rank It Pro"). Recovery (:meth:`find_recorded_visits`, only
  for rows whose previous attempt may have reached Housecall Pro: a crash, a transient failure)
  reads a job id the ledger recorded (``GET /jobs/{id}``, adding the marker note if the attempt
  died before it), else lists the jobs of the customer the ledger recorded, then of the customer
  this run resolved (``GET /jobs?customer_id=``, newest first, one page per customer), then the
  newest jobs of every customer (``GET /jobs`` sorted by ``created_at``), each paged back to the
  oldest check-in minus :data:`CLOCK_SLACK`: a job attached to another customer by an
  interrupted attempt (two records with one phone) is found whatever the re-run resolves.
  :meth:`create_visits` reports each job id before its note is added (``progress``).
* **Customers** are identified by what ``GET /customers?q=`` searches (email, phone, name),
  i.e. the sync's match keys, and tagged ``crmSettings.tag``. The engine looks every
  unknown key up right before :meth:`create_customers`, so a customer an interrupted run
  created is found, not created again.
* **A create whose outcome is unknown** (timeout, dropped connection, 5xx) is never re-sent
  blindly: the record is looked up by its marker first (the hook raises
  :class:`~crm_hooks.housecallpro.HousecallProUnconfirmedWrite` instead of retrying it).

A job needs ``customer_id`` and ``address_id``. The address is the customer's address with
the check-in's street, added to the customer when missing (``POST
/customers/{id}/addresses``), and kept as the customer ref's ``parent_id``: a returning
customer served from the customer map, with nothing changed, costs a single call
(``POST /jobs``). When the engine reports a changed customer (any field, the street
included), :meth:`update_customers` reads the customer once per run and writes only what
differs, and the job goes to the check-in's own address. Job status is read-only in the
public API: jobs cannot be marked completed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_hooks.errors import BadCredentialsError, BadRecordError
from crm_hooks.housecallpro import (
    MAX_PAGE_SIZE,
    HousecallProHook,
    HousecallProUnconfirmedWrite,
)
from crm_sync.destinations.base import (
    CrmCustomerRecord,
    CustomerRef,
    Destination,
    Progress,
    RecoveredVisit,
    distinct_customers,
    no_progress,
    per_record,
    read_each,
)
from crm_sync.mapping import housecallpro as mapping
from crm_sync.models import Customer, PreparedCheckIn, RecordResult
from crm_sync.quarantine import QuarantineKind
from crm_sync.text import echo

#: A job for a check-in cannot be older than the check-in; this much clock skew is tolerated.
CLOCK_SLACK = timedelta(days=1)
#: Sends of one create whose outcome stayed unknown, each after a look-up that found nothing.
CREATE_ATTEMPTS = 3
#: After a timeout or a dropped connection the request may still be running in Housecall Pro:
#: wait this long before looking for its record, so the look-up does not race the create.
UNCONFIRMED_GRACE_SECONDS = 5.0


class HousecallProDestination(Destination):
    crm_type = "housecallpro"
    hook: HousecallProHook

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.job_types: dict[str, str] = {}
        #: this run's knowledge: match key -> ref, customer id -> Customer record
        self._refs: dict[str, CustomerRef] = {}
        self._records: dict[str, dict[str, Any]] = {}

    def check_facts(self) -> dict[str, Any]:
        """The company's job types (``GET /job_fields/job_types``), to set ``job_fields.job_type_id``:
        lower-cased name -> id (None: not readable with this API key)."""
        if not self.settings.sync_check_ins_as_jobs:
            return {}
        try:
            types = self.hook.list_job_types()
        except BadCredentialsError as exc:
            if exc.status != 403:
                raise
            return {"job_types": None}
        return {
            "job_types": {
                str(t.get("name") or "").strip().casefold(): str(t["id"])
                for t in types
                if t.get("id") and t.get("name")
            }
        }

    def use_facts(self, facts: Mapping[str, Any]) -> None:
        """The job types from the checked facts; warn about what Housecall Pro cannot take."""
        if self.settings.custom_field_mapping:
            fields = ", ".join(sorted(self.settings.custom_field_mapping))
            self.warnings.append(
                f"customFieldMapping: Housecall Pro jobs have no custom fields in the public API; "
                f"{fields} not sent (the visit note has the check-in's content)"
            )
        if not self.settings.sync_customers and self.settings.sync_check_ins_as_jobs:
            self.warnings.append(
                "syncCustomers is off, but every Housecall Pro job needs a customer and an "
                "address: check-ins are quarantined instead of synced"
            )
        if not self.settings.sync_check_ins_as_jobs:
            return
        types = facts.get("job_types")
        if types is None:
            self.warnings.append(
                "Housecall Pro job types are not readable with this API key (company API keys "
                "only): jobs are created without a job type"
            )
        self.job_types = {str(k): str(v) for k, v in (types or {}).items()}

    # ------------------------------------------------------------------ customers
    def _remember(self, record: dict[str, Any], customer: Customer, keys: Sequence[str]) -> CustomerRef:
        crm_id = str(record["id"])
        self._records[crm_id] = record
        ref = CustomerRef.read(
            crm_id,
            mapping.pick_address(record.get("addresses") or [], customer),
            email=record.get("email"),
            names=(record.get("first_name"), record.get("last_name")),
        )
        for key in keys:
            self._refs[key] = ref
        return ref

    def _search(self, key: str, customer: Customer) -> dict[str, Any] | None:
        for record in self.hook.search_customers(mapping.search_text(key, customer)):
            if record.get("id") and mapping.customer_matches(key, record):
                return record
        return None

    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        """One ``q`` search per distinct key not seen in this run; hits are checked exactly."""
        found: dict[str, CustomerRef] = {}
        for key, customer in dict(wanted).items():
            if key in self._refs:
                found[key] = self._refs[key]
                continue
            record = self._search(key, customer)
            if record is not None:
                found[key] = self._remember(record, customer, [key])
        return found

    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        return per_record(
            distinct_customers(rows),
            self._create_customer,
            lambda r: r.customer_key,
            crm_type=self.crm_type,
            lanes=self.lanes,
        )

    def _create_customer(self, row: PreparedCheckIn) -> RecordResult:
        options = self.hook.crm_settings
        payload, warnings = mapping.customer_payload(
            row.customer,
            tags=[options.tag],
            notifications_enabled=options.notify_customers,
            country=options.default_country,
        )
        _warn(row, warnings)

        def lookup() -> dict[str, Any] | None:
            return next(filter(None, (self._search(k, row.customer) for k in row.match_keys)), None)

        record = _create_once(lambda: self.hook.create_customer(payload), lookup)
        ref = self._remember(record, row.customer, row.match_keys)
        return RecordResult(row.customer_key, crm_id=ref.crm_id, created=True, extra={"parent_id": ref.parent_id})

    def _record(self, customer_id: str) -> dict[str, Any]:
        """The customer as this run last saw it, read once (``GET /customers/{id}``) otherwise."""
        record = self._records.get(customer_id)
        if record is None:
            record = self._records[customer_id] = self.hook.get_customer(customer_id)
        return record

    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        """Read the customer, ``PUT`` only the fields that differ. The engine asks when any customer
        field of the check-in changed, the street included: the read also lets :meth:`create_visits`
        put the job at the check-in's address instead of the remembered one."""

        def send(item: tuple[CustomerRef, PreparedCheckIn]) -> RecordResult:
            ref, row = item
            changes = mapping.customer_changes(self._record(ref.crm_id), row.customer)
            if changes:
                updated = self.hook.update_customer(ref.crm_id, changes)
                self._records[ref.crm_id] = updated if updated.get("id") else {**self._records[ref.crm_id], **changes}
            return RecordResult(ref.crm_id, crm_id=ref.crm_id)

        return per_record(items, send, lambda item: item[0].crm_id, crm_type=self.crm_type, lanes=self.lanes)

    def add_emails(self, items: Sequence[tuple[CustomerRef, str]]) -> dict[str, RecordResult]:
        """The customer as read (``GET /customers/{id}`` unless this run has it), then ``PUT /customers/{id}``
        with ``email`` alone when it has none (``CustomerUpdate`` takes an email [HCP-spec])."""

        def send(item: tuple[CustomerRef, str]) -> RecordResult:
            ref, email = item
            if not self._record(ref.crm_id).get("email"):
                updated = self.hook.update_customer(ref.crm_id, {"email": email})
                self._records[ref.crm_id] = (
                    updated if updated.get("id") else {**self._records[ref.crm_id], "email": email}
                )
            return RecordResult(ref.crm_id, crm_id=ref.crm_id)

        return per_record(items, send, lambda item: item[0].crm_id, lanes=self.lanes)

    # ------------------------------------------------------------------ visits
    def _customer_id(self, row: PreparedCheckIn) -> str | None:
        """The row's customer: known to this run, else searched by its match keys in order."""
        for key in row.match_keys:
            if key in self._refs:
                return self._refs[key].crm_id
        for key in row.match_keys:
            record = self._search(key, row.customer)
            if record is not None:
                return self._remember(record, row.customer, row.match_keys).crm_id
        return None

    def _marked_jobs(self, customer_id: str | None, wanted: set[str], not_before: datetime | None) -> dict[str, dict]:
        """visit key -> job among the customer's jobs (every customer's: None), newest first, for the
        ``wanted`` keys; paged back to ``not_before`` minus :data:`CLOCK_SLACK`."""
        found: dict[str, dict[str, Any]] = {}
        for job in self.hook.list_jobs(customer_id):
            for note in job.get("notes") or []:
                for key in mapping.markers_in(note.get("content") if isinstance(note, dict) else None) & wanted:
                    found.setdefault(key, job)
            if wanted <= found.keys():
                break
            created = _timestamp(job.get("created_at"))
            if created is not None and not_before is not None and created < not_before - CLOCK_SLACK:
                break
        return found

    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        return {key: visit.crm_id for key, visit in self.find_recorded_visits(rows, {}, {}).items()}

    def find_recorded_visits(
        self,
        rows: Sequence[PreparedCheckIn],
        intents: Mapping[str, Mapping[str, str]],
        refs: Mapping[str, CustomerRef],
    ) -> dict[str, RecoveredVisit]:
        """Jobs carrying the rows' markers. Housecall Pro has no marker search, so the jobs of the customer
        the ledger recorded for the row are read first, then those of the customer this run resolved (or
        searched by the row's match keys), then the most recently created jobs of every customer, paged
        back to the oldest check-in minus :data:`CLOCK_SLACK`: a job an interrupted attempt attached to
        another customer (two records with one phone) is found whatever customer a re-run resolves."""
        found: dict[str, RecoveredVisit] = {}
        choices: list[Callable[[PreparedCheckIn], str | None]] = [
            lambda r: intents.get(r.visit_key, {}).get("customer_id"),
            lambda r: ref.crm_id if (ref := refs.get(r.customer_key)) else self._customer_id(r),
        ]
        for choose in choices:
            by_customer: dict[str, list[PreparedCheckIn]] = {}
            for row in rows:
                if row.visit_key not in found and (customer_id := choose(row)) is not None:
                    by_customer.setdefault(customer_id, []).append(row)
            for customer_id, group in by_customer.items():
                found.update(self._jobs_found(customer_id, group))
        rest = [r for r in rows if r.visit_key not in found]
        if rest:
            found.update(self._jobs_found(None, rest))
        return found

    def _jobs_found(self, customer_id: str | None, rows: Sequence[PreparedCheckIn]) -> dict[str, RecoveredVisit]:
        oldest = min((r.visit.occurred_at for r in rows if r.visit), default=None)
        jobs = self._marked_jobs(customer_id, {r.visit_key for r in rows}, oldest)
        return {key: RecoveredVisit(str(job["id"]), _owner(job) or customer_id) for key, job in jobs.items()}

    def confirm_visits(self, items: Sequence[tuple[PreparedCheckIn, str]]) -> dict[str, RecoveredVisit]:
        """Jobs the ledger recorded (``GET /jobs/{id}``): an existing job gets its marker note if the
        interrupted attempt had not added it yet (:meth:`_ensure_note`), and stays with its customer."""
        found: dict[str, RecoveredVisit] = {}
        for row, job_id in items:
            try:
                job = self.hook.get_job(job_id)
            except BadRecordError as exc:
                if exc.status in (404, 410):
                    continue  # gone: the marker search and, failing that, a new job
                raise
            if not job.get("id"):
                continue
            note, warnings = mapping.job_note(row)
            _warn(row, warnings)
            self._ensure_note(job, row.visit_key, note)
            found[row.visit_key] = RecoveredVisit(str(job["id"]), _owner(job))
        return found

    def _address_id(self, customer_id: str, row: PreparedCheckIn) -> str | None:
        """The customer's address for this check-in, added to the customer when missing."""
        record = self._record(customer_id)
        addresses = list(record.get("addresses") or [])
        address_id = mapping.pick_address(addresses, row.customer)
        if address_id:
            return address_id
        payload = mapping.address_payload(row.customer, self.hook.crm_settings.default_country)
        if payload is None:
            fallback = mapping.pick_address(addresses, Customer())
            if fallback:
                row.warnings.append(
                    "the check-in's address is incomplete (street, city, state and zip): the job is "
                    "placed at the customer's existing Housecall Pro address"
                )
            return fallback

        def lookup() -> dict[str, Any] | None:
            fresh = self._records[customer_id] = self.hook.get_customer(customer_id)
            match = mapping.pick_address(fresh.get("addresses") or [], row.customer)
            return {"id": match} if match else None

        address = _create_once(lambda: self.hook.create_address(customer_id, payload), lookup)
        known = self._records[customer_id].setdefault("addresses", [])
        if not any(a.get("id") == address["id"] for a in known if isinstance(a, dict)):
            known.append({**payload, **address})  # so the next check-in at this street finds it
        return str(address["id"])

    def _job_type_id(self, row: PreparedCheckIn) -> str | None:
        return self.job_types.get(row.visit.job_type.strip().casefold()) if row.visit else None

    def _create_job(self, item: tuple[PreparedCheckIn, CustomerRef | None], progress: Progress) -> RecordResult:
        row, ref = item
        key = row.visit_key
        if ref is None:
            return RecordResult(
                key,
                error="Housecall Pro jobs need a customer and an address; syncCustomers is off, "
                "so the check-in cannot become a job",
                kind=QuarantineKind.CONFIG,
            )
        # The remembered address, unless this run has the customer at hand (then the check-in's own).
        known = ref.crm_id in self._records or not ref.parent_id
        address_id = self._address_id(ref.crm_id, row) if known else ref.parent_id
        if not address_id:
            return RecordResult(
                key,
                error="Housecall Pro jobs need a service address: the customer has none in "
                "Housecall Pro and the check-in's address is incomplete "
                f"(street {echo(row.customer.street or '')}, city, state and zip needed)",
                kind=QuarantineKind.CRM_STATE,  # cured by a later check-in that adds the address
            )
        options = self.hook.crm_settings
        payload, warnings = mapping.job_payload(
            row,
            ref.crm_id,
            address_id,
            tags=[options.tag],
            job_type_id=self._job_type_id(row),
            schedule_minutes=options.schedule_minutes,
        )
        _warn(row, warnings)
        not_before = row.visit.occurred_at if row.visit else None
        job = _create_once(
            lambda: self.hook.create_job(payload), lambda: self._marked_jobs(ref.crm_id, {key}, not_before).get(key)
        )
        # Committed before the note: a crash now leaves the job's id where the next run looks first.
        progress({key: {"visit_id": str(job["id"]), "parent_id": address_id}})
        self._ensure_note(job, key, payload["notes"])
        return RecordResult(key, crm_id=str(job["id"]), created=True, extra={"parent_id": address_id})

    def _ensure_note(self, job: dict[str, Any], key: str, note: str) -> None:
        """Make sure the job shows the marker note.

        ``JobCreate.notes`` is expected to become the job's note (UNCONFIRMED): when the answer
        lists notes without the marker, the note is added with ``POST /jobs/{id}/notes``; when
        the answer has no notes at all, the job is read back first.
        """
        job_id = str(job["id"])

        def marked() -> dict[str, Any] | None:
            notes = self.hook.get_job(job_id).get("notes") or []
            return next((n for n in notes if isinstance(n, dict) and key in mapping.markers_in(n.get("content"))), None)

        notes = job.get("notes")
        if isinstance(notes, list):
            if any(key in mapping.markers_in(n.get("content")) for n in notes if isinstance(n, dict)):
                return
        elif marked() is not None:
            return
        _create_once(lambda: self.hook.add_job_note(job_id, note), marked)

    def create_visits(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]], progress: Progress = no_progress
    ) -> dict[str, RecordResult]:
        return per_record(
            items,
            lambda item: self._create_job(item, progress),
            lambda item: item[0].visit_key,
            crm_type=self.crm_type,
            lanes=self.lanes,
        )

    def _update_job(self, item: tuple[PreparedCheckIn, str, CustomerRef | None]) -> RecordResult:
        """Replace the job's marker note: add the new one, then delete the old ones (a crash in
        between leaves two notes on the same job, cleaned up by the next update)."""
        row, job_id, ref = item
        key = row.visit_key
        job = self.hook.get_job(job_id)
        note, warnings = mapping.job_note(row)
        _warn(row, warnings)
        owner = str((job.get("customer") or {}).get("id") or "")
        if ref is not None and owner and owner != ref.crm_id:
            row.warnings.append(
                f"the check-in's customer changed, but Housecall Pro cannot move job {job_id} to "
                "another customer: the job stays where it is"
            )
        ours = [
            n for n in job.get("notes") or [] if isinstance(n, dict) and key in mapping.markers_in(n.get("content"))
        ]
        current = next((n for n in ours if n.get("content") == note), None)
        if current is None:

            def lookup() -> dict[str, Any] | None:
                fresh = self.hook.get_job(job_id).get("notes") or []
                return next((n for n in fresh if isinstance(n, dict) and n.get("content") == note), None)

            current = _create_once(lambda: self.hook.add_job_note(job_id, note), lookup)
        for old in ours:
            if old.get("id") and old.get("id") != current.get("id"):
                self.hook.delete_job_note(job_id, str(old["id"]))
        return RecordResult(key, crm_id=job_id)

    def update_visits(
        self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        return per_record(
            items, self._update_job, lambda item: item[0].visit_key, crm_type=self.crm_type, lanes=self.lanes
        )

    # ------------------------------------------------------------------ read-back
    def read_visits(self, crm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Jobs one call each (Housecall Pro has no batch read): ``GET /jobs/{id}``, 404 = gone
        [HCP-spec ``get-jobs-id``, see :mod:`crm_hooks.housecallpro`]. The fields are the
        sync's marker note (its content) and the marker it carries."""
        found: dict[str, dict[str, Any]] = {}
        for job_id, job in read_each(crm_ids, self.hook.get_job).items():
            notes = [n for n in job.get("notes") or [] if isinstance(n, dict) and mapping.markers_in(n.get("content"))]
            note = notes[-1] if notes else {}
            markers = sorted(mapping.markers_in(note.get("content")))
            found[job_id] = {"note": note.get("content"), "marker": markers[0] if markers else None}
        return found

    def iter_customers(self, page_size: int | None = None) -> Iterator[CrmCustomerRecord]:
        """Every customer, oldest first (``GET /customers`` by ``page``/``page_size``/``total_pages``, 100 per
        page); the first of mobile / home / work number is the phone, the customer's first service address
        the parent (where a job goes when the check-in names no street)."""
        for record in self.hook.iter_customers(page_size=page_size or MAX_PAGE_SIZE):
            if not record.get("id"):
                continue
            name = " ".join(str(record[k]) for k in ("first_name", "last_name") if record.get(k)) or None
            phone = next(
                (str(record[k]) for k in ("mobile_number", "home_number", "work_number") if record.get(k)), None
            )
            yield CrmCustomerRecord(
                crm_id=str(record["id"]),
                name=name,
                email=record.get("email") or None,
                phone=phone,
                parent_id=mapping.pick_address(record.get("addresses") or [], Customer()),
            )

    def visit_fields(self, row: PreparedCheckIn) -> dict[str, Any]:
        note, _ = mapping.job_note(row)
        return {"note": note, "marker": row.visit_key}


def _create_once(send: Callable[[], dict[str, Any]], lookup: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """``send()``; when its outcome is unknown, ``lookup()`` the record before sending again.

    Without any answer (timeout, dropped connection) the look-up waits
    :data:`UNCONFIRMED_GRACE_SECONDS` first. A create still running after that can be
    missed: Housecall Pro offers no idempotency key to close that gap.

    :raises HousecallProUnconfirmedWrite: still unknown after :data:`CREATE_ATTEMPTS` sends
        (the caller's row stays uncertain and is looked up next run).
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            record = send()
        except HousecallProUnconfirmedWrite as exc:
            if exc.status is None:  # no answer at all (timeout, connection): let the request finish first
                time.sleep(UNCONFIRMED_GRACE_SECONDS)
            found = lookup()
            if found is not None:
                return found
            if attempt == CREATE_ATTEMPTS:
                raise
            continue
        if not record.get("id"):
            raise BadRecordError("housecallpro: the create answer has no id")
        return record
    raise AssertionError("unreachable")  # pragma: no cover


def _owner(job: Mapping[str, Any]) -> str | None:
    """The id of the customer a job belongs to (``Job.customer.id``)."""
    customer = job.get("customer")
    return str(customer["id"]) if isinstance(customer, Mapping) and customer.get("id") else None


def _warn(row: PreparedCheckIn, warnings: Sequence[str]) -> None:
    row.warnings.extend(w for w in warnings if w not in row.warnings)


def _timestamp(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
