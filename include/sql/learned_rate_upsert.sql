INSERT INTO crm_sync.learned_rate_limits (company_id, crm_type, crm_account, limit_name, requests_per_second)
VALUES (:company_id, :crm_type, :crm_account, :limit_name, :requests_per_second)
ON CONFLICT (company_id, crm_type, crm_account, limit_name)
DO UPDATE SET requests_per_second = EXCLUDED.requests_per_second, updated_at = now()
