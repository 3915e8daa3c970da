"""Tasks of ``crm_incremental_sync``: discovery, the sync operator, the configuration check and the summary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from crm_hooks.errors import ConfigurationError
from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.tasks.common import config_error_recorder, discover, param_errors, params_of, sync_db, wants

log = logging.getLogger(__name__)


def discover_companies(crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> list[int]:
    """Ids of the companies with an active, usable ``crm_type`` integration (only ids go to XCom).

    Problems with this CRM's settings (no credentials, not an object) are recorded
    as ``config_error`` runs and reported; the company is skipped, the others go on.
    """
    if not wants(crm_type, context):
        return []
    with sync_db(db_conn_id) as engine:
        return discover(
            engine,
            crm_type,
            purpose="sync into",
            company_ids=params_of(context).get("company_ids"),
            on_problem=config_error_recorder(engine, context),
        ).company_ids


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
    """Sync one company x CRM: everything new, unfinished, requeued or edited since the last run.

    Credentials are read from the company's ``crm_integrations`` inside the task
    (never passed through XCom or templates). The return value (an XCom) holds
    counts and messages only.

    :param company_id: the company (usually mapped from the discovery task).
    :param crm_type: the app's CRM key, e.g. ``hubspot``.
    :param db_conn_id: the Airflow connection of the Rank It Pro database.
    :param batch_size: check-ins per CRM batch call; default the CRM's batch limit.
    :param lookback_days: how far back edited check-ins are looked for.
    :param rate_share: share of the CRM's documented rate limit this task may use.
    """

    template_fields: Sequence[str] = ("company_id", "batch_size", "lookback_days", "rate_share")
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        company_id: int,
        crm_type: str,
        db_conn_id: str = RANKITPRO_CONN_ID,
        batch_size: int | None = None,
        lookback_days: int = 7,
        rate_share: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.company_id = company_id
        self.crm_type = crm_type
        self.db_conn_id = db_conn_id
        self.batch_size = batch_size
        self.lookback_days = lookback_days
        self.rate_share = rate_share

    def execute(self, context: Any) -> dict[str, Any]:
        from crm_sync.budget import deadline_for
        from crm_sync.customer_import import sync_with_index
        from crm_sync.integration_sync import IntegrationResult, SyncOptions
        from crm_sync.integrations import load_integration
        from crm_sync.summary import record_config_problem, result_summary

        # The time budget: a margin below execution_timeout, so the run stops cleanly before Airflow kills it.
        deadline = deadline_for(self.execution_timeout)
        run_id, dag_id = context["run_id"], context["dag"].dag_id
        with param_errors():
            company_id = int(self.company_id)
            options = SyncOptions(
                batch_size=int(self.batch_size) if self.batch_size else None,
                lookback_days=int(self.lookback_days),
                rate_share=float(self.rate_share),
                deadline=deadline,
            )
        with sync_db(self.db_conn_id) as engine:
            try:
                integration = load_integration(engine, company_id, self.crm_type)
            except ConfigurationError as exc:
                # The settings changed since discovery: report like any other configuration problem.
                record_config_problem(engine, run_id, dag_id, company_id, self.crm_type, str(exc))
                return result_summary(
                    IntegrationResult(run_id, company_id, self.crm_type, status="config_error", error=str(exc))
                )
            # One destination for the task: the first sync's customer index, then the sync.
            result = sync_with_index(
                engine, company_id, self.crm_type, integration, run_id=run_id, dag_id=dag_id, options=options
            )
        summary = result_summary(result)
        self.log.info("company %s -> %s: %s", company_id, self.crm_type, summary)
        return summary
