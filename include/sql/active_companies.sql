-- Companies whose CRM settings may hold an active integration (parsed and checked in Python,
-- since the column is free text that may not be valid JSON).
SELECT id, name, crm_integrations
FROM public.companies
WHERE is_active AND crm_integrations IS NOT NULL AND btrim(crm_integrations) NOT IN ('', '{}')
ORDER BY id
