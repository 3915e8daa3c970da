-- Report: the success-rate trend, per CRM per day (all selected companies together), from quality_daily.
SELECT q.crm_type, q.day,
       sum(q.value) FILTER (WHERE q.metric = 'eligible') AS eligible,
       sum(q.value) FILTER (WHERE q.metric = 'synced')   AS synced
FROM crm_sync.quality_daily q
WHERE q.metric IN ('eligible', 'synced')
  AND q.day >= :day_from AND q.day <= :day_to
  AND (CAST(:company_ids AS integer[]) IS NULL OR q.company_id = ANY (CAST(:company_ids AS integer[])))
  AND (CAST(:crm_types AS text[]) IS NULL OR q.crm_type = ANY (CAST(:crm_types AS text[])))
GROUP BY q.crm_type, q.day
ORDER BY q.crm_type, q.day
