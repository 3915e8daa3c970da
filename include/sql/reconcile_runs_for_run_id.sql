-- Reconciliation: the company x CRM rows of one Airflow run (for the alert task and the report).
SELECT id, company_id, crm_type, range_start, range_end, source_count, eligible_count, ledger_count,
       synced_count, crm_checked, crm_sampled, counts, error
FROM crm_sync.reconciliation_runs
WHERE run_id = :run_id
ORDER BY company_id, crm_type
