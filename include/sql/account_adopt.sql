-- First binding of a company x CRM: rows written before migration 0007 (crm_account NULL) are adopted
-- by the account the integration reports now (see the migration). Returns the adopted row counts.
WITH l AS (
    UPDATE crm_sync.ledger SET crm_account = :crm_account
     WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account IS NULL RETURNING 1
), m AS (
    UPDATE crm_sync.customer_map SET crm_account = :crm_account
     WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account IS NULL RETURNING 1
), i AS (
    UPDATE crm_sync.customer_imports SET crm_account = :crm_account
     WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account IS NULL RETURNING 1
), b AS (
    INSERT INTO crm_sync.crm_accounts (company_id, crm_type, crm_account)
    VALUES (:company_id, :crm_type, :crm_account) RETURNING 1
)
SELECT (SELECT count(*) FROM l) AS ledger_rows, (SELECT count(*) FROM m) AS map_rows,
       (SELECT count(*) FROM b) AS bound
