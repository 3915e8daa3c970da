SELECT pg_advisory_unlock(hashtext(:crm_type), :company_id)
