-- crm_merge_duplicates: check-ins of a merged-away customer belong to the survivor (its visit records move
-- with a CRM merge; in CRMs without one they stay on the old record until a person merges it). So does the
-- customer an unfinished attempt recorded it was writing the visit under (crm_intent, migration 0009): the
-- next run's look-up starts there, and the merged-away record may be gone.
UPDATE crm_sync.ledger
   SET crm_customer_id = CASE WHEN crm_customer_id = ANY(CAST(:merged AS text[])) THEN :survivor
                              ELSE crm_customer_id END,
       crm_intent = CASE WHEN crm_intent ->> 'customer_id' = ANY(CAST(:merged AS text[]))
                         THEN crm_intent || jsonb_build_object('customer_id', CAST(:survivor AS text))
                         ELSE crm_intent END
 WHERE company_id = :company_id AND crm_type = :crm_type
   AND (crm_customer_id = ANY(CAST(:merged AS text[])) OR crm_intent ->> 'customer_id' = ANY(CAST(:merged AS text[])))
   AND (CAST(:crm_account AS text) IS NULL OR crm_account = :crm_account)
