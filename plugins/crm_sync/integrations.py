"""Finding the integrations to sync in ``companies.crm_integrations``, the store of rotated credentials, and
the destination of one company's integration.

Discovery never lets one company's bad settings stop another's: malformed JSON,
an unknown CRM type or missing credentials become a :class:`ConfigProblem` with
a specific message, reported in the run summary, and the others go on.
Only ids and CRM types leave this module; credentials are re-read from the
database by the task that uses them, so they never travel through XCom.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from crm_hooks.errors import ConfigurationError
from crm_hooks.registry import HOOKS
from crm_sync.db import sql
from crm_sync.settings import KNOWN_CRM_TYPES, parse_integrations, parse_sync_settings

if TYPE_CHECKING:
    from crm_sync.destinations.base import Destination


@dataclass(frozen=True)
class WorkItem:
    company_id: int
    crm_type: str


@dataclass(frozen=True)
class ConfigProblem:
    company_id: int
    company_name: str
    crm_type: str | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_integration(crm_type: str, integration: Any) -> str | None:
    """Why this integration cannot be synced, or None when it can be attempted."""
    if crm_type not in HOOKS:
        if crm_type not in KNOWN_CRM_TYPES:
            return f"unknown CRM type '{crm_type[:40]}'"
        return f"CRM type '{crm_type}' is not supported by this version of the sync yet"
    if not isinstance(integration, Mapping):
        return f"the '{crm_type}' integration is not a JSON object"
    credentials = integration.get("credentials")
    if not isinstance(credentials, Mapping) or not any(v not in (None, "") for v in credentials.values()):
        return f"the '{crm_type}' integration has no credentials"
    return None


def discover(
    engine: Engine, crm_types: list[str] | None = None, company_ids: list[int] | None = None
) -> tuple[list[WorkItem], list[ConfigProblem]]:
    """Active integrations to sync, and the configuration problems found on the way."""
    items: list[WorkItem] = []
    problems: list[ConfigProblem] = []
    with engine.connect() as conn:
        rows = conn.execute(sql("active_companies")).all()
    for company_id, name, raw in rows:
        if company_ids and company_id not in company_ids:
            continue
        integrations, error = parse_integrations(raw)
        if error:
            problems.append(ConfigProblem(company_id, name, None, error))
            continue
        for crm_type, integration in integrations.items():
            if crm_types and crm_type not in crm_types:
                continue
            if isinstance(integration, Mapping) and integration.get("status") != "active":
                continue
            problem = check_integration(crm_type, integration)
            if problem:
                problems.append(ConfigProblem(company_id, name, crm_type, problem))
            else:
                items.append(WorkItem(company_id, crm_type))
    return items, problems


def load_integration(engine: Engine, company_id: int, crm_type: str) -> dict[str, Any]:
    """The current integration object of one company (credentials included; never log it)."""
    with engine.connect() as conn:
        raw = conn.execute(sql("company_integrations"), {"company_id": company_id}).scalar()
    integrations, error = parse_integrations(raw)
    if error:
        raise ConfigurationError(error)
    integration = integrations.get(crm_type)
    problem = check_integration(crm_type, integration)
    if problem:
        raise ConfigurationError(problem)
    return dict(integration)


def credentials_writer(engine: Engine, company_id: int, crm_type: str) -> Callable[[dict[str, Any]], None]:
    """The store of rotated credentials (e.g. Jobber's refresh token) of one company x CRM.

    The live pair is kept in the sync's own encrypted table, never written into
    ``crm_integrations``: the app saves that JSON from copies read earlier, which would
    bring back a refresh token the CRM has already invalidated (see :mod:`crm_sync.token_store`).
    """
    from crm_sync.token_store import TokenStore

    return TokenStore(engine, company_id, crm_type)


def company_destination(
    engine: Engine,
    company_id: int,
    crm_type: str,
    integration: Mapping[str, Any],
    *,
    rate_share: float = 1.0,
    max_attempts: int | None = None,
) -> Destination:
    """The destination of one company's integration: its hook built from the credentials, with the company's
    store of rotated credentials (:func:`credentials_writer`). The caller closes it.

    One destination serves a whole task (the first sync's customer index and the sync share its hook, so a
    token the index fetched or rotated is the one the sync uses).
    """
    from crm_sync.destinations import destination_for

    settings, _ = parse_sync_settings(integration.get("syncSettings"))
    return destination_for(
        crm_type,
        dict(integration),
        settings,
        rate_share=rate_share,
        max_attempts=max_attempts,
        credentials_writer=credentials_writer(engine, company_id, crm_type),
    )
