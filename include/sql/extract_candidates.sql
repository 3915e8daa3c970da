-- Check-ins of one company that this CRM sync must look at, oldest first:
--   * new rows above the integration's settled horizon that have no ledger row yet,
--   * rows whose last attempt did not finish (pending, in_flight, failed),
--   * rows an operator requeued,
--   * synced or quarantined rows inside the look-back window, so edits are found by
--     comparing the row's hash with the ledger's (check_ins has no updated_at).
SELECT ci.id, ci.company_id, ci.job_type, ci.notes, ci.customer_name, ci.customer_email,
       ci.customer_phone, ci.work_performed, ci.materials_used, ci.latitude, ci.longitude,
       ci.location, ci.address, ci.city, ci.state, ci.zip, ci.photos, ci.before_photos,
       ci.after_photos, ci.problem_description, ci.solution_description, ci.customer_feedback,
       ci.follow_up_required, ci.follow_up_notes, ci.created_at, ci.technician_id, ci.location_id,
       ci.address_verified, ci.location_source, ci.is_blog, ci.generated_content, ci.wordpress_sync_status,
       ci.wordpress_post_id, ci.wordpress_post_url,
       t.name AS technician_name,
       l.status AS ledger_status, l.source_hash AS ledger_source_hash, l.synced_hash,
       l.crm_customer_id, l.crm_visit_id, l.requeue
FROM public.check_ins ci
LEFT JOIN public.technicians t ON t.id = ci.technician_id
LEFT JOIN crm_sync.ledger l
       ON l.company_id = ci.company_id AND l.crm_type = :crm_type AND l.check_in_id = ci.id
WHERE ci.company_id = :company_id
  AND (
        (l.check_in_id IS NULL AND ci.id > :settled_id)
     OR l.status IN ('pending', 'in_flight', 'failed')
     OR l.requeue
     OR (l.status IN ('synced', 'quarantined') AND ci.created_at >= :lookback_since)
  )
ORDER BY ci.id
