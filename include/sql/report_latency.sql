-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- Report: check-in -> CRM latency percentiles (seconds) of the synced check-ins created in [:ts_from, :ts_to),
-- per company x CRM and per CRM (grouping sets: one pass). Percentiles do not add up across companies or days,
-- so they are computed here from the ledger rather than combined from quality_daily.
SELECT l.company_id, l.crm_type, GROUPING(l.company_id) AS crm_total,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM l.synced_at - (ci.created_at AT TIME ZONE 'UTC')))
           AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM l.synced_at - (ci.created_at AT TIME ZONE 'UTC')))
           AS p95
FROM crm_sync.ledger l
JOIN public.check_ins ci ON ci.id = l.check_in_id AND ci.company_id = l.company_id
WHERE l.status = 'synced'
  AND ci.created_at >= :ts_from AND ci.created_at < :ts_to
  AND (CAST(:company_ids AS integer[]) IS NULL OR l.company_id = ANY (CAST(:company_ids AS integer[])))
  AND (CAST(:crm_types AS text[]) IS NULL OR l.crm_type = ANY (CAST(:crm_types AS text[])))
GROUP BY GROUPING SETS ((l.company_id, l.crm_type), (l.crm_type))
