-- crm_merge_duplicates: check-ins of a merged-away customer belong to the survivor (its visit records move
-- with a CRM merge; in CRMs without one they stay on the old record until a person merges it).
UPDATE crm_sync.ledger
   SET crm_customer_id = :survivor
 WHERE company_id = :company_id AND crm_type = :crm_type
   AND crm_customer_id = ANY(CAST(:merged AS text[]))
   AND (CAST(:crm_account AS text) IS NULL OR crm_account = :crm_account)
