"""Write-back into the app: ``companies.crm_sync_history`` and ``lastSyncedAt``.

The app's "Sync history" page reads ``crm_sync_history`` (a JSON array in a TEXT
column, newest first, at most 100 entries) and its integration page shows
``crm_integrations.<crm>.lastSyncedAt``. Both are written in one transaction
that locks the company row, so an admin saving other keys at the same moment is
never overwritten: we re-read the current JSON under the lock and change only
our two values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from crm_hooks.registry import display_name
from crm_sync.clean import dumps_strict, loads_strict, storable_text
from crm_sync.db import sql

log = logging.getLogger(__name__)

HISTORY_LIMIT = 100


def iso_millis(moment: datetime) -> str:
    """``2026-11-20T08:00:03.004Z``, the format the app writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def history_status(synced: int, errors: int) -> str:
    """``success`` (no errors), ``partial`` (some synced, some not) or ``failed`` (nothing synced)."""
    if errors == 0:
        return "success"
    return "partial" if synced > 0 else "failed"


def history_entry(crm_type: str, crm_name: str | None, *, synced: int, errors: int, at: datetime) -> dict[str, Any]:
    return {
        "id": int(at.timestamp() * 1000),
        "crmType": crm_type,
        "crmName": storable_text(crm_name if isinstance(crm_name, str) and crm_name else None)
        or display_name(crm_type)
        or storable_text(crm_type),
        "status": history_status(synced, errors),
        "itemsProcessed": synced + errors,
        "errorCount": errors,
        "timestamp": iso_millis(at),
    }


def with_entry(history_text: str | None, entry: dict[str, Any]) -> str:
    """The history JSON with ``entry`` prepended and at most 100 entries kept.

    A column the app cannot read as a JSON array is replaced by a fresh array (the
    old text is logged, it held nothing the app could show).
    """
    try:
        history = loads_strict(history_text) if history_text and history_text.strip() else []
    except ValueError:  # not JSON, or NaN/Infinity the app could not read either
        history = None
    if not isinstance(history, list):
        log.warning("crm_sync_history was not a JSON array; starting a new one")
        history = []
    return dumps_strict([entry, *history][:HISTORY_LIMIT])


def write_back(
    engine: Engine,
    company_id: int,
    crm_type: str,
    *,
    synced: int,
    errors: int,
    at: datetime,
    set_last_synced: bool,
    add_history: bool,
) -> bool:
    """Record one company x CRM sync in the app; returns False when the JSON could not be updated."""
    with engine.begin() as conn:
        row = conn.execute(sql("company_for_update"), {"company_id": company_id}).first()
        if row is None:
            return False
        integrations_text, history_text = row
        integrations = _integrations(integrations_text)
        integration = integrations.get(crm_type) if integrations is not None else None
        if not isinstance(integration, dict):
            if set_last_synced:
                return False
            integration = {}
        crm_name = integration.get("name")
        new_integrations = integrations_text
        if set_last_synced:
            integration["lastSyncedAt"] = iso_millis(at)
            new_integrations = dumps_strict(integrations, clean=False)
        new_history = history_text
        if add_history:
            new_history = with_entry(
                history_text, history_entry(crm_type, crm_name, synced=synced, errors=errors, at=at)
            )
        conn.execute(
            sql("company_write_back"),
            {"company_id": company_id, "crm_integrations": new_integrations, "crm_sync_history": new_history},
        )
    return True


def refresh_last_synced(engine: Engine, crm_type: str, company_ids: Iterable[int], *, at: datetime) -> int:
    """Set ``lastSyncedAt`` to ``at`` for companies whose ``crm_type`` sync was found to have nothing to do.

    Discovery (:func:`crm_sync.discovery.companies_with_work`) proves in SQL that every check-in of an idle
    company is settled, with no CRM call and no task: the app's "last synced" must still say the sync is
    alive (before discovery, the idle run of each company wrote it). No history entry (it would push real
    entries out of the 100 kept). A ``lastSyncedAt`` already later than ``at`` (a run that ended since) is
    kept. Rows are locked in id order, :data:`REFRESH_CHUNK` per transaction, and changed under the lock
    (an admin's edit of the same JSON a moment before is kept). Returns how many companies were updated.
    """
    stamp = iso_millis(at)
    ids = sorted({int(c) for c in company_ids})
    updated = 0
    for start in range(0, len(ids), REFRESH_CHUNK):
        with engine.begin() as conn:
            rows = conn.execute(sql("companies_for_update"), {"company_ids": ids[start : start + REFRESH_CHUNK]})
            changes = []
            for company_id, text in rows:
                integrations = _integrations(text)
                integration = integrations.get(crm_type) if integrations is not None else None
                if not isinstance(integration, dict):
                    continue  # changed since discovery read it: the next cycle decides
                previous = integration.get("lastSyncedAt")
                if isinstance(previous, str) and previous >= stamp:
                    continue
                integration["lastSyncedAt"] = stamp
                changes.append({"company_id": company_id, "crm_integrations": dumps_strict(integrations, clean=False)})
            if changes:
                conn.execute(sql("company_set_integrations"), changes)
            updated += len(changes)
    return updated


#: Companies locked and updated per transaction by :func:`refresh_last_synced`.
REFRESH_CHUNK = 500


def _integrations(text: str | None) -> dict[str, Any] | None:
    """``crm_integrations`` as a dict, or None when the app's text is not a JSON object."""
    try:
        # Strict: a 1e999 the app stored must not come back as Infinity (which the app cannot parse).
        value = loads_strict(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
