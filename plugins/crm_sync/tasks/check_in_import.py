"""The task of ``crm_import``: check-ins from a CSV file (:mod:`crm_sync.check_in_import`)."""

from __future__ import annotations

from typing import Any

from crm_sync import paths
from crm_sync.check_in_import import ImportFileError, run_import
from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.tasks.common import param_errors, params_of, sync_db


def import_task(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """Its XCom is the report (counts and file paths, no row data).

    ``file_path`` and ``output_dir`` are relative to ``CRM_SYNC_IMPORT_DIR`` (:mod:`crm_sync.paths`). A bad
    param or a file that cannot be imported as a whole fails the task without a retry.
    """
    params = params_of(context)
    company_id = params.get("company_id")
    file_path = (params.get("file_path") or "").strip()
    with param_errors(ImportFileError, paths.PathRefused):
        if not isinstance(company_id, int) or isinstance(company_id, bool):
            raise ImportFileError("company_id is required (the company the check-ins belong to)")
        if not file_path:
            raise ImportFileError(
                "file_path is required (the CSV file, relative to the import folder CRM_SYNC_IMPORT_DIR)"
            )
        where = paths.root("import")
        path = paths.confine("file_path", file_path, where, must_exist=True)
        paths.open_regular(path, where=where).close()  # a FIFO or folder fails here, before any DB work
        output_dir = (
            paths.confine("output_dir", params.get("output_dir"), where)
            if (params.get("output_dir") or "").strip()
            else None
        )
        # hide_parameters: a failed INSERT must not print the file's rows (the statement's parameters) in the log.
        with sync_db(db_conn_id, migrated=True, hide_parameters=True) as engine:
            report = run_import(
                engine,
                company_id,
                path,
                run_id=context["run_id"],
                dry_run=bool(params.get("dry_run")),
                output_dir=output_dir,
                root=where,
            )
    return report.as_dict()
