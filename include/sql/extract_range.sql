-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- error_kind literals here are values of crm_sync.quarantine.QuarantineKind (tests/test_ledger.py checks them).
-- Check-ins of one company created in [:created_from, :created_to) for a dated backfill, oldest
-- first, with their ledger state. Every row of the range is read: rows already synced or
-- quarantined are counted as unchanged by the engine (and never sent again) unless the check-in
-- changed since (or, for a crm_state row, its customer did: state_changed); with :resync_quarantined,
-- quarantined rows are retried as if requeued.
SELECT ci.*,
       l.status AS ledger_status, l.source_hash AS ledger_source_hash, l.synced_hash, l.source_fp AS ledger_source_fp,
       l.crm_customer_id, l.crm_visit_id, l.crm_intent,
       (COALESCE(l.requeue, false) OR (CAST(:resync_quarantined AS boolean) AND l.status = 'quarantined')) AS requeue,
       COALESCE(sc.state_changed, false) AS state_changed
FROM crm_sync.sync_check_ins ci  -- the check-in as the sync reads it (migration 0006)
LEFT JOIN crm_sync.ledger l
       ON l.company_id = ci.company_id AND l.crm_type = :crm_type AND l.check_in_id = ci.id
       AND (CAST(:crm_account AS text) IS NULL OR l.crm_account IS NULL OR l.crm_account = :crm_account)
       -- this CRM account's rows (no account: written by a task that does not know it, e.g. a requeue; the live
       -- ledger holds the bound account's rows only, see crm_sync/accounts.py)
LEFT JOIN LATERAL (
    -- a crm_state row whose customer changed since it was quarantined (crm_sync/quarantine.py, migration 0010):
    -- a customer_map entry of its customer key or of the CRM customer it was refused for, written after
    SELECT true AS state_changed
    WHERE l.status = 'quarantined' AND l.error_kind = 'crm_state'
      AND EXISTS (
          SELECT 1 FROM crm_sync.customer_map m
          WHERE m.company_id = l.company_id AND m.crm_type = l.crm_type
            AND (m.match_key = l.customer_key OR m.crm_customer_id = l.crm_customer_id)
            AND m.updated_at > COALESCE(l.quarantined_at, l.last_attempt_at)
            AND (CAST(:crm_account AS text) IS NULL OR m.crm_account = :crm_account))
) sc ON true
WHERE ci.company_id = :company_id
  AND ci.created_at >= :created_from
  AND ci.created_at < :created_to
ORDER BY ci.id
