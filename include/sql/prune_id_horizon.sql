-- Keep the horizon table small: older snapshots are implied by newer settled ones.
DELETE FROM crm_sync.id_horizon WHERE observed_at < now() - interval '7 days'
  AND id < (SELECT max(id) FROM crm_sync.id_horizon) - 10;
