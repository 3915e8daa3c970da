INSERT INTO crm_sync.access_tokens (company_id, crm_type, credentials_fingerprint, ciphertext, expires_at)
VALUES (:company_id, :crm_type, :credentials_fingerprint, :ciphertext, now() + make_interval(secs => :seconds))
ON CONFLICT (company_id, crm_type)
DO UPDATE SET credentials_fingerprint = EXCLUDED.credentials_fingerprint, ciphertext = EXCLUDED.ciphertext,
              expires_at = EXCLUDED.expires_at, updated_at = now()
