"""Typed ``crmSettings`` (:mod:`crm_hooks.crm_settings`): the reader, and ``hook.crm_settings`` per CRM."""

from __future__ import annotations

import pytest

from crm_hooks.crm_settings import SettingsReader
from crm_hooks.hubspot import HubSpotSettings
from crm_hooks.rate_limit import RateLimit
from crm_hooks.registry import HOOKS
from crm_hooks.salesforce import SalesforceSettings


@pytest.mark.parametrize("raw", [0.0001, "1e999", "fast", True, float("nan"), -1])
def test_number_out_of_range_is_the_default_with_one_warning(raw):
    reader = SettingsReader({"perMinute": raw})
    assert reader.number("perMinute", default=120.0, minimum=1, maximum=600) == 120.0
    assert list(reader.warnings) == ["perMinute"]
    assert reader.warnings["perMinute"].startswith("crmSettings.perMinute must be a number from 1 to 600, got ")
    assert reader.warnings["perMinute"].endswith("default 120 used")


def test_number_in_range_missing_or_blank_warns_nothing():
    reader = SettingsReader({"a": "30", "b": " "})
    assert reader.number("a", default=1.0, minimum=1, maximum=60) == 30.0
    assert reader.number("b", default=None, minimum=1, maximum=60) is None
    assert reader.number("missing", default=5.0, minimum=1, maximum=60) == 5.0
    assert reader.warnings == {}


def test_present_text_and_lenient_float():
    reader = SettingsReader({"id": 42, "blank": "", "name": "  x ", "secs": "bad", "zero": 0})
    assert reader.present("id") == "42" and reader.present("blank") is None and reader.present("zero") is None
    assert reader.text("name") == "x" and reader.text("blank", "d") == "d"
    assert reader.lenient_float("secs", 3600.0) == 3600.0 and reader.lenient_float("zero", 9.0) == 9.0


def test_every_hook_has_its_own_typed_settings():
    for crm_type, cls in HOOKS.items():
        settings = cls(credentials={"apiKey": "k"}).crm_settings
        assert type(settings) is cls.settings_class and cls.settings_class.__name__.endswith("Settings"), crm_type


def test_hook_settings_are_built_once_and_rebuilt_when_the_raw_values_change():
    hook = HOOKS["salesforce"](credentials={"clientId": "c"}, settings={"dailyBudgetShare": 0.5})
    first = hook.crm_settings
    assert isinstance(first, SalesforceSettings) and first.daily_budget_share == 0.5
    assert hook.crm_settings is first
    hook.settings["dailyBudgetShare"] = 0.95
    assert hook.crm_settings.daily_budget_share == 0.95


def test_rate_limits_come_from_the_typed_settings_and_warnings_are_kept():
    hook = HOOKS["hubspot"](credentials={"accessToken": "t"}, settings={"rateLimitPer10s": 999})
    assert isinstance(hook.crm_settings, HubSpotSettings) and hook.crm_settings.rate_limit_per_10s == 190.0
    assert hook.rate_limits == {"default": RateLimit(190.0, 10.0), "search": RateLimit(5, 1.0)}
    assert len(hook.setting_warnings) == 1 and "crmSettings.rateLimitPer10s" in hook.setting_warnings[0]
