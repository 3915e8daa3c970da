"""Python callables of the sync DAGs' small tasks (the DAG files only wire them)."""

from __future__ import annotations

import logging
from typing import Any

from crm_hooks.registry import HOOKS

log = logging.getLogger(__name__)


def _discover(db_conn_id: str, context: dict[str, Any], crm_types: list[str] | None):
    """Migrate the sync schema if needed, then discover integrations (see :func:`integrations.discover`)."""
    from crm_sync.db import make_engine, migrate, url_from_connection
    from crm_sync.integrations import discover

    params = context.get("params") or {}
    engine = make_engine(url_from_connection(db_conn_id))
    migrate(engine)
    items, problems = discover(engine, crm_types=crm_types, company_ids=params.get("company_ids") or None)
    return engine, items, problems


def _record(engine, context: dict[str, Any], problems) -> None:
    from crm_sync.summary import record_config_problem

    for p in problems:
        log.warning("company %s (%s) %s: %s", p.company_id, p.company_name, p.crm_type or "-", p.error)
        record_config_problem(engine, context["run_id"], context["dag"].dag_id, p.company_id, p.crm_type, p.error)


def discover_companies(crm_type: str, db_conn_id: str = "rankitpro_db", **context: Any) -> list[int]:
    """Ids of the companies with an active, usable ``crm_type`` integration (only ids go to XCom).

    Problems with this CRM's settings (no credentials, not an object) are recorded
    as ``config_error`` runs and reported; the company is skipped, the others go on.
    """
    wanted = (context.get("params") or {}).get("crm_types") or None
    if wanted and crm_type not in wanted:
        return []
    engine, items, problems = _discover(db_conn_id, context, [crm_type])
    # Problems without a CRM type (malformed JSON) are check_configurations' to report, once.
    problems = [p for p in problems if p.crm_type == crm_type]
    try:
        _record(engine, context, problems)
    finally:
        engine.dispose()
    ids = [item.company_id for item in items]
    log.info("%d companies to sync into %s; %d with configuration problems", len(ids), crm_type, len(problems))
    return ids


def check_configurations(db_conn_id: str = "rankitpro_db", **context: Any) -> int:
    """Record the problems no CRM task owns: malformed JSON, unknown or unsupported CRM types."""
    engine, _, problems = _discover(db_conn_id, context, None)
    orphans = [p for p in problems if p.crm_type is None or p.crm_type not in HOOKS]
    try:
        _record(engine, context, orphans)
    finally:
        engine.dispose()
    return len(orphans)


def summarize_run(db_conn_id: str = "rankitpro_db", **context: Any) -> dict[str, Any]:
    """Log the run's table (per company x CRM) and return its totals."""
    from crm_sync.db import make_engine, url_from_connection
    from crm_sync.summary import format_table, runs_for

    engine = make_engine(url_from_connection(db_conn_id))
    try:
        rows = runs_for(engine, context["run_id"])
    finally:
        engine.dispose()
    log.info("CRM sync summary for run %s\n%s", context["run_id"], format_table(rows))
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    return {"integrations": len(rows), "by_status": by_status,
            "synced": sum(r["synced"] for r in rows), "quarantined": sum(r["quarantined"] for r in rows),
            "failed": sum(r["failed"] for r in rows)}


def failed_upstream(context: dict[str, Any], task_ids: list[str] | None = None) -> int:
    """Failed (or upstream_failed) task instances of this DAG run among ``task_ids``.

    Default: every task upstream of the current one, at any depth. Uses the Task SDK's
    ``ti.get_ti_count``, so it counts mapped task instances one by one (one per company).
    """
    dag = context["dag"]
    ids = sorted(task_ids if task_ids is not None else context["task"].get_flat_relative_ids(upstream=True))
    if not ids:
        return 0
    return int(context["ti"].get_ti_count(dag_id=dag.dag_id, task_ids=ids, run_ids=[context["run_id"]],
                                          states=["failed", "upstream_failed"]) or 0)


def check_failures(**context: Any) -> str:
    """The leaf task of a DAG whose summary task runs ``all_done``: fail when any task of the run failed.

    A summary that runs after failures is a leaf that succeeds, and Airflow sets a DAG run's state
    from its leaves: without this task a run whose sync tasks failed would end ``success`` and no
    failure notification would fire. The other companies' tasks have run to the end by then.
    """
    from airflow.sdk.exceptions import AirflowFailException

    failed = failed_upstream(context)
    if failed:
        raise AirflowFailException(f"{failed} task instance(s) of this run failed: see their logs (the other "
                                   "companies were processed; the summary task lists the outcome)")
    return "no task of this run failed"
