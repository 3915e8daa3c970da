DELETE FROM crm_sync.learned_rate_limits
WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account = :crm_account AND limit_name = :limit_name
