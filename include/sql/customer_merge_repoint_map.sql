-- crm_merge_duplicates: every match key of a merged-away customer now finds the survivor. The parent record
-- (Salesforce Account, a location or address) is the survivor's: as the CRM listed it, else as the survivor's
-- own rows hold it, else NULL (the sync then looks it up; never the merged-away customer's). payload_hash is
-- cleared: it described the merged-away record, so the next sync compares the survivor afresh.
UPDATE crm_sync.customer_map AS m
   SET crm_customer_id = :survivor,
       crm_parent_id = COALESCE(
           CAST(:survivor_parent AS text),
           (SELECT s.crm_parent_id FROM crm_sync.customer_map s
             WHERE s.company_id = m.company_id AND s.crm_type = m.crm_type AND s.crm_customer_id = :survivor
               AND s.crm_parent_id IS NOT NULL AND s.crm_account IS NOT DISTINCT FROM m.crm_account
             ORDER BY s.created_at LIMIT 1)),
       payload_hash = NULL,
       updated_at = now()
 WHERE m.company_id = :company_id AND m.crm_type = :crm_type
   AND m.crm_customer_id = ANY(CAST(:merged AS text[]))
   AND m.match_key NOT LIKE 'merged:%'
   AND (CAST(:crm_account AS text) IS NULL OR m.crm_account = :crm_account)
