INSERT INTO crm_sync.runs (run_id, dag_id, company_id, crm_type, status, started_at, finished_at, seconds,
    candidates, unchanged, synced, customers_found, customers_created, customers_updated, visits_created,
    visits_updated, visits_recovered, quarantined, failed, api_calls, retries, rate_limited, error,
    quarantine_reasons, warnings)
VALUES (:run_id, :dag_id, :company_id, :crm_type, :status, :started_at, :finished_at, :seconds,
    :candidates, :unchanged, :synced, :customers_found, :customers_created, :customers_updated, :visits_created,
    :visits_updated, :visits_recovered, :quarantined, :failed, :api_calls, :retries, :rate_limited, :error,
    CAST(:quarantine_reasons AS jsonb), CAST(:warnings AS jsonb))
RETURNING id
