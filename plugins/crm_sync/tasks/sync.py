"""Tasks of ``crm_incremental_sync``: discovery, the sync operator, the configuration check and the summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator

from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.tasks.common import config_error_recorder, discover, param_errors, params_of, sync_db, wants

log = logging.getLogger(__name__)


def discover_companies(crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> list[list[int]]:
    """The shards of this cycle's ``crm_type`` sync: the companies with work (only ids go to XCom).

    The companies with an active, usable integration are found first (problems with this CRM's settings
    are recorded as ``config_error`` runs and reported; the company is skipped, the others go on); among
    them, one SQL query finds those with work (:func:`crm_sync.discovery.companies_with_work`). Idle
    companies get no task; their ``lastSyncedAt`` says they were checked (:func:`crm_sync.history.refresh_last_synced`).
    The busy ones are dealt into at most ``max_shards`` shards.
    """
    from crm_sync.discovery import companies_with_work, max_shards, plan_shards
    from crm_sync.history import refresh_last_synced

    if not wants(crm_type, context):
        return []
    params = params_of(context)
    with param_errors():
        lookback_days = int(params.get("lookback_days", 7))
        limit = max_shards(params.get("max_shards"))
    with sync_db(db_conn_id) as engine:
        usable = discover(
            engine,
            crm_type,
            purpose="sync into",
            company_ids=params.get("company_ids"),
            on_problem=config_error_recorder(engine, context),
        ).company_ids
        clock = time.monotonic()
        checked_at = datetime.now(UTC)
        work = companies_with_work(engine, crm_type, usable, lookback_days=lookback_days, now=checked_at)
        seconds = time.monotonic() - clock
        idle = set(usable) - {w.company_id for w in work}
        refreshed = refresh_last_synced(engine, crm_type, idle, at=checked_at)
    shards = plan_shards(work, limit)
    log.info(
        "%s: %s of %s companies have work (found in %.2f s), in %s shard(s); the %s idle ones get no task "
        "(lastSyncedAt refreshed for %s)",
        crm_type,
        len(work),
        len(usable),
        seconds,
        len(shards),
        len(idle),
        refreshed,
    )
    for w in work:
        log.info("company %s: %s", w.company_id, w.describe())
    return shards


def check_configurations(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> int:
    """Record the problems no CRM task owns: malformed JSON, unknown or unsupported CRM types."""
    with sync_db(db_conn_id) as engine:
        found = discover(
            engine,
            None,
            purpose="check",
            company_ids=params_of(context).get("company_ids"),
            on_problem=config_error_recorder(engine, context),
        )
    return len(found.problems)


def summarize_run(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """Log the run's table (per company x CRM) and return its totals."""
    from crm_sync.summary import format_table, runs_for

    with sync_db(db_conn_id) as engine:
        rows = runs_for(engine, context["run_id"])
    log.info("CRM sync summary for run %s\n%s", context["run_id"], format_table(rows))
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    return {
        "integrations": len(rows),
        "by_status": by_status,
        "synced": sum(r["synced"] for r in rows),
        "quarantined": sum(r["quarantined"] for r in rows),
        "failed": sum(r["failed"] for r in rows),
    }


class CrmSyncOperator(BaseOperator):
    """Sync one shard: its companies x one CRM one after another, each with everything new, unfinished,
    requeued or edited since the last run (:func:`crm_sync.shards.sync_shard`).

    Each company is synced as a task of its own did it: its advisory lock, limiter, ledger rows, run row and
    app history entry; one company's problem never stops the others. Credentials are read from each
    company's ``crm_integrations`` inside the task (never passed through XCom or templates). The return value
    (an XCom) holds counts only. The task fails (and Airflow retries it) only when a company's sync raised;
    the retry skips the companies this DAG run synced already.

    :param company_ids: the shard's companies (usually mapped from the discovery task).
    :param crm_type: the app's CRM key, e.g. ``hubspot``.
    :param db_conn_id: the Airflow connection of the Rank It Pro database.
    :param batch_size: check-ins per CRM batch call; default the CRM's batch limit.
    :param lookback_days: how far back edited check-ins are looked for.
    :param rate_share: share of the CRM's documented rate limit this task may use.
    """

    template_fields: Sequence[str] = ("company_ids", "batch_size", "lookback_days", "rate_share")
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        company_ids: Sequence[int] | int,
        crm_type: str,
        db_conn_id: str = RANKITPRO_CONN_ID,
        batch_size: int | None = None,
        lookback_days: int = 7,
        rate_share: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.company_ids = company_ids
        self.crm_type = crm_type
        self.db_conn_id = db_conn_id
        self.batch_size = batch_size
        self.lookback_days = lookback_days
        self.rate_share = rate_share

    @property
    def shard_label(self) -> str:
        """The shard's name in the UI (``map_index_template``): its companies, or their count and the first."""
        from crm_sync.discovery import shard_label

        try:
            return shard_label(self._ids())
        except (TypeError, ValueError):
            return str(self.company_ids)[:100]

    def _ids(self) -> list[int]:
        ids = self.company_ids
        return [int(ids)] if isinstance(ids, (int, str)) else [int(c) for c in ids]

    def execute(self, context: Any) -> dict[str, Any]:
        from crm_sync.budget import deadline_for
        from crm_sync.integration_sync import SyncOptions
        from crm_sync.shards import sync_shard
        from crm_sync.summary import result_summary

        # The time budget: a margin below execution_timeout, so the shard stops cleanly before Airflow kills it.
        deadline = deadline_for(self.execution_timeout)
        run_id, dag_id = context["run_id"], context["dag"].dag_id
        with param_errors():
            company_ids = self._ids()
            options = SyncOptions(
                batch_size=int(self.batch_size) if self.batch_size else None,
                lookback_days=int(self.lookback_days),
                rate_share=float(self.rate_share),
                deadline=deadline,
            )

        def logged(result: Any) -> None:
            self.log.info("company %s -> %s: %s", result.company_id, self.crm_type, result_summary(result))

        with sync_db(self.db_conn_id) as engine:
            shard = sync_shard(
                engine, company_ids, self.crm_type, run_id=run_id, dag_id=dag_id, options=options, on_result=logged
            )
        self.log.info("shard %s -> %s: %s", self.shard_label, self.crm_type, shard.as_dict())
        if shard.errors:
            # Retried by Airflow: the retry skips the companies synced already (crm_sync.shards).
            raise RuntimeError(
                f"the sync of {len(shard.errors)} of {len(company_ids)} companies raised "
                f"(companies {', '.join(map(str, shard.errors))}; see the log above); the others were synced"
            )
        return shard.as_dict()
