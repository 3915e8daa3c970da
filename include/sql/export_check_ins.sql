-- crm_export: check-ins created in [:created_from, :created_to) joined with their sync status per CRM.
-- One row per check-in x CRM ledger row; a check-in no CRM has seen yet appears once with crm_type NULL.
-- With :crm_types non-empty, one row per check-in x requested CRM (sync_status 'not_sent' without a ledger row).
-- Never reads companies.crm_integrations (credentials). Timestamps are naive UTC, like the app's.
WITH wanted AS (
    SELECT unnest(CAST(:crm_types AS text[])) AS crm_type
)
SELECT ci.id                                   AS check_in_id,
       ci.company_id,
       co.name                                 AS company_name,
       ci.technician_id,
       t.name                                  AS technician_name,
       ci.location_id,
       ci.created_at                           AS checked_in_at,
       ci.job_type,
       ci.customer_name,
       ci.customer_email,
       ci.customer_phone,
       ci.address,
       ci.city,
       ci.state,
       ci.zip,
       CAST(ci.latitude AS double precision)   AS latitude,
       CAST(ci.longitude AS double precision)  AS longitude,
       ci.notes,
       ci.work_performed,
       ci.materials_used,
       ci.problem_description,
       ci.solution_description,
       ci.customer_feedback,
       ci.follow_up_required,
       ci.follow_up_notes,
       CAST(ci.photos AS text)                 AS photos,
       coalesce(l.crm_type, w.crm_type)        AS crm_type,
       CASE WHEN l.status IS NOT NULL THEN l.status
            WHEN w.crm_type IS NOT NULL THEN 'not_sent'
            ELSE 'not_synced' END              AS sync_status,
       l.crm_customer_id,
       l.crm_visit_id,
       l.error_kind,
       l.last_error,
       l.attempts,
       l.first_attempt_at AT TIME ZONE 'UTC'   AS first_attempt_at,
       l.last_attempt_at AT TIME ZONE 'UTC'    AS last_attempt_at,
       l.synced_at AT TIME ZONE 'UTC'          AS synced_at
FROM check_ins ci
JOIN companies co ON co.id = ci.company_id
LEFT JOIN technicians t ON t.id = ci.technician_id
LEFT JOIN wanted w ON true
LEFT JOIN crm_sync.ledger l
       ON l.company_id = ci.company_id AND l.check_in_id = ci.id
      AND (w.crm_type IS NULL OR l.crm_type = w.crm_type)
WHERE (cardinality(CAST(:company_ids AS integer[])) = 0 OR ci.company_id = ANY(CAST(:company_ids AS integer[])))
  AND ci.created_at >= :created_from
  AND ci.created_at < :created_to
ORDER BY ci.id, crm_type NULLS FIRST
