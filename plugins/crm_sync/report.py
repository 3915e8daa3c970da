"""The sync-quality and reconciliation report: one self-contained HTML file plus CSVs for spreadsheets.

Read by a manager at a glance (health per CRM and per company x CRM, green / amber / red with the reasons),
by an analyst for the detail (30-day trends, the discrepancies of the latest reconciliation, the top quarantine
reasons with example check-in ids). Everything is aggregated in PostgreSQL (``include/sql/report_*.sql``) and
the HTML shows at most :data:`ROWS_PER_CLASS` discrepancies per class (with the counts of all); the CSVs are
streamed row by row, so memory does not grow with the number of check-ins or discrepancies.

The HTML needs no network: CSS inline, charts inline SVG drawn here, a small inline script for sorting and
filtering the tables. Every value from the database is escaped (Jinja2 autoescape; the SVG text with
:func:`html.escape`): check-in data is user input. CSV text cells that a spreadsheet would run as a formula
are prefixed with ``'`` (OWASP "CSV injection"). No credentials are read: only ``companies.name``.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from crm_hooks.registry import report_colours
from crm_sync.csv_escape import csv_safe
from crm_sync.db import SQL_DIR, sql
from crm_sync.paths import make_private_dir, open_private, write_private_text
from crm_sync.quality import DEFAULT_MIN_SUCCESS_RATE, metric_params, success_rate
from crm_sync.quarantine import ACTIONS, LABELS
from crm_sync.row_warnings import sql_params

TEMPLATE_DIR = SQL_DIR.parent / "templates"
HTML_NAME, CSV_NAME, METRICS_CSV_NAME = "report.html", "discrepancies.csv", "quality_metrics.csv"

DEFAULT_MAX_P95_LATENCY_S = 3600.0
ROWS_PER_CLASS = 500
TOP_REASONS = 15
TREND_DAYS = 30

#: Discrepancy classes, most serious first; RED ones make an integration red, AMBER ones amber.
CLASS_ORDER = ("missing_in_crm", "never_synced", "duplicate", "stale", "drift", "orphan", "quarantined")
RED_CLASSES = {
    "missing_in_crm": "missing in the CRM although the ledger says synced",
    "never_synced": "never sent although the sync has passed them",
    "duplicate": "duplicate records in the CRM",
}
AMBER_CLASSES = {
    "stale": "changed in the app since their last sync",
    "drift": "edited in the CRM (fields differ)",
    "orphan": "ledger rows whose check-in was deleted",
}
STATUS_ORDER = {"green": 0, "amber": 1, "red": 2}
FALLBACK_COLOURS = ("#495057", "#e8590c", "#0b7285", "#5c940d", "#862e9c", "#d9480f")
NUMERIC = (
    "eligible",
    "synced",
    "quarantined",
    "failed",
    "unfinished",
    "never_sent",
    "runs",
    "api_calls",
    "rate_limited",
    "retries",
    "customers_matched",
    "customers_created",
)


# ---------------------------------------------------------------------- health: pure rules
@dataclass
class Health:
    status: str  # green | amber | red
    reasons: list[str] = field(default_factory=list)


def assess(
    fig: Mapping[str, Any],
    *,
    min_success_rate: float = DEFAULT_MIN_SUCCESS_RATE,
    max_p95_latency_s: float | None = DEFAULT_MAX_P95_LATENCY_S,
) -> Health:
    """Green / amber / red for one company x CRM (or a CRM's totals) with a specific reason per finding.

    Red: success rate below ``min_success_rate``, eligible check-ins never sent, or a red discrepancy class
    (missing in the CRM, never synced, duplicates). Amber: failed or unfinished rows, 429 answers, p95
    latency above ``max_p95_latency_s``, an amber class (stale, drift, orphan), a reconciliation that could
    not read the CRM back, or none at all. Quarantined rows count against the success rate only.
    """
    red: list[str] = []
    amber: list[str] = []
    rate = success_rate(fig.get("synced"), fig.get("eligible"))
    if rate is not None and rate < min_success_rate:
        red.append(
            f"success rate {rate:.1%} < {min_success_rate:.1%} "
            f"({int(fig.get('synced') or 0):,} of {int(fig['eligible']):,} eligible check-ins synced)"
        )
    if int(fig.get("never_sent") or 0):
        red.append(f"{int(fig['never_sent']):,} eligible check-in(s) with no ledger row (never sent)")
    classes = fig.get("discrepancies") or {}
    for cls, text in RED_CLASSES.items():
        if int(classes.get(cls) or 0):
            red.append(f"{int(classes[cls]):,} {cls}: {text}")
    for cls, text in AMBER_CLASSES.items():
        if int(classes.get(cls) or 0):
            amber.append(f"{int(classes[cls]):,} {cls}: {text}")
    if int(fig.get("failed") or 0):
        amber.append(f"{int(fig['failed']):,} failed (transient; retried next run)")
    if int(fig.get("unfinished") or 0):
        amber.append(f"{int(fig['unfinished']):,} pending or in flight")
    if int(fig.get("rate_limited") or 0):
        amber.append(f"{int(fig['rate_limited']):,} rate-limit answers (HTTP 429)")
    p95 = fig.get("latency_p95_s")
    if max_p95_latency_s is not None and p95 is not None and float(p95) > max_p95_latency_s:
        amber.append(f"p95 latency {format_seconds(p95)} > {format_seconds(max_p95_latency_s)}")
    recon = fig.get("reconciliation")
    if fig.get("reconciled") is False:
        amber.append("not reconciled against the CRM yet")
    elif recon and recon.get("error"):
        amber.append(f"reconciliation incomplete: {recon['error']}")
    return Health("red" if red else "amber" if amber else "green", red + amber)


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=STATUS_ORDER.__getitem__, default="green")


# ---------------------------------------------------------------------- formatting
def format_seconds(value: float | None) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``, ``1.5 d`` (empty for None)."""
    if value is None:
        return ""
    v = float(value)
    if abs(v) < 90:
        return f"{v:.0f} s"
    if abs(v) < 5400:
        return f"{v / 60:.1f} min"
    if abs(v) < 129600:
        return f"{v / 3600:.1f} h"
    return f"{v / 86400:.1f} d"


def format_rate(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def format_utc(value: datetime | None) -> str:
    """``2026-11-24 08:05`` in UTC (naive values are the app's naive UTC already)."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------- charts: inline SVG
def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(1, ticks)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def line_chart(
    title: str,
    days: Sequence[date],
    series: Mapping[str, Mapping[date, float | None]],
    *,
    y_format,
    y_min: float | None = None,
    y_max: float | None = None,
    threshold: tuple[float, str] | None = None,
    width: int = 560,
    height: int = 260,
    colours: Mapping[str, str] | None = None,
) -> str:
    """An SVG line chart (one line per series over ``days``; a gap where a day has no value), as markup.

    Every text in it is escaped here: the caller inserts the result into the page unescaped.
    """
    esc = html.escape
    left, right, top, bottom = 64, 16, 30, 46
    pw, ph = width - left - right, height - top - bottom
    values = [v for s in series.values() for v in s.values() if v is not None]
    lo = y_min if y_min is not None else (min(values) if values else 0.0)
    hi = y_max if y_max is not None else (max(values) if values else 1.0)
    if threshold is not None:
        lo, hi = min(lo, threshold[0]), max(hi, threshold[0])
    if hi <= lo:
        hi = lo + 1.0
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    n = max(1, len(days) - 1)

    def x(i: int) -> float:
        return left + pw * i / n

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    out = [
        (
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
        ),
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{esc(title)}</text>',
    ]
    tick = lo
    while tick <= hi + step / 2:
        ty = y(tick)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" class="axis">{esc(y_format(tick))}</text>'
        )
        tick += step
    label_every = max(1, math.ceil(len(days) / 8))
    for i, d in enumerate(days):
        # Every label_every-th day, and the last one unless it would overlap the one before.
        last = i == len(days) - 1 and (len(days) - 1) % label_every > label_every // 2
        if i % label_every == 0 or last:
            out.append(
                f'<text x="{x(i):.1f}" y="{top + ph + 16}" text-anchor="middle" class="axis">'
                f"{esc(d.strftime('%b %d'))}</text>"
            )
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis-line"/>')
    if threshold is not None:
        ty = y(threshold[0])
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{ty:.1f}" y2="{ty:.1f}" class="threshold"/>'
            f'<text x="{left + 4}" y="{ty + 13:.1f}" class="threshold-label">{esc(threshold[1])}</text>'
        )
    colours = dict(colours or {})
    for k, name in enumerate(series):
        colour = colours.get(name) or FALLBACK_COLOURS[k % len(FALLBACK_COLOURS)]
        points = series[name]
        segment: list[str] = []
        segments: list[list[str]] = []
        dots: list[str] = []
        for i, d in enumerate(days):
            v = points.get(d)
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{x(i):.1f},{y(v):.1f}")
            dots.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{esc(colour)}">'
                f"<title>{esc(name)} {esc(d.isoformat())}: {esc(y_format(v))}</title></circle>"
            )
        if segment:
            segments.append(segment)
        for seg in segments:
            out.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{esc(colour)}" stroke-width="2"/>')
        out.extend(dots)
    # Legend along the bottom (one line; the caller keeps the series few).
    lx = left
    for k, name in enumerate(series):
        colour = colours.get(name) or FALLBACK_COLOURS[k % len(FALLBACK_COLOURS)]
        out.append(
            f'<rect x="{lx}" y="{height - 14}" width="12" height="4" fill="{esc(colour)}"/>'
            f'<text x="{lx + 16}" y="{height - 9}" class="legend">{esc(name)}</text>'
        )
        lx += 24 + 6 * len(name)
    if not values:
        out.append(
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" class="empty">'
            f"no data in these days</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _pct_axis(v: float) -> str:
    return f"{v:.0%}" if abs(v * 100 - round(v * 100)) < 1e-9 else f"{v:.1%}"


# ---------------------------------------------------------------------- reading
def _rows(engine: Engine, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sql(name), dict(params)).mappings()]


def _num(value: Any) -> float | int | None:
    if value is None:
        return None
    f = float(value)
    return int(f) if f.is_integer() else f


def _stream_csv(engine: Engine, name: str, params: Mapping[str, Any], path: Path, columns: Sequence[str]) -> int:
    """Write the query's rows to ``path`` as CSV from a server-side cursor; returns rows written."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with (
        open_private(tmp, "w", newline="", encoding="utf-8") as fh,
        engine.connect().execution_options(stream_results=True, yield_per=2000) as conn,
    ):
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in conn.execute(sql(name), dict(params)):
            writer.writerow([csv_safe(v.isoformat() if isinstance(v, (datetime, date)) else v) for v in row])
            count += 1
    os.replace(tmp, path)
    return count


# ---------------------------------------------------------------------- the report
def build_report(
    engine: Engine,
    *,
    run_id: str,
    output_dir: Path,
    day_from: date,
    day_to: date,
    company_ids: Sequence[int] | None = None,
    crm_types: Sequence[str] | None = None,
    min_success_rate: float = DEFAULT_MIN_SUCCESS_RATE,
    max_p95_latency_s: float | None = DEFAULT_MAX_P95_LATENCY_S,
    rows_per_class: int = ROWS_PER_CLASS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write ``report.html``, ``discrepancies.csv`` and ``quality_metrics.csv`` into ``output_dir``.

    Reads ``crm_sync.quality_daily`` (compute it first: :func:`crm_sync.quality.compute_quality_metrics`) for
    ``day_from..day_to`` and the :data:`TREND_DAYS` days up to ``day_to``, the ledger for latency percentiles and
    quarantine reasons, and the latest reconciliation per company x CRM. Returns the paths and the headline
    figures (JSON-serialisable, no customer data: fit for an XCom).
    """
    output_dir = make_private_dir(Path(output_dir))
    params = metric_params(day_from, day_to, company_ids, crm_types)
    trend_from = day_to - timedelta(days=TREND_DAYS - 1)
    trend_params = metric_params(trend_from, day_to, company_ids, crm_types)

    # Per company x CRM: the period's totals, latency, latest reconciliation.
    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    for r in _rows(engine, "report_pairs", params):
        fig = {k: _num(r[k]) or 0 for k in NUMERIC}
        fig.update(
            company_id=r["company_id"],
            company_name=r["company_name"] or f"company {r['company_id']}",
            crm_type=r["crm_type"],
            discrepancies={},
            reconciliation=None,
            latency_p50_s=None,
            latency_p95_s=None,
        )
        pairs[(r["company_id"], r["crm_type"])] = fig
    crm_latency: dict[str, tuple[float | None, float | None]] = {}
    for r in _rows(engine, "report_latency", params):
        p50, p95 = _num(r["p50"]), _num(r["p95"])
        if r["crm_total"]:
            crm_latency[r["crm_type"]] = (p50, p95)
        elif (r["company_id"], r["crm_type"]) in pairs:
            pairs[(r["company_id"], r["crm_type"])].update(latency_p50_s=p50, latency_p95_s=p95)
    recons = _rows(engine, "report_latest_reconciliations", {**params, "run_id": run_id})
    for rec in recons:
        key = (rec["company_id"], rec["crm_type"])
        fig = pairs.get(key)
        if fig is None:  # reconciled, but no metrics in the period: still shown
            fig = pairs[key] = {k: 0 for k in NUMERIC}
            fig.update(
                company_id=key[0],
                company_name=f"company {key[0]}",
                crm_type=key[1],
                latency_p50_s=None,
                latency_p95_s=None,
            )
        counts = rec["class_counts"] if isinstance(rec["class_counts"], dict) else json.loads(rec["class_counts"])
        fig["discrepancies"] = {k: int(v) for k, v in counts.items()}
        fig["reconciliation"] = {
            "id": rec["id"],
            "run_id": rec["run_id"],
            "error": rec["error"],
            "started_at": rec["started_at"],
            "range_start": rec["range_start"],
            "range_end": rec["range_end"],
            "crm_checked": rec["crm_checked"],
            "crm_sampled": rec["crm_sampled"],
        }
    kinds: dict[tuple[int, str], dict[str, int]] = defaultdict(dict)
    for r in _rows(engine, "report_quarantine_kinds", params):
        kinds[(r["company_id"], r["crm_type"])][r["kind"]] = int(r["n"])

    integrations = []
    for key in sorted(pairs, key=lambda k: (k[1], str(pairs[k]["company_name"]).lower(), k[0])):
        fig = pairs[key]
        fig["reconciled"] = fig["reconciliation"] is not None
        fig["success_rate"] = success_rate(fig["synced"], fig["eligible"])
        fig["quarantine_kinds"] = kinds.get(key, {})
        health = assess(fig, min_success_rate=min_success_rate, max_p95_latency_s=max_p95_latency_s)
        fig["status"], fig["reasons"] = health.status, health.reasons
        integrations.append(fig)

    # Per CRM: totals, its own latency percentiles, the worst status of its integrations.
    crms = []
    for crm in sorted({f["crm_type"] for f in integrations}):
        members = [f for f in integrations if f["crm_type"] == crm]
        total: dict[str, Any] = {k: sum(f[k] for f in members) for k in NUMERIC}
        total["discrepancies"] = defaultdict(int)
        for f in members:
            for cls, n in f["discrepancies"].items():
                total["discrepancies"][cls] += n
        total.update(
            crm_type=crm,
            success_rate=success_rate(total["synced"], total["eligible"]),
            latency_p50_s=crm_latency.get(crm, (None, None))[0],
            latency_p95_s=crm_latency.get(crm, (None, None))[1],
            status=worst(f["status"] for f in members),
            counts={s: sum(1 for f in members if f["status"] == s) for s in ("red", "amber", "green")},
            integrations=len(members),
        )
        total["reasons"] = [
            f"{f['company_name']}: {reason}" for f in members for reason in f["reasons"] if f["status"] == "red"
        ][:6]
        crms.append(total)

    # Trends over the last TREND_DAYS days, one line per CRM.
    days = [trend_from + timedelta(days=i) for i in range(TREND_DAYS)]
    rate_series: dict[str, dict[date, float | None]] = defaultdict(dict)
    for r in _rows(engine, "report_trend", trend_params):
        rate_series[r["crm_type"]][r["day"]] = success_rate(r["synced"], r["eligible"])
    # One line per CRM and chart: the p95 (what customers wait for at worst); medians are in the tables.
    p95_series: dict[str, dict[date, float | None]] = defaultdict(dict)
    for r in _rows(engine, "report_latency_trend", trend_params):
        p95_series[r["crm_type"]][r["day"]] = _minutes(r["p95"])
    rates = [v for s in rate_series.values() for v in s.values() if v is not None]
    charts = {
        "success": line_chart(
            "Success rate per day (synced / eligible check-ins)",
            days,
            {c: rate_series[c] for c in sorted(rate_series)},
            y_format=_pct_axis,
            y_min=min([0.9, *rates]),
            y_max=1.0,
            colours=report_colours(),
            threshold=(min_success_rate, f"threshold {min_success_rate:.0%}"),
        ),
        "latency": line_chart(
            "p95 latency, check-in to CRM, per day (minutes)",
            days,
            {c: p95_series[c] for c in sorted(p95_series)},
            y_format=lambda v: f"{v:g}",
            y_min=0.0,
            colours=report_colours(),
        ),
    }

    # Discrepancies: the latest reconciliation per company x CRM; capped per class in the table.
    recon_ids = [int(r["id"]) for r in recons]
    class_totals: dict[str, int] = defaultdict(int)
    for f in integrations:
        for cls, n in f["discrepancies"].items():
            class_totals[cls] += n
    discrepancies = (
        _rows(engine, "report_discrepancies", {"reconciliation_ids": recon_ids, "per_class": int(rows_per_class)})
        if recon_ids
        else []
    )
    shown = defaultdict(int)
    for d in discrepancies:
        shown[d["class"]] += 1
    class_summary = [
        {
            "class": c,
            "total": class_totals[c],
            "shown": shown.get(c, 0),
            "severity": "red" if c in RED_CLASSES else "amber" if c in AMBER_CLASSES else "info",
        }
        for c in sorted(class_totals, key=lambda c: CLASS_ORDER.index(c) if c in CLASS_ORDER else 99)
    ]
    reasons = _rows(engine, "report_quarantine_reasons", {**params, "limit": TOP_REASONS})
    warning_fields = _rows(engine, "report_warning_fields", {**params, **sql_params(), "limit": TOP_REASONS})

    # Headline figures (also the return value: no customer data in here).
    eligible = sum(f["eligible"] for f in integrations)
    synced = sum(f["synced"] for f in integrations)
    headline = {
        "integrations": len(integrations),
        "red": sum(1 for f in integrations if f["status"] == "red"),
        "amber": sum(1 for f in integrations if f["status"] == "amber"),
        "green": sum(1 for f in integrations if f["status"] == "green"),
        "eligible": eligible,
        "synced": synced,
        "success_rate": None if not eligible else round(synced / eligible, 4),
        "quarantined": sum(f["quarantined"] for f in integrations),
        "failed": sum(f["failed"] for f in integrations),
        "missing_in_crm": class_totals.get("missing_in_crm", 0),
        "discrepancies": sum(class_totals.values()),
        "api_calls": sum(f["api_calls"] for f in integrations),
        "rate_limited": sum(f["rate_limited"] for f in integrations),
    }
    headline["status"] = worst(f["status"] for f in integrations) if integrations else "green"

    csv_columns = (
        "company_id",
        "company_name",
        "crm_type",
        "class",
        "check_in_id",
        "customer_name",
        "checked_in_at",
        "crm_id",
        "detail",
        "found_at",
        "requeued_at",
        "reconciliation_id",
    )
    csv_path = output_dir / CSV_NAME
    csv_rows = (
        _stream_csv(engine, "report_discrepancies_csv", {"reconciliation_ids": recon_ids}, csv_path, csv_columns)
        if recon_ids
        else _write_header_only(csv_path, csv_columns)
    )
    metrics_path = output_dir / METRICS_CSV_NAME
    metrics_rows = _stream_csv(
        engine,
        "report_metrics_csv",
        params,
        metrics_path,
        ("day", "company_id", "company_name", "crm_type", "metric", "dimension", "value"),
    )

    generated = (now or datetime.now(UTC)).astimezone(UTC)
    page = _render(
        {
            "run_id": run_id,
            "day_from": day_from,
            "day_to": day_to,
            "trend_from": trend_from,
            "generated_at": generated.strftime("%Y-%m-%d %H:%M UTC"),
            "headline": headline,
            "crms": crms,
            "integrations": integrations,
            "charts": charts,
            "class_summary": class_summary,
            "discrepancies": discrepancies,
            "rows_per_class": rows_per_class,
            "reasons": reasons,
            "warning_fields": warning_fields,
            "min_success_rate": min_success_rate,
            "max_p95_latency_s": max_p95_latency_s,
            "company_filter": list(company_ids or []),
            "crm_filter": list(crm_types or []),
            "csv_name": CSV_NAME,
            "metrics_csv_name": METRICS_CSV_NAME,
            "csv_rows": csv_rows,
            "class_order": CLASS_ORDER,
            # the quarantine kinds in plain words (crm_sync.quarantine), for the table and the definitions
            "kind_labels": LABELS,
            "kind_actions": ACTIONS,
        }
    )
    html_path = output_dir / HTML_NAME
    tmp = html_path.with_suffix(".html.tmp")
    write_private_text(tmp, page)
    os.replace(tmp, html_path)
    return {
        "html": str(html_path),
        "csv": str(csv_path),
        "metrics_csv": str(metrics_path),
        "csv_rows": csv_rows,
        "metrics_rows": metrics_rows,
        "headline": headline,
    }


def _minutes(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds) / 60, 2)


def _write_header_only(path: Path, columns: Sequence[str]) -> int:
    with open_private(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(columns)
    return 0


def _render(context: Mapping[str, Any]) -> str:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        rate=format_rate, seconds=format_seconds, num=lambda v: "" if v is None else f"{v:,}", utc=format_utc
    )
    ctx = dict(context)
    # The charts are built (and escaped) above; only they are marked safe.
    ctx["charts"] = {k: Markup(v) for k, v in context["charts"].items()}
    return env.get_template("report.html.j2").render(**ctx)
