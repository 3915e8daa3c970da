-- crm_import: one validated row into check_ins, and its source key (same transaction as every other row).
WITH ins AS (
    INSERT INTO check_ins (job_type, notes, customer_name, customer_email, customer_phone, work_performed,
                           materials_used, address, city, state, zip, latitude, longitude, problem_description,
                           solution_description, customer_feedback, follow_up_required, follow_up_notes, photos,
                           technician_id, company_id, created_at)
    VALUES (:job_type, :notes, :customer_name, :customer_email, :customer_phone, :work_performed,
            :materials_used, :address, :city, :state, :zip, :latitude, :longitude, :problem_description,
            :solution_description, :customer_feedback, :follow_up_required, :follow_up_notes,
            CAST(:photos AS jsonb), :technician_id, :company_id, :created_at)
    RETURNING id
)
INSERT INTO crm_sync.check_in_import_rows (company_id, source_key, check_in_id, import_id, line)
SELECT :company_id, :source_key, id, :import_id, :line FROM ins
