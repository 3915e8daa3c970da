-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- error_kind literals here are values of crm_sync.quarantine.QuarantineKind (tests/test_ledger.py checks them).
-- The companies (among :company_ids, those with a usable :crm_type integration) whose incremental sync has
-- work, in one query over all of them: the rows extract_candidates.sql would read and the engine would not
-- count unchanged (crm_sync.ledger.is_unchanged), counted per company:
--   * first_run: no CRM account bound yet, or no finished customer index: the run asks the CRM anyway,
--   * new_rows: check-ins above the integration's settled horizon without a ledger row,
--   * unfinished: ledger rows pending, in_flight or failed (every run retries them),
--   * requeued: rows an operator requeued,
--   * state_changed: crm_state rows whose customer changed since they were quarantined (migration 0010),
--   * edited: synced or quarantined rows created since :lookback_since whose content fingerprint is not the
--     one the ledger stored with its hash (migration 0017; none stored yet counts as edited, once).
-- Every other company is idle: no task. Ledger rows of another CRM account are ignored as the engine does.
WITH pairs AS (
    SELECT p.company_id, COALESCE(s.settled_id, 0) AS settled_id, a.crm_account
    FROM unnest(CAST(:company_ids AS integer[])) AS p(company_id)
    LEFT JOIN crm_sync.integration_state s ON s.company_id = p.company_id AND s.crm_type = :crm_type
    LEFT JOIN crm_sync.crm_accounts a ON a.company_id = p.company_id AND a.crm_type = :crm_type
),
recent AS (
    -- one pass over the check-ins a run may read for their id (new) or their age (look-back)
    SELECT p.company_id,
           count(*) FILTER (WHERE l.check_in_id IS NULL AND ci.id > p.settled_id) AS new_rows,
           count(*) FILTER (WHERE l.status IN ('synced', 'quarantined') AND ci.created_at >= :lookback_since
                              AND l.source_fp IS DISTINCT FROM ci.source_fp) AS edited
    FROM pairs p
    JOIN crm_sync.sync_check_ins ci ON ci.company_id = p.company_id
    LEFT JOIN crm_sync.ledger l
           ON l.company_id = ci.company_id AND l.crm_type = :crm_type AND l.check_in_id = ci.id
          AND (p.crm_account IS NULL OR l.crm_account IS NULL OR l.crm_account = p.crm_account)
    WHERE ci.id > p.settled_id OR ci.created_at >= :lookback_since
    GROUP BY p.company_id
),
open AS (
    -- the rows every run reads whatever their age (ledger_open_idx, a partial index on this condition)
    SELECT p.company_id,
           count(*) FILTER (WHERE l.status IN ('pending', 'in_flight', 'failed')) AS unfinished,
           count(*) FILTER (WHERE l.requeue) AS requeued,
           count(*) FILTER (
               WHERE l.status = 'quarantined' AND l.error_kind = 'crm_state'
                 AND EXISTS (
                     SELECT 1 FROM crm_sync.customer_map m
                     WHERE m.company_id = l.company_id AND m.crm_type = l.crm_type
                       AND (m.match_key = l.customer_key OR m.crm_customer_id = l.crm_customer_id)
                       AND m.updated_at > COALESCE(l.quarantined_at, l.last_attempt_at)
                       AND (p.crm_account IS NULL OR m.crm_account = p.crm_account))
           ) AS state_changed
    FROM pairs p
    JOIN crm_sync.ledger l
      ON l.company_id = p.company_id AND l.crm_type = :crm_type
     AND (l.status IN ('pending', 'in_flight', 'failed') OR l.requeue OR l.error_kind = 'crm_state')
     AND (p.crm_account IS NULL OR l.crm_account IS NULL OR l.crm_account = p.crm_account)
    JOIN public.check_ins ci ON ci.id = l.check_in_id AND ci.company_id = l.company_id  -- still there
    GROUP BY p.company_id
),
counted AS (
    SELECT p.company_id,
           (p.crm_account IS NULL OR NOT EXISTS (
               -- as customer_import_done.sql: a finished customer index of the bound account
               SELECT 1 FROM crm_sync.customer_imports i
               WHERE i.company_id = p.company_id AND i.crm_type = :crm_type
                 AND i.status = ANY (CAST(:finished_imports AS text[]))  -- 'success', 'unsupported'
                 AND i.crm_account IS NOT DISTINCT FROM p.crm_account)) AS first_run,
           COALESCE(r.new_rows, 0) AS new_rows,
           COALESCE(o.unfinished, 0) AS unfinished,
           COALESCE(o.requeued, 0) AS requeued,
           COALESCE(o.state_changed, 0) AS state_changed,
           COALESCE(r.edited, 0) AS edited
    FROM pairs p
    LEFT JOIN recent r ON r.company_id = p.company_id
    LEFT JOIN open o ON o.company_id = p.company_id
)
SELECT company_id, first_run, new_rows, unfinished, requeued, state_changed, edited
FROM counted
WHERE first_run OR new_rows + unfinished + requeued + state_changed + edited > 0
ORDER BY company_id
