-- One credential health check of one company x CRM (crm_sync/credential_health.py).
INSERT INTO crm_sync.credential_checks (run_id, dag_id, company_id, crm_type, status, message, api_calls, seconds)
VALUES (:run_id, :dag_id, :company_id, :crm_type, :status, :message, :api_calls, :seconds)
RETURNING id
