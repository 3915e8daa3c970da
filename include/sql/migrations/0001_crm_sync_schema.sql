-- The sync's own state, in its own schema beside the app's tables. The app's tables are
-- never altered. Timestamps here are timestamptz (UTC); the app's are naive UTC.

CREATE SCHEMA IF NOT EXISTS crm_sync;

-- One row per check-in x CRM: the exactly-once ledger.
--   pending      seen, not yet sent (or sent nothing before an integration-level stop)
--   in_flight    intent recorded, a CRM write may have happened: resolved by lookup before any resend
--   synced       in the CRM; crm_visit_id / crm_customer_id hold the CRM's ids
--   quarantined  cannot be synced as it is (bad data, CRM validation error); retried only when
--                the row changes or an operator requeues it
--   failed       transient failure after retries; retried next run
CREATE TABLE IF NOT EXISTS crm_sync.ledger (
    company_id        integer     NOT NULL,
    crm_type          text        NOT NULL,
    check_in_id       integer     NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'in_flight', 'synced', 'quarantined', 'failed')),
    customer_key      text,
    crm_customer_id   text,
    crm_visit_id      text,
    source_hash       text,                 -- the check-in as last attempted
    synced_hash       text,                 -- the check-in as last delivered
    attempts          integer     NOT NULL DEFAULT 0,
    attempt_id        uuid,
    error_kind        text,                 -- no_identity | no_match | crm_rejected | transient | config
    last_error        text,                 -- specific reason, secrets redacted
    warnings          jsonb       NOT NULL DEFAULT '[]',
    requeue           boolean     NOT NULL DEFAULT false,
    first_attempt_at  timestamptz,
    last_attempt_at   timestamptz,
    synced_at         timestamptz,
    run_id            text,
    PRIMARY KEY (company_id, crm_type, check_in_id)
);
CREATE INDEX IF NOT EXISTS ledger_status_idx ON crm_sync.ledger (company_id, crm_type, status);
CREATE INDEX IF NOT EXISTS ledger_customer_key_idx ON crm_sync.ledger (customer_key);

-- company x CRM x normalised match key (email:..., phone:+1..., name:...) -> the CRM customer.
CREATE TABLE IF NOT EXISTS crm_sync.customer_map (
    company_id        integer     NOT NULL,
    crm_type          text        NOT NULL,
    match_key         text        NOT NULL,
    crm_customer_id   text        NOT NULL,
    crm_parent_id     text,                 -- e.g. the Salesforce Account of a Contact
    payload_hash      text,                 -- customer fields as last written to the CRM
    created_by_sync   boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, crm_type, match_key)
);

-- One row per company x CRM x DAG run: what happened, for summaries, reports and alerting.
CREATE TABLE IF NOT EXISTS crm_sync.runs (
    id                 bigserial   PRIMARY KEY,
    run_id             text        NOT NULL,
    dag_id             text,
    company_id         integer,
    crm_type           text,
    status             text        NOT NULL,  -- success | partial | failed | config_error | skipped
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    seconds            numeric,
    candidates         integer     NOT NULL DEFAULT 0,
    unchanged          integer     NOT NULL DEFAULT 0,
    synced             integer     NOT NULL DEFAULT 0,
    customers_found    integer     NOT NULL DEFAULT 0,
    customers_created  integer     NOT NULL DEFAULT 0,
    customers_updated  integer     NOT NULL DEFAULT 0,
    visits_created     integer     NOT NULL DEFAULT 0,
    visits_updated     integer     NOT NULL DEFAULT 0,
    visits_recovered   integer     NOT NULL DEFAULT 0,
    quarantined        integer     NOT NULL DEFAULT 0,
    failed             integer     NOT NULL DEFAULT 0,
    api_calls          integer     NOT NULL DEFAULT 0,
    retries            integer     NOT NULL DEFAULT 0,
    rate_limited       integer     NOT NULL DEFAULT 0,
    error              text,
    quarantine_reasons jsonb       NOT NULL DEFAULT '{}',
    warnings           jsonb       NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_run_id_idx ON crm_sync.runs (run_id);
CREATE INDEX IF NOT EXISTS runs_company_idx ON crm_sync.runs (company_id, crm_type, started_at);

-- Snapshots of the check_ins id sequence, for a new-row watermark that cannot skip rows
-- committed late (see crm_sync/extract.py).
CREATE TABLE IF NOT EXISTS crm_sync.id_horizon (
    id             bigserial   PRIMARY KEY,
    observed_at    timestamptz NOT NULL DEFAULT now(),
    max_id         bigint      NOT NULL,
    snapshot_xmax  xid8        NOT NULL
);

-- Per company x CRM: every check-in with id <= settled_id has been considered.
CREATE TABLE IF NOT EXISTS crm_sync.integration_state (
    company_id      integer     NOT NULL,
    crm_type        text        NOT NULL,
    settled_id      bigint      NOT NULL DEFAULT 0,
    last_run_at     timestamptz,
    PRIMARY KEY (company_id, crm_type)
);

-- "Why isn't X in the CRM?": one searchable row per check-in x CRM.
CREATE OR REPLACE VIEW crm_sync.check_in_status AS
SELECT l.company_id, l.crm_type, l.check_in_id, l.status, l.error_kind, l.last_error,
       l.crm_customer_id, l.crm_visit_id, l.attempts, l.last_attempt_at, l.synced_at,
       ci.customer_name, ci.customer_email, ci.customer_phone, ci.created_at AS checked_in_at
FROM crm_sync.ledger l
LEFT JOIN public.check_ins ci ON ci.id = l.check_in_id;
