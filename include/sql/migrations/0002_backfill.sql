-- crm_backfill: one row per backfill x company x date chunk. The backfill key is derived from
-- the run's params (CRM type, companies, dates, chunk size, resync_quarantined, dry_run), not
-- from the Airflow run id, so a re-triggered run with the same params skips the chunks that
-- are done and resumes where a failed, cancelled or killed run stopped.
--   running   a task is working on it (or was killed while it did: not done, run again)
--   done      every row of the chunk ended synced, unchanged or quarantined
--   failed    some rows are failed / in flight, or the integration stopped: run again
--   dry_run   a dry run's report (nothing was sent, nothing in the ledger changed)
CREATE TABLE IF NOT EXISTS crm_sync.backfill_chunks (
    backfill_key   text        NOT NULL,
    company_id     integer     NOT NULL,
    crm_type       text        NOT NULL,
    chunk_start    date        NOT NULL,   -- first day of the chunk (created_at >= chunk_start)
    chunk_end      date        NOT NULL,   -- day after the last day (created_at < chunk_end)
    status         text        NOT NULL CHECK (status IN ('running', 'done', 'failed', 'dry_run')),
    params         jsonb       NOT NULL DEFAULT '{}',
    run_id         text,                   -- the Airflow run that last worked on it
    attempts       integer     NOT NULL DEFAULT 0,
    started_at     timestamptz,
    finished_at    timestamptz,
    candidates     integer     NOT NULL DEFAULT 0,
    synced         integer     NOT NULL DEFAULT 0,
    unchanged      integer     NOT NULL DEFAULT 0,
    quarantined    integer     NOT NULL DEFAULT 0,
    failed         integer     NOT NULL DEFAULT 0,
    api_calls      integer     NOT NULL DEFAULT 0,
    report         jsonb,                  -- dry run: counts per outcome, invalid reasons, samples
    error          text,
    PRIMARY KEY (backfill_key, company_id, chunk_start)
);
CREATE INDEX IF NOT EXISTS backfill_chunks_run_idx ON crm_sync.backfill_chunks (run_id);
