"""Daily: check-ins in the app x the sync's ledger x the records in each CRM, with discrepancies classified.

discover_<crm> -> reconcile_<crm> (one mapped task per company, pool crm_<crm>) -> requeue -> report -> alert

Writes crm_sync.reconciliation_runs and crm_sync.discrepancies (see docs: the tables); with requeue: true
puts missing, stale and never-synced rows back in line for the next crm_incremental_sync run. The alert
task fails when a threshold is crossed, so Airflow's failure notifications fire.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task

from crm_hooks.registry import HOOKS
from crm_sync.assets import CRM_SYNC_LEDGER, reconcile_on_ledger_update
from crm_sync.budget import task_timeout
from crm_sync.pools import pool_name
from crm_sync.quality import DEFAULT_MIN_SUCCESS_RATE
from crm_sync.tasks import params as dag_params
from crm_sync.tasks.reconcile import (
    DEFAULT_DAYS,
    DEFAULT_SAMPLE_SIZE,
    alert_task,
    discover_reconcile,
    reconcile_company,
    report_task,
    requeue_task,
)

DAILY = CronTriggerTimetable("0 5 * * *", timezone="UTC")

with DAG(
    dag_id="crm_reconciliation_report",
    schedule=AssetOrTimeSchedule(timetable=DAILY, assets=[CRM_SYNC_LEDGER]) if reconcile_on_ledger_update() else DAILY,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5), "execution_timeout": task_timeout(long=True)},
    tags=["crm", "report"],
    doc_md=__doc__,
    params={
        "company_ids": dag_params.company_ids(),
        "crm_types": dag_params.crm_types(),
        "date_from": dag_params.day("From (date)", "First day of check-ins compared (empty: days before date_to)."),
        "date_to": dag_params.day("To (date)", "Last day of check-ins compared, inclusive (empty: today, UTC)."),
        "days": Param(
            DEFAULT_DAYS,
            type="integer",
            minimum=1,
            maximum=366,
            title="Days",
            description="Days compared when date_from is empty.",
        ),
        "sample_size": Param(
            DEFAULT_SAMPLE_SIZE,
            type="integer",
            minimum=0,
            maximum=100000,
            title="CRM read-back sample",
            description="At most this many CRM records read back per company and CRM (0: all).",
        ),
        "requeue": Param(
            False,
            type="boolean",
            title="Requeue",
            description="Put missing, stale and never-synced check-ins back in line for the next sync.",
        ),
        "min_success_rate": Param(
            DEFAULT_MIN_SUCCESS_RATE,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Minimum success rate",
            description="Alert when synced / eligible is below this (empty: no rate alert).",
        ),
        "fail_on_missing": Param(
            True,
            type="boolean",
            title="Alert on missing",
            description="Alert when any synced check-in is missing in the CRM.",
        ),
    },
) as dag:
    requeued = task(task_id="requeue", trigger_rule="all_done")(requeue_task)()
    report = task(task_id="report", trigger_rule="all_done")(report_task)()
    alert = task(task_id="alert", trigger_rule="all_done", retries=0)(alert_task)()
    for crm_type in HOOKS:
        companies = task(task_id=f"discover_{crm_type}")(discover_reconcile)(crm_type=crm_type)
        reconciled = (
            task(task_id=f"reconcile_{crm_type}", pool=pool_name(crm_type), map_index_template="{{ company_label }}")(
                reconcile_company
            )
            .partial(crm_type=crm_type)
            .expand(company_id=companies)
        )
        reconciled >> requeued
    requeued >> report >> alert
