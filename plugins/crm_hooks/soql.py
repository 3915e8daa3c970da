"""SOQL literals and Salesforce API names, escaped and checked before they go into a query or a URL path.

Escapes per "Quoted String Escape Sequences"
(https://developer.salesforce.com/docs/platform/salesforce-soql-sosl/guide/sforce-api-calls-soql-select-quotedstringescapes.html).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: An sObject or field API name (``Account``, ``RankItPro_CheckIn_Key__c``).
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
#: A field path of a SOQL ``WHERE`` (``Account.Name``).
_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def soql_quote(value: Any, *, like: bool = False) -> str:
    """A SOQL literal for ``value``: strings quoted and escaped, others as SOQL spells them.

    Escapes per "Quoted String Escape Sequences" -- backslash, single and double quote,
    ``\\n \\r \\t \\b \\f``; other control characters as ``\\uXXXX``
    (https://developer.salesforce.com/docs/platform/salesforce-soql-sosl/guide/sforce-api-calls-soql-select-quotedstringescapes.html,
    https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_reservedcharacters.htm).
    Other unicode passes through unchanged.

    :param like: also escape ``_`` and ``%`` (only valid inside a ``LIKE`` pattern).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    out = []
    for ch in text:
        if ch in _SOQL_ESCAPES:
            out.append(_SOQL_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif like and ch in "_%":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def soql_in(field: str, values: Iterable[Any]) -> str:
    """``Field IN ('a','b')`` with each value quoted by :func:`soql_quote` (duplicates dropped).

    :raises ValueError: no values (``IN ()`` is a SOQL syntax error) or an invalid field name.
    """
    if not isinstance(field, str) or not _FIELD_PATH.match(field):
        raise ValueError(f"invalid SOQL field name {field!r}")
    literals = list(dict.fromkeys(soql_quote(v) for v in values))
    if not literals:
        raise ValueError("soql_in needs at least one value")
    return f"{field} IN ({', '.join(literals)})"


def api_name(value: str, what: str) -> str:
    """``value`` when it is a valid Salesforce API name (sObject, field); ``what`` names it in the error."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"invalid Salesforce {what} {value!r}")
    return value


__all__ = ["api_name", "soql_in", "soql_quote"]
