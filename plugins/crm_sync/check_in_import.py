"""``crm_import``: check-ins from a CSV file (e.g. a company's previous system) into ``check_ins``.

Every row is validated before anything is written (:func:`validate_row`, pure): required fields,
dates, lengths, emails (``email-validator``), phones (``phonenumbers`` via :func:`normalize_phone`),
photo URLs, coordinates, the technician (by email, or by a name that matches exactly one technician
of the company), and duplicates: within the file (same source key) and against earlier imports
(``crm_sync.check_in_import_rows``). Each problem becomes one line in ``rejects.csv``
(line number, column, value, reason); a rejected row is never half-used.

The valid rows go in **in one transaction** together with their source keys, under a per-company
advisory lock: either all of them are in ``check_ins`` or none is, and a second import of the same
file (even at the same time) inserts nothing twice. The source key is ``ext:<external_id>``, or, in
a file without an ``external_id`` column, ``row:<sha256 of the row's normalised values>`` (an
identical row is then a duplicate).

Imported check-ins are ordinary new check-ins: the next ``crm_incremental_sync`` run carries them
to the company's CRMs.

The file is untrusted (and ``file_path`` is chosen by whoever triggers the DAG): the task reads only a
regular file inside ``CRM_SYNC_IMPORT_DIR`` (:mod:`crm_sync.paths`), and no error message or log line quotes
the file's content; a header cell is named only when it looks like a column name
(:func:`column_label`). Row values appear only in ``rejects.csv``, written owner-only beside the file,
with formula cells escaped (:mod:`crm_sync.csv_escape`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine

from crm_sync import paths
from crm_sync.clean import storable_text
from crm_sync.contacts import normalize_phone
from crm_sync.csv_escape import csv_safe
from crm_sync.db import sql
from crm_sync.text import echo, shorten

__all__ = [
    "COLUMN_SPECS",
    "ImportFileError",
    "ImportReport",
    "Technicians",
    "parse_checked_in_at",
    "read_rows",
    "resolve_header",
    "run_import",
    "validate_row",
]

log = logging.getLogger(__name__)

SHORT = 255
LONG = 20_000


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # text | datetime | email | phone | bool | latitude | longitude | photos | key | technician
    required: bool
    max_len: int
    meaning: str


#: The import file's columns (header names are matched case-insensitively; spaces and dashes count as "_").
COLUMN_SPECS: tuple[ColumnSpec, ...] = (
    ColumnSpec(
        "external_id",
        "key",
        False,
        200,
        "The row's id in the previous system. Recommended: a re-import skips ids already imported.",
    ),
    ColumnSpec(
        "checked_in_at",
        "datetime",
        True,
        40,
        "When the visit happened (check_ins.created_at): ISO 8601 (2026-03-01, 2026-03-01 14:30, "
        "2026-03-01T14:30:00-06:00) or US (03/01/2026 2:30 PM). Without an offset: UTC.",
    ),
    ColumnSpec("job_type", "text", True, SHORT, "Job type, e.g. AC Repair."),
    ColumnSpec(
        "technician_email",
        "technician",
        False,
        SHORT,
        "Email of one of the company's technicians (this or technician_name is required).",
    ),
    ColumnSpec(
        "technician_name",
        "technician",
        False,
        SHORT,
        "Name of one of the company's technicians; must match exactly one (case-insensitive).",
    ),
    ColumnSpec("customer_name", "text", False, SHORT, "Customer name."),
    ColumnSpec("customer_email", "email", False, SHORT, "Customer email; stored lower-cased."),
    ColumnSpec("customer_phone", "phone", False, 40, "Customer phone, any US or +country format; stored as E.164."),
    ColumnSpec("address", "text", False, SHORT, "Street address of the visit."),
    ColumnSpec("city", "text", False, 100, "City."),
    ColumnSpec("state", "text", False, 50, "State."),
    ColumnSpec("zip", "text", False, 20, "ZIP / postal code."),
    ColumnSpec("latitude", "latitude", False, 40, "Decimal degrees, -90 to 90 (with longitude)."),
    ColumnSpec("longitude", "longitude", False, 40, "Decimal degrees, -180 to 180 (with latitude)."),
    ColumnSpec("notes", "text", False, LONG, "Visit notes."),
    ColumnSpec("work_performed", "text", False, LONG, "Work performed."),
    ColumnSpec("materials_used", "text", False, LONG, "Materials used."),
    ColumnSpec("problem_description", "text", False, LONG, "Problem description."),
    ColumnSpec("solution_description", "text", False, LONG, "Solution description."),
    ColumnSpec("customer_feedback", "text", False, LONG, "Customer feedback."),
    ColumnSpec("follow_up_required", "bool", False, 10, "true/false, yes/no, 1/0 (empty: false)."),
    ColumnSpec("follow_up_notes", "text", False, LONG, "Follow-up notes."),
    ColumnSpec("photos", "photos", False, LONG, "Photo URLs (http/https), separated by spaces or |."),
)
SPECS = {s.name: s for s in COLUMN_SPECS}
#: Columns of a validated row that go into check_ins (besides technician_id, company_id, created_at).
_DB_FIELDS = (
    "job_type",
    "notes",
    "customer_name",
    "customer_email",
    "customer_phone",
    "work_performed",
    "materials_used",
    "address",
    "city",
    "state",
    "zip",
    "latitude",
    "longitude",
    "problem_description",
    "solution_description",
    "customer_feedback",
    "follow_up_required",
    "follow_up_notes",
    "photos",
)
REJECT_COLUMNS = ("line", "external_id", "column", "value", "reason")
EARLIEST = datetime(1990, 1, 1)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (missing, not UTF-8, bad header); nothing was written."""


