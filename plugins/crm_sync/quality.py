"""Sync-quality metrics per company x CRM x day, in ``crm_sync.quality_daily`` (one row per metric).

Computed in PostgreSQL (``include/sql/quality_compute.sql``: ``count ... FILTER``, ``percentile_cont``), so a
million check-ins never reach Python. A recomputation replaces the days it covers (delete + insert in one
transaction, under an advisory lock): running it twice gives the same rows, and a metric that no longer applies
(a quarantine reason whose rows were requeued and synced since) disappears.

Check-in metrics belong to the day the check-in was created (``check_ins.created_at``, naive UTC) and describe
the ledger as it is when they are computed; run metrics belong to the day the run started (UTC).

====================  ==========================================================================================
metric (dimension)    value
====================  ==========================================================================================
``eligible``          check-ins the sync should have handled: with a ledger row for the CRM, or at or below the
                      integration's settled id horizon (as ``crm_sync.reconcile``)
``synced``            of those, ledger status ``synced``
``success_rate``      ``synced / eligible`` as a fraction 0..1 (no row when nothing was eligible)
``quarantined``       ledger status ``quarantined``; with ``dimension`` = ``error_kind`` (a
                      :class:`crm_sync.quarantine.QuarantineKind`, or ``unknown``) the count per kind
``failed``            ledger status ``failed`` (transient failure after retries; retried next run)
``unfinished``        ledger status ``pending`` or ``in_flight`` (waiting for the next run)
``never_sent``        eligible but no ledger row: the sync passed over the check-in (a bug; reconcile's
                      ``never_synced``)
``latency_p50_s``     median seconds from the check-in (``check_ins.created_at``) to its last successful CRM
                      write (``ledger.synced_at``), synced rows only
``latency_p95_s``     95th percentile of the same
``runs``              sync runs of the company x CRM that day (``crm_sync.runs``)
``api_calls``         CRM API calls of those runs
``rate_limited``      HTTP 429 answers they received
``retries``           requests they retried
``customers_matched`` customers found in the CRM (``runs.customers_found``)
``customers_created`` customers the sync created in the CRM
====================  ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from sqlalchemy.engine import Engine

from crm_sync.db import sql

#: Every metric name quality_compute.sql writes (the report and the docs use the same names).
METRICS = (
    "eligible",
    "synced",
    "success_rate",
    "quarantined",
    "failed",
    "unfinished",
    "never_sent",
    "latency_p50_s",
    "latency_p95_s",
    "runs",
    "api_calls",
    "rate_limited",
    "retries",
    "customers_matched",
    "customers_created",
)

#: Below this ``success_rate`` a company x CRM is red in the report and alerts (the reconciliation DAG's default).
DEFAULT_MIN_SUCCESS_RATE = 0.98


def success_rate(synced: float | None, eligible: float | None) -> float | None:
    """Synced share of the eligible check-ins, 0..1 (None when there were none)."""
    if eligible is None or eligible <= 0:
        return None
    return float(synced or 0) / float(eligible)


def metric_params(
    day_from: date, day_to: date, company_ids: Sequence[int] | None = None, crm_types: Sequence[str] | None = None
) -> dict:
    """Bind parameters of the quality SQL: the inclusive day range as naive-UTC bounds ``[from, to + 1 day)``."""
    if isinstance(day_from, datetime) or isinstance(day_to, datetime):
        raise TypeError("day_from and day_to are dates, not datetimes")
    if day_to < day_from:
        raise ValueError(f"day_to ({day_to}) is before day_from ({day_from})")
    return {
        "day_from": day_from,
        "day_to": day_to,
        "ts_from": datetime.combine(day_from, time.min),
        "ts_to": datetime.combine(day_to + timedelta(days=1), time.min),
        # An empty filter means "all", as in the DAGs' params.
        "company_ids": [int(c) for c in company_ids] if company_ids else None,
        "crm_types": [str(c) for c in crm_types] if crm_types else None,
    }


def compute_quality_metrics(
    engine: Engine,
    *,
    day_from: date,
    day_to: date,
    company_ids: Sequence[int] | None = None,
    crm_types: Sequence[str] | None = None,
) -> int:
    """Recompute ``crm_sync.quality_daily`` for the days ``day_from..day_to`` (inclusive); returns rows written."""
    params = metric_params(day_from, day_to, company_ids, crm_types)
    with engine.begin() as conn:
        conn.execute(sql("quality_lock"))
        conn.execute(sql("quality_delete"), params)
        return int(conn.execute(sql("quality_compute"), params).rowcount)
