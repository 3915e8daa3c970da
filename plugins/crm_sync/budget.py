"""Execution timeouts and time budgets: one company's slow CRM (or a limit an admin set to a crawl) never
holds back the others.

Every sync, backfill, import, export and report task gets an Airflow ``execution_timeout``, so a
stuck task ends and ``max_active_runs=1`` can never hold the next scheduled run for ever. Inside a
sync, the engine gets a *time budget* a margin below that timeout: it stops cleanly between
batches, and no rate-limit wait, backoff or request starts that would cross it
(:class:`crm_hooks.errors.BudgetExhaustedError`). Unsent rows stay pending for the next run.

Settings (environment of the scheduler and the workers; read when a DAG file is parsed and when a
task starts):

* ``CRM_SYNC_TASK_TIMEOUT_MINUTES`` (default 12): the 15-minute incremental sync's tasks.
* ``CRM_SYNC_LONG_TASK_TIMEOUT_MINUTES`` (default 180): backfill, customer import, check-in import,
  export and reconciliation report tasks.
* ``CRM_SYNC_BUDGET_MARGIN_SECONDS`` (default 120): how long before the timeout a sync stops
  starting work: room for one request timeout (60 s read) and the run's bookkeeping.
* ``CRM_SYNC_TIME_BUDGET_SECONDS`` (unset): a fixed budget per sync task instead of timeout minus margin.
"""

from __future__ import annotations

import math
import os
import time
from datetime import timedelta

SYNC_TIMEOUT_MINUTES = 12.0
LONG_TIMEOUT_MINUTES = 180.0
BUDGET_MARGIN_SECONDS = 120.0


def _positive(name: str, default: float | None) -> float | None:
    """A positive finite number from the environment; a bad value is an error naming the setting."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {raw[:30]!r}")
    return value


def task_timeout(long: bool = False) -> timedelta:
    """The ``execution_timeout`` of a sync task (``long=False``) or of a backfill/import/export/report task."""
    if long:
        return timedelta(minutes=_positive("CRM_SYNC_LONG_TASK_TIMEOUT_MINUTES", LONG_TIMEOUT_MINUTES))
    return timedelta(minutes=_positive("CRM_SYNC_TASK_TIMEOUT_MINUTES", SYNC_TIMEOUT_MINUTES))


def budget_seconds(timeout: timedelta | None) -> float | None:
    """Seconds a task with ``timeout`` may spend starting CRM work (None: no timeout and no budget set).

    ``CRM_SYNC_TIME_BUDGET_SECONDS`` when set; else the timeout minus the margin, but at least half
    the timeout (a short timeout still leaves the engine time to work).
    """
    fixed = _positive("CRM_SYNC_TIME_BUDGET_SECONDS", None)
    if fixed is not None:
        return fixed
    if timeout is None:
        return None
    total = timeout.total_seconds()
    margin = _positive("CRM_SYNC_BUDGET_MARGIN_SECONDS", BUDGET_MARGIN_SECONDS)
    return max(total - margin, total / 2)


def deadline_for(timeout: timedelta | None) -> float | None:
    """``time.monotonic()`` by which a task started now must stop starting work (see :func:`budget_seconds`)."""
    seconds = budget_seconds(timeout)
    return None if seconds is None else time.monotonic() + seconds


__all__ = ["budget_seconds", "deadline_for", "task_timeout"]
