-- The first stored pair of a company x CRM; no row when another task stored one first (compare-and-set).
INSERT INTO crm_sync.integration_credentials
    (company_id, crm_type, ciphertext, app_fingerprint, written_fingerprints, version)
VALUES (:company_id, :crm_type, :ciphertext, :app_fingerprint, CAST(:written_fingerprints AS text[]), 1)
ON CONFLICT (company_id, crm_type) DO NOTHING
RETURNING version
