-- Sync-quality metrics: drop the days about to be recomputed (same transaction as quality_compute.sql),
-- so a metric that no longer applies (e.g. a quarantine reason whose rows were requeued and synced) goes too.
DELETE FROM crm_sync.quality_daily
WHERE day >= :day_from AND day <= :day_to
  AND (CAST(:company_ids AS integer[]) IS NULL OR company_id = ANY (CAST(:company_ids AS integer[])))
  AND (CAST(:crm_types AS text[]) IS NULL OR crm_type = ANY (CAST(:crm_types AS text[])))