@dataclass
class Reject:
    line: int
    external_id: str
    column: str
    value: str
    reason: str


# ---------------------------------------------------------------------------------------------- header
def _norm_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


#: A header cell is quoted in a message only if it looks like a column name (not a line of some other file).
_SHOWABLE_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]{0,63}")


def column_label(name: str, position: int) -> str:
    """``'name'`` if it passes :data:`_SHOWABLE_COLUMN`, else ``column <position>`` (content never echoed)."""
    name = name.strip()
    if not name:
        return f"an unnamed column (column {position})"
    return repr(name) if _SHOWABLE_COLUMN.fullmatch(name) else f"column {position} (name not shown)"


def resolve_header(header: list[str]) -> list[str]:
    """The header's column names (normalised); raises :class:`ImportFileError` naming every problem.

    A first line with no known column at all is most likely not an import file (or a file that was never meant
    to be read): the message then names none of its cells.
    """
    names = [_norm_header(h) for h in header]
    if not any(n in SPECS for n in names):
        raise ImportFileError(
            f"header (line 1): none of its {len(header)} cells is a known column, is this a "
            f"check-in CSV file? (known: {', '.join(SPECS)})"
        )
    problems = []
    unknown = [column_label(h, i) for i, (h, n) in enumerate(zip(header, names, strict=True), 1) if n not in SPECS]
    if unknown:
        problems.append(f"unknown columns {', '.join(unknown)} (known: {', '.join(SPECS)})")
    repeated = sorted(n for n, c in Counter(names).items() if c > 1 and n in SPECS)
    if repeated:
        problems.append(f"columns given twice: {', '.join(repeated)}")
    missing = [s.name for s in COLUMN_SPECS if s.required and s.name not in names]
    if missing:
        problems.append(f"required columns missing: {', '.join(missing)}")
    if "technician_email" not in names and "technician_name" not in names:
        problems.append("a technician_email or technician_name column is required")
    if problems:
        raise ImportFileError("header (line 1): " + "; ".join(problems))
    return names


# ---------------------------------------------------------------------------------------------- values
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?")


def parse_checked_in_at(text: str, *, now: datetime) -> tuple[datetime | None, str | None]:
    """(naive UTC datetime, None) or (None, reason). ``now`` is naive UTC."""
    value: datetime | None = None
    m = _US_DATE.fullmatch(text)
    try:
        if m:
            month, day, year, hh, mm, ss, ampm = m.groups()
            hour = int(hh or 0)
            if ampm:
                if not 1 <= hour <= 12:
                    return None, f"hour {hour} with {ampm.upper()}"
                hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
            value = datetime(int(year), int(month), int(day), hour, int(mm or 0), int(ss or 0))
        else:
            value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        return None, f"not a valid date/time ({exc}); use e.g. 2026-03-01 14:30 or 03/01/2026 2:30 PM"
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if value < EARLIEST:
        return None, f"before {EARLIEST:%Y-%m-%d}"
    if value > now + timedelta(days=1):
        return None, "in the future"
    return value, None


def _bool(text: str) -> bool | None:
    return {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}.get(
        text.lower()
    )


def _photos(text: str) -> tuple[str | None, str | None]:
    urls = [u for u in re.split(r"[\s|]+", text) if u]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return None, f"{echo(url, 60)} is not an http(s) URL"
    return json.dumps(urls), None


