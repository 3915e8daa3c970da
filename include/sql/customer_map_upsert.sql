INSERT INTO crm_sync.customer_map AS m (company_id, crm_type, match_key, crm_customer_id, crm_parent_id,
                                        payload_hash, created_by_sync, crm_account)
VALUES (:company_id, :crm_type, :match_key, :crm_customer_id, :crm_parent_id, :payload_hash, :created_by_sync,
        :crm_account)
ON CONFLICT (company_id, crm_type, match_key) DO UPDATE
   SET crm_customer_id = EXCLUDED.crm_customer_id,
       crm_parent_id = COALESCE(EXCLUDED.crm_parent_id, m.crm_parent_id),
       payload_hash = COALESCE(EXCLUDED.payload_hash, m.payload_hash),
       created_by_sync = m.created_by_sync OR EXCLUDED.created_by_sync,
       updated_at = now()
 -- never over another CRM account's mapping (a row bound to another account is that account's)
 WHERE m.crm_account IS NOT DISTINCT FROM EXCLUDED.crm_account
