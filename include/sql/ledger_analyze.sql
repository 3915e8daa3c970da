-- Fresh planner statistics for the ledger (Ledger.claim): without them its per-row UPDATEs by primary key may
-- be planned on another (company_id, crm_type, ...) index and read every row of the company.
ANALYZE crm_sync.ledger
