-- First and last check-in day of some companies (the default range of a backfill).
SELECT min(created_at)::date AS first_day, max(created_at)::date AS last_day
FROM public.check_ins
WHERE company_id = ANY(:company_ids)
