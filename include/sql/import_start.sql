-- crm_import: an import run begins (committed at once, so a failed import is still on record).
INSERT INTO crm_sync.check_in_imports (run_id, company_id, file_name, file_sha256, dry_run, status)
VALUES (:run_id, :company_id, :file_name, :file_sha256, :dry_run, 'running')
RETURNING id
