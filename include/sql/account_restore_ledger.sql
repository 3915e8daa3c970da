-- Account change back to an account this company used before: its ledger rows become live again.
WITH back AS (
    DELETE FROM crm_sync.ledger_archive
     WHERE company_id = :company_id AND crm_type = :crm_type AND crm_account = :crm_account RETURNING *
)
INSERT INTO crm_sync.ledger (
    company_id, crm_type, check_in_id, status, customer_key, crm_customer_id, crm_visit_id, source_hash,
    synced_hash, attempts, attempt_id, error_kind, last_error, warnings, requeue, first_attempt_at,
    last_attempt_at, synced_at, run_id, crm_account, crm_intent, source_fp, quarantined_at)
SELECT company_id, crm_type, check_in_id, status, customer_key, crm_customer_id, crm_visit_id, source_hash,
       synced_hash, attempts, attempt_id, error_kind, last_error, warnings, requeue, first_attempt_at,
       last_attempt_at, synced_at, run_id, crm_account, crm_intent, source_fp, quarantined_at
FROM back
