INSERT INTO crm_sync.customer_imports (run_id, dag_id, trigger, company_id, crm_type, status)
VALUES (:run_id, :dag_id, :trigger, :company_id, :crm_type, 'running')
RETURNING id, started_at
