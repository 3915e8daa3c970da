-- crm_import: the company's technicians, to resolve technician_email / technician_name (inactive ones too:
-- imported history may belong to people who have left).
SELECT id, name, email, active FROM technicians WHERE company_id = :company_id ORDER BY id
