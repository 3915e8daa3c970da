-- A task starts working on a chunk (a dry run's report row is overwritten each time).
INSERT INTO crm_sync.backfill_chunks AS b (backfill_key, company_id, crm_type, chunk_start, chunk_end, status,
                                           params, run_id, attempts, started_at)
VALUES (:backfill_key, :company_id, :crm_type, :chunk_start, :chunk_end, :status, CAST(:params AS jsonb),
        :run_id, 1, now())
ON CONFLICT (backfill_key, company_id, chunk_start) DO UPDATE
   SET status = EXCLUDED.status, run_id = EXCLUDED.run_id, attempts = b.attempts + 1, started_at = now(),
       finished_at = NULL, error = NULL
