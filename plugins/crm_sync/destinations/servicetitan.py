"""Check-ins into ServiceTitan: a customer (with a location) per customer, a job per visit.

ServiceTitan has no batch endpoints, so writes go one record per call (:func:`per_record`):

* customers: looked up by the sync's externalData marker (``rankitpro_customer_key`` = the customer
  key, many keys per call), then by ``phone`` (one call per phone; ServiceTitan has no email
  filter) or ``name``; created with the visit address as bill-to address and location. The
  customer map stores ``CustomerRef(customer id, location id)``, so a repeat customer costs nothing.
* jobs: one ``POST /jpm/v2/tenant/{t}/jobs`` per check-in, with the job defaults from ``crmSettings``
  (a business unit / job type / campaign without an id there is the tenant's single active one, or the
  one named by ``businessUnitName`` / ``jobTypeName`` / ``campaignName``, chosen at run start) and the
  marker ``rankitpro_checkin_key`` = the visit key; :meth:`find_visits` looks markers up
  (many per call) for every row whose previous attempt may have reached ServiceTitan.

Idempotency: :meth:`create_customers` never creates a customer whose marker it has not looked up in
this run, and the hook resolves a create whose answer was lost (timeout, 5xx) by the marker before
sending it again. Calls for a new check-in of a repeat customer: 1 (the job); of a new customer:
about 3 (phone lookup, customer, job) plus a share of a marker lookup. Per run: a token and three
reads that check the job defaults exist (or list the tenant's choices).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from crm_hooks.errors import BadCredentialsError, ConfigurationError
from crm_hooks.servicetitan import (
    JOB_REFERENCES,
    JobDefaults,
    ServiceTitanHook,
    choose_reference,
    external_values,
)
from crm_sync.destinations.base import (
    CrmCustomerRecord,
    CustomerRef,
    Destination,
    Progress,
    chunked,
    distinct_customers,
    in_lanes,
    no_progress,
    per_record,
)
from crm_sync.mapping import servicetitan as mapping
from crm_sync.match_key import MatchKey, MatchKind
from crm_sync.models import Customer, PreparedCheckIn, RecordResult, SyncSettings
from crm_sync.quarantine import QuarantineKind
from crm_sync.text import echo

MARKERS_PER_LOOKUP = 25


class ServiceTitanDestination(Destination):
    crm_type = "servicetitan"
    hook: ServiceTitanHook
    #: 50 rows per lane (16 lanes: 800 rows a batch). Every lane waits for the slowest at the end of each step
    #: of a batch (about 1 s when its last call drew a 429): at 60 calls / s a batch this size takes about
    #: 30 s, so those waits cost little.
    per_record_batch = 50

    def __init__(self, hook: ServiceTitanHook, settings: SyncSettings):
        super().__init__(hook, settings)
        self.job_defaults: JobDefaults | None = None
        #: marker values looked up in this run (found or not), so a create always follows a lookup
        self._markers_checked: set[str] = set()
        self._marker_hits: dict[str, dict[str, Any]] = {}
        #: customer id -> its name as last read, created or set in this run: the engine asks for an update
        #: whenever any customer field changed (the visit address included) and only the name is sent
        self._names: dict[str, str] = {}
        #: check-in field -> job custom field type id (from customFieldMapping, numeric targets only)
        self.custom_fields: dict[str, str] = {}

    # ------------------------------------------------------------------ run start
    def check_facts(self) -> dict[str, Any]:
        """The job defaults the tenant has (they must exist): each one not set in ``crmSettings`` discovered
        from the tenant's lists (the single active one, or by name), each one set read back. The facts: the
        discovered ids, and the warnings of defaults that could not be verified."""
        self._check_config()
        if not self.settings.sync_check_ins_as_jobs:
            return {}
        job = self.hook.crm_settings.required_job_settings()
        chosen: dict[str, int] = {}
        problems: list[str] = []
        unverified: list[str] = []
        for key, *_ in JOB_REFERENCES:
            if key not in job.ids:  # not set: discovered from the tenant (the single active one, or by name)
                try:
                    items = self.hook.list_references(key)
                    chosen[key] = choose_reference(items, key=key, wanted=job.names.get(key), tenant=self.hook.tenant)
                except ConfigurationError as exc:
                    problems.append(exc.message.removeprefix("servicetitan: "))
                except BadCredentialsError as exc:
                    if exc.status != 403:
                        raise
                    problems.append(
                        f"could not list the tenant's choices for {key} (HTTP 403: the app may lack "
                        f"that API scope): set crmSettings.{key}"
                    )
        if problems:
            raise ConfigurationError(f"servicetitan: job defaults: {' | '.join(problems)}")
        reads = {
            "businessUnitId": (self.hook.get_business_unit, "business unit"),
            "jobTypeId": (self.hook.get_job_type, "job type"),
            "campaignId": (self.hook.get_campaign, "campaign"),
        }
        for key, value in job.ids.items():
            read, what = reads[key]
            try:
                found = read(value)
            except BadCredentialsError as exc:
                if exc.status != 403:
                    raise
                # The app may lack the settings/marketing read scopes: the job create will tell.
                unverified.append(
                    f"crmSettings.{key}: could not verify {what} {value} (HTTP 403: the app may lack that API scope)"
                )
                continue
            if found is None:
                raise ConfigurationError(
                    f"servicetitan: crmSettings.{key} {value} is not a {what} of tenant {self.hook.tenant}"
                )
        return {"chosen": chosen, "unverified": unverified}

    def use_facts(self, facts: Mapping[str, Any]) -> None:
        """Check credentials and settings (no request); the job defaults from the checked facts."""
        self._check_config()
        for field_name, target in self.settings.custom_field_mapping.items():
            if isinstance(target, str) and target.strip().isdigit():
                self.custom_fields[field_name] = target.strip()
            else:
                self.warnings.append(
                    f"customFieldMapping: {echo(target)} (for {field_name}) is not a ServiceTitan "
                    "job custom field type id (a number); the field is not sent"
                )
        if not self.settings.sync_check_ins_as_jobs:
            return
        self.warnings.extend(str(w) for w in facts.get("unverified") or ())
        chosen = {str(k): int(v) for k, v in (facts.get("chosen") or {}).items()}
        self.job_defaults = self.hook.crm_settings.required_job_settings().complete(chosen)

    def _check_config(self) -> None:
        self.hook.check_config()
        self.hook.application_guid  # noqa: B018 - a malformed guid is a configuration error now

    def stale_fact(self, error: str | None) -> bool:
        """ServiceTitan refused a job for one of its defaults (a business unit, job type or campaign made
        inactive or deleted since they were checked)."""
        text = (error or "").casefold()
        return any(k in text for k in ("business unit", "businessunit", "job type", "jobtype", "campaign")) and any(
            s in text for s in ("inactive", "not active", "not found", "does not exist", "invalid")
        )

    # ------------------------------------------------------------------ customers
    def _lookup_markers(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Customers carrying the sync's marker for ``keys`` (sync keys, not yet hashed); remembered."""
        values = [mapping.marker_value(k) for k in keys]
        todo = [v for v in dict.fromkeys(values) if v not in self._markers_checked]
        for chunk in chunked(todo, MARKERS_PER_LOOKUP):
            hits = self.hook.find_customers_by_marker(mapping.CUSTOMER_MARKER_KEY, chunk)
            self._marker_hits.update(hits)
            self._markers_checked.update(chunk)
            self._remember_names(hits.values())
        return {k: self._marker_hits[v] for k, v in zip(keys, values, strict=True) if v in self._marker_hits}

    def _remember_names(self, customers: Any) -> None:
        for customer in customers:
            if customer.get("name"):
                self._names.setdefault(str(customer["id"]), str(customer["name"]))

    def _location_for(self, customer_id: int, customer: Customer) -> str | None:
        """The location a job for this customer goes to: the visit's street if the customer has it, else the
        oldest active location; a customer without any gets one at the visit address."""
        locations = [loc for loc in self.hook.list_locations(customer_id) if loc.get("active", True)]
        street = (customer.street or "").strip().casefold()
        for loc in locations:
            if street and str((loc.get("address") or {}).get("street") or "").strip().casefold() == street:
                return str(loc["id"])
        if locations:
            return str(locations[0]["id"])
        payload = mapping.location_payload(customer_id, customer, self.hook.crm_settings.default_country)
        return str(self.hook.create_location(payload)["id"]) if payload else None

    def match_customers(self, wanted: Sequence[tuple[str, Customer]]) -> dict[str, CustomerRef]:
        """Marker first (customers the sync created), then ``phone`` / ``name`` for the rest."""
        found: dict[str, tuple[int, Customer]] = {}
        by_marker = self._lookup_markers([k for k, _ in wanted if MatchKey.parse(k).kind != MatchKind.PHONE])
        for key, customer in wanted:
            if key in by_marker:
                found[key] = (int(by_marker[key]["id"]), customer)

        def search(item: tuple[str, Customer]) -> list[dict[str, Any]]:
            key, customer = item
            kind, value = MatchKey.parse(key)
            if kind == "phone":
                return self.hook.find_customers_by_phone(mapping.phone_value(value) or value)
            if kind == "name" and customer.full_name:
                return [
                    c
                    for c in self.hook.find_customers_by_name(customer.full_name)
                    if " ".join(str(c.get("name") or "").split()).lower() == value
                ]
            return []

        rest = [(key, customer) for key, customer in wanted if key not in found]
        for (key, customer), hits in zip(rest, in_lanes(search, rest, self.lanes), strict=True):
            if hits:
                found[key] = (int(hits[0]["id"]), customer)
                self._remember_names(hits[:1])
        refs: dict[str, CustomerRef] = {}
        first = {customer_id: customer for customer_id, customer in reversed(found.values())}
        locations = dict(
            zip(first, in_lanes(lambda item: self._location_for(*item), list(first.items()), self.lanes), strict=True)
        )
        for key, (customer_id, _customer) in found.items():
            # The customer's name as read (its emails are contacts, not read here: None = not known).
            refs[key] = CustomerRef(str(customer_id), locations[customer_id], name=self._names.get(str(customer_id)))
        return refs

    def create_customers(self, rows: Sequence[PreparedCheckIn]) -> dict[str, RecordResult]:
        """One customer per customer key, each after its marker was looked up (no second customer)."""
        distinct = distinct_customers(rows)
        existing = self._lookup_markers([r.customer_key for r in distinct])

        def send(row: PreparedCheckIn) -> RecordResult:
            key = row.customer_key
            if key in existing:
                customer_id = int(existing[key]["id"])
                return RecordResult(
                    key, crm_id=str(customer_id), extra={"parent_id": self._location_for(customer_id, row.customer)}
                )
            options = self.hook.crm_settings
            payload, warnings, error = mapping.customer_payload(
                row, self.hook.application_guid, country=options.default_country, customer_type=options.customer_type
            )
            row.warnings.extend(w for w in warnings if w not in row.warnings)
            if payload is None:  # no complete address: a later check-in with one creates the customer
                return RecordResult(key, error=error, kind=QuarantineKind.CRM_STATE)
            marker = mapping.marker_value(key)
            try:
                created = self.hook.create_customer(payload)
            except Exception:
                # The create may have landed after all: look the marker up again before any retry.
                self._markers_checked.discard(marker)
                raise
            self._marker_hits[marker] = created
            customer_id = int(created["id"])
            self._names[str(customer_id)] = payload["name"]
            locations = created.get("locations")
            location = (
                str(locations[0]["id"]) if locations else self._location_for(customer_id, row.customer)
            )  # found by its marker after a lost answer
            return RecordResult(
                key, crm_id=str(customer_id), created=locations is not None, extra={"parent_id": location}
            )

        return per_record(distinct, send, lambda r: r.customer_key, crm_type=self.crm_type, lanes=self.lanes)

    def update_customers(self, items: Sequence[tuple[CustomerRef, PreparedCheckIn]]) -> dict[str, RecordResult]:
        """The customer's name, when the check-in has a full one (nothing else is rewritten)."""

        def send(item: tuple[CustomerRef, PreparedCheckIn]) -> RecordResult:
            ref, row = item
            payload = mapping.customer_update(row.customer)
            if payload and self._names.get(ref.crm_id) != payload["name"]:
                self.hook.update_customer(ref.crm_id, payload)
                self._names[ref.crm_id] = payload["name"]
            return RecordResult(ref.crm_id, crm_id=ref.crm_id)

        return per_record(items, send, lambda item: item[0].crm_id, crm_type=self.crm_type, lanes=self.lanes)

    # ------------------------------------------------------------------ visits
    def find_visits(self, rows: Sequence[PreparedCheckIn]) -> dict[str, str]:
        by_value = {mapping.marker_value(r.visit_key): r.visit_key for r in rows}
        found: dict[str, str] = {}
        for chunk in chunked(list(by_value), MARKERS_PER_LOOKUP):
            for value, job in self.hook.find_jobs_by_marker(mapping.VISIT_MARKER_KEY, chunk).items():
                found[by_value[value]] = str(job["id"])
        return found

    def create_visits(
        self, items: Sequence[tuple[PreparedCheckIn, CustomerRef | None]], progress: Progress = no_progress
    ) -> dict[str, RecordResult]:
        """One job per check-in at the customer's location, marked with the visit key."""

        def send(item: tuple[PreparedCheckIn, CustomerRef | None]) -> RecordResult:
            row, ref = item
            if ref is None:
                return RecordResult(
                    row.visit_key,
                    error="ServiceTitan jobs need a customer and location; syncCustomers is off for this integration",
                    kind=QuarantineKind.CONFIG,
                )
            # A customer known without a location may have gained one since, or get one at this address.
            location = ref.parent_id or self._location_for(int(ref.crm_id), row.customer)
            if not location:
                return RecordResult(
                    row.visit_key,
                    error=f"ServiceTitan customer {ref.crm_id} has no active location "
                    "and the check-in has no complete address to add one",
                    kind=QuarantineKind.CRM_STATE,
                )
            assert self.job_defaults is not None, "prepare() reads the job defaults"
            payload, warnings = mapping.job_payload(
                row,
                int(ref.crm_id),
                int(location),
                self.job_defaults,
                self.hook.application_guid,
                self.custom_fields,
            )
            row.warnings.extend(w for w in warnings if w not in row.warnings)
            job = self.hook.create_job(payload)
            return RecordResult(row.visit_key, crm_id=str(job["id"]), created=True, extra={"parent_id": location})

        return per_record(
            items, send, lambda item: item[0].visit_key, progress, crm_type=self.crm_type, lanes=self.lanes
        )

    def update_visits(
        self, items: Sequence[tuple[PreparedCheckIn, str, CustomerRef | None]]
    ) -> dict[str, RecordResult]:
        """The job's summary and custom fields (an edited check-in); its customer, location and time stay."""

        def send(item: tuple[PreparedCheckIn, str, CustomerRef | None]) -> RecordResult:
            row, job_id, _ = item
            payload, warnings = mapping.job_update(row, self.custom_fields)
            row.warnings.extend(w for w in warnings if w not in row.warnings)
            self.hook.update_job(job_id, payload)
            return RecordResult(row.visit_key, crm_id=str(job_id))

        return per_record(items, send, lambda item: item[0].visit_key, crm_type=self.crm_type, lanes=self.lanes)

    # ------------------------------------------------------------------ read-back
    def read_visits(self, crm_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Jobs by id, 50 per call (``GET /jpm/v2/tenant/{t}/jobs?ids=``); the summary and the sync's marker."""
        found: dict[str, dict[str, Any]] = {}
        for job_id, job in self.hook.get_jobs(i for i in crm_ids if str(i).isdigit()).items():
            markers = external_values(job, mapping.VISIT_MARKER_KEY)
            found[job_id] = {"summary": job.get("summary"), "marker": markers[0] if markers else None}
        return found

    def iter_customers(self, page_size: int | None = None) -> Iterator[CrmCustomerRecord]:
        """Every active customer, with its first email and phone contact and its oldest active location as
        parent (where the sync's jobs go, as :meth:`match_customers` would choose without a street match).

        Three paged lists (``page``/``pageSize``/``hasMore``): contacts, locations, then customers streamed.
        The customer marker is a hash of the sync's key, so no ``sync_key`` can be read back.
        """
        emails: dict[int, str] = {}
        phones: dict[int, str] = {}
        for contact in self.hook.iter_customer_contacts(page_size):
            owner, kind, value = contact.get("customerId"), contact.get("type"), contact.get("value")
            if owner is None or not value:
                continue
            if kind == "Email":
                emails.setdefault(int(owner), str(value))
            elif kind in ("Phone", "MobilePhone"):
                phones.setdefault(int(owner), str(value))
        locations: dict[int, str] = {}
        for location in self.hook.iter_all_locations(page_size):
            if location.get("customerId") is not None and location.get("active", True):
                locations.setdefault(int(location["customerId"]), str(location["id"]))
        for customer in self.hook.iter_all_customers(page_size):
            cid = int(customer["id"])
            yield CrmCustomerRecord(
                crm_id=str(cid),
                parent_id=locations.get(cid),
                name=customer.get("name") or None,
                email=emails.get(cid),
                phone=phones.get(cid),
            )

    def find_visit_records(self, visit_keys: Sequence[str]) -> dict[str, list[str]]:
        """Every job per externalData marker (25 markers per list call)."""
        by_value = {mapping.marker_value(k): k for k in visit_keys}
        found: dict[str, list[str]] = {}
        for chunk in chunked(list(by_value), MARKERS_PER_LOOKUP):
            for value, jobs in self.hook.find_all_jobs_by_marker(mapping.VISIT_MARKER_KEY, chunk).items():
                found[by_value[value]] = sorted({str(j["id"]) for j in jobs})
        return found

    def visit_fields(self, row: PreparedCheckIn) -> dict[str, Any]:
        payload, _ = mapping.job_update(row, {})
        return {"summary": payload["summary"], "marker": mapping.marker_value(row.visit_key)}
