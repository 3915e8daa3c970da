"""Which check-ins a run looks at, streamed in batches.

``check_ins`` has no ``updated_at`` and its ids are not committed in order (a
transaction can hold id 100 while 101 commits), so two mechanisms work together:

* **New rows**: a settled id horizon. Each run records the sequence's current
  maximum with its snapshot's ``xmax`` (``crm_sync.id_horizon``). A recorded
  ``max_id`` is *settled* once every transaction that was running when the next
  horizon was taken has ended: no row with a smaller id can appear after that.
  A run reads every row above the integration's last settled id that has no
  ledger row yet, and afterwards stores the id that was settled when it
  started. Rows committed late are therefore read by a later run, never skipped.
* **Edited rows**: synced or quarantined rows created within the look-back
  window (default 7 days) are re-read and their hash compared with the
  ledger's; only changed rows are sent again.

Unfinished rows (pending, in_flight, failed) and rows an operator requeued are
always read, whatever their age.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from crm_sync.db import sql


def settled_horizon(engine: Engine) -> int:
    """Record a horizon now and return the highest id that is settled as of now."""
    with engine.begin() as conn:
        conn.execute(sql("record_id_horizon"))
        conn.execute(sql("prune_id_horizon"))
    with engine.begin() as conn:
        return int(conn.execute(sql("settled_id_horizon")).scalar() or 0)


def integration_settled_id(engine: Engine, company_id: int, crm_type: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(sql("integration_state_get"), {"company_id": company_id, "crm_type": crm_type}).scalar()
    return int(value or 0)


def advance_integration(engine: Engine, company_id: int, crm_type: str, settled_id: int) -> None:
    """After a complete run: every row up to ``settled_id`` has been considered."""
    with engine.begin() as conn:
        conn.execute(
            sql("integration_state_advance"), {"company_id": company_id, "crm_type": crm_type, "settled_id": settled_id}
        )


def iter_candidate_batches(
    engine: Engine,
    company_id: int,
    crm_type: str,
    *,
    batch_size: int,
    lookback_days: int,
    crm_account: str | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Candidate rows in id order, ``batch_size`` at a time, from a server-side cursor.

    ``crm_account``: only that CRM account's ledger rows count (None: the live ledger as it is).
    """
    params = {
        "company_id": company_id,
        "crm_type": crm_type,
        "crm_account": crm_account,
        "settled_id": integration_settled_id(engine, company_id, crm_type),
        "lookback_since": (datetime.now(UTC) - timedelta(days=lookback_days)).replace(tzinfo=None),
    }
    yield from _stream(engine, "extract_candidates", params, batch_size)


def iter_range_batches(
    engine: Engine,
    company_id: int,
    crm_type: str,
    *,
    created_from: datetime,
    created_to: datetime,
    batch_size: int,
    resync_quarantined: bool = False,
    crm_account: str | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every check-in created in ``[created_from, created_to)`` (a dated backfill), in id order.

    Rows already synced or quarantined come back too (the engine counts them unchanged and
    never sends them again); ``resync_quarantined`` marks quarantined rows as requeued.
    """
    params = {
        "company_id": company_id,
        "crm_type": crm_type,
        "resync_quarantined": resync_quarantined,
        "crm_account": crm_account,
        "created_from": _naive_utc(created_from),
        "created_to": _naive_utc(created_to),
    }
    yield from _stream(engine, "extract_range", params, batch_size)


def _naive_utc(moment: datetime) -> datetime:
    """check_ins.created_at is naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _stream(engine: Engine, name: str, params: dict[str, Any], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    with engine.connect().execution_options(stream_results=True, yield_per=batch_size) as conn:
        result = conn.execute(sql(name), params)
        for partition in result.mappings().partitions(batch_size):
            yield [dict(row) for row in partition]
