-- The daily credential health check (dags/crm_credential_health.py, crm_sync/credential_health.py; issue 11
-- section 5): idle sync runs make no CRM call, so an expired or revoked credential of a company with nothing to
-- send is found here, not at its next run with work. One row per company x CRM per check: the status
-- (healthy, bad_credentials, config_error, unreachable), a redacted message, the calls it took. No secrets.
CREATE TABLE IF NOT EXISTS crm_sync.credential_checks (
    id          bigserial   PRIMARY KEY,
    run_id      text        NOT NULL,
    dag_id      text,
    company_id  integer     NOT NULL,
    crm_type    text        NOT NULL,
    status      text        NOT NULL,
    message     text,
    api_calls   integer     NOT NULL DEFAULT 0,
    seconds     double precision NOT NULL DEFAULT 0,
    checked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS credential_checks_company_idx ON crm_sync.credential_checks (company_id, crm_type, checked_at);
CREATE INDEX IF NOT EXISTS credential_checks_run_idx ON crm_sync.credential_checks (run_id);
