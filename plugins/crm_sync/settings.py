"""Parse ``companies.crm_integrations`` and an integration's ``syncSettings``: pure, never raising.

Decisions worth knowing:

* A value of the wrong type falls back to the :class:`SyncSettings` default and
  adds a warning naming the key and the reason; nothing is guessed silently.
* Booleans: real JSON booleans are taken as they are. The strings ``"true"`` /
  ``"false"`` (any case, trimmed) are unambiguous and are accepted *with a
  warning*; anything else (``"yes"``, ``1``, ``null``) gives the default.
* ``customerMatchStrategy`` is compared case-insensitively; an unknown value
  gives ``"all"``.
* ``householdPhoneRule`` (``same_name``, ``same_person``, ``separate``; see
  :mod:`crm_sync.identity`) is compared case-insensitively, ``-`` read as ``_``; an unknown
  value gives ``"same_name"`` with a warning.
* ``customFieldMapping`` is checked entry by entry: a mapping that is not an
  object gives ``{}``; inside it, an entry whose check-in field is unknown or
  whose CRM field name is not a non-empty string is dropped with a warning and
  the other entries are kept. Snake_case column names (``customer_feedback``)
  are accepted and stored as the camelCase field name.
* ``parse_integrations`` keeps an entry whose value is not an object as it is,
  so the caller can report that one CRM type and still sync the others.
* ``NaN``, ``Infinity`` and numbers that overflow to it (``1e999``) are not JSON the app can
  read back: ``crm_integrations`` holding one is a configuration problem of the company
  (named, never quoted), so the write-back can never turn it into ``Infinity``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crm_hooks.registry import HOOKS
from crm_sync.clean import NonFiniteNumberError, loads_strict
from crm_sync.models import HOUSEHOLD_RULES, MATCH_STRATEGIES, SyncSettings
from crm_sync.prepare import resolve_check_in_field
from crm_sync.text import echo

__all__ = ["KNOWN_CRM_TYPES", "SYNC_SETTINGS_KEYS", "known_crm_types", "parse_integrations", "parse_sync_settings"]

#: The CRM types the Rank It Pro app writes into ``crm_integrations`` (the app's list, not the sync's):
#: one of these without a hook is "not supported yet", a type in neither list is "unknown".
KNOWN_CRM_TYPES: tuple[str, ...] = ("servicetitan", "housecallpro", "jobber", "fieldedge", "hubspot", "salesforce")


def known_crm_types() -> tuple[str, ...]:
    """The app's CRM types, then any other type a hook module registers (:data:`crm_hooks.registry.HOOKS`)."""
    return KNOWN_CRM_TYPES + tuple(t for t in HOOKS if t not in KNOWN_CRM_TYPES)


#: ``syncSettings`` key -> :class:`SyncSettings` attribute.
SYNC_SETTINGS_KEYS: dict[str, str] = {
    "syncCustomers": "sync_customers",
    "createNewCustomers": "create_new_customers",
    "updateExistingCustomers": "update_existing_customers",
    "syncCheckInsAsJobs": "sync_check_ins_as_jobs",
    "syncPhotos": "sync_photos",
    "customerMatchStrategy": "customer_match_strategy",
    "customFieldMapping": "custom_field_mapping",
    "householdPhoneRule": "household_phone_rule",
}
_BOOL_KEYS = ("syncCustomers", "createNewCustomers", "updateExistingCustomers", "syncCheckInsAsJobs", "syncPhotos")
_DEFAULTS = SyncSettings()


def _json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _parse_bool(key: str, value: Any, warnings: list[str]) -> bool:
    default = getattr(_DEFAULTS, SYNC_SETTINGS_KEYS[key])
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        parsed = value.strip().lower() == "true"
        warnings.append(
            f"syncSettings.{key} is the string {echo(value)} instead of a boolean: read as {str(parsed).lower()}"
        )
        return parsed
    shown = echo(value, 30) if isinstance(value, str) else _json_type(value)
    warnings.append(f"syncSettings.{key} must be true or false, got {shown}: default {str(default).lower()} used")
    return default


def _parse_strategy(value: Any, warnings: list[str]) -> str:
    default = _DEFAULTS.customer_match_strategy
    if isinstance(value, str) and value.strip().lower() in MATCH_STRATEGIES:
        return value.strip().lower()
    shown = echo(value, 30) if isinstance(value, str) else _json_type(value)
    warnings.append(
        f"syncSettings.customerMatchStrategy {shown} is not one of {', '.join(MATCH_STRATEGIES)}: "
        f"default '{default}' used"
    )
    return default


