-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- Reconciliation, operator's requeue (param requeue: true) of the discrepancies of some report rows.
-- Each class goes back in line the safe way; the next crm_incremental_sync run sends them:
--   missing_in_crm  the ledger forgets the vanished CRM id and marks the row in_flight, so the sync looks the
--                   marker up before it creates the record again (never a second record);
--   stale           requeue = true: the sync re-reads the row and sends the edit as an update;
--   never_synced    a ledger row is inserted in_flight (its CRM record may exist if the ledger lost it:
--                   the marker is looked up before any create).
-- Only rows still in the state the report saw are touched; each touched discrepancy gets requeued_at.
WITH todo AS (
    SELECT d.id, d.company_id, d.crm_type, d.check_in_id, d.crm_id, d.class
    FROM crm_sync.discrepancies d
    WHERE d.reconciliation_id = ANY(CAST(:reconciliation_ids AS bigint[]))
      AND d.class IN ('missing_in_crm', 'stale', 'never_synced')
      AND d.requeued_at IS NULL AND d.check_in_id IS NOT NULL
),
missing AS (
    UPDATE crm_sync.ledger l
       SET status = 'in_flight', crm_visit_id = NULL, requeue = true, error_kind = 'requeued',
           last_error = 'requeued by reconciliation: the CRM record ' || t.crm_id || ' no longer exists'
      FROM todo t
     WHERE t.class = 'missing_in_crm' AND l.company_id = t.company_id AND l.crm_type = t.crm_type
       AND l.check_in_id = t.check_in_id AND l.status = 'synced' AND l.crm_visit_id = t.crm_id
    RETURNING l.company_id, l.crm_type, l.check_in_id
),
stale AS (
    UPDATE crm_sync.ledger l
       SET requeue = true
      FROM todo t
     WHERE t.class = 'stale' AND l.company_id = t.company_id AND l.crm_type = t.crm_type
       AND l.check_in_id = t.check_in_id AND l.status = 'synced'
    RETURNING l.company_id, l.crm_type, l.check_in_id
),
never AS (
    INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, requeue, error_kind, last_error)
    SELECT t.company_id, t.crm_type, t.check_in_id, 'in_flight', true, 'requeued',
           'requeued by reconciliation: never synced; the marker is looked up before any create'
      FROM todo t
     WHERE t.class = 'never_synced'
       AND EXISTS (SELECT 1 FROM public.check_ins ci WHERE ci.id = t.check_in_id)
    ON CONFLICT (company_id, crm_type, check_in_id) DO NOTHING
    RETURNING company_id, crm_type, check_in_id
),
touched AS (
    SELECT company_id, crm_type, check_in_id FROM missing
    UNION ALL SELECT company_id, crm_type, check_in_id FROM stale
    UNION ALL SELECT company_id, crm_type, check_in_id FROM never
)
UPDATE crm_sync.discrepancies d
   SET requeued_at = now()
  FROM todo t
  JOIN touched x ON x.company_id = t.company_id AND x.crm_type = t.crm_type AND x.check_in_id = t.check_in_id
 WHERE d.id = t.id
RETURNING d.class, d.company_id, d.crm_type, d.check_in_id
