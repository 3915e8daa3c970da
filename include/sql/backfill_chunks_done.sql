-- The chunks of a backfill that are finished (skipped by a re-triggered run).
SELECT company_id, chunk_start
FROM crm_sync.backfill_chunks
WHERE backfill_key = :backfill_key AND status = 'done'
