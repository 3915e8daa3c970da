-- Reconciliation and sync-quality reports (crm_reconciliation_report): tables BI tools can query.

-- One row per company x CRM x report run: the three-way comparison's totals.
CREATE TABLE IF NOT EXISTS crm_sync.reconciliation_runs (
    id              bigserial   PRIMARY KEY,
    run_id          text        NOT NULL,             -- the Airflow run
    dag_id          text,
    company_id      integer     NOT NULL,
    crm_type        text        NOT NULL,
    range_start     date        NOT NULL,             -- check-ins created in [range_start, range_end)
    range_end       date        NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    source_count    integer     NOT NULL DEFAULT 0,   -- check-ins in the app
    eligible_count  integer     NOT NULL DEFAULT 0,   -- of those, ones the sync should have sent
    ledger_count    integer     NOT NULL DEFAULT 0,   -- ledger rows
    synced_count    integer     NOT NULL DEFAULT 0,   -- ledger rows marked synced
    crm_checked     integer     NOT NULL DEFAULT 0,   -- visit records read back from the CRM
    crm_sampled     boolean     NOT NULL DEFAULT false,
    counts          jsonb       NOT NULL DEFAULT '{}',-- class -> count
    error           text                              -- why the CRM read-back could not run, if it could not
);
CREATE INDEX IF NOT EXISTS reconciliation_runs_company_idx
    ON crm_sync.reconciliation_runs (company_id, crm_type, started_at);

-- One row per discrepancy found by a report run.
CREATE TABLE IF NOT EXISTS crm_sync.discrepancies (
    id                 bigserial   PRIMARY KEY,
    reconciliation_id  bigint      NOT NULL REFERENCES crm_sync.reconciliation_runs (id) ON DELETE CASCADE,
    company_id         integer     NOT NULL,
    crm_type           text        NOT NULL,
    check_in_id        integer,                        -- null for customer-level findings
    crm_id             text,                           -- the CRM record concerned, when there is one
    class              text        NOT NULL CHECK (class IN ('missing_in_crm', 'never_synced', 'stale', 'drift',
                                                             'duplicate', 'orphan', 'quarantined')),
    detail             text        NOT NULL,           -- specific, human-readable; secrets never appear here
    found_at           timestamptz NOT NULL DEFAULT now(),
    requeued_at        timestamptz                     -- set when an operator's requeue put it back in line
);
CREATE INDEX IF NOT EXISTS discrepancies_run_idx ON crm_sync.discrepancies (reconciliation_id, class);
CREATE INDEX IF NOT EXISTS discrepancies_check_in_idx ON crm_sync.discrepancies (company_id, crm_type, check_in_id);

-- Sync-quality metrics: one row per company x CRM x day x metric (x dimension, e.g. a quarantine reason).
CREATE TABLE IF NOT EXISTS crm_sync.quality_daily (
    day         date        NOT NULL,
    company_id  integer     NOT NULL,
    crm_type    text        NOT NULL,
    metric      text        NOT NULL,   -- eligible, synced, success_rate, quarantined, latency_p50_s, ...
    dimension   text        NOT NULL DEFAULT '',
    value       numeric     NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, company_id, crm_type, metric, dimension)
);