@dataclass
class Technicians:
    """The company's technicians, looked up by email or by name."""

    by_email: dict[str, list[int]] = field(default_factory=dict)
    by_name: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows) -> Technicians:
        t = cls()
        for row in rows:
            if row.email:
                t.by_email.setdefault(row.email.strip().lower(), []).append(row.id)
            t.by_name.setdefault(" ".join(row.name.split()).casefold(), []).append(row.id)
        return t

    def resolve(self, email: str, name: str) -> tuple[int | None, str, str | None]:
        """(technician id, column used, reason if unknown/ambiguous)."""
        if email:
            column, ids = "technician_email", self.by_email.get(email.strip().lower(), [])
            missing = f"no technician with email {echo(email)} in this company"
            several = f"{len(ids)} technicians of this company have the email {echo(email)}: fix them in the app"
        else:
            column, ids = "technician_name", self.by_name.get(" ".join(name.split()).casefold(), [])
            missing = f"no technician named {echo(name)} in this company"
            several = f"{echo(name)} matches {len(ids)} technicians: use technician_email"
        if len(ids) == 1:
            return ids[0], column, None
        return None, column, several if ids else missing


def validate_row(
    raw: Mapping[str, str], technicians: Technicians, *, now: datetime
) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """A row of the file (column -> text) as check_ins values, or (None, [(column, reason), ...])."""
    errors: list[tuple[str, str]] = []
    out: dict[str, Any] = {name: None for name in _DB_FIELDS}
    out["follow_up_required"] = False
    out["photos"] = "[]"
    values = {k: (v or "").strip() for k, v in raw.items()}
    for name, text in values.items():
        spec = SPECS[name]
        if not text:
            if spec.required:
                errors.append((name, "required, but empty"))
            elif spec.kind == "key":
                errors.append((name, "empty: with an external_id column every row needs its id"))
            continue
        if len(text) > spec.max_len:
            errors.append((name, f"{len(text)} characters, at most {spec.max_len} allowed"))
            continue
        if spec.kind == "text":
            out[name] = storable_text(text)  # NUL (and lone surrogates) would make PostgreSQL refuse the whole file
        elif spec.kind == "datetime":
            value, reason = parse_checked_in_at(text, now=now)
            if reason:
                errors.append((name, reason))
            out["created_at"] = value
        elif spec.kind == "email":
            try:
                out[name] = validate_email(text, check_deliverability=False).normalized.lower()
            except EmailNotValidError as exc:
                errors.append((name, f"not a valid email address ({exc})"))
        elif spec.kind == "phone":
            e164, extension, warnings = normalize_phone(text)
            if e164 is None:
                why = re.search(r"\(([^()]*)\): dropped$", warnings[0]) if warnings else None
                errors.append((name, f"not a valid phone number ({why.group(1) if why else 'no number found'})"))
            elif warnings:
                errors.append((name, "holds more than one phone number: give one"))
            else:
                out[name] = e164 + (f" x{extension}" if extension else "")
        elif spec.kind == "bool":
            flag = _bool(text)
            if flag is None:
                errors.append((name, "must be true/false, yes/no or 1/0"))
            else:
                out[name] = flag
        elif spec.kind in ("latitude", "longitude"):
            limit = 90 if spec.kind == "latitude" else 180
            try:
                number = float(text)
            except ValueError:
                errors.append((name, "not a number"))
                continue
            if not -limit <= number <= limit:
                errors.append((name, f"must be between -{limit} and {limit}"))
            else:
                out[name] = number
        elif spec.kind == "photos":
            photos, reason = _photos(text)
            if reason:
                errors.append((name, reason))
            else:
                out[name] = photos
    if (out["latitude"] is None) != (out["longitude"] is None) and not any(
        c in ("latitude", "longitude") for c, _ in errors
    ):
        errors.append(
            (
                "latitude" if out["latitude"] is None else "longitude",
                "latitude and longitude go together: give both or neither",
            )
        )
    if not (values.get("customer_name") or values.get("customer_email") or values.get("customer_phone")):
        errors.append(("customer_name", "a customer_name, customer_email or customer_phone is required"))
    email, name = values.get("technician_email", ""), values.get("technician_name", "")
    if not email and not name:
        errors.append(
            (
                "technician_email" if "technician_email" in values else "technician_name",
                "required, but empty (technician_email or technician_name)",
            )
        )
    else:
        tech_id, column, reason = technicians.resolve(email, name)
        if reason:
            errors.append((column, reason))
        out["technician_id"] = tech_id
    if errors:
        return None, errors
    return out, []


