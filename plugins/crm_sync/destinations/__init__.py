"""One destination per CRM type; :func:`destination_for` builds the right one for an integration.

Each module of this package that defines a :class:`Destination` subclass with a
``crm_type`` serves that CRM: adding a CRM adds a module, no list to edit. Modules are
imported on first use, not at DAG parse time.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from crm_hooks.errors import ConfigurationError
from crm_hooks.registry import hook_class
from crm_sync.destinations.base import CustomerRef, Destination
from crm_sync.models import SyncSettings


@functools.cache
def destinations() -> dict[str, type[Destination]]:
    """CRM type -> destination class, from the modules of this package."""
    found: dict[str, type[Destination]] = {}
    for module in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{module.name}")
        for obj in vars(mod).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Destination)
                and obj.crm_type
                and obj.__module__ == mod.__name__
            ):
                found[obj.crm_type] = obj
    return found


def destination_class(crm_type: str) -> type[Destination]:
    try:
        return destinations()[crm_type]
    except KeyError:
        raise ConfigurationError(f"no destination for CRM type '{crm_type}'") from None


def destination_for(
    crm_type: str, integration: dict[str, Any], settings: SyncSettings, **hook_kwargs: Any
) -> Destination:
    """The destination for one company's integration object (hook built from its credentials and
    ``crmSettings``, which the destination reads as ``hook.crm_settings``)."""
    hook = hook_class(crm_type).from_integration(integration, **hook_kwargs)
    return destination_class(crm_type)(hook, settings)


__all__ = ["CustomerRef", "Destination", "destination_class", "destination_for", "destinations"]
