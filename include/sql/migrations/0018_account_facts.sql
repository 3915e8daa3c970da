-- Account facts that rarely change, kept per CRM account between runs (issue 14, crm_sync/account_facts.py).
--
-- What a run used to ask the CRM at every start: that the sync's HubSpot properties exist, that the
-- Salesforce External ID fields exist, the ServiceTitan job defaults, the Housecall Pro job types, and which
-- account the credentials reach. Checked once, kept here with the time of the check and an expiry
-- (CRM_SYNC_ACCOUNT_FACTS_TTL_HOURS, 24 h by default); re-checked when expired, when the integration's
-- settings or credentials change (config_fingerprint), or when the CRM refuses a write because one is wrong.
-- Never a secret: config_fingerprint is a salted, slow hash that only tells configurations apart.
-- Deleting a row forces a re-check at the next run.
CREATE TABLE IF NOT EXISTS crm_sync.account_facts (
    company_id         integer     NOT NULL,
    crm_type           text        NOT NULL,
    crm_account        text        NOT NULL,   -- the account identity the facts were read from
    config_fingerprint text        NOT NULL,   -- credentials + crmSettings + syncSettings they were read with
    facts              jsonb       NOT NULL,   -- the destination's facts (Destination.check_facts)
    checked_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (company_id, crm_type, crm_account)
);
