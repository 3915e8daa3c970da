-- Report CSV: every discrepancy of the given reconciliations (streamed; no cap), one row each.
SELECT d.company_id, co.name AS company_name, d.crm_type, d.class, d.check_in_id, ci.customer_name,
       ci.created_at AS checked_in_at, d.crm_id, d.detail, d.found_at, d.requeued_at, d.reconciliation_id
FROM crm_sync.discrepancies d
LEFT JOIN public.check_ins ci ON ci.id = d.check_in_id
LEFT JOIN public.companies co ON co.id = d.company_id
WHERE d.reconciliation_id = ANY (CAST(:reconciliation_ids AS bigint[]))
ORDER BY d.class, d.company_id, d.crm_type, d.check_in_id, d.id
