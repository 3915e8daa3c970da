-- Keys of CRM customers found by the import. DO NOTHING: a mapping that exists (made by the sync,
-- or by an earlier import) is never overwritten. Returns the keys actually added.
INSERT INTO crm_sync.customer_map (company_id, crm_type, match_key, crm_customer_id, crm_parent_id, created_by_sync,
                                  crm_account)
SELECT :company_id, :crm_type, t.match_key, t.crm_customer_id, t.crm_parent_id, false, :crm_account
FROM unnest(CAST(:match_keys AS text[]), CAST(:crm_customer_ids AS text[]), CAST(:crm_parent_ids AS text[]))
     AS t(match_key, crm_customer_id, crm_parent_id)
ON CONFLICT (company_id, crm_type, match_key) DO NOTHING
RETURNING match_key
