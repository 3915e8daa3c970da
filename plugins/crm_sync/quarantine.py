"""Why a row is quarantined, as a kind an analyst can act on (``crm_sync.ledger.error_kind``).

Every quarantined ledger row has one :class:`QuarantineKind` and a specific reason (``last_error``).
The kind says what to do about it; :data:`LABELS` and :data:`ACTIONS` are the plain-language words the
report and the README use. Destinations name the kind of a refusal they decide themselves
(:attr:`crm_sync.models.RecordResult.kind`); a refusal the CRM sends back is ``crm_rejected``.

``crm_state`` is the one kind a sync retries by itself: the row was refused *before anything was sent*
because of what the CRM holds now (a new customer without a complete address has no service address,
location or property a job could go to), and a later check-in of that customer can change that. Such a
row is read again (:mod:`crm_sync.extract`, ``state_changed``) as soon as a ``crm_sync.customer_map``
entry of its customer is written after it was quarantined (the customer created, updated, or given an
address / location / property). Every other kind waits for the check-in to change or a requeue.

The SQL files compare ``error_kind`` with these values as literals (``tests/test_ledger.py`` checks them).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any


class QuarantineKind(StrEnum):
    """The kind of a quarantine reason (``crm_sync.ledger.error_kind`` of a ``quarantined`` row)."""

    #: the check-in has nothing (usable) to identify its customer by, for this CRM
    NO_IDENTITY = "no_identity"
    #: no existing CRM customer matches and ``createNewCustomers`` is off
    NO_MATCH = "no_match"
    #: the CRM refused the record (its message names the field when the CRM names it)
    CRM_REJECTED = "crm_rejected"
    #: the integration's settings do not allow it (e.g. ``syncCustomers`` off for a CRM whose jobs need one)
    CONFIG = "config"
    #: the CRM lacks something a later check-in can add (the customer's address): retried automatically
    CRM_STATE = "crm_state"
    #: the check-in itself lacks a value every CRM needs (no creation time): fixed in Rank It Pro's data
    BAD_SOURCE_DATA = "bad_source_data"
    #: a write whose outcome is unknown and the CRM offers no look-up (FieldEdge leads): never re-sent blindly
    UNCONFIRMED_WRITE = "unconfirmed_write"


#: Plain-language label per kind (the report's legend, the README's table).
LABELS: dict[str, str] = {
    QuarantineKind.NO_IDENTITY: "no customer identity",
    QuarantineKind.NO_MATCH: "no matching customer",
    QuarantineKind.CRM_REJECTED: "refused by the CRM",
    QuarantineKind.CONFIG: "integration settings",
    QuarantineKind.CRM_STATE: "waiting for the customer's CRM record",
    QuarantineKind.BAD_SOURCE_DATA: "incomplete check-in data",
    QuarantineKind.UNCONFIRMED_WRITE: "may already be in the CRM",
}

#: What an analyst does about each kind.
ACTIONS: dict[str, str] = {
    QuarantineKind.NO_IDENTITY: "add a name, email or phone to the check-in in Rank It Pro (an edit is sent)",
    QuarantineKind.NO_MATCH: "create the customer in the CRM or turn createNewCustomers on, then requeue",
    QuarantineKind.CRM_REJECTED: "fix the value the reason names in the check-in (an edit is sent), or requeue",
    QuarantineKind.CONFIG: "change the integration's settings, then requeue",
    QuarantineKind.CRM_STATE: "nothing: retried when the customer changes (or add the address in the CRM and requeue)",
    QuarantineKind.BAD_SOURCE_DATA: "set the check-in's creation time in Rank It Pro (the edit is sent)",
    QuarantineKind.UNCONFIRMED_WRITE: "look for the marker the reason names in the CRM; requeue only if it is missing",
}


def named_fields(names: Iterable[Any]) -> str:
    """`` (field a, b)`` for the fields a CRM names in a refusal (none: ``""``), for ``crm_rejected`` reasons."""
    listed = list(dict.fromkeys(str(n) for n in names if n))
    return f" (field {', '.join(listed[:5])})" if listed else ""


def label(kind: str | None) -> str:
    """The plain-language label of ``kind`` (a kind this version does not know: the kind itself)."""
    return LABELS.get(kind or "", kind or "unknown")


__all__ = ["ACTIONS", "LABELS", "QuarantineKind", "label", "named_fields"]
