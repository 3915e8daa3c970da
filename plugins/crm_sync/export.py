"""``crm_export``: check-ins with their sync status per CRM, to CSV and Parquet, with a manifest.

Memory stays flat in the number of rows: rows come from a server-side cursor
(``stream_results`` + ``yield_per``, as :mod:`crm_sync.extract` does), ``chunk_size`` at a time;
each chunk becomes one pandas frame, one Parquet row group (``pyarrow.parquet.ParquetWriter``) and
one append to the CSV. Nothing but the chunk is held.

Where: ``output_dir`` is a folder inside ``CRM_SYNC_EXPORT_DIR`` (:mod:`crm_sync.paths`; a path leading out of
it fails the task, not retried: :mod:`crm_sync.tasks.export`). Files are owner-only (0o600, folders 0o700;
``CRM_SYNC_FILE_MODE``). CSV text cells a spreadsheet would run as a formula are prefixed with ``'`` unless
``csv_escape_formulas`` is false (:mod:`crm_sync.csv_escape`); Parquet is written as it is.

An export is written into ``<folder>.partial`` and renamed to its final name only when every file
and the manifest are complete, so a folder without that suffix is always a whole export; a retried
task replaces its own folder (the name comes from the run id).

The query (``include/sql/export_check_ins.sql``) never reads ``companies.crm_integrations``: no
credential can reach an export.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy.engine import Engine

from crm_sync import paths
from crm_sync.csv_escape import escape_formulas
from crm_sync.db import sql
from crm_sync.settings import known_crm_types

__all__ = [
    "COLUMNS",
    "FORMATS",
    "ExportError",
    "ExportParams",
    "default_export_root",
    "export_folder_name",
    "read_csv",
    "resolve_params",
    "run_date_of",
    "run_export",
]

FORMATS = ("csv", "parquet")
DEFAULT_CHUNK_SIZE = 20_000
#: How Arrow's CSV writer prints timestamps (always with microseconds, whatever a chunk holds).
CSV_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"

#: Output columns, in order: (name, Arrow type). Timestamps are naive UTC, like the app's.
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("check_in_id", pa.int64()),
    ("company_id", pa.int64()),
    ("company_name", pa.string()),
    ("technician_id", pa.int64()),
    ("technician_name", pa.string()),
    ("location_id", pa.int64()),
    ("checked_in_at", pa.timestamp("us")),
    ("job_type", pa.string()),
    ("customer_name", pa.string()),
    ("customer_email", pa.string()),
    ("customer_phone", pa.string()),
    ("address", pa.string()),
    ("city", pa.string()),
    ("state", pa.string()),
    ("zip", pa.string()),
    ("latitude", pa.float64()),
    ("longitude", pa.float64()),
    ("notes", pa.string()),
    ("work_performed", pa.string()),
    ("materials_used", pa.string()),
    ("problem_description", pa.string()),
    ("solution_description", pa.string()),
    ("customer_feedback", pa.string()),
    ("follow_up_required", pa.bool_()),
    ("follow_up_notes", pa.string()),
    ("photos", pa.string()),
    ("crm_type", pa.string()),
    ("sync_status", pa.string()),
    ("crm_customer_id", pa.string()),
    ("crm_visit_id", pa.string()),
    ("error_kind", pa.string()),
    ("last_error", pa.string()),
    ("attempts", pa.int64()),
    ("first_attempt_at", pa.timestamp("us")),
    ("last_attempt_at", pa.timestamp("us")),
    ("synced_at", pa.timestamp("us")),
)
SCHEMA = pa.schema([pa.field(name, type_) for name, type_ in COLUMNS])
_PANDAS_DTYPES: dict[str, Any] = {
    name: (
        "Int64"
        if pa.types.is_integer(t)
        else "boolean"
        if pa.types.is_boolean(t)
        else "float64"
        if pa.types.is_floating(t)
        else "datetime64[us]"
        if pa.types.is_timestamp(t)
        else "string"
    )
    for name, t in COLUMNS
}


class ExportError(ValueError):
    """Parameters that cannot give an export; the message says which and why."""


@dataclass(frozen=True)
class ExportParams:
    company_ids: tuple[int, ...]
    date_from: date  # inclusive
    date_to: date  # inclusive
    formats: tuple[str, ...]
    crm_types: tuple[str, ...]
    chunk_size: int = DEFAULT_CHUNK_SIZE
    csv_escape_formulas: bool = True  # False: CSV text cells as they are (for programs, not spreadsheets)

    def query_params(self) -> dict[str, Any]:
        """The bind parameters of ``export_check_ins.sql``: created_at in [date_from, date_to + 1 day)."""
        return {
            "company_ids": list(self.company_ids),
            "crm_types": list(self.crm_types),
            "created_from": datetime.combine(self.date_from, datetime.min.time()),
            "created_to": datetime.combine(self.date_to + timedelta(days=1), datetime.min.time()),
        }

    def manifest(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            company_ids=list(self.company_ids),
            formats=list(self.formats),
            crm_types=list(self.crm_types),
            date_from=self.date_from.isoformat(),
            date_to=self.date_to.isoformat(),
        )
        return data


def _parse_date(name: str, value: Any) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", value.strip()):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise ExportError(f"{name} must be a date like 2026-03-31, got {str(value)[:40]!r}")


def resolve_params(raw: Mapping[str, Any], *, run_date: date) -> ExportParams:
    """Validated parameters from the trigger form / conf.

    ``run_date`` is the day the run stands for (a scheduled run: its logical date; a manual run: today,
    UTC). An empty ``date_to`` is the day before ``run_date``; an empty ``date_from`` is ``date_to``:
    a daily scheduled run exports the previous full day.
    """
    date_to = _parse_date("date_to", raw.get("date_to")) or run_date - timedelta(days=1)
    date_from = _parse_date("date_from", raw.get("date_from")) or date_to
    if date_from > date_to:
        raise ExportError(f"date_from {date_from} is after date_to {date_to}")

    ids = raw.get("company_ids") or []
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ExportError(f"company_ids must be a list of integers, got {str(ids)[:60]!r}")

    formats = raw.get("formats") or list(FORMATS)
    if isinstance(formats, str):
        formats = [formats]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"formats {unknown} not supported: use {', '.join(FORMATS)}")

    crm_types = raw.get("crm_types") or []
    known = known_crm_types()
    unknown = [c for c in crm_types if c not in known]
    if unknown:
        raise ExportError(f"crm_types {unknown} unknown: use {', '.join(known)}")

    chunk_size = raw.get("chunk_size")
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ExportError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    escape = raw.get("csv_escape_formulas")
    escape = True if escape is None else escape
    if not isinstance(escape, bool):
        raise ExportError(f"csv_escape_formulas must be true or false, got {str(escape)[:20]!r}")
    return ExportParams(
        company_ids=tuple(sorted(set(ids))),
        date_from=date_from,
        date_to=date_to,
        formats=tuple(dict.fromkeys(formats)),
        crm_types=tuple(dict.fromkeys(crm_types)),
        chunk_size=chunk_size,
        csv_escape_formulas=escape,
    )


def default_export_root(output_dir: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The export folder: ``output_dir`` inside ``$CRM_SYNC_EXPORT_DIR`` (else ``$AIRFLOW_HOME/crm_exports``),
    the root itself when empty. Raises :class:`crm_sync.paths.PathRefused` for a path leading out of it."""
    return paths.confine("output_dir", output_dir, paths.root("export", env))


