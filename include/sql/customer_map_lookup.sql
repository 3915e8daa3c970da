SELECT match_key, crm_customer_id, crm_parent_id, payload_hash
FROM crm_sync.customer_map
WHERE company_id = :company_id AND crm_type = :crm_type AND match_key = ANY(:keys)
  AND (CAST(:crm_account AS text) IS NULL OR crm_account = :crm_account)  -- this CRM account's customers only
