-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- A row that cannot be sent as it is (no usable identity): recorded without any CRM call.
INSERT INTO crm_sync.ledger AS l (company_id, crm_type, check_in_id, status, customer_key, source_hash, source_fp,
                                  attempts, first_attempt_at, last_attempt_at, run_id, warnings,
                                  error_kind, last_error, crm_account, quarantined_at)
VALUES (:company_id, :crm_type, :check_in_id, 'quarantined', NULL, :source_hash, :source_fp,
        1, now(), now(), :run_id, CAST(:warnings AS jsonb), :error_kind, :last_error, :crm_account, now())
ON CONFLICT (company_id, crm_type, check_in_id) DO UPDATE
   SET status = 'quarantined', source_hash = EXCLUDED.source_hash, source_fp = EXCLUDED.source_fp, attempts = l.attempts + 1,
       last_attempt_at = now(), run_id = EXCLUDED.run_id, warnings = EXCLUDED.warnings,
       error_kind = EXCLUDED.error_kind, last_error = EXCLUDED.last_error, requeue = false,
       crm_account = EXCLUDED.crm_account, quarantined_at = now()
