-- Lock the company row for the write-back, so an admin's concurrent save of other keys is
-- applied before or after ours, never lost.
SELECT crm_integrations, crm_sync_history FROM public.companies WHERE id = :company_id FOR UPDATE
