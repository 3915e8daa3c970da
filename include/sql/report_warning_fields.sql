-- Ledger status literals here are values of crm_sync.ledger.LedgerStatus (tests/test_ledger.py checks them).
-- Report: check-ins created in [:ts_from, :ts_to) that landed with a warning (something dropped or repaired
-- before sending, or a field the CRM refused and the record sent again without it), grouped by the field the
-- warning is about: the first of :words (crm_sync.row_warnings.WARNING_FIELDS, in order) the lower-cased
-- warning contains gives its label from :labels, else 'other'. A row counts once per field.
WITH warned AS (
    SELECT DISTINCT l.crm_type, l.company_id, l.check_in_id,
           COALESCE((SELECT p.label
                     FROM unnest(CAST(:words AS text[]), CAST(:labels AS text[])) WITH ORDINALITY AS p(word, label, i)
                     WHERE strpos(lower(w.text), p.word) > 0
                     ORDER BY p.i LIMIT 1), 'other') AS field
    FROM crm_sync.ledger l
    JOIN public.check_ins ci ON ci.id = l.check_in_id AND ci.company_id = l.company_id
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(l.warnings) = 'array' THEN l.warnings ELSE '[]'::jsonb END) AS w(text)
    WHERE l.status = 'synced'
      AND ci.created_at >= :ts_from AND ci.created_at < :ts_to
      AND (CAST(:company_ids AS integer[]) IS NULL OR l.company_id = ANY (CAST(:company_ids AS integer[])))
      AND (CAST(:crm_types AS text[]) IS NULL OR l.crm_type = ANY (CAST(:crm_types AS text[])))
)
SELECT crm_type, field, count(*) AS n, count(DISTINCT company_id) AS companies,
       (array_agg(check_in_id ORDER BY check_in_id DESC))[1:5] AS examples
FROM warned
GROUP BY crm_type, field
ORDER BY n DESC, crm_type, field
LIMIT :limit
