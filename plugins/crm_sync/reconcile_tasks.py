"""Python callables of ``crm_reconciliation_report``'s tasks (the DAG file only wires them).

Nothing here writes the app's ``crm_sync_history`` or ``lastSyncedAt``: configuration problems
are logged (the incremental sync already reports them in the app), and a report is not a sync.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_SIZE = 1000
DEFAULT_DAYS = 30


def _engine(db_conn_id: str):
    from crm_sync.db import make_engine, url_from_connection

    return make_engine(url_from_connection(db_conn_id))


def _params(context: dict[str, Any]) -> dict[str, Any]:
    return dict(context.get("params") or {})


def discover_reconcile(crm_type: str, db_conn_id: str = "rankitpro_db", **context: Any) -> list[int]:
    """Ids of the companies with an active ``crm_type`` integration to reconcile (after the params' filters)."""
    from crm_sync.db import migrate
    from crm_sync.integrations import discover

    params = _params(context)
    wanted = params.get("crm_types") or None
    if wanted and crm_type not in wanted:
        return []
    engine = _engine(db_conn_id)
    try:
        migrate(engine)
        items, problems = discover(engine, crm_types=[crm_type], company_ids=params.get("company_ids") or None)
    finally:
        engine.dispose()
    for p in problems:
        if p.crm_type == crm_type:
            log.warning("company %s (%s) %s not reconciled: %s", p.company_id, p.company_name, crm_type, p.error)
    ids = [item.company_id for item in items]
    log.info("%d companies to reconcile against %s", len(ids), crm_type)
    return ids


def reconcile_company(company_id: int, crm_type: str, db_conn_id: str = "rankitpro_db",
                      **context: Any) -> dict[str, Any]:
    """The three-way comparison of one company x CRM; its XCom is the totals (no secrets, no customer data)."""
    from airflow.sdk import get_current_context

    from crm_sync.reconcile import date_range, reconcile_integration

    params = _params(context)
    get_current_context()["company_label"] = f"company {company_id}"  # the mapped task's label in the UI
    start, end = date_range(params.get("date_from"), params.get("date_to"), int(params.get("days") or DEFAULT_DAYS))
    sample_size = params.get("sample_size")
    engine = _engine(db_conn_id)
    try:
        result = reconcile_integration(
            engine, company_id=int(company_id), crm_type=crm_type, run_id=context["run_id"],
            dag_id=context["dag"].dag_id, range_start=start, range_end=end,
            sample_size=DEFAULT_SAMPLE_SIZE if sample_size is None else int(sample_size))
    finally:
        engine.dispose()
    summary = result.as_dict()
    log.info("company %s x %s, check-ins created %s..%s: %s", company_id, crm_type, start, end, summary)
    return summary


def requeue_task(db_conn_id: str = "rankitpro_db", **context: Any) -> dict[str, int]:
    """With ``requeue: true``: put this run's missing, stale and never-synced rows back in line."""
    from airflow.sdk.exceptions import AirflowSkipException

    from crm_sync.reconcile import requeue, runs_for

    if not _params(context).get("requeue"):
        raise AirflowSkipException("requeue is false: nothing is put back in line (set requeue: true to do so)")
    engine = _engine(db_conn_id)
    try:
        ids = [r["id"] for r in runs_for(engine, context["run_id"])]
        counts = requeue(engine, ids)
    finally:
        engine.dispose()
    log.info("requeued for the next crm_incremental_sync run: %s", dict(counts) or "nothing")
    return dict(counts)


def report_task(db_conn_id: str = "rankitpro_db", **context: Any) -> dict[str, Any]:
    """Sync-quality metrics (``crm_sync.quality_daily``) and the HTML/CSV report of this run, for the same
    companies, CRMs and days as the comparison. The report goes to ``<CRM_SYNC_REPORT_DIR>/<run id>/`` (the run
    id made a safe folder name: :func:`crm_sync.paths.child`); its XCom is the paths and headline figures (no
    customer data)."""
    from datetime import timedelta

    from crm_sync import paths
    from crm_sync.quality import DEFAULT_MIN_SUCCESS_RATE, compute_quality_metrics
    from crm_sync.reconcile import date_range
    from crm_sync.report import build_report

    params = _params(context)
    start, end = date_range(params.get("date_from"), params.get("date_to"), int(params.get("days") or DEFAULT_DAYS))
    scope = {"day_from": start, "day_to": end - timedelta(days=1),
             "company_ids": params.get("company_ids") or None, "crm_types": params.get("crm_types") or None}
    with paths.task_errors():
        target = paths.child(paths.root("report").path, context["run_id"])
    min_rate = params.get("min_success_rate")
    engine = _engine(db_conn_id)
    try:
        metrics = compute_quality_metrics(engine, **scope)
        out = build_report(engine, run_id=context["run_id"], output_dir=target, **scope,
                           min_success_rate=DEFAULT_MIN_SUCCESS_RATE if min_rate is None else float(min_rate))
    finally:
        engine.dispose()
    log.info("quality metrics: %d rows; report written to %s", metrics, target)
    return {"quality_rows": metrics, **out}


def alert_task(db_conn_id: str = "rankitpro_db", **context: Any) -> str:
    """Fail (so Airflow's failure notifications fire) when a company x CRM crosses a threshold."""
    from airflow.sdk.exceptions import AirflowFailException

    from crm_sync.reconcile import alert_problems, runs_for

    params = _params(context)
    engine = _engine(db_conn_id)
    try:
        rows = runs_for(engine, context["run_id"])
    finally:
        engine.dispose()
    min_rate = params.get("min_success_rate")
    problems = alert_problems(rows, min_success_rate=None if min_rate is None else float(min_rate),
                              fail_on_missing=bool(params.get("fail_on_missing", True)))
    failed = _failed_upstream(context)
    if failed:
        # all_done lets this task run after a failed reconciliation; without this line the run would end green.
        problems.append(f"{failed} upstream task(s) (discover, reconcile, requeue or report) failed: see their logs")
    if problems:
        raise AirflowFailException(f"CRM reconciliation thresholds crossed in {len(problems)} case(s):\n"
                                   + "\n".join(f"- {p}" for p in problems))
    message = f"{len(rows)} company x CRM reconciliations within thresholds"
    log.info(message)
    return message


def _failed_upstream(context: dict[str, Any]) -> int:
    """Failed upstream task instances of this run (see :func:`crm_sync.tasks.failed_upstream`)."""
    from crm_sync.tasks import failed_upstream

    dag = context["dag"]
    task_ids = [t for t in dag.task_ids if t.startswith(("discover_", "reconcile_")) or t in ("requeue", "report")]
    return failed_upstream(context, task_ids)
