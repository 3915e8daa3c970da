"""``crm_backfill``: a dated, resumable bulk sync of one CRM type, chunk by chunk.

The range ``[date_from, date_to]`` is split per company into chunks of ``chunk_days``
days; each chunk is one :class:`~crm_sync.integration_sync.IntegrationSync` run over the check-ins
created in it (``SyncOptions.created_from/created_to``), through the same ledger,
advisory lock and marker look-ups as the incremental sync: a row already synced by
either DAG is never sent again. Each finished chunk is checkpointed in
``crm_sync.backfill_chunks`` under a key derived from the params (not the run id), so
re-triggering with the same params skips the chunks that are done.

Pure functions (:func:`plan_chunks`, :func:`backfill_key`, :func:`parse_params`) hold the
rules; the DAG's tasks (:mod:`crm_sync.tasks.backfill`) only wire them to the database and Airflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from crm_hooks.registry import HOOKS
from crm_sync.clean import dumps_strict, storable_text
from crm_sync.db import sql
from crm_sync.text_table import Column, render

log = logging.getLogger(__name__)

#: Airflow's default ``[core] max_map_length``: more chunks than this cannot be mapped in one run.
MAX_CHUNKS = 1024
MAX_SAMPLES = 5


class BackfillParamError(ValueError):
    """The trigger params cannot describe a backfill (the message says which and why)."""


@dataclass(frozen=True)
class BackfillParams:
    """The params that define *what* a backfill does (they make up its key)."""

    crm_type: str
    company_ids: tuple[int, ...]  # empty: every company with an active integration
    date_from: date | None  # None: the companies' first check-in
    date_to: date | None  # None: today (UTC)
    chunk_days: int
    dry_run: bool
    resync_quarantined: bool


def _day(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise BackfillParamError(f"{name} {value!r} is not a date like 2026-01-31") from None


def parse_params(params: dict[str, Any]) -> BackfillParams:
    """Validate the trigger params (the form validates types; this checks what it cannot)."""
    crm_type = params.get("crm_type")
    if not crm_type:
        raise BackfillParamError(f"crm_type is required: one of {', '.join(HOOKS)}")
    if crm_type not in HOOKS:
        raise BackfillParamError(f"crm_type {crm_type!r} is not one of {', '.join(HOOKS)}")
    raw_ids = params.get("company_ids") or []
    try:
        company_ids = tuple(sorted({int(c) for c in raw_ids}))
    except (TypeError, ValueError):
        raise BackfillParamError(f"company_ids must be integers, got {raw_ids!r}") from None
    date_from, date_to = _day(params.get("date_from"), "date_from"), _day(params.get("date_to"), "date_to")
    if date_from and date_to and date_from > date_to:
        raise BackfillParamError(f"date_from {date_from} is after date_to {date_to}")
    chunk_days = int(params.get("chunk_days") or 7)
    if chunk_days < 1:
        raise BackfillParamError(f"chunk_days must be at least 1, got {chunk_days}")
    return BackfillParams(
        crm_type,
        company_ids,
        date_from,
        date_to,
        chunk_days,
        bool(params.get("dry_run", True)),
        bool(params.get("resync_quarantined", False)),
    )


def backfill_key(p: BackfillParams) -> str:
    """A stable id for "this backfill" from the params that decide what it covers.

    ``batch_size`` and ``rate_share`` only change how fast, so they are not part of it; a
    dry run has its own key, so its report rows never count as done chunks.
    """
    basis = json.dumps(
        {
            "crm_type": p.crm_type,
            "company_ids": list(p.company_ids),
            "date_from": str(p.date_from or ""),
            "date_to": str(p.date_to or ""),
            "chunk_days": p.chunk_days,
            "dry_run": p.dry_run,
            "resync_quarantined": p.resync_quarantined,
        },
        sort_keys=True,
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:20]


def plan_chunks(
    company_ids: list[int], first: date, last: date, chunk_days: int, done: set[tuple[int, date]] = frozenset()
) -> list[dict[str, Any]]:
    """Company x date chunks covering ``[first, last]`` (inclusive days), minus the ``done`` ones.

    Each chunk is ``{"company_id", "chunk_start", "chunk_end"}`` with ISO dates and
    ``chunk_end`` exclusive (the day after its last day).
    """
    if first > last:
        return []
    chunks = []
    for company_id in company_ids:
        start = first
        while start <= last:
            end = min(start + timedelta(days=chunk_days), last + timedelta(days=1))
            if (company_id, start) not in done:
                chunks.append(
                    {"company_id": company_id, "chunk_start": start.isoformat(), "chunk_end": end.isoformat()}
                )
            start = end
    return chunks


def chunk_done(result: Any) -> bool:
    """A chunk is done when every row ended synced, unchanged or quarantined (all final)."""
    return result.status in ("success", "partial") and not result.failed and not result.error


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum dry-run reports of several chunks; keep the most frequent reasons and a few samples."""
    counts: Counter = Counter()
    reasons: Counter = Counter()
    samples: list[dict[str, Any]] = []
    for report in reports:
        counts.update(report.get("counts") or {})
        reasons.update(report.get("invalid_reasons") or {})
        samples.extend(report.get("samples") or [])
    return {"counts": dict(counts), "invalid_reasons": dict(reasons.most_common(20)), "samples": samples[:MAX_SAMPLES]}


