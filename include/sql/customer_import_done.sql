-- Has this company x CRM had a finished customer import? (the automatic first run's check; 'unsupported'
-- is final too: that CRM cannot list customers, trying again every run would only log the same)
SELECT EXISTS (
    SELECT 1 FROM crm_sync.customer_imports
    WHERE company_id = :company_id AND crm_type = :crm_type AND status IN ('success', 'unsupported')
      -- of the CRM account the company x CRM is bound to (migration 0007); before the first binding,
      -- imports recorded before that migration count (they are adopted with the other rows)
      AND crm_account IS NOT DISTINCT FROM (SELECT a.crm_account FROM crm_sync.crm_accounts a
                                            WHERE a.company_id = :company_id AND a.crm_type = :crm_type)
)
