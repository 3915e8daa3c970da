INSERT INTO crm_sync.integration_state (company_id, crm_type, settled_id, last_run_at)
VALUES (:company_id, :crm_type, :settled_id, now())
ON CONFLICT (company_id, crm_type) DO UPDATE
   SET settled_id = GREATEST(crm_sync.integration_state.settled_id, EXCLUDED.settled_id), last_run_at = now()
