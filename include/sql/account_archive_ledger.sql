-- Account change: the old account's ledger rows leave the live ledger for its history
-- (a row archived earlier for that account and check-in is replaced by the newer one).
WITH moved AS (
    DELETE FROM crm_sync.ledger WHERE company_id = :company_id AND crm_type = :crm_type RETURNING *
)
INSERT INTO crm_sync.ledger_archive (
    company_id, crm_type, check_in_id, status, customer_key, crm_customer_id, crm_visit_id, source_hash,
    synced_hash, attempts, attempt_id, error_kind, last_error, warnings, requeue, first_attempt_at,
    last_attempt_at, synced_at, run_id, crm_account, crm_intent, source_fp, quarantined_at)
SELECT company_id, crm_type, check_in_id, status, customer_key, crm_customer_id, crm_visit_id, source_hash,
       synced_hash, attempts, attempt_id, error_kind, last_error, warnings, requeue, first_attempt_at,
       last_attempt_at, synced_at, run_id,
       COALESCE(crm_account, :previous_account), crm_intent, source_fp, quarantined_at
FROM moved
ON CONFLICT (company_id, crm_type, crm_account, check_in_id) DO UPDATE
   SET (status, customer_key, crm_customer_id, crm_visit_id, source_hash, synced_hash, attempts, attempt_id,
        error_kind, last_error, warnings, requeue, first_attempt_at, last_attempt_at, synced_at, run_id,
        crm_intent, source_fp, quarantined_at, archived_at)
     = (EXCLUDED.status, EXCLUDED.customer_key, EXCLUDED.crm_customer_id, EXCLUDED.crm_visit_id, EXCLUDED.source_hash,
        EXCLUDED.synced_hash, EXCLUDED.attempts, EXCLUDED.attempt_id, EXCLUDED.error_kind,
        EXCLUDED.last_error, EXCLUDED.warnings, EXCLUDED.requeue, EXCLUDED.first_attempt_at,
        EXCLUDED.last_attempt_at, EXCLUDED.synced_at, EXCLUDED.run_id, EXCLUDED.crm_intent, EXCLUDED.source_fp,
        EXCLUDED.quarantined_at, now())
