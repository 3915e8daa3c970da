-- Rows quarantined for the CRM's state are retried when their customer changes (issue #13 section 3).
--
-- A row quarantined as error_kind 'crm_state' (crm_sync/quarantine.py: nothing was sent; e.g. a new customer
-- without a complete address has no service address, location or property a job could go to) is read again
-- by extract_candidates.sql / extract_range.sql once a customer_map entry of its customer (its customer key,
-- or the CRM customer id the ledger recorded) was written after the row was quarantined.
--
-- * ledger.quarantined_at: when the row was last quarantined (ledger_finish.sql, ledger_quarantine_unsent.sql).
--   Set when the attempt ends, after its own customer writes, so a row never wakes itself up. Rows
--   quarantined before this migration have none: last_attempt_at stands in.
-- * customer_map_customer_idx: the customer_map entries of one CRM customer, for that look-up (the
--   primary key serves the customer-key side).
ALTER TABLE crm_sync.ledger ADD COLUMN IF NOT EXISTS quarantined_at timestamptz;
ALTER TABLE crm_sync.ledger_archive ADD COLUMN IF NOT EXISTS quarantined_at timestamptz;

CREATE INDEX IF NOT EXISTS customer_map_customer_idx ON crm_sync.customer_map (company_id, crm_type, crm_customer_id);
