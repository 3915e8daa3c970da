-- Report: the discrepancies of the given reconciliations, at most :per_class rows per class (the HTML table;
-- the counts come from report_latest_reconciliations.sql). The customer's name is the app's, as entered.
WITH shown AS (
    SELECT * FROM (
        SELECT d.id, d.company_id, d.crm_type, d.class, d.check_in_id, d.crm_id, d.detail, d.found_at,
               d.requeued_at,
               row_number() OVER (PARTITION BY d.class ORDER BY d.company_id, d.crm_type, d.check_in_id, d.id) AS rn
        FROM crm_sync.discrepancies d
        WHERE d.reconciliation_id = ANY (CAST(:reconciliation_ids AS bigint[]))
    ) ranked
    WHERE rn <= :per_class
)
SELECT s.id, s.company_id, co.name AS company_name, s.crm_type, s.class, s.check_in_id, s.crm_id, s.detail,
       s.found_at, s.requeued_at, ci.customer_name, ci.created_at AS checked_in_at
FROM shown s
LEFT JOIN public.check_ins ci ON ci.id = s.check_in_id
LEFT JOIN public.companies co ON co.id = s.company_id
ORDER BY s.class, s.company_id, s.crm_type, s.check_in_id, s.id