def _parse_household_rule(value: Any, warnings: list[str]) -> str:
    default = _DEFAULTS.household_phone_rule
    if isinstance(value, str) and value.strip().lower().replace("-", "_") in HOUSEHOLD_RULES:
        return value.strip().lower().replace("-", "_")
    shown = echo(value, 30) if isinstance(value, str) else _json_type(value)
    warnings.append(
        f"syncSettings.householdPhoneRule {shown} is not one of {', '.join(HOUSEHOLD_RULES)}: "
        f"default '{default}' used (check-ins with different emails on one phone are one customer only "
        "when their names match)"
    )
    return default


def _parse_mapping(value: Any, warnings: list[str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        warnings.append(
            f"syncSettings.customFieldMapping must be an object, got {_json_type(value)}: no custom fields mapped"
        )
        return {}
    mapping: dict[str, str] = {}
    targets: dict[str, str] = {}
    for source, target in value.items():
        field = resolve_check_in_field(source)
        if field is None:
            warnings.append(
                f"syncSettings.customFieldMapping: {echo(source, 40)} is not a Rank It Pro check-in "
                "field: entry ignored"
            )
            continue
        if not isinstance(target, str) or not target.strip():
            shown = "an empty string" if isinstance(target, str) else _json_type(target)
            warnings.append(
                f"syncSettings.customFieldMapping.{field} must be a CRM field name (a non-empty "
                f"string), got {shown}: entry ignored"
            )
            continue
        target = target.strip()
        if field in mapping:
            warnings.append(
                f"syncSettings.customFieldMapping maps {field} twice: the first one ('{mapping[field]}') is used"
            )
            continue
        if target.lower() in targets:
            warnings.append(
                f"syncSettings.customFieldMapping maps both {targets[target.lower()]} and {field} to "
                f"{echo(target, 40)}: {field} ignored"
            )
            continue
        mapping[field] = target
        targets[target.lower()] = field
    return mapping


def parse_sync_settings(raw: Any) -> tuple[SyncSettings, list[str]]:
    """:class:`SyncSettings` from an integration's ``syncSettings`` (missing/None/partial/bad), and warnings."""
    warnings: list[str] = []
    if raw is None:
        return SyncSettings(), warnings
    if isinstance(raw, str):
        try:
            decoded = loads_strict(raw)
        except ValueError:
            decoded = None
        if isinstance(decoded, Mapping):
            warnings.append("syncSettings is a JSON-encoded string instead of an object: decoded")
            raw = decoded
    if not isinstance(raw, Mapping):
        warnings.append(f"syncSettings must be an object, got {_json_type(raw)}: defaults used")
        return SyncSettings(), warnings

    values: dict[str, Any] = {}
    for key in _BOOL_KEYS:
        if key in raw:
            values[SYNC_SETTINGS_KEYS[key]] = _parse_bool(key, raw[key], warnings)
    if "customerMatchStrategy" in raw:
        values["customer_match_strategy"] = _parse_strategy(raw["customerMatchStrategy"], warnings)
    if "householdPhoneRule" in raw:
        values["household_phone_rule"] = _parse_household_rule(raw["householdPhoneRule"], warnings)
    if "customFieldMapping" in raw and raw["customFieldMapping"] is not None:
        values["custom_field_mapping"] = _parse_mapping(raw["customFieldMapping"], warnings)
    unknown = [str(k) for k in raw if k not in SYNC_SETTINGS_KEYS]
    if unknown:
        shown = ", ".join(echo(k, 40) for k in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        warnings.append(f"syncSettings has keys this sync does not know: {shown} (ignored)")
    return SyncSettings(**values), warnings


def parse_integrations(raw_text: str | bytes | Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """The ``crm_integrations`` object keyed by CRM type, or ``({}, reason)`` when it is unusable.

    NULL, empty or ``{}`` is ``({}, None)``. The reason never quotes the column's
    content (it holds credentials). Values are returned as stored, even one that
    is not an object (the caller reports that CRM type and syncs the others).
    """
    if raw_text is None:
        return {}, None
    if isinstance(raw_text, Mapping):  # a driver that already decoded JSON
        data: Any = raw_text
    else:
        if isinstance(raw_text, (bytes, bytearray)):
            raw_text = bytes(raw_text).decode("utf-8", "replace")
        if not isinstance(raw_text, str):
            return {}, f"crm_integrations is not text (got {type(raw_text).__name__})"
        if not raw_text.strip():
            return {}, None
        try:
            data = loads_strict(raw_text)
        except NonFiniteNumberError as exc:
            return {}, (
                f"crm_integrations holds a number JSON cannot carry ({exc}): NaN, Infinity and numbers "
                "beyond ±1.8e308 are refused; fix the value in the app"
            )
        except json.JSONDecodeError as exc:
            return {}, f"crm_integrations is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        except (ValueError, RecursionError) as exc:  # e.g. absurdly deep nesting
            return {}, f"crm_integrations is not valid JSON: {type(exc).__name__}"
    if not isinstance(data, Mapping):
        return {}, f"crm_integrations must be a JSON object keyed by CRM type, got {_json_type(data)}"
    return {str(k): v for k, v in data.items()}, None
