UPDATE public.companies SET crm_integrations = :crm_integrations WHERE id = :company_id
