"""The tasks of ``crm_merge_duplicates``: check the params, merge one company x CRM's duplicate customers
(:mod:`crm_sync.customer_merge`)."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from crm_hooks.registry import HOOKS
from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.tasks.common import param_errors, params_of, sync_db

log = logging.getLogger(__name__)


def merge_params(params: dict[str, Any]) -> tuple[int, str, bool]:
    """``company_id``, ``crm_type`` and ``dry_run`` from the trigger form, checked as hostile input: a
    ``ValueError`` (the task fails without a retry) names the param and what it must be."""
    company_id = params.get("company_id")
    if not isinstance(company_id, int) or isinstance(company_id, bool) or company_id < 1:
        raise ValueError("company_id is required: the id of the company whose duplicates are merged")
    crm_type = params.get("crm_type")
    if not isinstance(crm_type, str) or crm_type not in HOOKS:
        raise ValueError(f"crm_type is required: one of {', '.join(HOOKS)}")
    dry_run = params.get("dry_run", True)
    if not isinstance(dry_run, bool):
        raise ValueError("dry_run must be true or false")
    return company_id, crm_type, dry_run


def check_params_task(**context: Any) -> dict[str, Any]:
    """Fail at once (no retry, no merge task runs) when a param is missing or not what it must be."""
    with param_errors():
        company_id, crm_type, dry_run = merge_params(params_of(context))
    return {"company_id": company_id, "crm_type": crm_type, "dry_run": dry_run}


def merge_task(crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """Plan (and unless ``dry_run`` apply) the merge of ``crm_type`` (skipped when the run is for another CRM);
    the CSV list goes to ``<CRM_SYNC_REPORT_DIR>/<run id>/``.

    Its XCom is the counts and CRM ids (no names, emails or phones). A sync of the same company x CRM running
    meanwhile fails the task at once, nothing done (trigger it again later); a CRM error on one group is
    recorded and fails the task after the other groups were done.
    """
    from crm_sync import paths
    from crm_sync.customer_merge import MergeRefused, merge_duplicates

    with param_errors():
        company_id, wanted, dry_run = merge_params(params_of(context))
        target = paths.child(paths.root("report").path, context["run_id"])
    if wanted != crm_type:
        raise AirflowSkipException(f"this run merges {wanted} customers, not {crm_type}")
    with sync_db(db_conn_id, migrated=True) as engine:
        try:
            result = merge_duplicates(
                engine, company_id=company_id, crm_type=crm_type, dry_run=dry_run, output_dir=target
            )
        except MergeRefused as exc:
            raise AirflowFailException(str(exc)) from None
    summary = result.as_dict()
    log.info(
        "company %s x %s%s: %d group(s), %d merged in the CRM, %d listed for a person, %d not merged; "
        "%d map and %d ledger rows re-pointed; list: %s",
        company_id,
        crm_type,
        " (dry run: nothing changed)" if dry_run else "",
        result.groups,
        result.merged_in_crm,
        result.listed_for_a_person,
        result.skipped,
        result.map_rows_moved,
        result.ledger_rows_moved,
        result.csv_path,
    )
    for warning in result.warnings:
        log.warning("%s", warning)
    if result.errors:
        raise AirflowFailException("; ".join(result.errors)[:2000])
    return summary
