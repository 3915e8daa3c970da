"""Tasks of ``crm_backfill``: plan the chunks, run one chunk, report the run (the rules: :mod:`crm_sync.backfill`)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import date
from typing import Any

from airflow.sdk import get_current_context

from crm_sync.backfill import (
    MAX_CHUNKS,
    BackfillParamError,
    backfill_key,
    chunks_for,
    date_span,
    done_chunks,
    execute_chunk,
    format_chunks,
    merge_reports,
    parse_params,
    plan_chunks,
)
from crm_sync.db import RANKITPRO_CONN_ID
from crm_sync.tasks.common import config_error_recorder, discover, param_errors, params_of, sync_db

log = logging.getLogger(__name__)


def plan_backfill(crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> list[dict[str, Any]]:
    """The chunks still to do for this DAG run's params (``[]`` when the run is for another CRM).

    Migrates the sync schema, finds the companies (an active ``crm_type`` integration; a
    listed company without one is reported as a ``config_error`` run), resolves an empty
    date range from the check-ins, and drops the chunks a previous run with the same
    params finished. Params that cannot describe a backfill fail the task without a retry.
    """
    with param_errors():
        params = parse_params(params_of(context))
    if params.crm_type != crm_type:
        return []
    with sync_db(db_conn_id) as engine:
        found = discover(
            engine,
            crm_type,
            purpose="backfill into",
            company_ids=params.company_ids,
            on_problem=config_error_recorder(engine, context),
        )
        ids = found.company_ids
        missing = sorted(set(params.company_ids) - set(ids) - {p.company_id for p in found.problems})
        if missing:
            log.warning("companies %s have no active %s integration: nothing to backfill for them", missing, crm_type)
        if not ids:
            log.info("no company to backfill into %s", crm_type)
            return []
        first, last = params.date_from, params.date_to
        if first is None or last is None:
            first_day, today = date_span(engine, ids)
            first, last = first or first_day, last or today
            if first is None:
                log.info("the companies have no check-ins")
                return []
        key = backfill_key(params)
        done: set[tuple[int, date]] = set() if params.dry_run else done_chunks(engine, key)
    chunks = plan_chunks(ids, first, last, params.chunk_days, done)
    total = len(plan_chunks(ids, first, last, params.chunk_days))
    if len(chunks) > MAX_CHUNKS:
        with param_errors():
            raise BackfillParamError(
                f"{len(chunks)} chunks to run exceed Airflow's max_map_length ({MAX_CHUNKS}): raise chunk_days "
                "or split the range or the companies over several runs"
            )
    log.info(
        "backfill %s into %s: %d companies, %s..%s, %d chunks, %d already done, %d to run",
        key,
        crm_type,
        len(ids),
        first,
        last,
        total,
        total - len(chunks),
        len(chunks),
    )
    return [{**c, "backfill_key": key} for c in chunks]


def run_chunk(
    chunk: dict[str, Any], crm_type: str, db_conn_id: str = RANKITPRO_CONN_ID, **context: Any
) -> dict[str, Any]:
    """Sync (or dry-run) one company x date chunk; checkpoint it; return counts only (XCom)."""
    from crm_sync.budget import deadline_for

    # The mapped task's name in the UI (map_index_template="{{ chunk_label }}").
    get_current_context()["chunk_label"] = f"company {chunk['company_id']} {chunk['chunk_start']}"
    raw = params_of(context)
    with param_errors():
        parse_params(raw)
    with sync_db(db_conn_id) as engine:
        return execute_chunk(
            engine,
            chunk,
            crm_type,
            raw,
            run_id=context["run_id"],
            dag_id=context["dag"].dag_id,
            deadline=deadline_for(context["task"].execution_timeout),
        )


def report_backfill(db_conn_id: str = RANKITPRO_CONN_ID, **context: Any) -> dict[str, Any]:
    """Log the run's chunks and return totals (and, for a dry run, counts + a few samples)."""
    with sync_db(db_conn_id) as engine:
        rows = chunks_for(engine, context["run_id"])
    lines = format_chunks(rows)
    out: dict[str, Any] = {"chunks": len(rows), "by_status": dict(Counter(r["status"] for r in rows))}
    for k in ("candidates", "synced", "unchanged", "quarantined", "failed", "api_calls"):
        out[k] = sum(r[k] for r in rows)
    dry = [r["report"] for r in rows if r["status"] == "dry_run" and r["report"]]
    if dry:
        out["dry_run"] = merge_reports(dry)
        lines.append("dry run: " + json.dumps(out["dry_run"]["counts"], sort_keys=True))
        for reason, n in out["dry_run"]["invalid_reasons"].items():
            lines.append(f"  invalid x{n}: {reason}")
    log.info("crm_backfill report for run %s\n%s", context["run_id"], "\n".join(lines))
    return out
