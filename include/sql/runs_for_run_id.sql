SELECT r.*, c.name AS company_name
FROM crm_sync.runs r LEFT JOIN public.companies c ON c.id = r.company_id
WHERE r.run_id = :run_id
ORDER BY r.company_id NULLS FIRST, r.crm_type
