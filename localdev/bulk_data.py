"""Fast bulk seeding of check-ins for large benchmarks (hundreds of thousands to millions of rows).

The rows are :func:`localdev.demo_data.check_in_rows` (the same messy, realistic content as the demo and
the tests), spread evenly over a date range and written with PostgreSQL ``COPY ... FROM STDIN`` (psycopg 3)
instead of ``INSERT``; memory stays flat because rows are generated lazily. About 10,000-13,000 rows/s on
the 2-core development machine (generation in Python is the bound; a million rows take 75-95 s).

Rows are generated in blocks of :data:`BLOCK`, each with its own seed and customer pool, so returning
customers recur within a block (10,000 rows, about 40% repeats) and a customer key can recur across
blocks with other details. Good for volume benchmarks; for customer-matching behaviour use
:func:`localdev.demo_data.check_in_rows` directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from localdev.demo_data import check_in_rows

#: The columns :func:`check_in_rows` fills, in COPY order.
COLUMNS = (
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
    "photos",
    "customer_feedback",
    "follow_up_required",
    "technician_id",
    "company_id",
    "created_at",
)
#: ``check_in_rows`` draws a returning customer from a copy of the pool seen so far (quadratic in n), so rows are
#: generated in blocks of this many, each with its own seed and customer pool (repeat customers within a block).
BLOCK = 10_000
#: ``check_in_rows`` makes every 23rd note ~75 KB (a pasted install log). At a million rows that is 3 GB of
#: notes, which would measure the disk rather than the code; longer notes are cut to this many characters.
MAX_NOTES = 4000


def spread_rows(
    company_id: int,
    technician_id: int,
    n: int,
    *,
    start: datetime,
    days: int,
    seed: int = 7,
    max_notes: int | None = MAX_NOTES,
) -> Iterator[tuple[Any, ...]]:
    """``n`` check-in tuples (:data:`COLUMNS` order), ``created_at`` spread evenly over ``days`` from ``start``."""
    if n <= 0:
        return
    if days <= 0:
        raise ValueError(f"days must be at least 1, got {days}")
    step = timedelta(days=days) / n
    start = start.replace(tzinfo=None)  # check_ins.created_at is naive UTC
    i = 0
    for block, first in enumerate(range(0, n, BLOCK)):
        size = min(BLOCK, n - first)
        for row in check_in_rows(company_id, technician_id, size, seed=seed * 100_003 + block, start=start):
            row["created_at"] = start + step * i
            if max_notes is not None and row["notes"] and len(row["notes"]) > max_notes:
                row["notes"] = row["notes"][:max_notes]
            yield tuple(row[c] for c in COLUMNS)
            i += 1


def seed_check_ins(
    engine: Engine,
    company_id: int,
    technician_id: int,
    n: int,
    *,
    start: datetime,
    days: int,
    seed: int = 7,
    max_notes: int | None = MAX_NOTES,
) -> int:
    """Insert ``n`` realistic check-ins for one company with ``COPY`` in one transaction; returns ``n``.

    ``created_at`` runs evenly from ``start`` over ``days`` days (naive UTC). The company and the
    technician must exist (e.g. :func:`localdev.demo_data.create_company`). Deterministic for a given seed.
    """
    raw = engine.raw_connection()
    try:
        count = 0
        with raw.cursor() as cur, cur.copy(f"COPY check_ins ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in spread_rows(
                company_id, technician_id, n, start=start, days=days, seed=seed, max_notes=max_notes
            ):
                copy.write_row(row)
                count += 1
        raw.commit()
        return count
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
