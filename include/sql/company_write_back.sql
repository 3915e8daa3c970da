UPDATE public.companies SET crm_integrations = :crm_integrations, crm_sync_history = :crm_sync_history
WHERE id = :company_id
