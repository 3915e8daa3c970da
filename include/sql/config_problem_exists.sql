-- Is this configuration problem already recorded for this DAG run? (A retry must not report it twice.)
SELECT 1 FROM crm_sync.runs
 WHERE run_id = :run_id AND company_id = :company_id AND status = 'config_error'
   AND crm_type IS NOT DISTINCT FROM CAST(:crm_type AS text)
   AND error IS NOT DISTINCT FROM CAST(:error AS text)
 LIMIT 1
