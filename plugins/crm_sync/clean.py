"""Text and JSON the database and the app can always take, from input any company admin can shape.

``crm_integrations`` keys and values and check-in text are untrusted. Two kinds of
characters in them break writes that have nothing to do with the company that sent them:

* NUL (``\\x00``, JSON ``\\u0000``): PostgreSQL refuses it in ``text`` and ``jsonb``.
* Lone surrogates (JSON ``"\\ud800"`` decodes to one): they cannot be encoded as UTF-8,
  so the driver fails before the statement is sent.

:func:`storable_text` / :func:`storable_json` replace each NUL and each surrogate with U+FFFD (visible,
and never merging two words into another: ``"hub\x00spot"`` must not read as ``hubspot``);
every write of integration- or check-in-derived text goes through them (run rows,
configuration problems, ledger reasons and warnings, customer-map keys, the app's
history). JSON the app reads back is strict: :func:`loads_strict` refuses ``NaN``,
``Infinity`` and numbers that overflow to them (``1e999``), and :func:`dumps_strict`
never writes them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class NonFiniteNumberError(ValueError):
    """The JSON holds ``NaN``, ``Infinity``, ``-Infinity`` or a number too large for a double."""


def storable_text(value: str | None) -> str | None:
    """``value`` with NUL characters and lone surrogates replaced by U+FFFD (None stays None)."""
    if value is None:
        return None
    return _UNSTORABLE.sub("\ufffd", str(value))


def storable_json(value: Any) -> Any:
    """:func:`storable_text` applied to every string and object key; non-finite floats become ``None``."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumberError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumberError(f"the number {text[:30]} is too large")
    return value


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity``, ``-Infinity`` and overflowing numbers.

    :raises NonFiniteNumberError: naming the value (never the rest of the document).
    :raises json.JSONDecodeError: for anything else that is not JSON.
    """
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def dumps_strict(value: Any, *, clean: bool = True, **kwargs: Any) -> str:
    """JSON any strict parser reads: no ``NaN``/``Infinity`` (``allow_nan=False``: raises instead).

    :param clean: :func:`storable_json` first (for ``jsonb``, which refuses ``\u0000`` and lone
        surrogate escapes). ``False`` for the app's own JSON written back whole: its values are
        the admin's and stay as they are (ASCII escapes keep them valid in a ``text`` column).
    """
    return json.dumps(storable_json(value) if clean else value, allow_nan=False, **kwargs)


__all__ = ["NonFiniteNumberError", "storable_json", "storable_text", "dumps_strict", "loads_strict"]
