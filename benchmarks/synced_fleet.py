"""Companies seeded as already synced, in SQL, in seconds (shared by the discovery and fleet benchmarks).

Each company gets one integration (the JSON the app stores), one technician, ``per_company`` check-ins spread
over ``spread_days`` days, and everything a finished sync leaves behind: the bound CRM account, a finished
customer index, the settled id horizon and a ``synced`` ledger row per check-in with its content fingerprint.
So ``discover_<crm>`` finds no work for them, while their integrations stay real: a bug that syncs them anyway
shows up as CRM calls.
"""

from __future__ import annotations

from collections.abc import Sequence

# Benchmark-only seeding SQL (the product's SQL lives in include/sql; this is test data).
_COMPANIES = """
    INSERT INTO companies (name, plan, crm_integrations, crm_sync_history)
    SELECT n, 'pro', i, '[]' FROM unnest(CAST(:names AS text[]), CAST(:integrations AS text[])) AS t(n, i)
    RETURNING id, name"""
_SYNCED_SQL = [
    """INSERT INTO technicians (name, email, phone, location, company_id)
       SELECT 'Tech', 't@example.com', '5125550000', 'Austin', c FROM unnest(CAST(:ids AS integer[])) AS c""",
    """INSERT INTO check_ins (job_type, customer_name, customer_email, notes, technician_id, company_id, created_at)
       SELECT 'Repair', 'Customer ' || t.company_id || '-' || g, 'c' || t.company_id || '-' || g || '@example.com',
              'Replaced the capacitor', t.id, t.company_id,
              (now() AT TIME ZONE 'UTC') - make_interval(days => (g * :spread_days / :per_company))  -- newest first
       FROM technicians t, generate_series(1, :per_company) g
       WHERE t.company_id = ANY(CAST(:ids AS integer[]))""",
    """INSERT INTO crm_sync.crm_accounts (company_id, crm_type, crm_account)
       SELECT c, :crm, a FROM unnest(CAST(:ids AS integer[]), CAST(:accounts AS text[])) AS t(c, a)""",
    """INSERT INTO crm_sync.customer_imports (trigger, company_id, crm_type, status, crm_account)
       SELECT 'auto', c, :crm, 'success', a
       FROM unnest(CAST(:ids AS integer[]), CAST(:accounts AS text[])) AS t(c, a)""",
    """INSERT INTO crm_sync.integration_state (company_id, crm_type, settled_id)
       SELECT company_id, :crm, max(id) FROM check_ins WHERE company_id = ANY(CAST(:ids AS integer[]))
       GROUP BY company_id""",
    """INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, source_hash, synced_hash, source_fp,
                                   attempts, crm_account, crm_visit_id)
       SELECT ci.company_id, :crm, ci.id, 'synced', 'h', 'h', ci.source_fp, 1, t.a, 'N' || ci.id
       FROM crm_sync.sync_check_ins ci
       JOIN unnest(CAST(:ids AS integer[]), CAST(:accounts AS text[])) AS t(c, a) ON t.c = ci.company_id""",
    "ANALYZE",
]


def seed_synced_companies(
    engine,
    crm: str,
    names: Sequence[str],
    integrations: Sequence[str],
    accounts: Sequence[str],
    *,
    per_company: int,
    spread_days: int = 90,
) -> list[int]:
    """Company ``k`` named ``names[k]`` (unique) with the integrations JSON ``integrations[k]``, bound to CRM
    account ``accounts[k]``, synced: its ids, in that order. One transaction, a statement per table."""
    import sqlalchemy as sa

    if not len(names) == len(integrations) == len(accounts):
        raise ValueError("names, integrations and accounts must be as long as each other")
    with engine.begin() as conn:
        by_name = dict(
            (name, cid)
            for cid, name in conn.execute(
                sa.text(_COMPANIES), {"names": list(names), "integrations": list(integrations)}
            ).all()
        )
        ids = [by_name[n] for n in names]
        params = {
            "ids": ids,
            "accounts": list(accounts),
            "crm": crm,
            "per_company": per_company,
            "spread_days": spread_days,
        }
        for statement in _SYNCED_SQL:
            conn.execute(sa.text(statement), params)
    return ids
