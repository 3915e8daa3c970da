"""Airflow provider metadata, so the CRM connection types appear in Airflow.

Airflow discovers providers through the ``apache_airflow_provider`` entry point of an
installed distribution and validates the returned dict against
``airflow/provider_info.schema.json``; ``package-name`` must equal the distribution
name (``rankitpro-crm-sync``). Each hook contributes one ``connection-types`` entry from
its own class attributes (``conn_type``, ``hook_name``, ``conn_fields``,
``ui_field_behaviour``), so adding a CRM needs no change here. Form fields are declared
the declarative way (``conn-fields`` / ``ui-field-behaviour``): hook widget methods are
deprecated since Airflow 3.2.

Refs: https://airflow.apache.org/docs/apache-airflow-providers/howto/create-custom-providers.html,
https://airflow.apache.org/docs/apache-airflow/stable/howto/connection.html
"""

from __future__ import annotations

import copy
from typing import Any

PACKAGE_NAME = "rankitpro-crm-sync"


def connection_type_entry(hook_cls: type) -> dict[str, Any]:
    """One ``connection-types`` item for ``hook_cls``."""
    entry: dict[str, Any] = {
        "connection-type": hook_cls.conn_type,
        "hook-class-name": f"{hook_cls.__module__}.{hook_cls.__qualname__}",
        "hook-name": hook_cls.hook_name,
    }
    fields = getattr(hook_cls, "conn_fields", None)
    if fields:
        entry["conn-fields"] = copy.deepcopy(fields)
    behaviour = getattr(hook_cls, "ui_field_behaviour", None)
    if behaviour:
        entry["ui-field-behaviour"] = {
            "hidden-fields": list(behaviour.get("hidden-fields", [])),
            "relabeling": dict(behaviour.get("relabeling", {})),
            "placeholders": dict(behaviour.get("placeholders", {})),
        }
    return entry


def get_provider_info() -> dict[str, Any]:
    """The dict Airflow's provider discovery expects (entry point ``apache_airflow_provider``)."""
    from crm_hooks.registry import HOOKS

    return {
        "package-name": PACKAGE_NAME,
        "name": "Rank It Pro CRM sync",
        "description": "Hooks that push Rank It Pro check-ins into CRMs: "
                       + ", ".join(sorted(HOOKS)) + ".",
        "connection-types": [connection_type_entry(cls) for cls in HOOKS.values()],
    }
