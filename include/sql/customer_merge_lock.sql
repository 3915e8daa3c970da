-- crm_merge_duplicates: the same session-level lock as the sync of this company x CRM
-- (IntegrationSync._try_lock), so a merge and a sync never run at the same time. Keep the two in step.
SELECT pg_try_advisory_lock(hashtext(:crm_type), :company_id)
