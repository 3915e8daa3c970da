UPDATE crm_sync.customer_imports
   SET status = :status, finished_at = :finished_at, seconds = :seconds,
       customers_indexed = :customers_indexed, customers_without_keys = :customers_without_keys,
       keys_added = :keys_added, keys_already_mapped = :keys_already_mapped,
       duplicate_groups = :duplicate_groups, duplicate_customers = :duplicate_customers,
       duplicate_examples = CAST(:duplicate_examples AS jsonb), api_calls = :api_calls, error = :error,
       crm_account = COALESCE(:crm_account, crm_account)
 WHERE id = :id
