"""The task of ``crm_export``: one export folder (:mod:`crm_sync.export`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.export import default_export_root, resolve_params, run_date_of, run_export
from crm_sync.tasks.common import param_errors, params_of, sync_db

log = logging.getLogger(__name__)


def export_task(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """One export folder; its XCom is the manifest's summary (no row data). A bad param (or an output folder
    outside the export folder) fails the task without a retry."""
    raw = params_of(context)
    with param_errors():
        params = resolve_params(raw, run_date=run_date_of(context))
        root = default_export_root(raw.get("output_dir"))
    with sync_db(db_conn_id, migrated=True) as engine:  # the ledger must exist even before the first sync
        manifest = run_export(engine, params, root, run_id=context["run_id"])
    log.info(
        "exported %d rows (%d check-ins, %s to %s) to %s",
        manifest["row_count"],
        manifest["check_in_count"],
        params.date_from,
        params.date_to,
        manifest["folder"],
    )
    return {
        "folder": manifest["folder"],
        "manifest": str(Path(manifest["folder"]) / "manifest.json"),
        "row_count": manifest["row_count"],
        "check_in_count": manifest["check_in_count"],
        "date_from": params.date_from.isoformat(),
        "date_to": params.date_to.isoformat(),
        "files": [{k: f[k] for k in ("name", "rows", "sha256")} for f in manifest["files"]],
    }
