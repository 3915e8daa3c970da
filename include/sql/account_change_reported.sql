UPDATE crm_sync.crm_accounts SET change_reported = true
 WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account = :crm_account
