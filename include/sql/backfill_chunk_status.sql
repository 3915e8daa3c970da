-- The status of one chunk of a backfill (NULL: never started).
SELECT status FROM crm_sync.backfill_chunks
WHERE backfill_key = :backfill_key AND company_id = :company_id AND chunk_start = :chunk_start
