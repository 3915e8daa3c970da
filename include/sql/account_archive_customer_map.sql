-- Account change: the old account's customer mappings leave the live map for its history.
WITH moved AS (
    DELETE FROM crm_sync.customer_map WHERE company_id = :company_id AND crm_type = :crm_type RETURNING *
)
INSERT INTO crm_sync.customer_map_archive (
    company_id, crm_type, match_key, crm_customer_id, crm_parent_id, payload_hash, created_by_sync, created_at,
    updated_at, crm_account)
SELECT company_id, crm_type, match_key, crm_customer_id, crm_parent_id, payload_hash, created_by_sync, created_at,
       updated_at,
       COALESCE(crm_account, :previous_account)
FROM moved
ON CONFLICT (company_id, crm_type, crm_account, match_key) DO UPDATE
   SET (crm_customer_id, crm_parent_id, payload_hash, created_by_sync, created_at, updated_at, archived_at)
     = (EXCLUDED.crm_customer_id, EXCLUDED.crm_parent_id, EXCLUDED.payload_hash, EXCLUDED.created_by_sync,
        EXCLUDED.created_at, EXCLUDED.updated_at, now())
