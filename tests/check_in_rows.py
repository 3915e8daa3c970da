"""Check-in rows and prepared check-ins for the pure mapping tests (no database, no network)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from crm_sync.models import PreparedCheckIn, SyncSettings, Visit
from crm_sync.prepare import prepare_check_in

#: A tidy check-in as the extract query returns it; each test module overrides what it tests.
BASE_ROW: dict[str, Any] = {
    "id": 42,
    "company_id": 9,
    "job_type": "Water Heater Install",
    "notes": "Installed 50 gal unit.",
    "customer_name": "Ann Lee",
    "customer_email": "ann@example.com",
    "customer_phone": "(512) 555-0100",
    "work_performed": "Removed old tank",
    "address": "100 Congress Ave",
    "city": "Austin",
    "state": "TX",
    "zip": "78701",
    "photos": ["https://cdn.example.com/1.jpg"],
    "customer_feedback": "Fast & friendly",
    "created_at": datetime(2026, 11, 20, 14, 5, 9),
    "technician_id": 3,
    "technician_name": "Bob Tech",
}


def row_factory(**defaults: Any) -> Callable[..., dict[str, Any]]:
    """``make_row(**overrides)`` for a module: :data:`BASE_ROW` with the module's ``defaults``."""
    base = {**BASE_ROW, **defaults}

    def make_row(**overrides: Any) -> dict[str, Any]:
        return {**base, **overrides}

    return make_row


def prepare_valid(row: Mapping[str, Any], settings: SyncSettings | None = None) -> PreparedCheckIn:
    """The prepared check-in of ``row``, which must be syncable."""
    item = prepare_check_in(dict(row), settings or SyncSettings())
    assert item.error is None, item.error
    return item


def with_body(item: PreparedCheckIn, body: str) -> PreparedCheckIn:
    """``item`` with its visit body replaced by exactly ``body`` (to test the mappers' own limits)."""
    item.visit = Visit(
        title=item.visit.title,
        body=body,
        occurred_at=item.visit.occurred_at,
        job_type=item.visit.job_type,
        fields=item.visit.fields,
    )
    return item
