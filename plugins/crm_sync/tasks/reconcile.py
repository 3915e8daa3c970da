"""Tasks of ``crm_reconciliation_report`` (the DAG file only wires them).

Nothing here writes the app's ``crm_sync_history`` or ``lastSyncedAt``: configuration problems
are logged (the incremental sync already reports them in the app), and a report is not a sync.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.tasks.common import discover, failed_upstream, param_errors, params_of, sync_db, wants

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_SIZE = 1000
DEFAULT_DAYS = 30


def _date_range(params: dict[str, Any]) -> tuple[date, date]:
    """``[start, end)`` of the check-ins compared, from the params (a bad range fails the task, no retry)."""
    from crm_sync.reconcile import date_range

    with param_errors():
        return date_range(params.get("date_from"), params.get("date_to"), int(params.get("days") or DEFAULT_DAYS))


def discover_reconcile(crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> list[int]:
    """Ids of the companies with an active ``crm_type`` integration to reconcile (after the params' filters).

    A company whose settings for this CRM are unusable is logged and left out (the sync reports it in the app).
    """
    if not wants(crm_type, context):
        return []
    with sync_db(db_conn_id) as engine:
        return discover(
            engine, crm_type, purpose="reconcile against", company_ids=params_of(context).get("company_ids")
        ).company_ids


def reconcile_company(
    company_id: int, crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any
) -> dict[str, Any]:
    """The three-way comparison of one company x CRM; its XCom is the totals (no secrets, no customer data)."""
    from crm_sync.reconcile import reconcile_integration

    params = params_of(context)
    get_current_context()["company_label"] = f"company {company_id}"  # the mapped task's label in the UI
    start, end = _date_range(params)
    with param_errors():
        sample_size = params.get("sample_size")
        sample_size = DEFAULT_SAMPLE_SIZE if sample_size is None else int(sample_size)
    with sync_db(db_conn_id) as engine:
        result = reconcile_integration(
            engine,
            company_id=int(company_id),
            crm_type=crm_type,
            run_id=context["run_id"],
            dag_id=context["dag"].dag_id,
            range_start=start,
            range_end=end,
            sample_size=sample_size,
        )
    summary = result.as_dict()
    log.info("company %s x %s, check-ins created %s..%s: %s", company_id, crm_type, start, end, summary)
    return summary


def requeue_task(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, int]:
    """With ``requeue: true``: put this run's missing, stale and never-synced rows back in line."""
    from crm_sync.reconcile import requeue, runs_for

    if not params_of(context).get("requeue"):
        raise AirflowSkipException("requeue is false: nothing is put back in line (set requeue: true to do so)")
    with sync_db(db_conn_id) as engine:
        ids = [r["id"] for r in runs_for(engine, context["run_id"])]
        counts = requeue(engine, ids)
    log.info("requeued for the next crm_incremental_sync run: %s", dict(counts) or "nothing")
    return dict(counts)


def report_task(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """Sync-quality metrics (``crm_sync.quality_daily``) and the HTML/CSV report of this run, for the same
    companies, CRMs and days as the comparison. The report goes to ``<CRM_SYNC_REPORT_DIR>/<run id>/`` (the run
    id made a safe folder name: :func:`crm_sync.paths.child`); its XCom is the paths and headline figures (no
    customer data)."""
    from datetime import timedelta

    from crm_sync import paths
    from crm_sync.quality import DEFAULT_MIN_SUCCESS_RATE, compute_quality_metrics
    from crm_sync.report import build_report

    params = params_of(context)
    start, end = _date_range(params)
    scope = {
        "day_from": start,
        "day_to": end - timedelta(days=1),
        "company_ids": params.get("company_ids") or None,
        "crm_types": params.get("crm_types") or None,
    }
    with param_errors():
        target = paths.child(paths.root("report").path, context["run_id"])
        min_rate = params.get("min_success_rate")
        min_rate = DEFAULT_MIN_SUCCESS_RATE if min_rate is None else float(min_rate)
    with sync_db(db_conn_id) as engine:
        metrics = compute_quality_metrics(engine, **scope)
        out = build_report(engine, run_id=context["run_id"], output_dir=target, **scope, min_success_rate=min_rate)
    log.info("quality metrics: %d rows; report written to %s", metrics, target)
    return {"quality_rows": metrics, **out}


def alert_task(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> str:
    """Fail (so Airflow's failure notifications fire) when a company x CRM crosses a threshold."""
    from crm_sync.reconcile import alert_problems, runs_for

    params = params_of(context)
    with sync_db(db_conn_id) as engine:
        rows = runs_for(engine, context["run_id"])
    min_rate = params.get("min_success_rate")
    problems = alert_problems(
        rows,
        min_success_rate=None if min_rate is None else float(min_rate),
        fail_on_missing=bool(params.get("fail_on_missing", True)),
    )
    failed = _failed_upstream(context)
    if failed:
        # all_done lets this task run after a failed reconciliation; without this line the run would end green.
        problems.append(f"{failed} upstream task(s) (discover, reconcile, requeue or report) failed: see their logs")
    if problems:
        raise AirflowFailException(
            f"CRM reconciliation thresholds crossed in {len(problems)} case(s):\n"
            + "\n".join(f"- {p}" for p in problems)
        )
    message = f"{len(rows)} company x CRM reconciliations within thresholds"
    log.info(message)
    return message


def _failed_upstream(context: dict[str, Any]) -> int:
    """Failed upstream task instances of this run (see :func:`crm_sync.tasks.common.failed_upstream`)."""
    dag = context["dag"]
    task_ids = [t for t in dag.task_ids if t.startswith(("discover_", "reconcile_")) or t in ("requeue", "report")]
    return failed_upstream(context, task_ids)