def _midnight(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.min, tzinfo=UTC)


def date_span(engine: Engine, company_ids: list[int]) -> tuple[date | None, date]:
    """The first day of the companies' check-ins (None: they have none) and today (UTC): an open range's ends."""
    with engine.connect() as conn:
        row = conn.execute(sql("check_ins_date_range"), {"company_ids": company_ids}).one()
    return row.first_day, datetime.now(UTC).date()


def done_chunks(engine: Engine, key: str) -> set[tuple[int, date]]:
    """(company id, chunk start) of the chunks of backfill ``key`` that are done."""
    with engine.connect() as conn:
        return {(r.company_id, r.chunk_start) for r in conn.execute(sql("backfill_chunks_done"), {"backfill_key": key})}


def chunks_for(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The chunk rows one DAG run touched (for its report)."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sql("backfill_chunks_for_run"), {"run_id": run_id}).mappings()]


#: The columns of :func:`format_chunks`: one line per chunk.
CHUNK_COLUMNS = (
    Column("company", 8, value="company_id"),
    Column("chunk", 23, "<", lambda r: f"{r['chunk_start']}..{r['chunk_end']}"),
    Column("status", 8, "<"),
    Column("rows", 7, value="candidates"),
    Column("synced", 7),
    Column("unchanged", 9),
    Column("quarant.", 8, value="quarantined"),
    Column("failed", 6),
    Column("calls", 6, value="api_calls"),
)


def format_chunks(rows: list[dict[str, Any]]) -> list[str]:
    """The chunks as a fixed-width table (no rule under the titles), a chunk's error after its line."""
    lines = render(CHUNK_COLUMNS, rows, rule=False)
    return lines[:1] + [
        line + (f"  {r['error'][:120]}" if r["error"] else "") for line, r in zip(lines[1:], rows, strict=True)
    ]


def execute_chunk(
    engine: Engine,
    chunk: dict[str, Any],
    crm_type: str,
    raw_params: dict[str, Any],
    *,
    run_id: str,
    dag_id: str | None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """One chunk (:func:`crm_sync.tasks.backfill.run_chunk` without Airflow; the benchmark calls it directly);
    ``deadline`` is the time budget."""
    from crm_hooks.errors import ConfigurationError
    from crm_sync.customer_import import sync_with_index
    from crm_sync.integration_sync import IntegrationSync, SyncOptions
    from crm_sync.integrations import load_integration
    from crm_sync.summary import result_summary

    params = parse_params(raw_params)
    company_id = int(chunk["company_id"])
    ids = {"backfill_key": chunk["backfill_key"], "company_id": company_id, "chunk_start": chunk["chunk_start"]}
    label = f"company {company_id} {chunk['chunk_start']}..{chunk['chunk_end']}"
    with engine.begin() as conn:
        # A concurrent run with the same params may have finished it since this run was planned.
        if not params.dry_run and conn.execute(sql("backfill_chunk_status"), ids).scalar() == "done":
            log.info("%s: done by an earlier run, skipped", label)
            return {"company_id": company_id, "chunk": label, "status": "already_done"}
        conn.execute(
            sql("backfill_chunk_start"),
            {
                **ids,
                "crm_type": crm_type,
                "chunk_end": chunk["chunk_end"],
                "run_id": run_id,
                "status": "dry_run" if params.dry_run else "running",
                "params": json.dumps({k: str(v) if isinstance(v, date) else v for k, v in vars(params).items()}),
            },
        )
    try:
        integration = load_integration(engine, company_id, crm_type)
    except ConfigurationError as exc:
        _finish(engine, ids, "failed", error=str(exc))
        raise
    batch_size = raw_params.get("batch_size")
    options = SyncOptions(
        batch_size=int(batch_size) if batch_size else _backfill_batch_size(crm_type),
        rate_share=float(raw_params.get("rate_share") or 0.5),
        dry_run=params.dry_run,
        created_from=_midnight(chunk["chunk_start"]),
        created_to=_midnight(chunk["chunk_end"]),
        resync_quarantined=params.resync_quarantined,
        deadline=deadline,
    )
    if params.dry_run:
        result = IntegrationSync(
            engine,
            company_id=company_id,
            crm_type=crm_type,
            integration=integration,
            run_id=run_id,
            dag_id=dag_id,
            options=options,
        ).run()
    else:
        # The CRM's customers are indexed once, before the company's first chunk (as before its first sync).
        result = sync_with_index(
            engine, company_id, crm_type, integration, run_id=run_id, dag_id=dag_id, options=options
        )
    summary = result_summary(result)
    summary["chunk"] = label
    if params.dry_run:
        _finish(engine, ids, "dry_run", result=result, report=result.report)
        summary["report"] = result.report
        log.info("%s (dry run): %s", label, json.dumps(result.report, default=str)[:4000])
        return summary
    if result.status == "skipped":
        _finish(engine, ids, "failed", result=result, error=result.error)
        # Another sync of this integration holds the lock (e.g. the scheduled run): Airflow retries later.
        raise RuntimeError(f"{label}: {result.error}")
    done = chunk_done(result)
    _finish(engine, ids, "done" if done else "failed", result=result, error=result.error)
    log.info("%s: %s", label, summary)
    if not done:
        raise RuntimeError(
            f"{label} is not finished ({result.failed} rows failed or in flight"
            f"{'; ' + result.error if result.error else ''}); a retry or re-trigger resumes it"
        )
    return summary


def _finish(
    engine: Engine,
    ids: dict[str, Any],
    status: str,
    *,
    result: Any = None,
    report: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    counts = {
        k: getattr(result, k, 0) if result is not None else 0
        for k in ("candidates", "synced", "unchanged", "quarantined", "failed", "api_calls")
    }
    if report is not None:
        counts["quarantined"] = report["counts"].get("invalid", 0)
    with engine.begin() as conn:
        conn.execute(
            sql("backfill_chunk_finish"),
            {
                **ids,
                **counts,
                "status": status,
                "error": storable_text(error),
                "report": dumps_strict(report) if report is not None else None,
            },
        )


def _backfill_batch_size(crm_type: str) -> int | None:
    """A destination with a bulk path (Salesforce Bulk API 2.0) declares the batch that uses it."""
    from crm_sync.destinations import destination_class

    return getattr(destination_class(crm_type), "backfill_batch_size", None)
