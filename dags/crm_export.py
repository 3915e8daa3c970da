"""Check-ins with their sync status per CRM, exported to CSV and Parquet with a manifest.

Manual trigger with a date range; also scheduled daily (the previous day), but **paused at creation**:
unpause it to get a daily export. See the README, "Exporting and importing files" (`crm_export`).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from crm_sync.budget import task_timeout
from crm_sync.export import DEFAULT_CHUNK_SIZE, FORMATS
from crm_sync.settings import known_crm_types
from crm_sync.tasks import params as dag_params
from crm_sync.tasks.export import export_task

with DAG(
    dag_id="crm_export",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,  # the daily export is opt-in: unpause the DAG to switch it on
    max_active_runs=2,
    default_args={"retries": 1, "execution_timeout": task_timeout(long=True)},
    tags=["crm", "export"],
    doc_md=__doc__,
    params={
        "company_ids": dag_params.company_ids("Only these companies (empty: every company)."),
        "date_from": dag_params.day(
            "From (date)", "First day of check-ins to export, UTC (empty: the same day as date_to)."
        ),
        "date_to": dag_params.day(
            "To (date, inclusive)", "Last day of check-ins to export, UTC (empty: the day before the run)."
        ),
        "formats": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(FORMATS)},
            examples=list(FORMATS),
            title="Formats",
            description="Files to write: csv, parquet (empty: both).",
        ),
        "crm_types": dag_params.crm_types(
            "Only the sync status of these CRMs (empty: every CRM with a ledger row).", choices=known_crm_types()
        ),
        "output_dir": Param(
            None,
            type=["null", "string"],
            title="Output folder",
            description="Folder for the export folder, relative to the export folder "
            "CRM_SYNC_EXPORT_DIR (empty: that folder; a path leading out of it is "
            "refused).",
        ),
        "csv_escape_formulas": Param(
            True,
            type="boolean",
            title="Escape formulas in the CSV",
            description="Prefix CSV text cells starting with = + - @ tab or CR with ' so "
            "a spreadsheet does not run them (off: values as they are, for "
            "programs reading the file; Parquet is never escaped).",
        ),
        "chunk_size": Param(
            DEFAULT_CHUNK_SIZE,
            type="integer",
            minimum=1,
            maximum=500000,
            title="Chunk size",
            description="Rows per chunk (and Parquet row group); memory grows with it, not with the range.",
        ),
    },
) as dag:
    task(task_id="export_check_ins")(export_task)()
