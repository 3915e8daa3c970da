"""The CRM lists come from the hook registry: a new hook module needs no edit to settings, history or report.

A hook class carries its ``display_name`` and ``report_colour``; the app's own list of CRM types
(``settings.KNOWN_CRM_TYPES``) only decides between "unknown" and "not supported yet" for a type
no hook serves.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from crm_hooks import registry
from crm_hooks.base import CrmHook
from crm_sync.export import resolve_params
from crm_sync.history import history_entry
from crm_sync.integrations import check_integration
from crm_sync.reconcile import Reconciler
from crm_sync.report import line_chart
from crm_sync.settings import KNOWN_CRM_TYPES, known_crm_types


class ZohoHook(CrmHook):
    """A CRM the app does not know yet, added as one hook module."""

    crm_type = "zoho"
    display_name = "Zoho CRM"
    report_colour = "#e42527"


@pytest.fixture
def zoho(monkeypatch):
    monkeypatch.setitem(registry.HOOKS, "zoho", ZohoHook)


def test_every_registered_hook_names_itself_and_its_colour():
    for crm_type, hook in registry.HOOKS.items():
        assert hook.display_name and hook.report_colour.startswith("#"), crm_type
    assert registry.display_name("housecallpro") == "Housecall Pro"
    assert registry.display_name("zoho") == ""


def test_a_new_hook_module_is_accepted_without_editing_the_lists(zoho):
    assert check_integration("zoho", {"status": "active", "credentials": {"token": "t"}}) is None
    assert known_crm_types() == (*KNOWN_CRM_TYPES, "zoho")
    assert resolve_params({"crm_types": ["zoho"]}, run_date=date(2026, 3, 1)).crm_types == ("zoho",)

    entry = history_entry("zoho", None, synced=2, errors=0, at=datetime(2026, 3, 1, tzinfo=UTC))
    assert entry["crmName"] == "Zoho CRM"
    reconciler = Reconciler(
        None,
        company_id=1,
        crm_type="zoho",
        integration={},
        destination=None,
        run_id="r",
        dag_id=None,
        range_start=date(2026, 3, 1),
        range_end=date(2026, 3, 1),
    )
    assert reconciler.crm_name == "Zoho CRM"

    assert registry.report_colours()["zoho"] == "#e42527"
    chart = line_chart(
        "t", [date(2026, 3, 1)], {"zoho": {date(2026, 3, 1): 1.0}}, y_format=str, colours=registry.report_colours()
    )
    assert "#e42527" in chart


def test_unknown_and_not_yet_supported_types_stay_apart(monkeypatch):
    assert check_integration("zoho", {"credentials": {"token": "t"}}) == "unknown CRM type 'zoho'"
    monkeypatch.delitem(registry.HOOKS, "fieldedge")
    assert check_integration("fieldedge", {"credentials": {"apiKey": "k"}}) == (
        "CRM type 'fieldedge' is not supported by this version of the sync yet"
    )
