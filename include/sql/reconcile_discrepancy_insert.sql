-- Reconciliation: one discrepancy found by a report run.
INSERT INTO crm_sync.discrepancies (reconciliation_id, company_id, crm_type, check_in_id, crm_id, class, detail)
VALUES (:reconciliation_id, :company_id, :crm_type, :check_in_id, :crm_id, :class, :detail)
