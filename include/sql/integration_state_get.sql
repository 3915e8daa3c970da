SELECT settled_id FROM crm_sync.integration_state WHERE company_id = :company_id AND crm_type = :crm_type
