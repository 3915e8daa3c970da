"""Typed ``crmSettings`` (:mod:`crm_hooks.crm_settings`): the reader, and ``hook.crm_settings`` per CRM."""

from __future__ import annotations

import pytest

from crm_hooks.crm_settings import SettingsReader
from crm_hooks.errors import ConfigurationError
from crm_hooks.hubspot import HubSpotSettings
from crm_hooks.rate_limit import RateLimit
from crm_hooks.registry import HOOKS
from crm_hooks.salesforce import SalesforceSettings
from crm_hooks.servicetitan import JobDefaults, JobSettings


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


# ---------------------------------------------------------------------- the reader's integer, flag and refuse
def test_integer_falls_back_with_a_warning_or_clamps():
    reader = SettingsReader({"a": "90", "b": "ninety", "c": -5, "d": 0, "e": 150, "f": "1e999"})
    assert reader.integer("a", default=60, minimum=1) == 90
    assert reader.integer("d", default=60, minimum=1) == 60 and reader.warnings == {}  # 0 is "not set"
    assert reader.integer("b", default=60, minimum=1) == 60
    assert reader.integer("c", default=60, minimum=1) == 60
    assert reader.integer("f", default=60, minimum=1) == 60
    assert sorted(reader.warnings) == ["b", "c", "f"]
    assert reader.warnings["c"] == "crmSettings.c must be a whole number of at least 1, got -5: default 60 used"
    assert reader.integer("c", default=25, minimum=1, maximum=100, clamp=True) == 1
    assert reader.integer("e", default=25, minimum=1, maximum=100, clamp=True) == 100


def test_flag_reads_switch_words():
    reader = SettingsReader({"off": "No", "on": "yes", "zero": 0, "blank": ""})
    assert reader.flag("off", default=True) is False and reader.flag("on", default=False) is True
    assert reader.flag("zero", default=True) is False and reader.flag("blank", default=True) is True
    assert reader.flag("missing", default=True) is True


def test_a_refused_value_is_raised_only_where_it_is_required():
    hook = HOOKS["fieldedge"](credentials={"clientId": "c"}, settings={"timezone": "Mars/Olympus"})
    settings = hook.crm_settings  # building the settings does not raise
    settings.require("leadSource")
    with pytest.raises(ConfigurationError, match="crmSettings.timezone 'Mars/Olympus' is not an IANA time zone"):
        settings.require("timezone")


# ---------------------------------------------------------------------- the destinations' settings, per CRM
def settings_of(crm_type: str, raw: dict):
    hook = HOOKS[crm_type](credentials={"apiKey": "k"}, settings=raw)
    return hook.crm_settings, hook.setting_warnings


def test_housecallpro_destination_settings():
    defaults, warnings = settings_of("housecallpro", {})
    assert (defaults.tag, defaults.notify_customers, defaults.default_country) == ("Rank It Pro", False, "US")
    assert (defaults.schedule_jobs, defaults.job_duration_minutes, defaults.schedule_minutes) == (False, 60, None)
    assert warnings == []
    set_, _ = settings_of("housecallpro", {"tag": "RIP", "scheduleJobs": True, "jobDurationMinutes": "90"})
    assert set_.tag == "RIP" and set_.schedule_minutes == 90
    bad, warnings = settings_of("housecallpro", {"scheduleJobs": True, "jobDurationMinutes": "an hour"})
    assert bad.schedule_minutes == 60
    assert warnings == [
        ("crmSettings.jobDurationMinutes must be a whole number of at least 1, got a str: default 60 used")
    ]


def test_housecallpro_switches_written_as_text_are_read_as_switches():
    """An admin form that stores "false" must not switch customer notifications on."""
    off, _ = settings_of("housecallpro", {"notifyCustomers": "false", "scheduleJobs": "no"})
    assert (off.notify_customers, off.schedule_jobs) == (False, False)
    on, _ = settings_of("housecallpro", {"notifyCustomers": "true", "scheduleJobs": True})
    assert (on.notify_customers, on.schedule_jobs) == (True, True)


