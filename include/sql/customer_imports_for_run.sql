SELECT i.*, c.name AS company_name
FROM crm_sync.customer_imports i
LEFT JOIN public.companies c ON c.id = i.company_id
WHERE i.run_id = :run_id
ORDER BY i.company_id, i.crm_type, i.id
