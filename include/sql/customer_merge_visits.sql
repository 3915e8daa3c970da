-- crm_merge_duplicates: check-ins with a visit record per CRM customer (the survivor holds the most).
SELECT crm_customer_id, count(*)
FROM crm_sync.ledger
WHERE company_id = :company_id AND crm_type = :crm_type AND crm_customer_id IS NOT NULL
  AND crm_visit_id IS NOT NULL
  AND (CAST(:crm_account AS text) IS NULL OR crm_account = :crm_account)
GROUP BY crm_customer_id
