-- crm_merge_duplicates, for a CRM that cannot list its customers (FieldEdge): each CRM customer the sync sent
-- check-ins to, with the newest name, email and phone those check-ins carried.
SELECT l.crm_customer_id AS crm_id,
       (array_agg(ci.customer_name ORDER BY ci.created_at DESC, ci.id DESC)
          FILTER (WHERE coalesce(btrim(ci.customer_name), '') <> ''))[1] AS name,
       (array_agg(ci.customer_email ORDER BY ci.created_at DESC, ci.id DESC)
          FILTER (WHERE coalesce(btrim(ci.customer_email), '') <> ''))[1] AS email,
       (array_agg(ci.customer_phone ORDER BY ci.created_at DESC, ci.id DESC)
          FILTER (WHERE coalesce(btrim(ci.customer_phone), '') <> ''))[1] AS phone
FROM crm_sync.ledger l
JOIN public.check_ins ci ON ci.id = l.check_in_id
WHERE l.company_id = :company_id AND l.crm_type = :crm_type AND l.crm_customer_id IS NOT NULL
  AND (CAST(:crm_account AS text) IS NULL OR l.crm_account = :crm_account)
GROUP BY l.crm_customer_id
ORDER BY l.crm_customer_id
