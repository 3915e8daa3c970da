-- crm_merge_duplicates: every match key of a merged-away customer now finds the survivor. payload_hash is
-- cleared: it described the merged-away record, so the next sync compares the survivor afresh.
UPDATE crm_sync.customer_map
   SET crm_customer_id = :survivor,
       crm_parent_id = COALESCE(CAST(:survivor_parent AS text), crm_parent_id),
       payload_hash = NULL,
       updated_at = now()
 WHERE company_id = :company_id AND crm_type = :crm_type
   AND crm_customer_id = ANY(CAST(:merged AS text[]))
   AND match_key NOT LIKE 'merged:%'
   AND (CAST(:crm_account AS text) IS NULL OR crm_account = :crm_account)
