-- Report CSV: the quality_daily rows of the period (long format: one row per day x company x CRM x metric).
SELECT q.day, q.company_id, co.name AS company_name, q.crm_type, q.metric, q.dimension, q.value
FROM crm_sync.quality_daily q
LEFT JOIN public.companies co ON co.id = q.company_id
WHERE q.day >= :day_from AND q.day <= :day_to
  AND (CAST(:company_ids AS integer[]) IS NULL OR q.company_id = ANY (CAST(:company_ids AS integer[])))
  AND (CAST(:crm_types AS text[]) IS NULL OR q.crm_type = ANY (CAST(:crm_types AS text[])))
ORDER BY q.day, q.company_id, q.crm_type, q.metric, q.dimension
