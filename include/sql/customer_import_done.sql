-- Has this company x CRM had a finished customer import? (the automatic first run's check; 'unsupported'
-- is final too: that CRM cannot list customers, trying again every run would only log the same)
SELECT EXISTS (
    SELECT 1 FROM crm_sync.customer_imports
    WHERE company_id = :company_id AND crm_type = :crm_type AND status IN ('success', 'unsupported')
)
