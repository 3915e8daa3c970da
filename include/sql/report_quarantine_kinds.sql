-- Report: quarantined check-ins per company x CRM x reason kind (error_kind) over the period.
SELECT q.company_id, q.crm_type, q.dimension AS kind, sum(q.value) AS n
FROM crm_sync.quality_daily q
WHERE q.metric = 'quarantined' AND q.dimension <> ''
  AND q.day >= :day_from AND q.day <= :day_to
  AND (CAST(:company_ids AS integer[]) IS NULL OR q.company_id = ANY (CAST(:company_ids AS integer[])))
  AND (CAST(:crm_types AS text[]) IS NULL OR q.crm_type = ANY (CAST(:crm_types AS text[])))
GROUP BY q.company_id, q.crm_type, q.dimension
ORDER BY n DESC
