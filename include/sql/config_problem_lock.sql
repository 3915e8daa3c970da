-- Serialise the configuration reports of one company in one DAG run (a retried task, or two tasks at once),
-- so the existence check below and the insert after it cannot interleave. Released at commit.
SELECT pg_advisory_xact_lock(hashtext('crm_sync config_error ' || CAST(:run_id AS text)), CAST(:company_id AS integer))
