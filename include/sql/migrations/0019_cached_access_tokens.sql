-- Access tokens of the client-credentials grant (Salesforce, ServiceTitan, FieldEdge) kept between runs
-- (issue 14, crm_sync/token_store.py): a run of a company with a few check-ins no longer fetches a token
-- at every start. Encrypted with Airflow's Fernet key (nothing is kept without one), used only until
-- expires_at and only with the credentials it was issued for (credentials_fingerprint: a salted, slow hash
-- that tells credentials apart, no secret can be read back from it). A 401 deletes the row.
CREATE TABLE IF NOT EXISTS crm_sync.access_tokens (
    company_id            integer     NOT NULL,
    crm_type              text        NOT NULL,
    credentials_fingerprint text      NOT NULL,
    ciphertext            text        NOT NULL,   -- Fernet: {"token", "answer"} (the token answer without tokens)
    expires_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, crm_type)
);
