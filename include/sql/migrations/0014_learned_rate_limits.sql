-- Rate limits the adaptive limiter learned per CRM account (issue #11 section 1, crm_hooks/rate_limit.py).
--
-- Housecall Pro and FieldEdge publish no limit, and an account's limit may be below the documented default:
-- on 429s the limiter lowers its rate, then raises it gradually while answers are clean. The rate it ends a
-- run with is kept here (read at run start, written at run end, no CRM call) so the next run starts from it.
-- A row exists only while the learned rate is below the ceiling (the default or the admin-set crmSettings
-- limit, which always caps it). Keyed by the CRM account, so a reconnect to another account starts fresh.
CREATE TABLE IF NOT EXISTS crm_sync.learned_rate_limits (
    company_id          integer          NOT NULL,
    crm_type            text             NOT NULL,
    crm_account         text             NOT NULL,
    limit_name          text             NOT NULL,   -- the hook's named limit ("default", "search", ...)
    requests_per_second double precision NOT NULL CHECK (requests_per_second > 0),
    updated_at          timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, crm_type, crm_account, limit_name)
);
