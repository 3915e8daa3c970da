INSERT INTO crm_sync.customer_imports (run_id, dag_id, trigger, company_id, crm_type, status, crm_account)
VALUES (:run_id, :dag_id, :trigger, :company_id, :crm_type, 'running', :crm_account)
RETURNING id, started_at
