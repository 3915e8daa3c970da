"""Manual: index the customers that already exist in each company's CRM, so the sync does not create twins.

discover_<crm> -> import_<crm> (one mapped task per company, pool crm_<crm>) -> summarize

Every customer of the CRM is read (its list endpoint), its email and phone normalised as the
sync normalises check-ins, and the match keys added to crm_sync.customer_map (existing mappings
are kept). The incremental sync runs the same import by itself before an integration's first sync.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from crm_hooks.registry import HOOKS
from crm_sync.budget import task_timeout
from crm_sync.pools import pool_name
from crm_sync.tasks import params as dag_params
from crm_sync.tasks.common import check_failures_task
from crm_sync.tasks.customer_import import discover_import_companies, import_company, summarize_imports

with DAG(
    dag_id="crm_customer_import",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "execution_timeout": task_timeout(long=True)},
    tags=["crm", "import"],
    doc_md=__doc__,
    params={
        "company_ids": dag_params.company_ids(),
        "crm_types": dag_params.crm_types(),
        "page_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=500,
            title="Page size",
            description="CRM customers per list request (empty: the CRM's largest page).",
        ),
        "rate_share": dag_params.rate_share(),
    },
) as dag:
    summary = task(task_id="summarize", trigger_rule="all_done")(summarize_imports)()
    for crm_type in HOOKS:
        companies = task(task_id=f"discover_{crm_type}")(discover_import_companies)(crm_type=crm_type)
        imported = (
            task(task_id=f"import_{crm_type}", pool=pool_name(crm_type))(import_company)
            .partial(crm_type=crm_type)
            .expand(company_id=companies)
        )
        imported >> summary
    summary >> check_failures_task()
