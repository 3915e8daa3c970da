"""One shard of ``crm_incremental_sync``: its companies synced one after another, each exactly as a task of
its own would (its advisory lock, rate limiter, ledger rows, ``crm_sync.runs`` row and app history entry).

* One company's problem never stops the others: a configuration problem is recorded as a ``config_error``
  run, a held lock as ``skipped`` (the engine's), an unexpected exception is logged and counted; the shard
  goes on with the next company.
* The time budget (:mod:`crm_sync.budget`) is the shard's: every company's run gets the same deadline, and
  the companies not started before it are recorded as ``deferred`` runs (the next cycle discovers them again).
* A retried shard (the task failed because a company raised) skips the companies this DAG run already synced
  (``shard_done_companies.sql``); the others are synced again, which the ledger makes safe (nothing sent twice).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from crm_hooks.errors import ConfigurationError
from crm_sync.db import sql
from crm_sync.integration_sync import IntegrationResult, SyncOptions

log = logging.getLogger(__name__)

DEFERRED = "deferred"
DEFERRED_REASON = "the shard's time budget ended before this company; it is synced next cycle"


@dataclass
class ShardResult:
    """What one shard did: per-status counts and totals (XCom-safe: numbers and company ids only)."""

    companies: int = 0
    by_status: Counter = field(default_factory=Counter)
    synced: int = 0
    quarantined: int = 0
    failed_rows: int = 0
    api_calls: int = 0
    #: companies whose sync raised (the task fails so Airflow retries the shard)
    errors: list[int] = field(default_factory=list)
    #: companies a retried shard skipped: this DAG run synced them already
    done_before: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)

    def add(self, result: IntegrationResult) -> None:
        self.by_status[result.status] += 1
        self.synced += result.synced
        self.quarantined += result.quarantined
        self.failed_rows += result.failed
        self.api_calls += result.api_calls

    def as_dict(self) -> dict[str, Any]:
        return {
            "companies": self.companies,
            "by_status": dict(sorted(self.by_status.items())),
            "synced": self.synced,
            "quarantined": self.quarantined,
            "failed": self.failed_rows,
            "api_calls": self.api_calls,
            "errors": len(self.errors),
            "done_before": len(self.done_before),
            "deferred": len(self.deferred),
        }


def done_in_run(engine: Engine, run_id: str, crm_type: str, company_ids: Sequence[int]) -> set[int]:
    """The companies of ``company_ids`` this DAG run has already synced into ``crm_type``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sql("shard_done_companies"),
            {"run_id": run_id, "crm_type": crm_type, "company_ids": list(company_ids)},
        ).scalars()
        return {int(c) for c in rows}


def sync_company(
    engine: Engine, company_id: int, crm_type: str, *, run_id: str, dag_id: str | None, options: SyncOptions
) -> IntegrationResult:
    """One company x CRM as a task of its own did it: the integration re-read (credentials never leave this
    process), a configuration problem recorded, else the first sync's customer index and the sync."""
    from crm_sync.customer_import import sync_with_index
    from crm_sync.integrations import load_integration
    from crm_sync.summary import record_config_problem

    try:
        integration = load_integration(engine, company_id, crm_type)
    except ConfigurationError as exc:
        # The settings changed since discovery: reported like any other configuration problem.
        record_config_problem(engine, run_id, dag_id, company_id, crm_type, str(exc))
        return IntegrationResult(run_id, company_id, crm_type, dag_id=dag_id, status="config_error", error=str(exc))
    return sync_with_index(engine, company_id, crm_type, integration, run_id=run_id, dag_id=dag_id, options=options)


def record_deferred(engine: Engine, company_id: int, crm_type: str, *, run_id: str, dag_id: str | None) -> None:
    """A ``deferred`` run row: the company was not reached in the shard's time budget (no app history entry:
    nothing happened to it; the summary table shows it)."""
    result = IntegrationResult(run_id, company_id, crm_type, dag_id=dag_id, status=DEFERRED, error=DEFERRED_REASON)
    result.finished_at = result.started_at
    with engine.begin() as conn:
        conn.execute(sql("run_insert"), result.as_row())


def sync_shard(
    engine: Engine,
    company_ids: Sequence[int],
    crm_type: str,
    *,
    run_id: str,
    dag_id: str | None,
    options: SyncOptions,
    sync: Callable[..., IntegrationResult] = sync_company,
    on_result: Callable[[IntegrationResult], None] | None = None,
) -> ShardResult:
    """Sync ``company_ids`` into ``crm_type`` one after another (see the module's docstring).

    ``options.deadline`` is the shard's budget; ``on_result`` sees each company's result (the task logs it).
    """
    shard = ShardResult(companies=len(company_ids))
    already = done_in_run(engine, run_id, crm_type, company_ids)
    for company_id in company_ids:
        if company_id in already:
            shard.done_before.append(company_id)
            continue
        if options.deadline is not None and time.monotonic() >= options.deadline:
            record_deferred(engine, company_id, crm_type, run_id=run_id, dag_id=dag_id)
            shard.deferred.append(company_id)
            shard.by_status[DEFERRED] += 1
            continue
        try:
            result = sync(engine, company_id, crm_type, run_id=run_id, dag_id=dag_id, options=options)
        except Exception:
            # A bug or the database going away: the other companies still run; the task fails at the end.
            log.exception("company %s -> %s: the sync raised; the shard goes on", company_id, crm_type)
            shard.errors.append(company_id)
            continue
        shard.add(result)
        if on_result is not None:
            on_result(result)
    if shard.deferred:
        log.warning(
            "%s of %s companies not reached in the time budget (deferred to the next cycle): %s",
            len(shard.deferred),
            len(company_ids),
            ", ".join(map(str, shard.deferred)),
        )
    return shard
