"""Manual: merge the duplicate CRM customers the sync itself made for one company x CRM.

check_params -> merge_<crm> (one per CRM type, pool crm_<crm>; all but crm_type's are skipped) -> check_failures

Groups the CRM's customers that are one person (one email, or one phone without conflicting emails; the
household rule for different emails on one phone is syncSettings.householdPhoneRule), keeps one survivor per
group, re-points crm_sync.customer_map and crm_sync.ledger to it, and merges in the CRM where its API can
(HubSpot); elsewhere the group is listed in a CSV for a person to merge. dry_run (default) only plans and
lists. Holds the same lock as the sync of that company x CRM. See the README, "Merging duplicate customers".
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from crm_hooks.registry import HOOKS
from crm_sync.budget import task_timeout
from crm_sync.pools import pool_name
from crm_sync.tasks.common import check_failures_task
from crm_sync.tasks.customer_merge import check_params_task, merge_task

with DAG(
    dag_id="crm_merge_duplicates",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # retries 0: a run that met a running sync changed nothing; trigger it again when the sync has finished
    default_args={"retries": 0, "execution_timeout": task_timeout(long=True)},
    tags=["crm", "repair"],
    doc_md=__doc__,
    params={
        "company_id": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Company id",
            description="The company whose duplicate customers are merged (required).",
        ),
        "crm_type": Param(
            None,
            type=["null", "string"],
            enum=[None, *HOOKS],
            title="CRM type",
            description="The CRM whose customers are merged (required).",
        ),
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Plan and write the list only: change nothing in the database or the CRM.",
        ),
    },
) as dag:
    checked = task(task_id="check_params")(check_params_task)()
    failures = check_failures_task()
    for crm_type in HOOKS:
        merged = task(task_id=f"merge_{crm_type}", pool=pool_name(crm_type))(merge_task)(crm_type=crm_type)
        checked >> merged >> failures
