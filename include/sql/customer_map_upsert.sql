INSERT INTO crm_sync.customer_map AS m (company_id, crm_type, match_key, crm_customer_id, crm_parent_id,
                                        payload_hash, created_by_sync)
VALUES (:company_id, :crm_type, :match_key, :crm_customer_id, :crm_parent_id, :payload_hash, :created_by_sync)
ON CONFLICT (company_id, crm_type, match_key) DO UPDATE
   SET crm_customer_id = EXCLUDED.crm_customer_id,
       crm_parent_id = COALESCE(EXCLUDED.crm_parent_id, m.crm_parent_id),
       payload_hash = COALESCE(EXCLUDED.payload_hash, m.payload_hash),
       created_by_sync = m.created_by_sync OR EXCLUDED.created_by_sync,
       updated_at = now()
