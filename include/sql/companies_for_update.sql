-- Companies whose crm_integrations the sync is about to change, locked in id order (no deadlock between two
-- writers that lock several; the app locks one row at a time).
SELECT id, crm_integrations FROM public.companies WHERE id = ANY(CAST(:company_ids AS integer[])) ORDER BY id FOR UPDATE
