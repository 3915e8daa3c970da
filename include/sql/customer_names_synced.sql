-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- The names on the check-ins the sync recorded against some CRM customers (identity: is a customer found
-- by a shared phone the same person by name?). Read only when the household rule needs it.
SELECT DISTINCT l.crm_customer_id, ci.customer_name
FROM crm_sync.ledger l
JOIN crm_sync.sync_check_ins ci ON ci.id = l.check_in_id
WHERE l.company_id = :company_id AND l.crm_type = :crm_type AND l.crm_customer_id = ANY(:ids)
  AND l.status = 'synced' AND ci.customer_name IS NOT NULL
