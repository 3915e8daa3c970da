"""Tasks of ``crm_customer_import``: discovery, one company x CRM import, the summary.

The import itself: :mod:`crm_sync.customer_import`.
"""

from __future__ import annotations

import logging
from typing import Any

from crm_hooks.errors import ConfigurationError
from crm_sync.customer_import import format_imports, import_customers, imports_for, record_failure
from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.integrations import load_integration
from crm_sync.tasks.common import discover, param_errors, params_of, sync_db, wants

log = logging.getLogger(__name__)


def discover_import_companies(crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> list[int]:
    """Ids of the companies with an active, usable ``crm_type`` integration.

    The sync's discovery, with the DAG's ``company_ids`` / ``crm_types`` params. A company whose settings for
    this CRM are unusable gets a failed import row with the reason (not an entry in the app's sync history:
    nothing was synced).
    """
    if not wants(crm_type, context):
        return []
    run_id, dag_id = context["run_id"], context["dag"].dag_id
    with sync_db(db_conn_id) as engine:
        return discover(
            engine,
            crm_type,
            purpose="import from",
            company_ids=params_of(context).get("company_ids"),
            on_problem=lambda p: record_failure(engine, p.company_id, crm_type, p.error, run_id=run_id, dag_id=dag_id),
        ).company_ids


def import_company(
    company_id: int, crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any
) -> dict[str, Any]:
    """Import one company x CRM; its XCom is the counts (no credentials).

    Credentials are read from the database here, never passed through XCom. A configuration
    problem is recorded as a failed import, like a CRM error; the other companies go on.
    """
    params = params_of(context)
    run_id, dag_id = context["run_id"], context["dag"].dag_id
    with param_errors():
        rate_share = float(params.get("rate_share") or 1.0)
        page_size = int(params["page_size"]) if params.get("page_size") else None
    with sync_db(db_conn_id) as engine:
        try:
            integration = load_integration(engine, int(company_id), crm_type)
        except ConfigurationError as exc:
            result = record_failure(engine, int(company_id), crm_type, str(exc), run_id=run_id, dag_id=dag_id)
        else:
            result = import_customers(
                engine,
                int(company_id),
                crm_type,
                integration,
                run_id=run_id,
                dag_id=dag_id,
                rate_share=rate_share,
                page_size=page_size,
            )
    return result.summary()


def summarize_imports(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """Log the run's table and return its totals."""
    with sync_db(db_conn_id) as engine:
        rows = imports_for(engine, context["run_id"])
    log.info("CRM customer import summary for run %s\n%s", context["run_id"], format_imports(rows))
    return {
        "imports": len(rows),
        "failed": sum(r["status"] != "success" for r in rows),
        "customers_indexed": sum(r["customers_indexed"] for r in rows),
        "keys_added": sum(r["keys_added"] for r in rows),
        "duplicate_groups": sum(r["duplicate_groups"] for r in rows),
    }
