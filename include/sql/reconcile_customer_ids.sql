-- Reconciliation: the CRM customers this company x CRM's sync uses (customer map and ledger), for the
-- duplicate-customer check (only duplicates of customers the sync touches are reported).
SELECT crm_customer_id FROM crm_sync.customer_map WHERE company_id = :company_id AND crm_type = :crm_type
UNION
SELECT crm_customer_id FROM crm_sync.ledger
 WHERE company_id = :company_id AND crm_type = :crm_type AND crm_customer_id IS NOT NULL
