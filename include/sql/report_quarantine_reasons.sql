-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- Report: the most frequent quarantine reasons (error_kind + the ledger's specific reason, cut to 160
-- characters as in crm_sync.runs) of check-ins created in [:ts_from, :ts_to), with the newest example ids.
-- The customer's match keys in a reason ("matches email:ann@x.com, phone:+1512... and createNewCustomers is off")
-- are blanked, so one reason is one row rather than one row per customer.
WITH quarantined AS (
    SELECT l.crm_type, l.company_id, l.check_in_id, COALESCE(NULLIF(l.error_kind, ''), 'unknown') AS kind,
           left(regexp_replace(COALESCE(l.last_error, ''), '(email|phone|name):[^,]*?(,| and createNewCustomers)',
                               '\1:...\2', 'g'), 160) AS reason
    FROM crm_sync.ledger l
    JOIN public.check_ins ci ON ci.id = l.check_in_id AND ci.company_id = l.company_id
    WHERE l.status = 'quarantined'
      AND ci.created_at >= :ts_from AND ci.created_at < :ts_to
      AND (CAST(:company_ids AS integer[]) IS NULL OR l.company_id = ANY (CAST(:company_ids AS integer[])))
      AND (CAST(:crm_types AS text[]) IS NULL OR l.crm_type = ANY (CAST(:crm_types AS text[])))
),
reasons AS (
    SELECT crm_type, kind, reason,
           count(*) AS n, count(DISTINCT company_id) AS companies,
           (array_agg(check_in_id ORDER BY check_in_id DESC))[1:5] AS examples
    FROM quarantined
    GROUP BY crm_type, kind, reason
)
SELECT crm_type, kind, reason, n, companies, examples
FROM reasons
ORDER BY n DESC, crm_type, kind, reason
LIMIT :limit
