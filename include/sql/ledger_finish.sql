-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- The outcome of one check-in's attempt. Only the attempt that claimed the row may finish it.
UPDATE crm_sync.ledger
   SET status = :status,
       crm_customer_id = COALESCE(:crm_customer_id, crm_customer_id),
       crm_visit_id = COALESCE(:crm_visit_id, crm_visit_id),
       synced_hash = CASE WHEN :status = 'synced' THEN source_hash ELSE synced_hash END,
       synced_at = CASE WHEN :status = 'synced' THEN now() ELSE synced_at END,
       -- the intent is needed only while the outcome is unknown: crm_visit_id holds a synced row's record
       crm_intent = CASE WHEN :status = 'synced' THEN NULL ELSE crm_intent END,
       error_kind = :error_kind,
       -- after this attempt's own customer writes: its crm_state retry needs a later change (migration 0010)
       quarantined_at = CASE WHEN :status = 'quarantined' THEN now() ELSE quarantined_at END,
       warnings = CAST(:warnings AS jsonb),  -- includes what the CRM mapping added (truncations, ...)
       last_error = :last_error
 WHERE company_id = :company_id AND crm_type = :crm_type AND check_in_id = :check_in_id
   AND attempt_id = :attempt_id
