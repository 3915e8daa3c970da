"""CSV formula injection (OWASP "CSV Injection"): text cells a spreadsheet would run as a formula.

A cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is a formula to Excel, LibreOffice and
Google Sheets; check-in text is written by customers and technicians. Every CSV the sync writes (crm_export,
crm_import's ``rejects.csv``, the reconciliation report's CSVs) prefixes such a **text** cell with ``'``.

Numbers written as numbers (ids, coordinates, counts, a negative latitude) are not text and are not escaped.
A text column whose values naturally start with ``+`` or ``-`` (an E.164 phone, ``+15125550101``) is
escaped: ``'+15125550101``. crm_export's ``csv_escape_formulas: false`` writes the values as they are, for
programs that read the file (not spreadsheets); Parquet is never escaped.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["FORMULA_LEADS", "csv_safe", "escape_formulas"]

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_LEADS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_PATTERN = "^[" + "".join({"\t": r"\t", "\r": r"\r"}.get(c, re.escape(c)) for c in FORMULA_LEADS) + "]"


def csv_safe(value: Any) -> Any:
    """One cell: a text cell a spreadsheet would evaluate gets a leading ``'``; anything else is unchanged."""
    if isinstance(value, str) and value[:1] in FORMULA_LEADS:
        return "'" + value
    return value


def escape_formulas(table: pa.Table) -> pa.Table:
    """:func:`csv_safe` on every string column of an Arrow table (vectorised; nulls stay null)."""
    columns = []
    for column, field in zip(table.columns, table.schema, strict=True):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            hit = pc.match_substring_regex(column, _PATTERN)
            column = pc.if_else(hit, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)
