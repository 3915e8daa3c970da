-- The outcome of one chunk.
UPDATE crm_sync.backfill_chunks
   SET status = :status, finished_at = now(), candidates = :candidates, synced = :synced,
       unchanged = :unchanged, quarantined = :quarantined, failed = :failed, api_calls = :api_calls,
       report = CAST(:report AS jsonb), error = :error
 WHERE backfill_key = :backfill_key AND company_id = :company_id AND chunk_start = :chunk_start
