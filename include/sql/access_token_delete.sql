DELETE FROM crm_sync.access_tokens WHERE company_id = :company_id AND crm_type = :crm_type
