-- Discovery in SQL (issue 14): the incremental sync finds the company x CRM pairs with work in one query
-- (include/sql/discover_work.sql) and starts no task for the others.
--
-- * sync_check_ins.source_fp: md5 of the columns source_hash covers (crm_sync.prepare.HASHED_COLUMNS, the
--   raw values in that order; tests/test_discovery.py checks the list), computed by the database. The
--   Python source_hash (canonical JSON) cannot be recomputed in SQL; this fingerprint can, so "edited since
--   it was synced" is a set-based comparison instead of hashing every look-back row in Python.
-- * ledger.source_fp: the fingerprint of the row an attempt read, written with source_hash (ledger_claim,
--   ledger_quarantine_unsent). Rows from before this migration have none: discovery counts them as edited
--   once, and the run that finds them unchanged stores it (ledger_refresh_fp), so the next cycle is idle.
-- * ledger_open_idx: the rows every run reads whatever their age (unfinished, requeued, crm_state), a small
--   partial index discovery probes per company x CRM.
CREATE OR REPLACE VIEW crm_sync.sync_check_ins AS
SELECT ci.id, ci.company_id, ci.job_type, ci.notes, ci.customer_name, ci.customer_email,
       ci.customer_phone, ci.work_performed, ci.materials_used, ci.latitude, ci.longitude,
       ci.location, ci.address, ci.city, ci.state, ci.zip, ci.photos, ci.before_photos,
       ci.after_photos, ci.problem_description, ci.solution_description, ci.customer_feedback,
       ci.follow_up_required, ci.follow_up_notes, ci.created_at, ci.technician_id, ci.location_id,
       ci.address_verified, ci.location_source, ci.is_blog, ci.generated_content, ci.wordpress_sync_status,
       ci.wordpress_post_id, ci.wordpress_post_url,
       t.name AS technician_name,
       md5(ROW(ci.job_type, ci.customer_name, ci.customer_email, ci.customer_phone, ci.notes, ci.work_performed,
               ci.materials_used, ci.problem_description, ci.solution_description, ci.customer_feedback,
               ci.follow_up_required, ci.follow_up_notes, ci.address, ci.city, ci.state, ci.zip, ci.location,
               ci.photos, ci.before_photos, ci.after_photos)::text) AS source_fp
FROM public.check_ins ci
LEFT JOIN public.technicians t ON t.id = ci.technician_id;

ALTER TABLE crm_sync.ledger ADD COLUMN IF NOT EXISTS source_fp text;
ALTER TABLE crm_sync.ledger_archive ADD COLUMN IF NOT EXISTS source_fp text;

CREATE INDEX IF NOT EXISTS ledger_open_idx ON crm_sync.ledger (company_id, crm_type)
    WHERE status IN ('pending', 'in_flight', 'failed') OR requeue OR error_kind = 'crm_state';
