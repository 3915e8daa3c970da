"""Daily: are the companies' CRM credentials still usable? (expired or revoked tokens, changed secrets)

discover_<crm> -> check_<crm> (one mapped task per company, pool crm_<crm>) -> summarize -> check_failures

An idle crm_incremental_sync run makes no CRM call, so a credential that stopped working is found here: one
cheap authenticated call per company x CRM (the connection Test button's), one row in
crm_sync.credential_checks with the status and a redacted message. A bad credential is a row, not a failed
task: every company is checked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from crm_hooks.registry import HOOKS
from crm_sync.budget import task_timeout
from crm_sync.pools import pool_name
from crm_sync.tasks import params as dag_params
from crm_sync.tasks.common import check_failures_task
from crm_sync.tasks.credential_health import check_company, discover_health_companies, summarize_health

with DAG(
    dag_id="crm_credential_health",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5), "execution_timeout": task_timeout()},
    tags=["crm", "health"],
    doc_md=__doc__,
    params={
        "company_ids": dag_params.company_ids(),
        "crm_types": dag_params.crm_types(),
    },
) as dag:
    summary = task(task_id="summarize", trigger_rule="all_done")(summarize_health)()
    for crm_type in HOOKS:
        companies = task(task_id=f"discover_{crm_type}")(discover_health_companies)(crm_type=crm_type)
        checked = (
            task(task_id=f"check_{crm_type}", pool=pool_name(crm_type), map_index_template="{{ company_label }}")(
                check_company
            )
            .partial(crm_type=crm_type)
            .expand(company_id=companies)
        )
        checked >> summary
    summary >> check_failures_task()