def source_key(values: Mapping[str, Any], external_id: str | None) -> str:
    """The key that makes a re-import skip this row (see the module docstring)."""
    if external_id is not None:
        return f"ext:{external_id}"
    canonical = json.dumps(
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in sorted(values.items())},
        sort_keys=True,
        default=str,
    )
    return "row:" + hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- the file
def _open_file(path: Path, where: paths.Root | None = None) -> IO[bytes]:
    """The import file, only if it is a regular file (:func:`crm_sync.paths.open_regular`)."""
    try:
        return paths.open_regular(path, param="file_path", where=where)
    except paths.PathRefused as exc:
        raise ImportFileError(str(exc)) from None


def read_rows(source: Path | IO[bytes]) -> Iterator[tuple[int, dict[str, str], str | None]]:
    """(line where the record starts, column -> text, the reason the record cannot be used or None).

    ``source``: a path (opened as a regular file) or an open binary file, read from its current position.
    """
    raw = _open_file(source) if isinstance(source, Path) else source
    reader: Any = None
    handle = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    try:
        try:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None:
                raise ImportFileError("the file is empty (a header line is required)")
            names = resolve_header(header)
            line = reader.line_num + 1
            for record in reader:
                start, line = line, reader.line_num + 1
                if not any(cell.strip() for cell in record):
                    continue  # blank lines are not rows
                if len(record) != len(names):
                    # The fields are kept for the rejects file (e.g. its external_id), never imported.
                    yield (
                        start,
                        dict(zip(names, record, strict=False)),
                        f"has {len(record)} fields, the header has {len(names)}",
                    )
                    continue
                yield start, dict(zip(names, record, strict=True)), None
        except UnicodeDecodeError:
            # Neither the bytes nor the text around them: the file may be anything.
            near = f" (near line {reader.line_num + 1})" if reader is not None else ""
            raise ImportFileError(f"not UTF-8 text{near}; save the file as UTF-8") from None
        except csv.Error as exc:  # the csv module's messages name the problem, never the data
            raise ImportFileError(f"not a readable CSV file near line {reader.line_num}: {exc}") from None
    finally:
        if isinstance(source, Path):
            handle.close()
        else:
            handle.detach()  # the caller's file stays open


@dataclass
class ImportReport:
    import_id: int
    company_id: int
    file_name: str
    file_sha256: str
    dry_run: bool
    status: str = "running"
    rows_read: int = 0
    inserted: int = 0
    rejected: int = 0
    duplicates_in_file: int = 0
    already_imported: int = 0
    errors_by_column: dict[str, int] = field(default_factory=dict)
    rejects_file: str | None = None
    report_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def report_folder(path: Path, output_dir: str | Path | None, run_id: str) -> Path:
    """``<output_dir or the file's folder>/<file stem>.import-<run id>`` (one safe name: :func:`paths.safe_component`).

    ``output_dir`` is taken as given: the task confines it to the import folder first.
    """
    text = str(output_dir).strip() if output_dir is not None else ""
    parent = Path(text).expanduser() if text else path.parent
    return paths.child(parent, f"{path.stem}.import-{run_id}")


