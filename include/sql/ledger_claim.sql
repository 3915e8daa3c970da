-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- Record the intent to send one check-in (before any CRM call). Returns the status it had,
-- so a row that was already in_flight is known to have an uncertain outcome.
INSERT INTO crm_sync.ledger AS l (company_id, crm_type, check_in_id, status, customer_key, source_hash, source_fp,
                                  attempts, attempt_id, first_attempt_at, last_attempt_at, run_id, warnings,
                                  crm_account)
VALUES (:company_id, :crm_type, :check_in_id, 'in_flight', :customer_key, :source_hash, :source_fp,
        1, :attempt_id, now(), now(), :run_id, CAST(:warnings AS jsonb), :crm_account)
ON CONFLICT (company_id, crm_type, check_in_id) DO UPDATE
   SET status = 'in_flight', customer_key = EXCLUDED.customer_key, source_hash = EXCLUDED.source_hash, source_fp = EXCLUDED.source_fp,
       attempts = l.attempts + 1, attempt_id = EXCLUDED.attempt_id, last_attempt_at = now(),
       run_id = EXCLUDED.run_id, warnings = EXCLUDED.warnings, requeue = false, crm_account = EXCLUDED.crm_account,
       -- a row of another account (a reconnect raced this run) keeps none of that account's record ids
       crm_customer_id = CASE WHEN l.crm_account IS NOT DISTINCT FROM EXCLUDED.crm_account THEN l.crm_customer_id END,
       crm_visit_id = CASE WHEN l.crm_account IS NOT DISTINCT FROM EXCLUDED.crm_account THEN l.crm_visit_id END,
       -- what an unfinished earlier attempt wrote stays until this attempt has looked it up (migration 0009)
       crm_intent = CASE WHEN l.crm_account IS NOT DISTINCT FROM EXCLUDED.crm_account THEN l.crm_intent END
