-- Reconciliation: the totals of one company x CRM of a report run.
UPDATE crm_sync.reconciliation_runs
   SET finished_at = now(), source_count = :source_count, eligible_count = :eligible_count,
       ledger_count = :ledger_count, synced_count = :synced_count, crm_checked = :crm_checked,
       crm_sampled = :crm_sampled, counts = CAST(:counts AS jsonb), error = :error
 WHERE id = :id
