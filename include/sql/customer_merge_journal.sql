-- crm_merge_duplicates: the journal of a merge, a customer_map row no sync lookup ever asks for
-- (match_key 'merged:<crm id of the merged-away customer>' -> the survivor). It tells a later merge run that
-- the merged-away customer was the sync's, even once no other map row points to it.
INSERT INTO crm_sync.customer_map AS m (company_id, crm_type, match_key, crm_customer_id, created_by_sync,
                                        crm_account)
VALUES (:company_id, :crm_type, :match_key, :survivor, true, :crm_account)
ON CONFLICT (company_id, crm_type, match_key) DO UPDATE
   SET crm_customer_id = EXCLUDED.crm_customer_id, updated_at = now()
 WHERE m.crm_account IS NOT DISTINCT FROM EXCLUDED.crm_account
