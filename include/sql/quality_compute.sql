-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- Sync-quality metrics per company x CRM x day into crm_sync.quality_daily (see crm_sync/quality.py for the
-- definitions). Set-based: the check-ins never leave the database. Check-in metrics are attributed to the
-- day the check-in was created (check_ins.created_at, naive UTC); run metrics to the day the run started (UTC).
-- Eligible (as crm_sync/reconcile.py): a check-in with a ledger row for the CRM, or at or below the
-- integration's settled id horizon (the sync has considered it, so it should have sent it).
WITH pairs AS (
    SELECT company_id, crm_type, max(settled_id) AS settled_id
    FROM (SELECT company_id, crm_type, settled_id FROM crm_sync.integration_state
          UNION ALL
          SELECT DISTINCT company_id, crm_type, 0 FROM crm_sync.ledger) known
    WHERE (CAST(:company_ids AS integer[]) IS NULL OR company_id = ANY (CAST(:company_ids AS integer[])))
      AND (CAST(:crm_types AS text[]) IS NULL OR crm_type = ANY (CAST(:crm_types AS text[])))
    GROUP BY company_id, crm_type
),
eligible AS MATERIALIZED (
    SELECT p.company_id, p.crm_type, CAST(ci.created_at AS date) AS day, l.status, l.error_kind,
           EXTRACT(EPOCH FROM l.synced_at - (ci.created_at AT TIME ZONE 'UTC')) AS latency_s
    FROM pairs p
    JOIN public.check_ins ci ON ci.company_id = p.company_id
    LEFT JOIN crm_sync.ledger l
           ON l.company_id = p.company_id AND l.crm_type = p.crm_type AND l.check_in_id = ci.id
    WHERE ci.created_at >= :ts_from AND ci.created_at < :ts_to
      AND (l.status IS NOT NULL OR ci.id <= p.settled_id)
),
per_day AS (
    SELECT day, company_id, crm_type,
           count(*)                                                 AS eligible,
           count(*) FILTER (WHERE status = 'synced')                AS synced,
           count(*) FILTER (WHERE status = 'quarantined')           AS quarantined,
           count(*) FILTER (WHERE status = 'failed')                AS failed,
           count(*) FILTER (WHERE status IN ('pending', 'in_flight')) AS unfinished,
           count(*) FILTER (WHERE status IS NULL)                   AS never_sent,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s) FILTER (WHERE status = 'synced')  AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_s) FILTER (WHERE status = 'synced') AS p95
    FROM eligible
    GROUP BY day, company_id, crm_type
),
per_kind AS (
    -- '' is the total's dimension: a blank error_kind counts as 'unknown', never as the total.
    SELECT day, company_id, crm_type, COALESCE(NULLIF(error_kind, ''), 'unknown') AS kind, count(*) AS n
    FROM eligible
    WHERE status = 'quarantined'
    GROUP BY day, company_id, crm_type, COALESCE(NULLIF(error_kind, ''), 'unknown')
),
run_days AS (
    SELECT CAST(r.started_at AT TIME ZONE 'UTC' AS date) AS day, r.company_id, r.crm_type,
           count(*) AS runs, sum(r.api_calls) AS api_calls, sum(r.rate_limited) AS rate_limited,
           sum(r.retries) AS retries, sum(r.customers_found) AS customers_matched,
           sum(r.customers_created) AS customers_created
    FROM crm_sync.runs r
    WHERE r.started_at >= (CAST(:ts_from AS timestamp) AT TIME ZONE 'UTC')
      AND r.started_at < (CAST(:ts_to AS timestamp) AT TIME ZONE 'UTC')
      AND r.company_id IS NOT NULL AND r.crm_type IS NOT NULL
      AND (CAST(:company_ids AS integer[]) IS NULL OR r.company_id = ANY (CAST(:company_ids AS integer[])))
      AND (CAST(:crm_types AS text[]) IS NULL OR r.crm_type = ANY (CAST(:crm_types AS text[])))
    GROUP BY 1, 2, 3
),
metrics AS (
    SELECT d.day, d.company_id, d.crm_type, m.metric, '' AS dimension, m.value
    FROM per_day d
    CROSS JOIN LATERAL (VALUES
        ('eligible', CAST(d.eligible AS numeric)),
        ('synced', d.synced),
        ('success_rate', CASE WHEN d.eligible > 0 THEN round(CAST(d.synced AS numeric) / d.eligible, 6) END),
        ('quarantined', d.quarantined),
        ('failed', d.failed),
        ('unfinished', d.unfinished),
        ('never_sent', d.never_sent),
        ('latency_p50_s', round(CAST(d.p50 AS numeric), 3)),
        ('latency_p95_s', round(CAST(d.p95 AS numeric), 3))
    ) AS m (metric, value)
    UNION ALL
    SELECT k.day, k.company_id, k.crm_type, 'quarantined', k.kind, k.n
    FROM per_kind k
    UNION ALL
    SELECT r.day, r.company_id, r.crm_type, m.metric, '', m.value
    FROM run_days r
    CROSS JOIN LATERAL (VALUES
        ('runs', CAST(r.runs AS numeric)),
        ('api_calls', r.api_calls),
        ('rate_limited', r.rate_limited),
        ('retries', r.retries),
        ('customers_matched', r.customers_matched),
        ('customers_created', r.customers_created)
    ) AS m (metric, value)
)
INSERT INTO crm_sync.quality_daily (day, company_id, crm_type, metric, dimension, value, computed_at)
SELECT day, company_id, crm_type, metric, dimension, value, now()
FROM metrics
WHERE value IS NOT NULL
ON CONFLICT (day, company_id, crm_type, metric, dimension)
    DO UPDATE SET value = EXCLUDED.value, computed_at = EXCLUDED.computed_at
