-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- A row the engine found unchanged (crm_sync.ledger.is_unchanged) whose stored fingerprint is not the one
-- read (none yet: written before migration 0017; or an equivalent value such as re-serialised photos JSON):
-- store it, so discovery (discover_work.sql) does not find the row edited again. Only while the ledger
-- still holds the hash the engine compared (another attempt may have claimed the row since).
UPDATE crm_sync.ledger
   SET source_fp = :source_fp
 WHERE company_id = :company_id AND crm_type = :crm_type AND check_in_id = :check_in_id
   AND NOT requeue
   AND ((status = 'synced' AND synced_hash = :source_hash)
     OR (status = 'quarantined' AND source_hash = :source_hash))
