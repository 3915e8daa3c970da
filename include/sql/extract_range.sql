-- Check-ins of one company created in [:created_from, :created_to) for a dated backfill, oldest
-- first, with their ledger state. Every row of the range is read: rows already synced or
-- quarantined are counted as unchanged by the engine (and never sent again) unless the check-in
-- changed since; with :resync_quarantined, quarantined rows are retried as if requeued.
SELECT ci.id, ci.company_id, ci.job_type, ci.notes, ci.customer_name, ci.customer_email,
       ci.customer_phone, ci.work_performed, ci.materials_used, ci.latitude, ci.longitude,
       ci.location, ci.address, ci.city, ci.state, ci.zip, ci.photos, ci.before_photos,
       ci.after_photos, ci.problem_description, ci.solution_description, ci.customer_feedback,
       ci.follow_up_required, ci.follow_up_notes, ci.created_at, ci.technician_id, ci.location_id,
       ci.address_verified, ci.location_source, ci.is_blog, ci.generated_content, ci.wordpress_sync_status,
       ci.wordpress_post_id, ci.wordpress_post_url,
       t.name AS technician_name,
       l.status AS ledger_status, l.source_hash AS ledger_source_hash, l.synced_hash,
       l.crm_customer_id, l.crm_visit_id,
       (COALESCE(l.requeue, false) OR (CAST(:resync_quarantined AS boolean) AND l.status = 'quarantined')) AS requeue
FROM public.check_ins ci
LEFT JOIN public.technicians t ON t.id = ci.technician_id
LEFT JOIN crm_sync.ledger l
       ON l.company_id = ci.company_id AND l.crm_type = :crm_type AND l.check_in_id = ci.id
WHERE ci.company_id = :company_id
  AND ci.created_at >= :created_from
  AND ci.created_at < :created_to
ORDER BY ci.id
