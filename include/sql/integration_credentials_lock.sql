-- Serialises token refreshes of one company x CRM across tasks and workers (session-level: held across the
-- CRM's token request; released by integration_credentials_unlock or when the connection ends).
-- The key differs from the sync's own per-integration lock (hashtext(crm_type), company_id).
SELECT pg_advisory_lock(hashtext('crm_sync.credentials:' || :crm_type), :company_id)
