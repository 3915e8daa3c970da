-- Account change: bind the new account and restart the id horizon, so the next run reads every
-- check-in without a ledger row of this account (what a first sync reads).
WITH s AS (
    UPDATE crm_sync.integration_state SET settled_id = 0
     WHERE company_id = :company_id AND crm_type = :crm_type RETURNING 1
)
UPDATE crm_sync.crm_accounts
   SET crm_account = :crm_account, previous_account = :previous_account, bound_at = now(), changed_at = now(),
       change_reported = false
 WHERE company_id = :company_id AND crm_type = :crm_type
