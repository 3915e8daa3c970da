-- Account change back to an account this company used before: its customer mappings become live again.
WITH back AS (
    DELETE FROM crm_sync.customer_map_archive
     WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account = :crm_account RETURNING *
)
INSERT INTO crm_sync.customer_map (
    company_id, crm_type, match_key, crm_customer_id, crm_parent_id, payload_hash, created_by_sync, created_at,
    updated_at, crm_account)
SELECT company_id, crm_type, match_key, crm_customer_id, crm_parent_id, payload_hash, created_by_sync, created_at,
       updated_at, crm_account
FROM back
