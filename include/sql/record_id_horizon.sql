-- Record where the check_ins id sequence stands now, with the snapshot's xmax: every
-- transaction that could still commit a row with id <= max_id started before this snapshot.
INSERT INTO crm_sync.id_horizon (max_id, snapshot_xmax)
SELECT COALESCE((SELECT max(id) FROM public.check_ins), 0), pg_snapshot_xmax(pg_current_snapshot())
RETURNING id, max_id;
