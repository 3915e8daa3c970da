-- crm_import: source keys of this company already imported, with the check-in each became.
SELECT source_key, check_in_id, import_id, line
FROM crm_sync.check_in_import_rows
WHERE company_id = :company_id AND source_key = ANY(CAST(:keys AS text[]))
