"""Every 15 minutes: new, edited, unfinished and requeued check-ins into each company's CRMs.

discover_<crm> -> sync_<crm> (one mapped task per shard of companies with work, pool crm_<crm>) -> summarize
check_configurations (malformed JSON, unknown CRM types)                    -> summarize
summarize -> check_failures (fails the run when any task of it failed)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from crm_hooks.registry import HOOKS
from crm_sync.assets import CRM_SYNC_LEDGER
from crm_sync.budget import task_timeout
from crm_sync.pools import pool_name
from crm_sync.tasks import params as dag_params
from crm_sync.tasks.common import check_failures_task
from crm_sync.tasks.sync import CrmSyncOperator, check_configurations, discover_companies, summarize_run

with DAG(
    dag_id="crm_incremental_sync",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # execution_timeout (CRM_SYNC_TASK_TIMEOUT_MINUTES): a stuck task ends, so max_active_runs=1 never
    # holds the next run; the sync engine stops cleanly a margin before it (crm_sync.budget).
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": task_timeout(),
    },
    tags=["crm", "sync"],
    doc_md=__doc__,
    params={
        "company_ids": dag_params.company_ids(),
        "crm_types": dag_params.crm_types(),
        "batch_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=200,
            title="Batch size",
            description="Check-ins per CRM batch call (empty: the CRM's own batch limit).",
        ),
        "lookback_days": Param(
            7,
            type="integer",
            minimum=0,
            maximum=90,
            title="Edit look-back (days)",
            description="Synced check-ins created this recently are re-checked for edits.",
        ),
        "rate_share": dag_params.rate_share(),
        "max_shards": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=64,
            title="Shards per CRM",
            description="Most sync tasks per CRM type; the companies with work are dealt into them "
            "(empty: CRM_SYNC_MAX_SHARDS, default 4).",
        ),
    },
) as dag:
    checked = task(task_id="check_configurations")(check_configurations)()
    # One asset event per run (a mapped task would emit one per company): crm_reconciliation_report can follow it.
    summary = task(task_id="summarize", trigger_rule="all_done", outlets=[CRM_SYNC_LEDGER])(summarize_run)()
    for crm_type in HOOKS:
        companies = task(task_id=f"discover_{crm_type}")(discover_companies)(crm_type=crm_type)
        sync = CrmSyncOperator.partial(
            task_id=f"sync_{crm_type}",
            crm_type=crm_type,
            pool=pool_name(crm_type),
            batch_size="{{ params.batch_size or '' }}",
            lookback_days="{{ params.lookback_days }}",
            rate_share="{{ params.rate_share }}",
            map_index_template="{{ task.shard_label }}",
        ).expand(company_ids=companies)
        sync >> summary
    checked >> summary
    # The run is failed when any task failed (summarize alone, all_done, would leave it green).
    summary >> check_failures_task()
