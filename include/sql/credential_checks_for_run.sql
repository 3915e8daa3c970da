-- The credential health checks of one DAG run, problems first (crm_sync/credential_health.py).
SELECT company_id, crm_type, status, message, api_calls, seconds, checked_at
FROM crm_sync.credential_checks
WHERE run_id = :run_id
ORDER BY status = 'healthy', company_id, crm_type
