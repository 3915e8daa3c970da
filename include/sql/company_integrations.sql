SELECT crm_integrations FROM public.companies WHERE id = :company_id
