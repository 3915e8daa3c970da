-- The CRM ids an attempt chose or created for one in-flight row (issue #13 section 2).
--
-- A crash between a CRM write and the ledger update leaves the row in_flight; the next run must find
-- what the crashed attempt wrote, whatever customer it resolves the row to now. Before the visit create
-- call the engine commits here the customer (and parent: address / location / property) it writes the
-- visit under, and the destination adds each record id as soon as the CRM returns it (the job id before
-- its note or close). JSON object, e.g. {"customer_id": "...", "parent_id": "...", "visit_id": "..."};
-- cleared when the row ends synced (crm_visit_id holds the id then), kept otherwise.
ALTER TABLE crm_sync.ledger ADD COLUMN IF NOT EXISTS crm_intent jsonb;
ALTER TABLE crm_sync.ledger_archive ADD COLUMN IF NOT EXISTS crm_intent jsonb;
