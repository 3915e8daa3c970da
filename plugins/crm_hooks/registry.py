"""Which hook class serves which CRM type (the keys of ``companies.crm_integrations``).

Every module of this package that defines a :class:`crm_hooks.base.CrmHook` subclass with
a ``crm_type`` is found here, so adding a CRM is one new module (plus its connection form
in ``connection_types/<crm>.json``); nothing else lists the CRMs.
"""

from __future__ import annotations

import importlib
import pkgutil

import crm_hooks
from crm_hooks.base import CrmHook
from crm_hooks.errors import ConfigurationError


def _discover() -> dict[str, type[CrmHook]]:
    found: dict[str, type[CrmHook]] = {}
    for module in pkgutil.iter_modules(crm_hooks.__path__):
        mod = importlib.import_module(f"crm_hooks.{module.name}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, CrmHook) and obj.crm_type and obj.__module__ == mod.__name__:
                found[obj.crm_type] = obj
    return dict(sorted(found.items()))


#: The app's CRM type -> hook class.
HOOKS: dict[str, type[CrmHook]] = _discover()


def hook_class(crm_type: str) -> type[CrmHook]:
    """The hook class for ``crm_type`` (e.g. ``"hubspot"``).

    :raises ConfigurationError: for a type no hook serves.
    """
    try:
        return HOOKS[crm_type]
    except (KeyError, TypeError):
        raise ConfigurationError(f"unknown CRM type {crm_type!r}") from None


def display_name(crm_type: str) -> str:
    """The name the app shows for ``crm_type`` (e.g. ``"Housecall Pro"``); "" for a type no hook serves."""
    hook = HOOKS.get(crm_type)
    return hook.display_name if hook else ""


def report_colours() -> dict[str, str]:
    """CRM type -> the colour of its line in the quality report's charts (types without one are left out)."""
    return {crm_type: hook.report_colour for crm_type, hook in HOOKS.items() if hook.report_colour}


__all__ = ["HOOKS", "display_name", "hook_class", "report_colours"]
