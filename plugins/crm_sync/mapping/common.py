"""What the per-CRM mappings share: custom field mapping, value conversion, fitting text into limits."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import phonenumbers

from crm_sync.prepare import resolve_check_in_field
from crm_sync.text import echo, truncate_visibly, utf16_len

__all__ = ["fit_text", "iso_utc", "map_custom_fields", "to_json_value", "to_text"]


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``, e.g. ``2026-03-08T07:30:00.000Z`` (naive = UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_text(value: Any) -> str | None:
    """A check-in value as CRM property text: bools ``"true"``/``"false"``, lists one item a line, None -> None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [t for t in (to_text(v) for v in value) if t is not None]
        return "\n".join(items)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return str(value)


def to_json_value(value: Any) -> Any:
    """A check-in value for a typed JSON API (Salesforce): bools and numbers stay native, the rest is text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    return to_text(value)


def fit_text(text: str, limit: int, render: Callable[[str], str] = lambda s: s) -> tuple[str, bool]:
    """``render(text)`` within ``limit`` UTF-16 units, truncating ``text`` visibly first when needed.

    ``render`` may expand the text (HTML escaping); the budget shrinks until the
    rendered result fits. Returns ``(rendered, truncated)``.
    """
    rendered = render(text)
    if utf16_len(rendered) <= limit:
        return rendered, False
    budget = limit
    for _ in range(40):
        cut, _ = truncate_visibly(text, budget)
        rendered = render(cut)
        size = utf16_len(rendered)
        if size <= limit:
            return rendered, True
        budget = min(budget - 1, int(budget * limit / size))
        if budget <= 0:
            break
    return render(""), True


def map_custom_fields(
    fields: Mapping[str, Any],
    custom_fields: Mapping[str, str],
    known_targets: Collection[str] | None,
    *,
    target_label: str,
    reserved: Collection[str] = (),
    case_insensitive: bool = False,
    value_limit: int | None = None,
    convert: Callable[[Any], Any] = to_text,
) -> tuple[dict[str, Any], list[str]]:
    """Apply ``customFieldMapping`` (check-in field -> CRM field) to a visit's ``fields``.

    Skipped with a warning naming the field: an unknown check-in field, a CRM
    field not in ``known_targets`` (when given), a CRM field the sync sets
    itself (``reserved``), a second mapping onto the same CRM field. A value
    that converts to None is left out (no warning). Text longer than
    ``value_limit`` is truncated visibly, with a warning. With
    ``case_insensitive`` (Salesforce API names) the CRM's own spelling from
    ``known_targets`` is used.
    """

    def norm(name: str) -> str:
        return name.lower() if case_insensitive else name

    known = None if known_targets is None else {norm(t): t for t in known_targets}
    reserved_names = {norm(r) for r in reserved}
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for source, target in custom_fields.items():
        field = resolve_check_in_field(source)
        if field is None:
            warnings.append(f"customFieldMapping: {echo(source, 40)} is not a Rank It Pro check-in field: skipped")
            continue
        if not isinstance(target, str) or not target.strip():
            warnings.append(f"customFieldMapping: {field} has no {target_label} name: skipped")
            continue
        target = target.strip()
        if norm(target) in reserved_names:
            warnings.append(
                f"customFieldMapping: {target_label} {echo(target, 60)} is written by the sync itself: {field} skipped"
            )
            continue
        if known is not None:
            if norm(target) not in known:
                warnings.append(
                    f"customFieldMapping: {target_label} {echo(target, 60)} (for {field}) does not "
                    "exist in the CRM: skipped"
                )
                continue
            target = known[norm(target)]
        if target in out:
            warnings.append(
                f"customFieldMapping: {target_label} {echo(target, 60)} is mapped more than once: {field} skipped"
            )
            continue
        value = convert(fields.get(field))
        if value is None:
            continue
        if value_limit is not None and isinstance(value, str) and utf16_len(value) > value_limit:
            value, _ = truncate_visibly(value, value_limit)
            warnings.append(
                f"customFieldMapping: {field} is longer than {value_limit:,} characters: "
                f"truncated for {target_label} {echo(target, 60)}"
            )
        out[target] = value
    return out, warnings


def national_digits(e164: str | None) -> str | None:
    """``+15125550100`` -> ``5125550100`` for North American numbers (how field-service CRMs show
    phones); any other number stays E.164."""
    if not e164:
        return None
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    national = str(number.national_number)
    return national if number.country_code == 1 and len(national) == 10 else e164
