SELECT credentials_fingerprint, ciphertext, EXTRACT(EPOCH FROM (expires_at - now())) AS seconds_left
FROM crm_sync.access_tokens
WHERE company_id = :company_id AND crm_type = :crm_type AND expires_at > now()
