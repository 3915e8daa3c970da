"""Check-ins from a CSV file (e.g. a company's previous system) into Rank It Pro; manual trigger only.

Every row is validated; invalid rows are listed in rejects.csv with line, column and reason; the valid
rows go in in one transaction, and a re-import never inserts a row twice. The next crm_incremental_sync
carries the new check-ins to the company's CRMs. See the README, "Exporting and importing files" (`crm_import`).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from crm_sync.budget import task_timeout
from crm_sync.tasks.check_in_import import import_task

with DAG(
    dag_id="crm_import",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # retries 0: a failed import rolled back; re-run it once the cause is fixed
    default_args={"retries": 0, "execution_timeout": task_timeout(long=True)},
    tags=["crm", "import"],
    doc_md=__doc__,
    params={
        "company_id": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Company id",
            description="The company the check-ins belong to (required).",
        ),
        "file_path": Param(
            None,
            type=["null", "string"],
            title="CSV file",
            description="The CSV file, relative to the import folder CRM_SYNC_IMPORT_DIR "
            "(required; a path leading out of that folder is refused).",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Validate and write the rejects file, insert nothing."
        ),
        "output_dir": Param(
            None,
            type=["null", "string"],
            title="Report folder",
            description="Folder for the rejects and report files, inside the import folder "
            "(empty: beside the CSV file).",
        ),
    },
) as dag:
    task(task_id="import_check_ins")(import_task)()
