"""Typed ``crmSettings``: each CRM's non-secret settings, read and validated once per hook.

Any company admin edits ``crmSettings`` (the app's JSON), so every value is checked where it is read:
a number outside its range (or ``"fast"``, ``true``, ``1e999``) becomes the default with a warning for
the run summary, never a limit of ``0.0001`` requests per minute or none at all. Each hook module
defines one frozen dataclass subclassing :class:`CrmSettings` (``HubSpotSettings``, ...) whose
``read`` builds it through a :class:`SettingsReader`; the hook exposes it as ``hook.crm_settings``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crm_hooks.rate_limit import RateLimit


class SettingsReader:
    """Reads one ``crmSettings`` object; keeps one warning per key it refused (:attr:`warnings`)."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw
        self.warnings: dict[str, str] = {}

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
                f"{'no limit (the default)' if default is None else f'default {default:g}'} used")
            return default
        return value

    def lenient_float(self, key: str, default: float) -> float:
        """``float(raw[key])`` when it parses, else ``default`` (falsy values too), without a warning."""
        try:
            return float(self.raw.get(key) or default)
        except (TypeError, ValueError):
            return default


@dataclass(frozen=True)
class CrmSettings:
    """The settings every hook has: none. A CRM's subclass adds typed fields and overrides :meth:`read`."""

    @classmethod
    def read(cls, reader: SettingsReader) -> CrmSettings:
        return cls()

    def rate_limits(self, defaults: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
        """The hook's client-side limits: ``defaults`` (the documented ones) with admin-set values applied."""
        return dict(defaults)


__all__ = ["CrmSettings", "SettingsReader"]
