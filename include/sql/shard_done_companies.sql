-- The companies of a shard this DAG run has already synced into :crm_type (a retried shard task skips them):
-- any run row but 'failed' (tried again: the ledger makes that safe) and 'deferred' (not reached in the
-- time budget of an earlier try).
SELECT DISTINCT company_id FROM crm_sync.runs
 WHERE run_id = :run_id AND crm_type = :crm_type AND company_id = ANY(CAST(:company_ids AS integer[]))
   AND status NOT IN ('failed', 'deferred')
