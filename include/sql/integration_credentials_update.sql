-- Replace the stored pair only if nobody wrote since it was read (compare-and-set on version).
UPDATE crm_sync.integration_credentials
SET ciphertext = :ciphertext, app_fingerprint = :app_fingerprint,
    written_fingerprints = CAST(:written_fingerprints AS text[]), version = version + 1, updated_at = now()
WHERE company_id = :company_id AND crm_type = :crm_type AND version = :expected_version
RETURNING version
