-- One person, one customer (issue #13 section 1): the sync asks what it knows of a CRM customer found by a
-- shared phone (the emails its customer map holds for it, the names on the check-ins synced to it) before it
-- decides whether a check-in is that person (crm_sync.identity, syncSettings.householdPhoneRule).
CREATE INDEX IF NOT EXISTS customer_map_customer_idx ON crm_sync.customer_map (company_id, crm_type, crm_customer_id);
CREATE INDEX IF NOT EXISTS ledger_crm_customer_idx ON crm_sync.ledger (company_id, crm_type, crm_customer_id);
