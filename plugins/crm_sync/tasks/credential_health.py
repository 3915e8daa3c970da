"""Tasks of ``crm_credential_health`` (the DAG file only wires them): discovery, one check per company x CRM,
the summary. The check itself: :mod:`crm_sync.credential_health`.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context

from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.tasks.common import discover, params_of, sync_db, wants

log = logging.getLogger(__name__)


def discover_health_companies(crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> list[int]:
    """Ids of the companies with an active, usable ``crm_type`` integration (after the params' filters).

    A company whose settings for this CRM are unusable is logged and left out: ``crm_incremental_sync``
    already reports it in the app as a ``config_error`` run.
    """
    if not wants(crm_type, context):
        return []
    with sync_db(db_conn_id) as engine:
        return discover(
            engine, crm_type, purpose="check the credentials of", company_ids=params_of(context).get("company_ids")
        ).company_ids


def check_company(company_id: int, crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict:
    """Check one company x CRM's credentials; its XCom is the status and a redacted message.

    Bad credentials are a result, not a task failure: the task succeeds and the row says so (a failed task
    here would only mean the check itself could not run, e.g. the database was unreachable).
    """
    from crm_sync.credential_health import check_credentials

    get_current_context()["company_label"] = f"company {company_id}"  # the mapped task's label in the UI
    with sync_db(db_conn_id) as engine:
        result = check_credentials(
            engine, int(company_id), crm_type, run_id=context["run_id"], dag_id=context["dag"].dag_id
        )
    return result.as_dict()


def summarize_health(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """Log the run's checks (problems first) and return counts per status and the companies with problems."""
    from crm_sync.credential_health import HealthStatus, checks_for, format_checks

    with sync_db(db_conn_id) as engine:
        rows = checks_for(engine, context["run_id"])
    problems = [r for r in rows if r["status"] != HealthStatus.HEALTHY]
    log.log(
        logging.WARNING if problems else logging.INFO,
        "CRM credential health for run %s: %d of %d company x CRM connections need attention\n%s",
        context["run_id"],
        len(problems),
        len(rows),
        format_checks(rows),
    )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {
        "checked": len(rows),
        "by_status": counts,
        "problems": [
            {"company_id": r["company_id"], "crm_type": r["crm_type"], "status": r["status"]} for r in problems
        ],
    }
