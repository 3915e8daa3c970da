-- crm_merge_duplicates: this company x CRM account's customer map (match keys, journal rows included).
SELECT match_key, crm_customer_id, created_by_sync, created_at
FROM crm_sync.customer_map
WHERE company_id = :company_id AND crm_type = :crm_type
  AND (CAST(:crm_account AS text) IS NULL OR crm_account = :crm_account)
