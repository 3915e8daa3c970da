-- Report (crm_sync/report.py): the period's totals per company x CRM from crm_sync.quality_daily.
-- Reads only companies.name from the app (never crm_integrations: credentials).
SELECT q.company_id, co.name AS company_name, q.crm_type,
       sum(q.value) FILTER (WHERE q.metric = 'eligible')           AS eligible,
       sum(q.value) FILTER (WHERE q.metric = 'synced')             AS synced,
       sum(q.value) FILTER (WHERE q.metric = 'quarantined' AND q.dimension = '') AS quarantined,
       sum(q.value) FILTER (WHERE q.metric = 'failed')             AS failed,
       sum(q.value) FILTER (WHERE q.metric = 'unfinished')         AS unfinished,
       sum(q.value) FILTER (WHERE q.metric = 'never_sent')         AS never_sent,
       sum(q.value) FILTER (WHERE q.metric = 'runs')               AS runs,
       sum(q.value) FILTER (WHERE q.metric = 'api_calls')          AS api_calls,
       sum(q.value) FILTER (WHERE q.metric = 'rate_limited')       AS rate_limited,
       sum(q.value) FILTER (WHERE q.metric = 'retries')            AS retries,
       sum(q.value) FILTER (WHERE q.metric = 'customers_matched')  AS customers_matched,
       sum(q.value) FILTER (WHERE q.metric = 'customers_created')  AS customers_created
FROM crm_sync.quality_daily q
LEFT JOIN public.companies co ON co.id = q.company_id
WHERE q.day >= :day_from AND q.day <= :day_to
  AND (CAST(:company_ids AS integer[]) IS NULL OR q.company_id = ANY (CAST(:company_ids AS integer[])))
  AND (CAST(:crm_types AS text[]) IS NULL OR q.crm_type = ANY (CAST(:crm_types AS text[])))
GROUP BY q.company_id, co.name, q.crm_type
ORDER BY q.crm_type, q.company_id
