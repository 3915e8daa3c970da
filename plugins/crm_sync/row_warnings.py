"""What a row's warning is about: the field a sync warning names, for the report and the landing benchmark.

Rows that land with something dropped or repaired (a phone without an area code, an extension moved to the
visit note, a field the CRM refused and the record sent again without it, see :mod:`crm_sync.field_rules`)
keep a warning in ``crm_sync.ledger.warnings``. The warnings are sentences for people; :data:`WARNING_FIELDS`
groups them by the field they are about, by the words they use (first match wins), so an analyst sees
"phone extension 51, email 22" rather than 73 sentences. The report does the grouping in SQL with these same
words (``include/sql/report_warning_fields.sql``).
"""

from __future__ import annotations

#: (word in the lower-cased warning, field label), first match wins.
WARNING_FIELDS: tuple[tuple[str, str], ...] = (
    ("sent again without it", "retried without a field"),
    ("extension", "phone extension"),
    ("phone", "phone"),
    ("email", "email"),
    ("business", "company (business name)"),
    ("last name", "last name"),
    ("name", "name"),
    ("photo", "photos"),
    ("note", "visit note"),
    ("visit report", "visit note"),
    ("summary", "visit note"),
    ("instructions", "visit note"),
    ("truncated", "visit note"),
    ("html", "visit note"),
)
OTHER = "other"


def warning_field(warning: str) -> str:
    """The field label of one warning (:data:`OTHER` when no word matches)."""
    text = warning.lower()
    return next((label for word, label in WARNING_FIELDS if word in text), OTHER)


def sql_params() -> dict[str, list[str]]:
    """The words and labels as the SQL's ``:words`` / ``:labels`` arrays (same order)."""
    return {"words": [w for w, _ in WARNING_FIELDS], "labels": [label for _, label in WARNING_FIELDS]}


__all__ = ["OTHER", "WARNING_FIELDS", "sql_params", "warning_field"]