def export_folder_name(params: ExportParams, run_id: str) -> str:
    """``check_ins_<from>_<to>_<run id>``, filesystem-safe; the same run gives the same name (retries replace it)."""
    return f"check_ins_{params.date_from:%Y%m%d}_{params.date_to:%Y%m%d}_{paths.safe_component(run_id)}"


def frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """One chunk of query rows (tuples in :data:`COLUMNS` order) as a frame with the export's fixed dtypes."""
    df = pd.DataFrame.from_records(list(rows), columns=[name for name, _ in COLUMNS])
    return df.astype(_PANDAS_DTYPES)


def iter_chunks(engine: Engine, params: ExportParams) -> Iterator[pd.DataFrame]:
    """The export's rows as frames of at most ``chunk_size`` rows, from a server-side cursor."""
    with engine.connect().execution_options(stream_results=True, yield_per=params.chunk_size) as conn:
        result = conn.execute(sql("export_check_ins"), params.query_params())
        if list(result.keys()) != [name for name, _ in COLUMNS]:  # the SQL file and COLUMNS must agree
            raise RuntimeError(f"export_check_ins.sql returns {list(result.keys())}, expected the COLUMNS list")
        for partition in result.partitions(params.chunk_size):
            df = frame(partition)
            del partition  # one copy of the chunk alive at a time, not two
            yield df


