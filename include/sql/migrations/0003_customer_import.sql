-- Customer import (crm_customer_import, and the automatic first run before an integration's first sync):
-- one row per company x CRM x import. Customers found in the CRM go into crm_sync.customer_map
-- (created_by_sync = false); this table records that it happened and what was found.
-- status 'unsupported': the CRM's API cannot list customers (FieldEdge); final, never retried automatically.
CREATE TABLE IF NOT EXISTS crm_sync.customer_imports (
    id                      bigserial   PRIMARY KEY,
    run_id                  text,                   -- the Airflow run (NULL outside Airflow)
    dag_id                  text,
    trigger                 text        NOT NULL,   -- 'dag' (crm_customer_import) | 'auto' (before a sync)
    company_id              integer     NOT NULL,
    crm_type                text        NOT NULL,
    status                  text        NOT NULL CHECK (status IN ('running', 'success', 'failed', 'unsupported')),
    started_at              timestamptz NOT NULL DEFAULT now(),
    finished_at             timestamptz,
    seconds                 numeric,
    customers_indexed       integer     NOT NULL DEFAULT 0,  -- CRM customers read
    customers_without_keys  integer     NOT NULL DEFAULT 0,  -- no usable email, phone or name
    keys_added              integer     NOT NULL DEFAULT 0,  -- new customer_map rows
    keys_already_mapped     integer     NOT NULL DEFAULT 0,  -- keys the map already had (never overwritten)
    duplicate_groups        integer     NOT NULL DEFAULT 0,  -- emails / phones shared by several CRM customers
    duplicate_customers     integer     NOT NULL DEFAULT 0,  -- CRM customers in those groups
    duplicate_examples      jsonb       NOT NULL DEFAULT '[]',
    api_calls               integer     NOT NULL DEFAULT 0,
    error                   text                             -- why it failed (secrets redacted)
);
CREATE INDEX IF NOT EXISTS customer_imports_company_idx
    ON crm_sync.customer_imports (company_id, crm_type, status, finished_at);
