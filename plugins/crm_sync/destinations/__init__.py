"""One destination per CRM type; :func:`destination_for` builds the right one for an integration."""

from __future__ import annotations

import importlib
from typing import Any

from crm_hooks.errors import ConfigurationError
from crm_hooks.registry import hook_class

from crm_sync.destinations.base import CustomerRef, Destination
from crm_sync.models import SyncSettings

#: CRM type -> "module:Class" (imported lazily: DAG parsing stays fast).
DESTINATIONS = {
    "hubspot": "crm_sync.destinations.hubspot:HubSpotDestination",
    "salesforce": "crm_sync.destinations.salesforce:SalesforceDestination",
}


def destination_class(crm_type: str) -> type[Destination]:
    target = DESTINATIONS.get(crm_type)
    if target is None:
        raise ConfigurationError(f"no destination for CRM type '{crm_type}'")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def destination_for(crm_type: str, integration: dict[str, Any], settings: SyncSettings, **hook_kwargs: Any
                    ) -> Destination:
    """The destination for one company's integration object (hook built from its credentials)."""
    hook = hook_class(crm_type).from_integration(integration, **hook_kwargs)
    return destination_class(crm_type)(hook, settings, dict(integration.get("crmSettings") or {}))


__all__ = ["CustomerRef", "DESTINATIONS", "Destination", "destination_class", "destination_for"]
