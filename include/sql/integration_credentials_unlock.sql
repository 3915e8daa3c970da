SELECT pg_advisory_unlock(hashtext('crm_sync.credentials:' || :crm_type), :company_id)