def _write_rejects(folder: Path, rejects: list[Reject]) -> Path:
    path = folder / "rejects.csv"
    with paths.open_private(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(REJECT_COLUMNS)
        for r in sorted(rejects, key=lambda r: r.line):
            writer.writerow([csv_safe(v) for v in (r.line, r.external_id, r.column, r.value, r.reason)])
    return path


def run_import(
    engine: Engine,
    company_id: int,
    path: Path,
    *,
    run_id: str,
    dry_run: bool = False,
    output_dir: str | Path | None = None,
    now: datetime | None = None,
    root: paths.Root | None = None,
) -> ImportReport:
    """Validate ``path`` and insert its valid rows in one transaction; see the module docstring.

    ``root``: the import folder ``path`` was confined to (the task's); the file is then opened from it without
    following any symlink. The file is opened once: its checksum and its rows come from the same descriptor.
    """
    now = now or datetime.now(UTC).replace(tzinfo=None)
    path = Path(path)
    with _open_file(path, root) as handle:
        return _run_import(
            engine, company_id, path, handle, run_id=run_id, dry_run=dry_run, output_dir=output_dir, now=now
        )


def _run_import(
    engine: Engine,
    company_id: int,
    path: Path,
    handle: IO[bytes],
    *,
    run_id: str,
    dry_run: bool,
    output_dir: str | Path | None,
    now: datetime,
) -> ImportReport:
    with engine.connect() as conn:
        if conn.execute(sql("import_company_exists"), {"company_id": company_id}).scalar() is None:
            raise ImportFileError(f"company {company_id} does not exist")
        technicians = Technicians.from_rows(conn.execute(sql("import_technicians"), {"company_id": company_id}))

    rejects: list[Reject] = []
    valid: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    rows_read = duplicates = invalid = 0
    file_sha256 = paths.sha256_file(handle)
    for line, raw, problem in read_rows(handle):
        rows_read += 1
        external_id = raw.get("external_id")
        shown_id = (external_id or "").strip()[:200]
        if problem:
            invalid += 1
            rejects.append(Reject(line, shown_id, "", "", problem))
            continue
        values, errors = validate_row(raw, technicians, now=now)
        if errors:
            invalid += 1
            rejects += [Reject(line, shown_id, col, shorten(raw.get(col, ""), 80), reason) for col, reason in errors]
            continue
        key = source_key(values, shown_id if external_id is not None else None)
        if key in seen:
            duplicates += 1
            what = "same external_id" if key.startswith("ext:") else "identical row"
            rejects.append(
                Reject(
                    line,
                    shown_id,
                    "external_id" if key.startswith("ext:") else "",
                    shown_id,
                    f"duplicate of line {seen[key]} ({what})",
                )
            )
            continue
        seen[key] = line
        valid.append({**values, "company_id": company_id, "source_key": key, "line": line})

    report = ImportReport(
        import_id=0,
        company_id=company_id,
        file_name=path.name,
        file_sha256=file_sha256,
        dry_run=dry_run,
        rows_read=rows_read,
        duplicates_in_file=duplicates,
        rejected=invalid,
    )
    with engine.begin() as conn:  # on record at once, so a failed import is still listed
        report.import_id = int(
            conn.execute(
                sql("import_start"),
                {
                    "run_id": run_id,
                    "company_id": company_id,
                    "file_name": path.name,
                    "file_sha256": report.file_sha256,
                    "dry_run": dry_run,
                },
            ).scalar_one()
        )
    folder = report_folder(path, output_dir, run_id)
    try:
        with engine.begin() as conn:
            conn.execute(sql("import_lock"), {"company_id": company_id})
            known: dict[str, Any] = {}
            keys = [row["source_key"] for row in valid]
            for i in range(0, len(keys), 10_000):
                for hit in conn.execute(
                    sql("import_existing_keys"), {"company_id": company_id, "keys": keys[i : i + 10_000]}
                ):
                    known[hit.source_key] = hit
            fresh = []
            for row in valid:
                hit = known.get(row["source_key"])
                if hit is None:
                    fresh.append(row)
                    continue
                shown = row["source_key"][4:] if row["source_key"].startswith("ext:") else ""
                rejects.append(
                    Reject(
                        row["line"],
                        shown,
                        "external_id" if shown else "",
                        shown,
                        f"already imported as check-in {hit.check_in_id} (import {hit.import_id}, line {hit.line})",
                    )
                )
            report.already_imported = len(valid) - len(fresh)
            if fresh and not dry_run:
                conn.execute(sql("import_insert_check_in"), [{**row, "import_id": report.import_id} for row in fresh])
            report.inserted = 0 if dry_run else len(fresh)
        report.status = "dry_run" if dry_run else "imported"
    except Exception as exc:
        report.status = "failed"
        report.inserted = 0
        _finish(
            engine,
            report,
            error=f"{type(exc).__name__}: nothing was imported (the transaction was rolled "
            f"back); {echo(str(exc).splitlines()[0] if str(exc) else '', 200)}",
        )
        raise
    report.errors_by_column = dict(
        Counter(r.column or "(row)" for r in rejects if not r.reason.startswith(("already imported", "duplicate of")))
    )
    paths.make_private_dir(folder)
    report.rejects_file = str(_write_rejects(folder, rejects))
    report.report_file = str(folder / "report.json")
    paths.write_private_text(Path(report.report_file), json.dumps(report.as_dict(), indent=2) + "\n")
    _finish(engine, report)
    log.info(
        "import %s of %s for company %s: %d rows read, %d inserted, %d rejected, %d duplicates in the file, "
        "%d already imported%s",
        report.import_id,
        path.name,
        company_id,
        rows_read,
        report.inserted,
        report.rejected,
        duplicates,
        report.already_imported,
        " (dry run)" if dry_run else "",
    )
    return report


def _finish(engine: Engine, report: ImportReport, error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sql("import_finish"),
            {
                **{
                    k: getattr(report, k)
                    for k in (
                        "status",
                        "rows_read",
                        "inserted",
                        "rejected",
                        "duplicates_in_file",
                        "already_imported",
                        "rejects_file",
                        "report_file",
                    )
                },
                "import_id": report.import_id,
                "error": error,
            },
        )
