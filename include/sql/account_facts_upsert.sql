INSERT INTO crm_sync.account_facts (company_id, crm_type, crm_account, config_fingerprint, facts, checked_at, expires_at)
VALUES (:company_id, :crm_type, :crm_account, :config_fingerprint, CAST(:facts AS jsonb), now(),
        now() + make_interval(secs => :ttl_seconds))
ON CONFLICT (company_id, crm_type, crm_account)
DO UPDATE SET config_fingerprint = EXCLUDED.config_fingerprint, facts = EXCLUDED.facts,
              checked_at = EXCLUDED.checked_at, expires_at = EXCLUDED.expires_at
