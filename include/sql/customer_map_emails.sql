-- The emails the customer map holds for some CRM customers (identity: does a customer found by phone have one?)
SELECT crm_customer_id, match_key
FROM crm_sync.customer_map
WHERE company_id = :company_id AND crm_type = :crm_type AND crm_customer_id = ANY(:ids)
  AND match_key LIKE 'email:%'
  AND (CAST(:crm_account AS text) IS NULL OR crm_account = :crm_account)  -- this CRM account's customers only
