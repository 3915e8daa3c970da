SELECT crm_account, previous_account, changed_at, change_reported
FROM crm_sync.crm_accounts WHERE company_id = :company_id AND crm_type = :crm_type
