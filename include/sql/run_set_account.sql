-- The CRM account a run wrote into, and the one before it when this run met an account change (0007).
UPDATE crm_sync.runs SET crm_account = :crm_account, previous_crm_account = :previous_crm_account WHERE id = :id
