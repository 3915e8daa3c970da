-- The check-in as the sync reads it: the columns its hash and mappings use, plus the technician's name.
-- One definition for every query that prepares check-ins (extract_candidates, extract_range,
-- reconcile_source), so the incremental sync, a backfill and the reconciliation hash a row alike.
CREATE OR REPLACE VIEW crm_sync.sync_check_ins AS
SELECT ci.id, ci.company_id, ci.job_type, ci.notes, ci.customer_name, ci.customer_email,
       ci.customer_phone, ci.work_performed, ci.materials_used, ci.latitude, ci.longitude,
       ci.location, ci.address, ci.city, ci.state, ci.zip, ci.photos, ci.before_photos,
       ci.after_photos, ci.problem_description, ci.solution_description, ci.customer_feedback,
       ci.follow_up_required, ci.follow_up_notes, ci.created_at, ci.technician_id, ci.location_id,
       ci.address_verified, ci.location_source, ci.is_blog, ci.generated_content, ci.wordpress_sync_status,
       ci.wordpress_post_id, ci.wordpress_post_url,
       t.name AS technician_name
FROM public.check_ins ci
LEFT JOIN public.technicians t ON t.id = ci.technician_id;
