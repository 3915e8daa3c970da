"""Run summaries: what each company x CRM did in one DAG run, as rows and as a printable table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from crm_sync.clean import storable_text
from crm_sync.db import sql
from crm_sync.history import write_back
from crm_sync.text_table import Column, render

SUMMARY_FIELDS = (
    "status",
    "candidates",
    "unchanged",
    "synced",
    "customers_found",
    "customers_created",
    "customers_updated",
    "visits_created",
    "visits_updated",
    "visits_recovered",
    "quarantined",
    "failed",
    "api_calls",
    "retries",
    "rate_limited",
    "seconds",
    "error",
)


def result_summary(result: Any) -> dict[str, Any]:
    """The XCom-safe part of an integration result: counts and redacted messages."""
    out = {"company_id": result.company_id, "crm_type": result.crm_type}
    out.update({k: getattr(result, k) for k in SUMMARY_FIELDS})
    out["seconds"] = float(out["seconds"] or 0)
    out["quarantine_reasons"] = {k: v["count"] for k, v in result.quarantine_reasons.items()}
    out["warnings"] = result.warnings[:10]
    # One person, one customer (crm_sync.identity): household decisions and emails added, counted.
    out["identity"] = {k: getattr(result, k, 0) for k in ("identity_merges", "identity_splits", "customers_completed")}
    # The CRM account written into, and the previous one when this run met an account change.
    out["crm_account"] = getattr(result, "crm_account", None)
    out["previous_crm_account"] = getattr(result, "previous_crm_account", None)
    return out


def record_config_problem(
    engine: Engine, run_id: str, dag_id: str | None, company_id: int, crm_type: str | None, error: str
) -> bool:
    """A company x CRM that could not even start: a ``config_error`` run row (and app history when we can).

    Idempotent per DAG run: the same problem reported again (a retried task) adds no second row and
    no second history entry; returns whether it was recorded now. The CRM type (a key of the app's
    JSON) and the message are cleaned of NUL and lone surrogates first, which the database refuses.
    """
    now = datetime.now(UTC)
    shown_type, error = storable_text(crm_type), storable_text(error) or ""
    row = {k: 0 for k in SUMMARY_FIELDS if k not in ("status", "error", "seconds")}
    row.update(
        run_id=run_id,
        dag_id=dag_id,
        company_id=company_id,
        crm_type=shown_type,
        status="config_error",
        started_at=now,
        finished_at=now,
        seconds=0,
        error=error,
        quarantine_reasons="{}",
        warnings="[]",
    )
    with engine.begin() as conn:
        conn.execute(sql("config_problem_lock"), {"run_id": run_id, "company_id": company_id})
        if conn.execute(
            sql("config_problem_exists"),
            {"run_id": run_id, "company_id": company_id, "crm_type": shown_type, "error": error},
        ).first():
            return False
        conn.execute(sql("run_insert"), row)
    if crm_type:
        # The company's admin sees "failed" on the app's sync history page, not a silent nothing.
        write_back(engine, company_id, crm_type, synced=0, errors=1, at=now, set_last_synced=False, add_history=True)
    return True


def runs_for(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sql("runs_for_run_id"), {"run_id": run_id}).mappings()]


def _company(row: Mapping[str, Any]) -> str:
    return f"{row.get('company_id')} {row.get('company_name') or ''}".strip()[:28]


#: The columns of :func:`format_table`: one line per company x CRM run.
RUN_COLUMNS = (
    Column("company", 28, "<", _company),
    Column("crm", 13, "<", lambda r: str(r.get("crm_type") or "-")),
    Column("status", 12, "<"),
    Column("found", 5, value="customers_found"),
    Column("created", 7, value="customers_created"),
    Column("updated", 7, value="customers_updated"),
    Column("jobs", 5, value=lambda r: r["visits_created"] + r["visits_recovered"]),
    Column("quar.", 5, value="quarantined"),
    Column("failed", 6),
    Column("unchg", 5, value="unchanged"),
    Column("calls", 6, value="api_calls"),
    Column("secs", 7, value=lambda r: float(r["seconds"] or 0), spec=".2f"),
)


def format_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """A fixed-width table, one line per company x CRM, then the quarantine reasons and errors."""
    rows = list(rows)
    lines = render(RUN_COLUMNS, rows)
    notes: list[str] = []
    for r in rows:
        name = _company(r)
        if r.get("error"):
            notes.append(f"  ! {name} / {r.get('crm_type') or '-'}: {r['error']}")
        if r.get("previous_crm_account"):
            notes.append(
                f"  ! {name} / {r.get('crm_type')}: CRM account changed from {r['previous_crm_account']} "
                f"to {r.get('crm_account')}; synced as a first sync (the old account's rows are history)"
            )
        warnings = r.get("warnings") or []
        if isinstance(warnings, str):
            warnings = json.loads(warnings)
        notes.extend(f"  warning ({name} / {r.get('crm_type')}): {w}" for w in warnings[:3])
        reasons = r.get("quarantine_reasons") or {}
        if isinstance(reasons, str):
            reasons = json.loads(reasons)
        for reason, entry in reasons.items():
            count = entry["count"] if isinstance(entry, Mapping) else entry
            examples = entry.get("examples", []) if isinstance(entry, Mapping) else []
            notes.append(
                f"  quarantined x{count} ({name} / {r.get('crm_type')}): {reason}"
                + (f" e.g. check-ins {examples}" if examples else "")
            )
    totals = {
        k: sum(int(r[k] or 0) for r in rows)
        for k in ("customers_created", "visits_created", "synced", "quarantined", "failed", "api_calls")
    }
    lines.append(lines[1])
    lines.append(
        f"total: {totals['synced']} check-ins synced, {totals['customers_created']} customers and "
        f"{totals['visits_created']} visit records created, {totals['quarantined']} quarantined, "
        f"{totals['failed']} failed (retried next run), {totals['api_calls']} API calls"
    )
    return "\n".join(lines + notes)
