"""Which hook class serves which CRM type (the keys of ``companies.crm_integrations``).

Adding a CRM is one module with a :class:`crm_hooks.base.CrmHook` subclass plus one line
here; :mod:`crm_hooks.provider_info` builds the Airflow connection types from this map.
"""

from __future__ import annotations

from crm_hooks.base import CrmHook
from crm_hooks.errors import ConfigurationError
from crm_hooks.hubspot import HubSpotHook
from crm_hooks.salesforce import SalesforceHook

#: The app's CRM type -> hook class.
HOOKS: dict[str, type[CrmHook]] = {
    cls.crm_type: cls
    for cls in (HubSpotHook, SalesforceHook)
}


def hook_class(crm_type: str) -> type[CrmHook]:
    """The hook class for ``crm_type`` (e.g. ``"hubspot"``).

    :raises ConfigurationError: for a type no hook serves.
    """
    try:
        return HOOKS[crm_type]
    except (KeyError, TypeError):
        raise ConfigurationError(f"unknown CRM type {crm_type!r}") from None


__all__ = ["HOOKS", "hook_class"]
