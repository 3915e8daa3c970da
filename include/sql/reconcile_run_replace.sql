-- Reconciliation: a retried task replaces its own earlier attempt (same Airflow run, company and CRM),
-- so totals and alerts never count one comparison twice; its discrepancies go with it (ON DELETE CASCADE).
DELETE FROM crm_sync.reconciliation_runs
 WHERE run_id = :run_id AND company_id = :company_id AND crm_type = :crm_type
