-- The highest check-in id below which no new row can still appear: the max_id of the newest
-- horizon h such that every transaction running when the *next* horizon was taken has ended
-- (the next snapshot's xmax is at or below the oldest transaction still running now).
-- Using the next horizon, not h itself, covers a transaction that drew its id from the
-- sequence just before h was taken but got its transaction id just after.
SELECT COALESCE(max(h.max_id), 0) AS settled_id
FROM crm_sync.id_horizon h
WHERE EXISTS (
    SELECT 1 FROM crm_sync.id_horizon n
    WHERE n.id > h.id
      AND n.snapshot_xmax <= pg_snapshot_xmin(pg_current_snapshot())
);
