-- The CRM ids one attempt chose or created for one row (migration 0009), committed before / between its
-- CRM writes: :replace starts the row's intent afresh (before the visit create), otherwise the ids are
-- added to it. Only the attempt that claimed the row may write it.
UPDATE crm_sync.ledger
   SET crm_intent = CASE WHEN CAST(:replace AS boolean) THEN CAST(:intent AS jsonb)
                         ELSE COALESCE(crm_intent, '{}'::jsonb) || CAST(:intent AS jsonb) END
 WHERE company_id = :company_id AND crm_type = :crm_type AND check_in_id = :check_in_id
   AND attempt_id = :attempt_id
