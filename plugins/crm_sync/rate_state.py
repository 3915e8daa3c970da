"""The rates the adaptive limiter learned, kept per CRM account between runs (``crm_sync.learned_rate_limits``).

Read at run start (after the run is bound to its CRM account), written at run end: no CRM call. A limit
whose learned rate is back at its ceiling loses its row. See :mod:`crm_hooks.rate_limit`.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from crm_sync.db import sql


def load(engine: sa.Engine, company_id: int, crm_type: str, crm_account: str) -> dict[str, float]:
    """Limit name -> learned requests per second for this company's CRM account (empty: nothing learned)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sql("learned_rates_get"), {"company_id": company_id, "crm_type": crm_type, "crm_account": crm_account}
        )
        return {name: float(rate) for name, rate in rows}


def save(
    engine: sa.Engine, company_id: int, crm_type: str, crm_account: str, rates: Mapping[str, float | None]
) -> None:
    """Keep each learned rate (None: back at the ceiling, the row goes)."""
    with engine.begin() as conn:
        for name, rate in rates.items():
            key = {"company_id": company_id, "crm_type": crm_type, "crm_account": crm_account, "limit_name": name}
            if rate is None:
                conn.execute(sql("learned_rate_delete"), key)
            else:
                conn.execute(sql("learned_rate_upsert"), {**key, "requests_per_second": rate})


__all__ = ["load", "save"]
