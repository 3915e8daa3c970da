-- Reconciliation (crm_reconciliation_report): every check-in of one company created in
-- [range_start, range_end), with its ledger row for one CRM if it has one, oldest first.
-- Same check-in columns as extract_candidates.sql, so the row hashes and maps exactly as the sync's.
SELECT ci.id, ci.company_id, ci.job_type, ci.notes, ci.customer_name, ci.customer_email,
       ci.customer_phone, ci.work_performed, ci.materials_used, ci.latitude, ci.longitude,
       ci.location, ci.address, ci.city, ci.state, ci.zip, ci.photos, ci.before_photos,
       ci.after_photos, ci.problem_description, ci.solution_description, ci.customer_feedback,
       ci.follow_up_required, ci.follow_up_notes, ci.created_at, ci.technician_id, ci.location_id,
       ci.address_verified, ci.location_source, ci.is_blog, ci.generated_content, ci.wordpress_sync_status,
       ci.wordpress_post_id, ci.wordpress_post_url,
       t.name AS technician_name,
       l.status AS ledger_status, l.source_hash AS ledger_source_hash, l.synced_hash,
       l.crm_customer_id, l.crm_visit_id, l.requeue, l.error_kind, l.last_error, l.synced_at
FROM public.check_ins ci
LEFT JOIN public.technicians t ON t.id = ci.technician_id
LEFT JOIN crm_sync.ledger l
       ON l.company_id = ci.company_id AND l.crm_type = :crm_type AND l.check_in_id = ci.id
WHERE ci.company_id = :company_id
  AND ci.created_at >= :range_start AND ci.created_at < :range_end
ORDER BY ci.id