def test_servicetitan_destination_settings():
    defaults, warnings = settings_of("servicetitan", {})
    assert (defaults.default_country, defaults.customer_type) == ("USA", "Residential")
    assert warnings == []
    # nothing set: every reference is discovered from the tenant at run start, priority Normal
    assert defaults.required_job_settings() == JobSettings({}, {}, "Normal")
    named, _ = settings_of("servicetitan", {"campaignName": " Rank It Pro ", "jobTypeId": "7"})
    assert named.required_job_settings() == JobSettings({"jobTypeId": 7}, {"campaignId": "Rank It Pro"}, "Normal")
    good, _ = settings_of(
        "servicetitan",
        {"businessUnitId": "1", "jobTypeId": 2, "campaignId": 3, "priority": "High", "customerType": "Commercial"},
    )
    assert good.required_job_settings().complete({}) == JobDefaults(1, 2, 3, "High")
    assert good.customer_type == "Commercial"
    bad, warnings = settings_of(
        "servicetitan",
        {"businessUnitId": 1, "jobTypeId": 2, "campaignId": 3, "priority": "High", "appointmentMinutes": 0},
    )
    assert warnings == []  # unusable job defaults are an error, and only where jobs need them
    with pytest.raises(ConfigurationError, match="appointmentMinutes"):
        bad.required_job_settings()


def test_jobber_destination_settings():
    defaults, warnings = settings_of("jobber", {})
    assert (defaults.invoicing_type, defaults.invoicing_schedule, defaults.close_jobs) == ("FIXED_PRICE", "NEVER", True)
    assert defaults.aliases_per_request == 25 and warnings == []
    defaults.require("invoicingType", "invoicingSchedule")
    assert settings_of("jobber", {"closeJobs": "false"})[0].close_jobs is True  # only false turns it off
    assert settings_of("jobber", {"closeJobs": False})[0].close_jobs is False
    bad, warnings = settings_of("jobber", {"invoicingSchedule": "WEEKLY", "aliasesPerRequest": "many"})
    assert bad.invoicing_schedule == "NEVER" and bad.aliases_per_request == 25
    assert warnings == [
        ("crmSettings.aliasesPerRequest must be a whole number from 1 to 100, got a str: default 25 used")
    ]
    with pytest.raises(ConfigurationError, match="jobber: crmSettings.invoicingSchedule must be one of ON_COMPLETION"):
        bad.require("invoicingType", "invoicingSchedule")


def test_fieldedge_destination_settings():
    defaults, warnings = settings_of("fieldedge", {})
    assert (str(defaults.zone), defaults.lead_source, defaults.lead_lookup) == ("UTC", "rankitpro", True)
    assert warnings == []
    set_, _ = settings_of("fieldedge", {"timezone": "America/Chicago", "leadSource": "rip", "leadLookup": "off"})
    assert (str(set_.zone), set_.lead_source, set_.lead_lookup) == ("America/Chicago", "rip", False)
    bad, _ = settings_of("fieldedge", {"timezone": "Chicago"})
    assert str(bad.zone) == "UTC"
    with pytest.raises(ConfigurationError, match="fieldedge: crmSettings.timezone 'Chicago'"):
        bad.require("timezone")


def test_salesforce_destination_settings():
    defaults, warnings = settings_of("salesforce", {})
    assert (defaults.bulk_threshold, defaults.case_status, defaults.case_origin) == (2000, "Closed", None)
    assert warnings == []
    assert settings_of("salesforce", {"bulkThreshold": -3, "caseOrigin": "Web"})[0].bulk_threshold == 1
    bad, warnings = settings_of("salesforce", {"bulkThreshold": "lots"})
    assert bad.bulk_threshold == 2000
    assert warnings == ["crmSettings.bulkThreshold must be a whole number of at least 1, got a str: default 2000 used"]
