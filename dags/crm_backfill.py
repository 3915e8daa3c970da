"""Manual: sync (or dry-run) the check-ins of a date range into one CRM type, chunk by chunk, resumably.

plan_<crm> (chunks still to do for these params) -> backfill_<crm> (mapped: one task per company x date chunk,
pool crm_<crm>, one at a time) -> report

Only the pair of the chosen ``crm_type`` has work; the others return no chunks and are skipped.
Every chunk goes through the incremental sync's ledger (a row synced by either DAG is never sent again)
and is checkpointed in ``crm_sync.backfill_chunks``: re-triggering with the same params resumes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from crm_hooks.registry import HOOKS
from crm_sync.budget import task_timeout
from crm_sync.pools import pool_name
from crm_sync.tasks import params as dag_params
from crm_sync.tasks.backfill import plan_backfill, report_backfill, run_chunk
from crm_sync.tasks.common import check_failures_task

with DAG(
    dag_id="crm_backfill",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": task_timeout(long=True),
    },
    tags=["crm", "backfill"],
    doc_md=__doc__,
    params={
        # No default on purpose: a backfill names its CRM (the run fails at plan time without one).
        "crm_type": Param(
            None,
            type=["null", "string"],
            enum=[None, *HOOKS],
            title="CRM type",
            description="The CRM to backfill (one per run; required).",
        ),
        "company_ids": dag_params.company_ids(
            "Only these companies (empty: every company with an active integration of this CRM)."
        ),
        "date_from": dag_params.day(
            "From (day, UTC)", "First day of check-ins to backfill (empty: the first check-in)."
        ),
        "date_to": dag_params.day("To (day, UTC)", "Last day of check-ins to backfill, included (empty: today)."),
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Only count and sample what would be sent; nothing goes to the CRM and the "
            "ledger is not changed.",
        ),
        "resync_quarantined": Param(
            False,
            type="boolean",
            title="Retry quarantined rows",
            description="Also retry check-ins quarantined earlier, as if requeued.",
        ),
        "chunk_days": Param(
            7,
            type="integer",
            minimum=1,
            maximum=366,
            title="Chunk size (days)",
            description="Days of check-ins per chunk; each finished chunk is checkpointed.",
        ),
        "batch_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=10000,
            title="Batch size",
            description="Check-ins per batch (empty: the CRM's default; Salesforce backfills use "
            "5,000 and write Cases through Bulk API 2.0).",
        ),
        "rate_share": dag_params.rate_share(
            0.5,
            "Share of the CRM's documented rate limit this backfill may use (the rest stays for the scheduled sync).",
        ),
    },
) as dag:
    report = task(task_id="report", trigger_rule="all_done")(report_backfill)()
    for crm_type in HOOKS:
        chunks = task(task_id=f"plan_{crm_type}")(plan_backfill)(crm_type=crm_type)
        # One chunk at a time per run: the rate_share bound holds (limiters are per process) and two
        # chunks of one company never contend for its advisory lock.
        run = task(
            task_id=f"backfill_{crm_type}",
            pool=pool_name(crm_type),
            max_active_tis_per_dagrun=1,
            map_index_template="{{ chunk_label }}",
        )(run_chunk)
        run.partial(crm_type=crm_type).expand(chunk=chunks) >> report
    report >> check_failures_task()
