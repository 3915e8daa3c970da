-- Report: the latest finished reconciliation per company x CRM (this Airflow run's own when it has one),
-- with its discrepancy counts per class (counted here: every discrepancy, not only the rows shown).
WITH latest AS (
    SELECT DISTINCT ON (r.company_id, r.crm_type)
           r.id, r.run_id, r.company_id, r.crm_type, r.range_start, r.range_end, r.started_at, r.finished_at,
           r.source_count, r.eligible_count, r.synced_count, r.crm_checked, r.crm_sampled, r.error
    FROM crm_sync.reconciliation_runs r
    WHERE r.finished_at IS NOT NULL
      AND (CAST(:company_ids AS integer[]) IS NULL OR r.company_id = ANY (CAST(:company_ids AS integer[])))
      AND (CAST(:crm_types AS text[]) IS NULL OR r.crm_type = ANY (CAST(:crm_types AS text[])))
    ORDER BY r.company_id, r.crm_type, (r.run_id = :run_id) DESC, r.started_at DESC, r.id DESC
)
SELECT latest.*,
       COALESCE((SELECT jsonb_object_agg(c.class, c.n)
                 FROM (SELECT d.class, count(*) AS n FROM crm_sync.discrepancies d
                       WHERE d.reconciliation_id = latest.id GROUP BY d.class) c), '{}'::jsonb) AS class_counts
FROM latest
ORDER BY latest.crm_type, latest.company_id
