-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- Report: the latency trend, per CRM per check-in day (percentiles from the ledger; see report_latency.sql).
SELECT l.crm_type, CAST(ci.created_at AS date) AS day,
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
GROUP BY l.crm_type, CAST(ci.created_at AS date)
ORDER BY l.crm_type, day
