-- Reconciliation (crm_reconciliation_report): every check-in of one company created in
-- [range_start, range_end), with its ledger row for one CRM if it has one, oldest first.
-- The same view of a check-in as extract_candidates.sql, so the row hashes and maps exactly as the sync's.
SELECT ci.*,
       l.status AS ledger_status, l.source_hash AS ledger_source_hash, l.synced_hash,
       l.crm_customer_id, l.crm_visit_id, l.requeue, l.error_kind, l.last_error, l.synced_at
FROM crm_sync.sync_check_ins ci  -- the check-in as the sync reads it (migration 0006)
LEFT JOIN crm_sync.ledger l
       ON l.company_id = ci.company_id AND l.crm_type = :crm_type AND l.check_in_id = ci.id
WHERE ci.company_id = :company_id
  AND ci.created_at >= :range_start AND ci.created_at < :range_end
ORDER BY ci.id
