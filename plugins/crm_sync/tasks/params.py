"""Trigger-form params that several DAGs share, so each reads and validates the same everywhere.

The README's params tables quote these descriptions word for word (``tests/test_distributed.py``
compares them with each DAG's form).
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import Param

from crm_hooks.registry import HOOKS

ALL_ACTIVE_COMPANIES = "Only these companies (empty: every company with an active integration)."


def company_ids(description: str = ALL_ACTIVE_COMPANIES) -> Param:
    """``company_ids``: an optional list of company ids."""
    return Param([], type="array", items={"type": "integer"}, title="Company ids", description=description)


def crm_types(description: str = "Only these CRM types (empty: all).", choices: Sequence[str] | None = None) -> Param:
    """``crm_types``: an optional multi-select of CRM types (default: the hooks registered)."""
    options = list(choices if choices is not None else HOOKS)
    return Param(
        [],
        type="array",
        items={"type": "string", "enum": options},
        examples=options,
        title="CRM types",
        description=description,
    )


def rate_share(
    default: float = 1.0, description: str = "Share of each CRM's documented rate limit this run may use."
) -> Param:
    """``rate_share``: the share of a CRM's documented rate limit a run may use."""
    return Param(default, type="number", minimum=0.05, maximum=1.0, title="Rate-limit share", description=description)


def day(title: str, description: str) -> Param:
    """An optional calendar day (``YYYY-MM-DD``), e.g. ``date_from`` / ``date_to``."""
    return Param(None, type=["null", "string"], format="date", title=title, description=description)
