-- crm_import: the company exists (never reads crm_integrations).
SELECT id FROM companies WHERE id = :company_id
