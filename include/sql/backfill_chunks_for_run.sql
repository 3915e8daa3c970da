-- What one Airflow run of crm_backfill did, chunk by chunk (for its report task).
SELECT backfill_key, company_id, crm_type, chunk_start, chunk_end, status, attempts, candidates, synced,
       unchanged, quarantined, failed, api_calls, report, error
FROM crm_sync.backfill_chunks
WHERE run_id = :run_id
ORDER BY company_id, chunk_start