class _Writers:
    """The open output files of one export; each chunk goes to every format."""

    def __init__(self, folder: Path, formats: Iterable[str], *, escape_formulas: bool = True):
        self.paths: dict[str, Path] = {}
        self._csv: pacsv.CSVWriter | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._escape = escape_formulas
        for fmt, name in (("csv", "check_ins.csv"), ("parquet", "check_ins.parquet")):
            if fmt in formats:
                self.paths[fmt] = folder / name
                paths.open_private(self.paths[fmt], "wb").close()  # owner-only before Arrow writes a byte
        if "csv" in formats:
            # Arrow's writer: RFC 4180 quoting, null = empty field, ~3x faster than DataFrame.to_csv.
            self._csv = pacsv.CSVWriter(self.paths["csv"], SCHEMA)
        if "parquet" in formats:
            self._parquet = pq.ParquetWriter(self.paths["parquet"], SCHEMA)

    def write(self, df: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
        if self._csv is not None:
            # appended: the header was written once
            self._csv.write_table(escape_formulas(table) if self._escape else table)
        if self._parquet is not None:
            self._parquet.write_table(table)  # one row group per chunk

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()


@dataclass
class _Counts:
    rows: int = 0
    chunks: int = 0
    check_ins: int = 0
    by_company: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    last_check_in: int | None = None


def run_export(
    engine: Engine, params: ExportParams, root: Path, *, run_id: str, generated_at: datetime | None = None
) -> dict[str, Any]:
    """Write one export folder under ``root``; returns the manifest (also written as ``manifest.json``)."""
    generated_at = generated_at or datetime.now(UTC)
    paths.make_private_dir(root)
    final = root / export_folder_name(params, run_id)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    paths.make_private_dir(partial)
    counts = _Counts()
    writers = _Writers(partial, params.formats, escape_formulas=params.csv_escape_formulas)
    try:
        for df in iter_chunks(engine, params):
            writers.write(df)
            counts.rows += len(df)
            counts.chunks += 1
            # Rows are ordered by check-in id: a check-in's CRM rows are consecutive.
            ids = df["check_in_id"]
            new = int(ids.nunique())
            if counts.last_check_in is not None and int(ids.iloc[0]) == counts.last_check_in:
                new -= 1
            counts.check_ins += new
            counts.last_check_in = int(ids.iloc[-1])
            counts.by_company.update({int(k): int(v) for k, v in df["company_id"].value_counts().items()})
            counts.by_status.update({str(k): int(v) for k, v in df["sync_status"].value_counts().items()})
            del df, ids  # freed before the next chunk is fetched
    except BaseException:
        writers.close()
        shutil.rmtree(partial, ignore_errors=True)  # never leave half an export behind
        raise
    writers.close()

    files = []
    for fmt, path in writers.paths.items():
        files.append(
            {
                "name": path.name,
                "format": fmt,
                "rows": counts.rows,
                "bytes": path.stat().st_size,
                "sha256": paths.sha256_file(path),
            }
        )
    manifest = {
        "export": final.name,
        "run_id": run_id,
        "generated_at": generated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "parameters": params.manifest(),
        "query": {
            "sql": "include/sql/export_check_ins.sql",
            "created_at_from": params.query_params()["created_from"].isoformat(),
            "created_at_before": params.query_params()["created_to"].isoformat(),
            "order": "check_in_id, crm_type (no CRM first)",
        },
        "row_count": counts.rows,
        "check_in_count": counts.check_ins,
        "chunks": counts.chunks,
        "rows_by_company": {str(k): v for k, v in sorted(counts.by_company.items())},
        "rows_by_sync_status": dict(sorted(counts.by_status.items())),
        "columns": [{"name": name, "type": str(type_)} for name, type_ in COLUMNS],
        "files": files,
        "timestamps": "naive UTC",
        "csv": {
            "encoding": "utf-8",
            "header": True,
            "null": "empty field",
            "timestamp_format": CSV_TIMESTAMP,
            "formula_escaping": "text cells starting with = + - @ tab or CR are prefixed with '"
            if params.csv_escape_formulas
            else "off",
        },
    }
    paths.write_private_text(partial / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    if final.exists():  # a retry of the same run: its own earlier folder
        shutil.rmtree(final)
    partial.rename(final)
    manifest["folder"] = str(final)
    return manifest


def read_csv(path: Path) -> pd.DataFrame:
    """An export's CSV read back with the export's dtypes (empty field = null), e.g. for checks and loading."""
    names = [name for name, _ in COLUMNS]
    times = [name for name, t in COLUMNS if pa.types.is_timestamp(t)]
    dtypes = {k: v for k, v in _PANDAS_DTYPES.items() if k not in times}
    df = pd.read_csv(
        path, dtype=dtypes, keep_default_na=False, na_values=[""], parse_dates=times, date_format=CSV_TIMESTAMP
    )
    for name in times:
        df[name] = df[name].astype("datetime64[us]")
    return df[names]


def run_date_of(context: Mapping[str, Any]) -> date:
    """The day a run stands for: a scheduled run's interval end / logical date, else today (UTC)."""
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if value is not None:
            return value.astimezone(UTC).date() if value.tzinfo else value.date()
    return datetime.now(UTC).date()
