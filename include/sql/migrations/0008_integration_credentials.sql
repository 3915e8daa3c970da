-- The live OAuth token pair of each company x CRM whose refresh token rotates (Jobber; any hook with a
-- credentials writer). The sync owns it: the Rank It Pro app saves its whole crm_integrations JSON from a
-- copy read earlier, so the app's copy may hold a refresh token the CRM has already invalidated.
-- The app's value is adopted only when the admin reconnects (its refresh token's fingerprint is neither
-- the one the live pair descends from nor one the sync wrote). Writes are compare-and-set on version,
-- under a per company x CRM advisory lock held around "read the live pair -> refresh -> write".
CREATE TABLE IF NOT EXISTS crm_sync.integration_credentials (
    company_id            integer     NOT NULL,
    crm_type              text        NOT NULL,
    ciphertext            text        NOT NULL,             -- Fernet token (AIRFLOW__CORE__FERNET_KEY) of
                                                            -- {"accessToken", "refreshToken"}; never plaintext
    app_fingerprint       text        NOT NULL,             -- sha256 of the app's refreshToken it descends from
    written_fingerprints  text[]      NOT NULL DEFAULT '{}', -- sha256 of refresh tokens the sync wrote, newest first
    version               bigint      NOT NULL,             -- +1 per write (compare-and-set)
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, crm_type)
);
