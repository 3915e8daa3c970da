-- One account binding change at a time per company x CRM (the sync, an import, a reconciliation).
SELECT pg_advisory_xact_lock(hashtext('crm_sync.account:' || :crm_type), :company_id)
