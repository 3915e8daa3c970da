"""Typed ``crmSettings``: each CRM's non-secret settings, read and validated once per hook.

Any company admin edits ``crmSettings`` (the app's JSON), so every value is checked where it is read:
a number outside its range (or ``"fast"``, ``true``, ``1e999``) becomes the default with a warning for
the run summary, never a limit of ``0.0001`` requests per minute or none at all. A value that cannot
fall back (a time zone, an invoicing type, ServiceTitan's job defaults) is recorded in
:attr:`CrmSettings.errors` and raised as a :class:`ConfigurationError` by :meth:`CrmSettings.require`
where it is needed (a run's ``prepare``), not when the hook is built. Each hook module
defines one frozen dataclass subclassing :class:`CrmSettings` (``HubSpotSettings``, ...) whose
``read`` builds it through a :class:`SettingsReader`; the hook exposes it as ``hook.crm_settings``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crm_hooks.errors import ConfigurationError
from crm_hooks.rate_limit import RateLimit


class SettingsReader:
    """Reads one ``crmSettings`` object; keeps one warning per key it replaced by its default
    (:attr:`warnings`) and one error per key it cannot use at all (:attr:`errors`, see :meth:`refuse`)."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw
        self.warnings: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def refuse(self, key: str, message: str) -> None:
        """Record that ``key`` cannot be used: :meth:`CrmSettings.require` raises ``message`` where it is needed."""
        self.errors[key] = message

    def text(self, key: str, default: str | None = None) -> str | None:
        """``raw[key]`` as text; missing or blank is ``default``."""
        value = self.raw.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        return str(value).strip()

    def present(self, key: str) -> str | None:
        """``str(raw[key])`` when it is set (truthy), else None; unchanged otherwise (the caller validates)."""
        value = self.raw.get(key)
        return str(value) if value else None

    def number(self, key: str, *, default: float | None, minimum: float, maximum: float) -> float | None:
        """``raw[key]`` as a finite number in ``[minimum, maximum]``, else ``default`` with a warning.

        Missing or blank is the default without a warning; booleans are refused (``true`` is not 1).
        """
        raw = self.raw.get(key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return default
        value: float | None = None
        if not isinstance(raw, bool):
            try:
                value = float(raw)
            except (TypeError, ValueError, OverflowError):
                value = None
        if value is None or not math.isfinite(value) or not minimum <= value <= maximum:
            shown = f"{value:g}" if value is not None else f"a {type(raw).__name__}"
            self.warnings[key] = (
                f"crmSettings.{key} must be a number from {minimum:g} to {maximum:g}, got {shown[:30]}: "
                f"{'no limit (the default)' if default is None else f'default {default:g}'} used"
            )
            return default
        return value

    def integer(self, key: str, *, default: int, minimum: int, maximum: int | None = None, clamp: bool = False) -> int:
        """``int(raw[key])``; missing or falsy (``0``, ``""``) is ``default`` without a warning.

        A value that is no integer is ``default`` with a warning; one outside ``[minimum, maximum]`` is
        clamped into it when ``clamp``, else ``default`` with a warning.
        """
        raw = self.raw.get(key)
        if not raw:
            return default
        try:
            value: int | None = int(raw)
        except (TypeError, ValueError, OverflowError):
            value = None
        in_range = value is not None and value >= minimum and (maximum is None or value <= maximum)
        if value is not None and not in_range and clamp:
            return max(minimum, value if maximum is None else min(value, maximum))
        if value is None or not in_range:
            shown = str(value) if value is not None else f"a {type(raw).__name__}"
            limits = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            self.warnings[key] = (
                f"crmSettings.{key} must be a whole number {limits}, got {shown[:30]}: default {default} used"
            )
            return default
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        """``raw[key]`` as a switch: missing or blank is ``default``; ``"false"``, ``"0"``, ``"no"``, ``"off"``
        (any case) are off; anything else is its truth value."""
        value = self.raw.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, str):
            return value.strip().lower() not in ("false", "0", "no", "off")
        return bool(value)

    def lenient_float(self, key: str, default: float) -> float:
        """``float(raw[key])`` when it parses, else ``default`` (falsy values too), without a warning."""
        try:
            return float(self.raw.get(key) or default)
        except (TypeError, ValueError):
            return default


@dataclass(frozen=True)
class CrmSettings:
    """The settings every hook has: none. A CRM's subclass adds typed fields and overrides :meth:`read`."""

    #: crmSettings key -> why its value cannot be used (:meth:`SettingsReader.refuse`); raised by :meth:`require`.
    errors: Mapping[str, str] = field(default_factory=dict)

    def require(self, *keys: str) -> None:
        """Raise the :class:`ConfigurationError` of the first of ``keys`` whose value was refused."""
        for key in keys:
            if key in self.errors:
                raise ConfigurationError(self.errors[key])

    @classmethod
    def read(cls, reader: SettingsReader) -> CrmSettings:
        return cls()

    def rate_limits(self, defaults: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
        """The hook's client-side limits: ``defaults`` (the documented ones) with admin-set values applied."""
        return dict(defaults)


__all__ = ["CrmSettings", "SettingsReader"]
