-- crm_import: one import per company at a time (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('crm_sync.check_in_import'), :company_id)
