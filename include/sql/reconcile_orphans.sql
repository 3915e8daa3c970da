-- Reconciliation: ledger rows of one company x CRM whose check-in no longer exists (deleted in the app).
-- Not limited to the date range: a deleted check-in has no created_at left to filter on.
SELECT l.check_in_id, l.status, l.crm_visit_id, l.crm_customer_id, l.synced_at
FROM crm_sync.ledger l
WHERE l.company_id = :company_id AND l.crm_type = :crm_type
  AND NOT EXISTS (SELECT 1 FROM public.check_ins ci WHERE ci.id = l.check_in_id)
ORDER BY l.check_in_id
