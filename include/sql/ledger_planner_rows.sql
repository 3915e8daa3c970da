-- How many rows the planner's statistics say the ledger holds (-1: never analyzed). See Ledger.claim.
SELECT reltuples FROM pg_class WHERE oid = CAST('crm_sync.ledger' AS regclass)
