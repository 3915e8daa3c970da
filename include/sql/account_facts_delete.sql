DELETE FROM crm_sync.account_facts
WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account = :crm_account
