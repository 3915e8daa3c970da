"""The value types that flow between extraction, mapping, the destinations and the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MATCH_STRATEGIES = ("email", "phone", "name", "all")
#: ``syncSettings.householdPhoneRule``: when are check-ins with different emails on one phone one person
#: (:mod:`crm_sync.identity`); the first is the default.
HOUSEHOLD_RULES = ("same_name", "same_person", "separate")


@dataclass(frozen=True)
class SyncSettings:
    """``syncSettings`` of one integration, with the app's documented defaults."""

    sync_customers: bool = True
    create_new_customers: bool = True
    update_existing_customers: bool = True
    sync_check_ins_as_jobs: bool = True
    sync_photos: bool = True
    customer_match_strategy: str = "all"
    custom_field_mapping: dict[str, str] = field(default_factory=dict)
    household_phone_rule: str = HOUSEHOLD_RULES[0]


@dataclass(frozen=True)
class Customer:
    """A check-in's customer after normalisation. Invalid values are already ``None``."""

    email: str | None = None  # trimmed, lower-cased, validated
    phone: str | None = None  # E.164, e.g. +15125550100
    phone_extension: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    #: set by the name rule (:mod:`crm_sync.field_rules`) for a business-looking name, where the CRM has a company field
    company: str | None = None

    @property
    def full_name(self) -> str | None:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or None


@dataclass(frozen=True)
class Visit:
    """What the technician recorded, ready to become a note / case / job."""

    title: str  # short subject line, e.g. "AC Repair visit on 2026-11-20"
    body: str  # plain-text description (notes, work, materials, ...)
    occurred_at: datetime  # UTC, timezone-aware
    job_type: str
    photo_urls: tuple[str, ...] = ()
    #: check-in field (camelCase) -> value, for ``customFieldMapping``
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedCheckIn:
    """One check-in, normalised and keyed, or with the reason it cannot be synced."""

    check_in_id: int
    company_id: int
    source_hash: str
    customer: Customer
    visit: Visit | None
    #: ordered match keys per the strategy, e.g. ["email:ann@x.com", "phone:+15125550100"]
    match_keys: list[str]
    warnings: list[str] = field(default_factory=list)
    #: set when the row cannot be synced at all; the row is quarantined with it
    error: str | None = None
    #: the person's customer key when :mod:`crm_sync.identity` grouped this row with others
    group_key: str | None = field(default=None, repr=False)
    #: the :class:`crm_sync.quarantine.QuarantineKind` of ``error``
    error_kind: str = "no_identity"
    #: the database's fingerprint of the hashed columns as read (``sync_check_ins.source_fp``, migration 0017),
    #: stored with ``source_hash`` so discovery can tell an edit in SQL
    source_fp: str | None = None

    @property
    def customer_key(self) -> str | None:
        """The sync's stable identity of this customer: its group's key (:mod:`crm_sync.identity`), else the
        row's first match key. Every row of one person carries the same key (ledger claim, visits, creates)."""
        if self.group_key is not None:
            return self.group_key
        return self.match_keys[0] if self.match_keys else None

    @customer_key.setter
    def customer_key(self, value: str | None) -> None:
        self.group_key = value

    @property
    def visit_key(self) -> str:
        """The marker written on the CRM visit record, unique per company and check-in."""
        return f"rankitpro-{self.company_id}-{self.check_in_id}"


@dataclass
class RecordResult:
    """The outcome of one record in a CRM call."""

    key: str
    crm_id: str | None = None
    error: str | None = None  # set for a record the CRM refused (quarantine it)
    #: the :class:`crm_sync.quarantine.QuarantineKind` of that refusal when the destination decided it
    #: itself (``crm_state``, ``config``, ``no_identity``); None: the CRM refused it (``crm_rejected``)
    kind: str | None = None
    created: bool = False
    #: e.g. Salesforce AccountId; a visit result's ``parent_id`` is the address / location / property the
    #: visit went to (the engine remembers it for a customer the map knew without one)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the write may or may not have reached the CRM (a per-record loop cut short by a transient
    #: error): the row stays in_flight and the next run resolves it by the marker lookup
    uncertain: bool = False
    #: never sent: the run's time budget stopped a per-record loop before this record's request;
    #: the row goes back to pending (no lookup needed) and is sent by the next run
    not_sent: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.crm_id is not None and not self.uncertain and not self.not_sent
