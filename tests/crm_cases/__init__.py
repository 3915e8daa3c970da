"""One :class:`CrmCase` per CRM, collected from the modules of this package.

A new CRM adds ``tests/crm_cases/<crm>.py`` defining ``CASE``; the conformance suite
(``tests/test_conformance.py``) then runs every check against it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CrmCase:
    """How to drive one CRM through the sandbox."""

    crm_type: str
    #: sandbox account name and the credentials registered for it
    account: str
    sandbox_credentials: dict[str, Any]
    #: sandbox_url -> the integration object as the app stores it (credentials point at the sandbox)
    integration: Callable[[str], dict[str, Any]]
    #: sandbox_url -> the same integration with a wrong secret
    bad_integration: Callable[[str], dict[str, Any]]
    #: the sandbox object that holds visit records, and how to read the sync's marker from one
    visit_object: str
    visit_marker: Callable[[dict[str, Any]], str | None]
    #: the sandbox object that holds customers
    customer_object: str
    #: every secret value in the integration (must never appear anywhere)
    secrets: tuple[str, ...]
    #: sandbox account limits that make issued tokens expire quickly; None: the key never expires
    short_token_limits: dict[str, Any] | None = None
    #: extra sandbox account options (e.g. settings a CRM needs)
    sandbox_options: dict[str, Any] = field(default_factory=dict)
    #: the URL override key in credentials used by the allowed-hosts check
    base_url_key: str = "baseUrl"
    #: (sandbox_url, first name, last name, phone as typed) -> CRM id: a customer seeded straight into the
    #: sandbox (admin route), as if typed into the CRM before the sync; None: the CRM cannot list customers
    seed_customer: Callable[[str, str, str, str], str] | None = None
    #: (sandbox_url, first name, last name, phone as typed, email or None) -> (CRM id, parent id or None): a
    #: customer seeded straight into the sandbox, one of the two candidate records of a returning customer
    #: in the kill tests (the parent is where the sync puts its visits: Account, location)
    seed_candidate: Callable[[str, str, str, str, str | None], tuple[str, str | None]] | None = None
    #: The hook calls of a new-customer-plus-visit sequence, in order (``method`` or ``method:first argument``):
    #: the kill tests let each one reach the CRM and then kill the worker (customer, address / location /
    #: property, visit, the step after it).
    kill_points: tuple[str, ...] = ()
    #: A visit record (sandbox shape) has every step done (e.g. a Jobber job closed); None: one step only
    visit_finished: Callable[[dict[str, Any]], bool] | None = None
    #: The id of the customer a visit record (sandbox shape) is attached to
    visit_customer: Callable[[dict[str, Any]], str | None] = lambda record: None


def seed_record(sandbox_url: str, crm: str, account: str, obj: str, body: dict[str, Any]) -> dict[str, Any]:
    """One record straight into a sandbox account (admin route: no vendor validation, no API call counted)."""
    import requests

    resp = requests.post(f"{sandbox_url}/_sandbox/records/{crm}/{account}/{obj}", json=body, timeout=10)
    resp.raise_for_status()
    return resp.json()


def all_cases() -> list[CrmCase]:
    cases = []
    for module in pkgutil.iter_modules(__path__):
        cases.append(importlib.import_module(f"{__name__}.{module.name}").CASE)
    return sorted(cases, key=lambda c: c.crm_type)
