"""Airflow provider metadata, so the CRM connection types appear in Airflow.

Airflow discovers providers through the ``apache_airflow_provider`` entry point of an
installed distribution (``pyproject.toml``) and validates the returned dict against
``airflow/provider_info.schema.json``; ``package-name`` must equal the distribution name.
Form fields are declared the declarative way (``conn-fields`` / ``ui-field-behaviour``):
hook widget methods are deprecated since Airflow 3.2.

Airflow calls this while it initialises, so it must not import the hooks (they import
Airflow). Each CRM's entry is static data in ``connection_types/<crm>.json`` beside its
hook module; ``tests/test_hook_base.py`` checks every entry against its hook class.

Refs: https://airflow.apache.org/docs/apache-airflow-providers/howto/create-custom-providers.html
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PACKAGE_NAME = "rankitpro-crm-sync"
CONNECTION_TYPES_DIR = Path(__file__).with_name("connection_types")


def connection_types() -> list[dict[str, Any]]:
    """One ``connection-types`` item per CRM, in name order."""
    return [json.loads(p.read_text()) for p in sorted(CONNECTION_TYPES_DIR.glob("*.json"))]


def get_provider_info() -> dict[str, Any]:
    """The dict Airflow's provider discovery expects (entry point ``apache_airflow_provider``)."""
    types = connection_types()
    return {
        "package-name": PACKAGE_NAME,
        "name": "Rank It Pro CRM sync",
        "description": "Hooks that push Rank It Pro check-ins into CRMs: "
        + ", ".join(e["hook-name"] for e in types)
        + ".",
        "connection-types": types,
    }
