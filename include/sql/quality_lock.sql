-- Sync-quality metrics: one recomputation of crm_sync.quality_daily at a time (released at commit).
SELECT pg_advisory_xact_lock(hashtext('crm_sync.quality_daily'))
