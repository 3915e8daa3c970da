"""The operator that syncs one company's check-ins into one CRM (thin: the engine does the work)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from crm_hooks.errors import ConfigurationError


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

    def __init__(self, *, company_id: int, crm_type: str, db_conn_id: str = "rankitpro_db",
                 batch_size: int | None = None, lookback_days: int = 7, rate_share: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.company_id = company_id
        self.crm_type = crm_type
        self.db_conn_id = db_conn_id
        self.batch_size = batch_size
        self.lookback_days = lookback_days
        self.rate_share = rate_share

    def execute(self, context: Any) -> dict[str, Any]:
        from crm_sync.budget import deadline_for
        from crm_sync.db import make_engine, url_from_connection
        from crm_sync.integration_sync import IntegrationResult, IntegrationSync, SyncOptions
        from crm_sync.integrations import load_integration
        from crm_sync.summary import record_config_problem, result_summary

        # The time budget: a margin below execution_timeout, so the run stops cleanly before Airflow kills it.
        deadline = deadline_for(self.execution_timeout)
        engine = make_engine(url_from_connection(self.db_conn_id))
        run_id, dag_id = context["run_id"], context["dag"].dag_id
        company_id = int(self.company_id)
        try:
            try:
                integration = load_integration(engine, company_id, self.crm_type)
            except ConfigurationError as exc:
                # The settings changed since discovery: report like any other configuration problem.
                record_config_problem(engine, run_id, dag_id, company_id, self.crm_type, str(exc))
                return result_summary(IntegrationResult(run_id, company_id, self.crm_type, status="config_error",
                                                        error=str(exc)))
            options = SyncOptions(batch_size=int(self.batch_size) if self.batch_size else None,
                                  lookback_days=int(self.lookback_days), rate_share=float(self.rate_share),
                                  deadline=deadline)
            # First sync of this company x CRM: index the CRM's existing customers first (never raises).
            from crm_sync.customer_import import ensure_customer_index

            ensure_customer_index(engine, company_id, self.crm_type, integration, run_id=run_id, dag_id=dag_id,
                                  rate_share=float(self.rate_share), deadline=deadline)
            result = IntegrationSync(engine, company_id=company_id, crm_type=self.crm_type,
                                     integration=integration, run_id=run_id, dag_id=dag_id, options=options).run()
        finally:
            engine.dispose()
        summary = result_summary(result)
        self.log.info("company %s -> %s: %s", company_id, self.crm_type, summary)
        return summary
