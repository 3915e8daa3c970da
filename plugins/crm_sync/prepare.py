"""Turn one raw ``check_ins`` row into a :class:`PreparedCheckIn`: pure functions, no I/O.

Nothing raises on bad data: problems become the row's ``warnings``, and a row that cannot be synced at all
gets ``error``. Contact fields are normalised by :mod:`crm_sync.contacts`, free text by :mod:`crm_sync.text`.

Decisions worth knowing:

* **Visit body** is plain text: a header (job type, technician, visit date in
  UTC, address, check-in id), then labelled sections (Problem, Work performed,
  Solution, Materials, Notes, Customer feedback, Follow-up, Photos); empty
  sections are left out. Each free-text section is cut visibly at
  :data:`SECTION_LIMIT` so one huge field cannot push the later sections out
  of a CRM's limit; the CRM limits themselves are applied by ``crm_sync.mapping``.
* **source_hash** covers the *raw* values of :data:`HASHED_COLUMNS` (not the
  normalised ones, so improving a normaliser does not re-send history). The
  technician's name and the sync settings are not part of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from crm_sync.contacts import normalize_email, normalize_phone, split_name
from crm_sync.match_key import keys_for_customer
from crm_sync.models import (
    MATCH_STRATEGIES,
    Customer,
    PreparedCheckIn,
    SyncSettings,
    Visit,
)
from crm_sync.quarantine import QuarantineKind
from crm_sync.text import clean_text, echo, one_line, shorten

__all__ = [
    "CHECK_IN_COLUMNS",
    "CHECK_IN_FIELDS",
    "HASHED_COLUMNS",
    "SECTION_LIMIT",
    "photo_urls",
    "prepare_check_in",
    "resolve_check_in_field",
    "source_hash",
]

#: Every column of ``public.check_ins`` (schema.sql), in table order.
CHECK_IN_COLUMNS: tuple[str, ...] = (
    "id",
    "job_type",
    "notes",
    "customer_name",
    "customer_email",
    "customer_phone",
    "work_performed",
    "materials_used",
    "latitude",
    "longitude",
    "location",
    "address",
    "city",
    "state",
    "zip",
    "address_verified",
    "location_source",
    "photos",
    "before_photos",
    "after_photos",
    "problem_description",
    "solution_description",
    "customer_feedback",
    "follow_up_required",
    "follow_up_notes",
    "is_blog",
    "generated_content",
    "wordpress_sync_status",
    "wordpress_post_id",
    "wordpress_post_url",
    "technician_id",
    "company_id",
    "location_id",
    "created_at",
)


def _camel(column: str) -> str:
    head, *rest = column.split("_")
    return head + "".join(p.capitalize() for p in rest)


#: camelCase check-in field (the names ``customFieldMapping`` uses) -> row key.
#: ``technicianName`` is the joined ``technicians.name`` (row key ``technician_name``).
CHECK_IN_FIELDS: dict[str, str] = {_camel(c): c for c in CHECK_IN_COLUMNS} | {"technicianName": "technician_name"}
_FIELD_BY_COLUMN = {column: camel for camel, column in CHECK_IN_FIELDS.items()}

#: The columns whose content the sync sends; :func:`source_hash` covers exactly these.
HASHED_COLUMNS: tuple[str, ...] = (
    "job_type",
    "customer_name",
    "customer_email",
    "customer_phone",
    "notes",
    "work_performed",
    "materials_used",
    "problem_description",
    "solution_description",
    "customer_feedback",
    "follow_up_required",
    "follow_up_notes",
    "address",
    "city",
    "state",
    "zip",
    "location",
    "photos",
    "before_photos",
    "after_photos",
)
_PHOTO_COLUMNS = ("photos", "before_photos", "after_photos")
#: Longest free-text section (notes, work performed, ...) in a visit body. One huge
#: field is cut here, visibly, so the sections after it (feedback, follow-up,
#: photos) still fit into Salesforce's 32,000-character Case description.
SECTION_LIMIT = 30_000
_HASH_VERSION = "v1"


def resolve_check_in_field(name: Any) -> str | None:
    """The camelCase check-in field for ``name`` (camelCase or the column's snake_case), else None."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    if name in CHECK_IN_FIELDS:
        return name
    return _FIELD_BY_COLUMN.get(name)


# --------------------------------------------------------------------------- photos
_MAX_URL = 2048
_MAX_PHOTO_WARNINGS = 5
_URL_SPLIT = re.compile(r"[\s,;|]+(?=https?://)", re.IGNORECASE)
_URL_KEYS = ("url", "src", "href", "uri", "secure_url")


def _photo_items(value: Any, where: str, depth: int = 0) -> Iterable[tuple[str, Any]]:
    """Flatten one photos value into (location, candidate) pairs."""
    if value is None:
        return
    if depth > 4:
        yield where, value
        return
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return
        if text[:1] in '[{"':
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            else:
                yield from _photo_items(decoded, where, depth + 1)
                return
        parts = _URL_SPLIT.split(text)
        for part in parts:
            yield where, part
        return
    if isinstance(value, Mapping):
        for key in _URL_KEYS:
            if key in value and value[key] not in (None, ""):
                yield from _photo_items(value[key], where, depth + 1)
                return
        if value and all(isinstance(k, str) and k.isdigit() for k in value):  # an array stored as an object
            for key in sorted(value, key=int):
                yield from _photo_items(value[key], f"{where}[{key}]", depth + 1)
            return
        yield where, value
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _photo_items(item, f"{where}[{i}]", depth + 1)
        return
    yield where, value


def _http_url(candidate: Any) -> str | None:
    if not isinstance(candidate, str):
        return None
    url = candidate.strip()
    if not url or len(url) > _MAX_URL or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def photo_urls(*raw_values: Any, names: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """De-duplicated http(s) photo URLs from jsonb photo values, in order, and warnings for dropped items.

    Each value may be a list of URLs or ``{"url": ...}`` objects, a single URL, an
    object, a JSON-encoded string of any of those, or None. ``names`` labels the
    values in warnings (e.g. ``("photos", "before_photos")``).
    """
    urls: list[str] = []
    dropped: list[str] = []
    for index, value in enumerate(raw_values):
        where = names[index] if names and index < len(names) else f"photos value {index + 1}"
        for location, candidate in _photo_items(value, where):
            url = _http_url(candidate)
            if url is None:
                shown = echo(candidate) if isinstance(candidate, str) else f"({type(candidate).__name__})"
                dropped.append(f"{location} {shown} is not an http(s) URL: dropped")
            elif url not in urls:
                urls.append(url)
    warnings = dropped[:_MAX_PHOTO_WARNINGS]
    if len(dropped) > _MAX_PHOTO_WARNINGS:
        warnings.append(f"... and {len(dropped) - _MAX_PHOTO_WARNINGS} more photo items dropped")
    return urls, warnings


# --------------------------------------------------------------------------- hashing
def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Decimal):
        return str(value.normalize()) if value.is_finite() else str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _decoded_json(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def source_hash(row: Mapping[str, Any]) -> str:
    """Stable sha256 (hex) of the check-in content the sync sends (:data:`HASHED_COLUMNS`).

    Missing keys count as None; dict key order does not matter; photo columns
    that arrive as JSON text hash like the decoded value.
    """
    content = {}
    for column in HASHED_COLUMNS:
        value = row.get(column)
        if column in _PHOTO_COLUMNS:
            value = _decoded_json(value)
        content[column] = _canonical(value)
    payload = json.dumps(
        [_HASH_VERSION, content], sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- prepare
def _utc(value: Any) -> datetime | None:
    """``created_at`` as an aware UTC datetime (naive values are UTC, as the app writes them)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _no_created_at_error(raw: Any) -> str:
    """The reason of a check-in without a usable creation time, in an analyst's words."""
    if raw is None or not str(raw).strip():
        what = "created_at is empty"
    else:
        what = f"created_at {echo(raw)} is not a date and time"
    return f"the check-in has no creation time ({what}): the CRM visit cannot be dated, so it was not sent"


def _why_missing(column: str, raw: Any) -> str:
    if raw is None or not str(raw).strip():
        return f"{column} missing"
    return f"{column} {echo(raw)} invalid"


def _no_key_error(strategy: str, row: Mapping[str, Any]) -> str:
    columns = {"email": "customer_email", "phone": "customer_phone", "name": "customer_name"}
    if strategy == "all":
        reasons = "; ".join(_why_missing(c, row.get(c)) for c in columns.values())
        return f"no usable customer email, phone or name for match strategy 'all' ({reasons})"
    column = columns[strategy]
    return f"no usable customer {strategy} for match strategy '{strategy}' ({_why_missing(column, row.get(column))})"


def _address_line(customer: Customer) -> str | None:
    state_zip = " ".join(p for p in (customer.state, customer.zip) if p)
    line = ", ".join(p for p in (customer.street, customer.city, state_zip) if p)
    return line or None


def _body(
    row: Mapping[str, Any],
    job_type: str,
    occurred_at: datetime,
    customer: Customer,
    photos: list[str],
    sync_photos: bool,
) -> str:
    header = [f"Job type: {job_type}"]
    technician = one_line(row.get("technician_name"))
    if technician:
        header.append(f"Technician: {technician}")
    header.append(f"Visit date: {occurred_at:%Y-%m-%d %H:%M} UTC")
    address = _address_line(customer) or one_line(row.get("location"))
    if not address and row.get("latitude") is not None and row.get("longitude") is not None:
        address = f"GPS {row.get('latitude')}, {row.get('longitude')}"
    if address:
        header.append(f"Address: {address}")
    header.append(f"Rank It Pro check-in: #{row.get('id')}")
    sections = ["\n".join(header)]
    for label, column in (
        ("Problem", "problem_description"),
        ("Work performed", "work_performed"),
        ("Solution", "solution_description"),
        ("Materials", "materials_used"),
        ("Notes", "notes"),
        ("Customer feedback", "customer_feedback"),
    ):
        text = clean_text(row.get(column), limit=SECTION_LIMIT)
        if text:
            sections.append(f"{label}:\n{text}")
    follow_up_notes = clean_text(row.get("follow_up_notes"), limit=SECTION_LIMIT)
    if row.get("follow_up_required") is True or follow_up_notes:
        status = "required" if row.get("follow_up_required") is True else "not flagged as required"
        sections.append(f"Follow-up: {status}" + (f"\n{follow_up_notes}" if follow_up_notes else ""))
    if sync_photos and photos:
        sections.append("Photos:\n" + "\n".join(photos))
    return "\n\n".join(sections)


def _fields(
    row: Mapping[str, Any],
    customer: Customer,
    occurred_at: datetime | None,
    photos_by_column: dict[str, list[str]],
    sync_photos: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for camel, column in CHECK_IN_FIELDS.items():
        value = row.get(column)
        if column in _PHOTO_COLUMNS:
            value = photos_by_column.get(column) if sync_photos and value is not None else None
        elif column == "customer_email":
            value = customer.email
        elif column == "customer_phone":
            value = customer.phone
        elif column == "created_at":
            value = occurred_at
        elif isinstance(value, str):
            value = clean_text(value)
        out[camel] = value
    return out


def prepare_check_in(row: Mapping[str, Any], settings: SyncSettings) -> PreparedCheckIn:
    """Normalise one ``check_ins`` row (plus optional ``technician_name``) for the CRM destinations.

    Never raises on bad data: problems become ``warnings``, and a row that cannot
    be synced at all gets ``error`` (the engine quarantines it with that reason).
    """
    check_in_id = int(row["id"])
    company_id = int(row["company_id"])
    digest = source_hash(row)
    try:
        item = _prepare(row, settings, check_in_id, company_id, digest)
    except Exception as exc:  # a bug or an unforeseen value must not stop the other rows
        item = PreparedCheckIn(
            check_in_id=check_in_id,
            company_id=company_id,
            source_hash=digest,
            customer=Customer(),
            visit=None,
            match_keys=[],
            error=f"could not prepare check-in: {type(exc).__name__}: {shorten(exc, 200)}",
        )
    item.source_fp = row.get("source_fp")
    return item


def _prepare(
    row: Mapping[str, Any], settings: SyncSettings, check_in_id: int, company_id: int, digest: str
) -> PreparedCheckIn:
    warnings: list[str] = []
    email, w = normalize_email(row.get("customer_email"))
    warnings += w
    phone, extension, w = normalize_phone(row.get("customer_phone"))
    warnings += w
    first, last, w = split_name(row.get("customer_name"))
    warnings += w
    customer = Customer(
        email=email,
        phone=phone,
        phone_extension=extension,
        first_name=first,
        last_name=last,
        street=one_line(row.get("address")),
        city=one_line(row.get("city")),
        state=one_line(row.get("state")),
        zip=one_line(row.get("zip")),
    )

    strategy = settings.customer_match_strategy
    if strategy not in MATCH_STRATEGIES:
        warnings.append(f"unknown customer match strategy {echo(strategy)}: 'all' used")
        strategy = "all"
    match_keys = keys_for_customer(customer, strategy)
    error = None if match_keys else _no_key_error(strategy, row)

    photos_by_column: dict[str, list[str]] = {}
    all_photos: list[str] = []
    if settings.sync_photos:
        for column in _PHOTO_COLUMNS:
            urls, w = photo_urls(row.get(column), names=(column,))
            photos_by_column[column] = urls
            warnings += w
            all_photos += [u for u in urls if u not in all_photos]

    occurred_at = _utc(row.get("created_at"))
    visit = None
    error_kind = QuarantineKind.NO_IDENTITY
    if occurred_at is None:
        # A source-data fault, not an identity one: it wins, as no CRM can date the visit whatever the identity.
        error_kind = QuarantineKind.BAD_SOURCE_DATA
        error = _no_created_at_error(row.get("created_at")) + (f"; also {error}" if error else "")
    else:
        job_type = one_line(row.get("job_type")) or "Service visit"
        visit = Visit(
            title=f"{job_type} – {occurred_at:%Y-%m-%d}",
            body=_body(row, job_type, occurred_at, customer, all_photos, settings.sync_photos),
            occurred_at=occurred_at,
            job_type=job_type,
            photo_urls=tuple(all_photos) if settings.sync_photos else (),
            fields=_fields(row, customer, occurred_at, photos_by_column, settings.sync_photos),
        )
    return PreparedCheckIn(
        check_in_id=check_in_id,
        company_id=company_id,
        source_hash=digest,
        customer=customer,
        visit=visit,
        match_keys=match_keys,
        warnings=warnings,
        error=error,
        error_kind=error_kind,
    )
