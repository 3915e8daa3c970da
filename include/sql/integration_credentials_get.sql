SELECT ciphertext, app_fingerprint, written_fingerprints, version
FROM crm_sync.integration_credentials
WHERE company_id = :company_id AND crm_type = :crm_type
