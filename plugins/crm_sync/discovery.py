"""Which company x CRM pairs have work, found in SQL over all companies at once, and how they are grouped into
shards (the unit of work of ``crm_incremental_sync``).

An incremental sync task costs a task process (1-2 s of CPU on a small Celery deployment) even when the
company has nothing to send. So discovery asks the database, in one query per CRM type
(``include/sql/discover_work.sql``), which companies have work: a first run, new check-ins, unfinished or
requeued rows, ``crm_state`` rows whose customer changed, rows edited in the look-back window (the check-in's
content fingerprint differs from the one the ledger stored: migration 0017). Idle companies get no task.

The companies with work are then dealt into at most ``max_shards`` shards (:func:`plan_shards`); each
``sync_<crm>`` task syncs one shard's companies one after another (:mod:`crm_sync.shards`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from crm_sync.db import sql

#: Shards per CRM type unless configured: the default pool size (crm_sync.pools.DEFAULT_SLOTS), so one
#: cycle's shards of a CRM run side by side; a bigger fleet puts more companies into each shard.
DEFAULT_MAX_SHARDS = 4
MAX_SHARDS_ENV = "CRM_SYNC_MAX_SHARDS"
#: what discovery counts for a company, in the order the log lists them
WORK_KINDS = ("first_run", "new_rows", "unfinished", "requeued", "state_changed", "edited")
#: customer import statuses after which the first sync's index is not tried again (customer_import_done.sql)
FINISHED_IMPORTS = ["success", "unsupported"]


@dataclass(frozen=True)
class CompanyWork:
    """One company's work for one CRM, as discovery counted it (rows; ``first_run`` a flag)."""

    company_id: int
    first_run: bool = False
    new_rows: int = 0
    unfinished: int = 0
    requeued: int = 0
    state_changed: int = 0
    edited: int = 0

    @property
    def rows(self) -> int:
        """Rows to look at (a row can count twice, e.g. requeued and unfinished): the shard plan's weight."""
        return self.new_rows + self.unfinished + self.requeued + self.state_changed + self.edited

    def describe(self) -> str:
        """``"new_rows=3 edited=1"``: what made this company busy (for the log)."""
        return " ".join(k if k == "first_run" else f"{k}={getattr(self, k)}" for k in WORK_KINDS if getattr(self, k))


def companies_with_work(
    engine: Engine, crm_type: str, company_ids: Sequence[int], *, lookback_days: int, now: datetime | None = None
) -> list[CompanyWork]:
    """The companies among ``company_ids`` (those with a usable ``crm_type`` integration) whose incremental sync
    has work, in id order: one query (``discover_work.sql``), no CRM call, no row hashed in Python."""
    if not company_ids:
        return []
    since = (now or datetime.now(UTC)) - timedelta(days=lookback_days)
    with engine.connect() as conn:
        rows = conn.execute(
            sql("discover_work"),
            {
                "company_ids": sorted({int(c) for c in company_ids}),
                "crm_type": crm_type,
                "finished_imports": FINISHED_IMPORTS,
                "lookback_since": since.astimezone(UTC).replace(tzinfo=None),  # check_ins.created_at is naive UTC
            },
        ).mappings()
        return [CompanyWork(**dict(r)) for r in rows]


def max_shards(raw: object = None) -> int:
    """The shard limit: ``raw`` (a DAG param) when set, else ``$CRM_SYNC_MAX_SHARDS``, else
    :data:`DEFAULT_MAX_SHARDS`. A value below 1 or no integer is an error naming it."""
    value = raw if raw not in (None, "") else os.environ.get(MAX_SHARDS_ENV) or DEFAULT_MAX_SHARDS
    try:
        shards = int(str(value).strip())
    except ValueError:
        shards = 0
    if shards < 1:
        raise ValueError(f"max_shards ({MAX_SHARDS_ENV}) must be a whole number >= 1, got {str(value)[:30]!r}")
    return shards


def plan_shards(work: Sequence[CompanyWork], limit: int) -> list[list[int]]:
    """Deal the companies into ``min(len(work), limit)`` shards of similar weight.

    A small fleet gets one shard per company (as before shards). Otherwise the busiest company goes first
    into the lightest shard (longest-processing-time rule), so one big company does not share its shard with
    many others. Inside a shard the lightest companies come first: when the time budget ends the shard,
    the companies left are few and are the next cycle's first. Deterministic (ties by company id).
    """
    if not work:
        return []
    count = min(len(work), max(1, limit))
    shards: list[list[CompanyWork]] = [[] for _ in range(count)]
    loads = [0] * count
    for item in sorted(work, key=lambda w: (-(w.rows + 1), w.company_id)):
        i = min(range(count), key=lambda s: (loads[s], s))
        shards[i].append(item)
        loads[i] += item.rows + 1  # +1: every company costs its lock, run row and history entry
    return [[w.company_id for w in sorted(s, key=lambda w: (w.rows, w.company_id))] for s in shards]


def shard_label(company_ids: Sequence[int], shown: int = 5) -> str:
    """How a shard is named in the Airflow UI (``map_index_template``): ``company 12``,
    ``companies 12, 15, 40`` or ``40 companies: 12, 15, 16, 18, 21, …``."""
    ids = [str(c) for c in company_ids]
    if len(ids) == 1:
        return f"company {ids[0]}"
    if len(ids) <= shown:
        return "companies " + ", ".join(ids)
    return f"{len(ids)} companies: " + ", ".join(ids[:shown]) + ", …"
