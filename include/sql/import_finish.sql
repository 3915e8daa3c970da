-- crm_import: an import run's outcome.
UPDATE crm_sync.check_in_imports
SET status = :status, rows_read = :rows_read, inserted = :inserted, rejected = :rejected,
    duplicates_in_file = :duplicates_in_file, already_imported = :already_imported,
    rejects_file = :rejects_file, report_file = :report_file, error = :error, finished_at = now()
WHERE id = :import_id
