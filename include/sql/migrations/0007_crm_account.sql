-- Bind the sync's CRM record ids to the CRM account they live in (issue #10 section 4).
--
-- customer_map and ledger were keyed by company x CRM type only: after a company reconnected to
-- another HubSpot portal (Salesforce org, ServiceTitan tenant, ...) the next run reused the old
-- account's record ids in the new one. Every row that holds CRM record ids now names its account
-- (`crm_account`: the identity the CRM itself reports, see CrmHook.account_identity).
--
-- * crm_sync.crm_accounts: the account each company x CRM is bound to now (crm_sync/accounts.py).
-- * The live tables (ledger, customer_map) hold the bound account's rows only. When a run meets
--   another account, the old account's rows move to the *_archive tables (history; restored if the
--   company ever reconnects to that account) and the new account starts as a first sync.
-- * Rows written before this migration have crm_account NULL. The first run afterwards adopts them
--   for the account its integration reports then: the only safe guess, and the truth unless the
--   account changed between their last write and that run (nothing recorded could tell).
ALTER TABLE crm_sync.ledger ADD COLUMN IF NOT EXISTS crm_account text;
ALTER TABLE crm_sync.customer_map ADD COLUMN IF NOT EXISTS crm_account text;
ALTER TABLE crm_sync.customer_imports ADD COLUMN IF NOT EXISTS crm_account text;
ALTER TABLE crm_sync.runs ADD COLUMN IF NOT EXISTS crm_account text;
ALTER TABLE crm_sync.runs ADD COLUMN IF NOT EXISTS previous_crm_account text;  -- set when this run switched

CREATE TABLE IF NOT EXISTS crm_sync.crm_accounts (
    company_id        integer     NOT NULL,
    crm_type          text        NOT NULL,
    crm_account       text        NOT NULL,   -- the account the live ledger / customer_map rows belong to
    bound_at          timestamptz NOT NULL DEFAULT now(),
    previous_account  text,                   -- the account before the last change
    changed_at        timestamptz,
    change_reported   boolean     NOT NULL DEFAULT true,  -- false until a sync run has reported the change
    PRIMARY KEY (company_id, crm_type)
);

-- Rows of accounts the company is no longer connected to (history; never read by a sync of another account).
CREATE TABLE IF NOT EXISTS crm_sync.ledger_archive (
    LIKE crm_sync.ledger INCLUDING DEFAULTS,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, crm_type, crm_account, check_in_id)
);
CREATE TABLE IF NOT EXISTS crm_sync.customer_map_archive (
    LIKE crm_sync.customer_map INCLUDING DEFAULTS,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, crm_type, crm_account, match_key)
);
