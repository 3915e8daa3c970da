-- Reconciliation: one company x CRM of a report run starts (totals are filled in by reconcile_run_finish).
INSERT INTO crm_sync.reconciliation_runs (run_id, dag_id, company_id, crm_type, range_start, range_end)
VALUES (:run_id, :dag_id, :company_id, :crm_type, :range_start, :range_end)
RETURNING id
