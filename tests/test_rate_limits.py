"""429s, Retry-After, vendor window headers and the adaptive (AIMD) limiter (issue #11 sections 1 and 2).

Pure rules first (no network), then the real engine against the sandbox over HTTP and a real PostgreSQL:
a 429 with ``Retry-After: 1`` costs about a second, not a window; the learned rate is kept per CRM account
across runs; an admin-set limit caps it. Waits are read from the recorded sleeps, never the wall clock.
"""

from __future__ import annotations

import math
import random
import types
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses
import sqlalchemy as sa
import tenacity

from crm_cases import all_cases
from crm_hooks import rate_limit
from crm_hooks.base import CrmHook, backoff_wait, parse_retry_after, retry_after_wait
from crm_hooks.errors import RateLimitedError
from crm_hooks.hubspot import HubSpotHook
from crm_hooks.rate_limit import (
    RateLimit,
    RollingWindowLimiter,
    hubspot_window_exhausted,
    jobber_window_exhausted,
    salesforce_usage,
)
from crm_sync import rate_state
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from e2e_helpers import recent
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

CASES = {c.crm_type: c for c in all_cases()}


# ============================================================================ Retry-After and backoff (pure)
def test_retry_after_in_seconds():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("") is None and parse_retry_after(None) is None
    assert parse_retry_after("soon") is None and parse_retry_after("nan") is None


def test_retry_after_as_an_http_date():
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)  # "Sun, 06 Dec 2026 12:00:42 GMT"
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(42.0)
    past = format_datetime(now - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(past, now=now.timestamp()) == 0.0


@pytest.mark.parametrize(("asked", "most"), [(1.0, 1.1), (7.0, 7.7), (100.0, 101.0)])
def test_retry_after_jitter_is_on_top_and_bounded(asked, most):
    assert retry_after_wait(asked, rand=lambda: 0.0) == asked  # never less than the vendor asked
    assert retry_after_wait(asked, rand=lambda: 0.999999) == pytest.approx(most, abs=1e-4)  # 10%, at most 1 s
    assert all(asked <= retry_after_wait(asked) <= most for _ in range(200))


def _state(attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


def test_backoff_without_retry_after_is_exponential_from_a_small_base_and_capped():
    for attempt, low in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)):
        waits = [backoff_wait(_state(attempt), 0.5, 30.0) for _ in range(100)]
        assert all(low <= w <= low + 0.5 for w in waits), (attempt, min(waits), max(waits))
    assert all(backoff_wait(_state(12), 0.5, 30.0) == 30.0 for _ in range(20))


class _Hook(CrmHook):
    crm_type = "demo"
    vendor_domains = ("example-crm.com",)
    default_base_url = "https://api.example-crm.com"
    backoff_seconds = 0.25
    rate_limits = {"default": RateLimit(None)}

    def auth_headers(self):
        return {}


def test_hook_429_without_retry_after_backs_off_and_with_one_waits_it(sleeps):
    url = "https://api.example-crm.com/items"
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, url, status=429)
        rsps.add(responses.GET, url, status=429)
        rsps.add(responses.GET, url, status=429, headers={"Retry-After": "2"})
        rsps.add(responses.GET, url, json={})
        _Hook(credentials={"k": "v"}).request("GET", "/items")
    assert len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 0.75  # exponential from 0.25 s, with jitter
    assert sleeps[2] == 2.0


def test_hook_retry_after_above_the_cap_fails_the_call_instead_of_sleeping(sleeps):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, "https://api.example-crm.com/items", status=429, headers={"Retry-After": "121"})
        with pytest.raises(RateLimitedError):
            _Hook(credentials={"k": "v"}).request("GET", "/items")
    assert sleeps == []


# ============================================================================ what each vendor says about its window
def test_hubspot_headers_decide_window_exhausted():
    full = {"X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
    assert hubspot_window_exhausted(full) == 10.0
    assert hubspot_window_exhausted({"X-HubSpot-RateLimit-Remaining": "0"}) == 10.0  # interval missing: 10 s
    assert hubspot_window_exhausted({**full, "X-HubSpot-RateLimit-Remaining": "12"}) is None
    assert hubspot_window_exhausted({"X-HubSpot-RateLimit-Daily-Remaining": "0"}) is None  # a quota, not a window
    assert hubspot_window_exhausted({}) is None  # a bare 429 is not a whole window


def test_hubspot_hook_drains_only_when_its_headers_say_so(sleeps, monkeypatch):
    clock = types.SimpleNamespace(now=1000.0, sleeps=[])
    clock.monotonic = lambda: clock.now
    clock.sleep = lambda s: (clock.sleeps.append(s), setattr(clock, "now", clock.now + s))
    monkeypatch.setattr(rate_limit, "time", clock)
    url = "https://api.hubapi.com/crm/v3/objects/contacts/1"
    exhausted = {"X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
    body = {"status": "error", "category": "RATE_LIMITS", "policyName": "TEN_SECONDLY_ROLLING"}
    for headers, window_waited in (({"Retry-After": "1"}, False), ({**exhausted, "Retry-After": "1"}, True)):
        clock.sleeps.clear()
        hook = HubSpotHook(credentials={"accessToken": "pat-na1-x"}, account_key=f"hs-{window_waited}")
        with responses.RequestsMock() as rsps:
            rsps.add(responses.GET, url, status=429, headers=headers, json=body)
            rsps.add(responses.GET, url, json={"id": "1"})
            hook.request("GET", "/crm/v3/objects/contacts/1")
        assert (sum(clock.sleeps) > 10.0) is window_waited, clock.sleeps
        assert (hook.limiter().decreases == 1) is window_waited  # an exhausted window also lowers the rate


def test_jobber_throttle_status_decides_window_exhausted():
    def body(available, requested=100, restore=500):
        status = {"maximumAvailable": 10000, "currentlyAvailable": available, "restoreRate": restore}
        return {"extensions": {"cost": {"requestedQueryCost": requested, "throttleStatus": status}}}

    assert jobber_window_exhausted(body(0, 1000)) == 2.0  # (1000 - 0) / 500 points per second
    assert jobber_window_exhausted(body(5000)) is None
    assert jobber_window_exhausted(body(0, restore=0)) is None
    assert jobber_window_exhausted({"errors": [{"message": "Too many requests"}]}) is None
    assert jobber_window_exhausted(None) is None


def test_salesforce_limit_info():
    assert salesforce_usage({"Sforce-Limit-Info": "api-usage=10018/100000"}) == (10018, 100000)
    assert salesforce_usage({"Sforce-Limit-Info": "api-usage=5/15000; api-bursts=1/750"}) == (5, 15000)
    assert salesforce_usage({}) is None


# ============================================================================ the adaptive limiter (pure, fake clock)
@pytest.fixture
def clock(monkeypatch):
    clock = types.SimpleNamespace(now=1000.0)
    clock.monotonic = lambda: clock.now
    clock.sleep = lambda s: setattr(clock, "now", clock.now + s)
    monkeypatch.setattr(rate_limit, "time", clock)
    return clock


def test_an_isolated_429_lowers_nothing(clock):
    limiter = RollingWindowLimiter(RateLimit(100, 10.0))
    for i in range(40):
        limiter.acquire()
        limiter.rate_limited(1.0) if i % 20 == 0 else limiter.succeeded()  # 5% transient faults
    assert limiter.current == 100 and limiter.decreases == 0 and limiter.learned_rate is None


def test_a_cluster_of_429s_is_a_multiplicative_decrease(clock):
    limiter = RollingWindowLimiter(RateLimit(100, 10.0))
    for _ in range(5):
        limiter.acquire()
        assert limiter.rate_limited(1.0) is False
    limiter.acquire()
    assert limiter.rate_limited(1.0) is True  # 6 of the last 20 sends refused (published limit)
    assert limiter.current == pytest.approx(85.0)
    paced = RollingWindowLimiter(RateLimit(100, 10.0), paced=True)  # an unpublished limit: 5 are enough
    assert [paced.rate_limited(1.0) for _ in range(5)] == [False, False, False, False, True]


def test_random_faults_are_not_mistaken_for_a_lower_limit(clock):
    """3% of answers 429 at random (the benchmark's faults profile) over 5,000 sends: the rate stays."""
    rng = random.Random(11)
    paced = RollingWindowLimiter(RateLimit(100, 10.0), paced=True)
    for _ in range(5000):
        paced.acquire()
        paced.rate_limited(1.0) if rng.random() < 0.03 else paced.succeeded()
    assert paced.decreases <= 1 and paced.current >= 95


def test_a_limit_half_of_ours_is_seen_within_ten_sends(clock):
    paced = RollingWindowLimiter(RateLimit(120, 60.0), paced=True)
    for n in range(10):
        paced.acquire()
        paced.rate_limited(1.0) if n % 2 else paced.succeeded()  # every other send refused
    assert paced.decreases == 1 and paced.current == pytest.approx(120 * paced.DECREASE)


def test_a_long_retry_after_is_a_decrease_to_what_the_vendor_accepted(clock):
    limiter = RollingWindowLimiter(RateLimit(120, 60.0), paced=True)
    for _ in range(130):
        limiter.acquire()
        limiter.succeeded()
    clock.now += 40.0  # then the vendor let few calls through: its window is full for another 30 s
    assert limiter.rate_limited(30.0) is True
    accepted = sum(1 for t in limiter._calls if t > clock.now - limiter.window) - 1
    assert limiter.current == pytest.approx(accepted * limiter.ACCEPTED_SHARE)
    assert limiter.current < 120 * limiter.DECREASE


def test_additive_increase_while_clean_never_above_the_ceiling(clock):
    limiter = RollingWindowLimiter(RateLimit(60, 60.0))
    limiter.start_from(0.5)  # 30 per minute learned earlier: the account's limit is about there
    assert limiter.current == 30
    limiter.succeeded()
    assert limiter.current == pytest.approx(30 + 0.1 / 30)  # probing: a tenth of a call per window
    limiter.refused_at = None  # (nothing refused: the climb proper)
    limiter.current = 30
    limiter.succeeded()
    assert limiter.current == pytest.approx(30 + 1 / 30)  # one more call per window of clean answers
    for _ in range(30 * 30):
        limiter.succeeded()
    assert 45 < limiter.current < 60
    for _ in range(5000):
        limiter.succeeded()
    assert limiter.current == 60 and limiter.learned_rate is None  # back at the ceiling: nothing to keep
    limiter.start_from(5.0)  # a learned rate above the ceiling (the admin lowered it since)
    assert limiter.current == 60


def test_near_the_rate_last_refused_the_increase_only_probes(clock):
    limiter = RollingWindowLimiter(RateLimit(120, 60.0), paced=True)
    limiter.current = 60.0
    for _ in range(5):
        limiter.rate_limited(1.0)  # a cluster: the account allows about 60 a minute
    assert limiter.refused_at == 60.0 and limiter.current == pytest.approx(51.0)
    answers = 0
    while limiter.current < 0.95 * 60:  # back up at full speed (one call per window's worth) to 95% of 60
        limiter.succeeded()
        answers += 1
    assert answers < 57 * 7
    before = limiter.current
    for _ in range(57 * 5):  # five more windows: a tenth of the climb, still below the refused rate
        limiter.succeeded()
    assert before + 0.3 < limiter.current < before + 1.0 < 60.0


def test_a_refusal_above_the_held_rate_goes_back_to_it_without_lowering_it(clock):
    limiter = RollingWindowLimiter(RateLimit(120, 60.0), paced=True)
    limiter.start_from(1.0)  # 60 a minute held last run
    assert limiter.hold == pytest.approx(60.0) and limiter.learned_rate == pytest.approx(1.0)
    for _ in range(60 * 20):  # twenty clean windows: probing above the held rate, slowly
        limiter.succeeded()
    probed = limiter.current
    assert 61.0 < probed < 63.0 and limiter.learned_rate == pytest.approx(1.0)  # the probe is not kept
    assert limiter.rate_limited(1.0) is True  # one refusal up there: the probe went too far
    assert limiter.current == pytest.approx(60.0) and limiter.hold == pytest.approx(60.0)
    assert limiter.rate_limited(1.0) is False  # at the held rate, a lone 429 is a fault: nothing lowered
    assert limiter.current == pytest.approx(60.0) and limiter.decreases == 1


def test_a_long_wait_takes_the_limit_from_what_the_vendor_accepted(clock):
    limiter = RollingWindowLimiter(RateLimit(120, 60.0), paced=True)
    for _ in range(200):  # paced at 120 a window: the vendor accepted 40 of the calls of the last window
        limiter.acquire()
        limiter.succeeded()
    accepted = sum(1 for t in limiter._calls if t > clock.now - limiter.window)
    assert limiter.rate_limited(30.0) is True
    assert limiter.refused_at == pytest.approx(accepted - 1)  # the one refused does not count
    assert limiter.hold == pytest.approx(limiter.PROBE_SHARE * (accepted - 1))


def _hidden_limit_run(clock, limiter: RollingWindowLimiter, allowed: int, period: float, sends: int):
    """``sends`` calls one after another against a vendor that allows ``allowed`` per rolling ``period``
    (Retry-After: until its oldest call leaves the window, as the sandbox's Housecall Pro); returns refusals."""
    vendor: list[float] = []
    refused = 0
    for _ in range(sends):
        limiter.acquire()
        vendor[:] = [t for t in vendor if t > clock.now - period]
        if len(vendor) >= allowed:
            refused += 1
            wait = max(1.0, math.ceil(vendor[0] + period - clock.now))
            limiter.rate_limited(wait)
            clock.now += wait
        else:
            vendor.append(clock.now)
            limiter.succeeded()
        clock.now += 0.1
    return refused


def test_a_hidden_limit_is_found_then_held_with_rare_refusals(clock):
    """Housecall Pro at 60 a minute, our default 120: before the hold, the rate climbed back above the
    limit after each decrease and drew a 429 every few seconds (5.78% of calls over a 1,200-row run)."""
    limiter = RollingWindowLimiter(RateLimit(120, 60.0), paced=True)
    started = clock.now
    refused = _hidden_limit_run(clock, limiter, allowed=60, period=60.0, sends=5000)
    minutes = (clock.now - started) / 60
    assert refused / 5000 < 0.01
    assert 5000 / minutes >= 0.85 * 60  # at least 85% of what the vendor allows
    assert limiter.current <= 60 * 1.05  # never far above it


def test_an_unpublished_limit_is_paced_evenly(clock):
    limiter = RollingWindowLimiter(RateLimit(10, 1.0), paced=True)
    starts = []
    for _ in range(5):
        limiter.acquire()
        starts.append(clock.now - 1000.0)
    gap = limiter.window / 10
    assert starts == pytest.approx([0.0, gap, 2 * gap, 3 * gap, 4 * gap])  # no burst of 10 at once


# ============================================================================ engine + sandbox
def _company(db, sandbox, crm: str, n: int, *, settings: dict | None = None, **limits):
    case = CASES[crm]
    body = {"crm": crm, "account": case.account, "credentials": case.sandbox_credentials, "limits": limits}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    integration = case.integration(sandbox.url)
    if settings:
        integration["crmSettings"] = {**integration.get("crmSettings", {}), **settings}
    company_id, tech = create_company(db, f"{crm} limits {n}", {crm: integration})
    insert_check_ins(db, iter(check_in_rows(company_id, tech, n, messy=False, start=recent(), repeat_share=0.3)))
    return company_id


def _sync(db, crm: str, company_id: int, run_id: str):
    integration = load_integration(db, company_id, crm)
    return IntegrationSync(
        db, company_id=company_id, crm_type=crm, integration=integration, run_id=run_id, options=SyncOptions()
    ).run()


def _fault(sandbox, **fault) -> None:
    requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5).raise_for_status()


@pytest.mark.parametrize("crm", ["housecallpro", "fieldedge"])
def test_a_429_with_retry_after_1_costs_a_second_not_a_window(db, sandbox, crm, sleeps, instant_rate_limits):
    """Before: every 429 drained the limiter (Housecall Pro ~60 s each, FieldEdge ~10 s)."""
    company_id = _company(db, sandbox, crm, 6)
    _fault(sandbox, crm=crm, status=429, count=3, retry_after=1)
    started = instant_rate_limits.now
    result = _sync(db, crm, company_id, "r1")
    assert result.status == "success", result.error
    assert result.rate_limited == 3
    assert sorted(sleeps)[-3:] == [1.0, 1.0, 1.0] and sum(sleeps) < 3.5  # each 429 cost its second
    window = {"housecallpro": 60.0, "fieldedge": 10.0}[crm]
    # The limiter's own waits are the even pace of the calls, well under one window (a drain per 429 was 3).
    assert instant_rate_limits.now - started < window


def _learned(db, company_id: int, crm: str) -> dict[str, float]:
    with db.connect() as conn:
        account = conn.execute(
            sa.text("SELECT crm_account FROM crm_sync.crm_accounts WHERE company_id = :c AND crm_type = :t"),
            {"c": company_id, "t": crm},
        ).scalar_one()
    return rate_state.load(db, company_id, crm, account)


def test_learned_rate_persists_across_runs_per_account(db, sandbox, sleeps, instant_rate_limits, monkeypatch):
    crm = "housecallpro"
    company_id = _company(db, sandbox, crm, 4, requests_per_minute=0)
    # The vendor's window is full for 30 s: the account allows fewer than our 120 / min.
    _fault(sandbox, crm=crm, status=429, count=1, retry_after=30)
    assert _sync(db, crm, company_id, "r1").status == "success"
    learned = _learned(db, company_id, crm)
    assert set(learned) == {"default"} and learned["default"] < 120 / 60 * RollingWindowLimiter.DECREASE + 0.01

    # A new process (no limiter in memory) starts from the kept rate, not the default.
    monkeypatch.setattr(rate_limit, "_LIMITERS", {})
    more = check_in_rows(company_id, _technician(db, company_id), 3, messy=False, start=recent(), seed=11)
    insert_check_ins(db, iter(more))
    assert _sync(db, crm, company_id, "r2").status == "success"
    (limiter,) = rate_limit._LIMITERS.values()
    assert learned["default"] * 60 <= limiter.current < learned["default"] * 60 + 1  # + a few clean answers
    # What is kept is the rate held, not the probe above it (a run must not start the next one mid-probe).
    assert _learned(db, company_id, crm)["default"] == pytest.approx(learned["default"])
    assert limiter.learned_rate == pytest.approx(learned["default"])
    # Another company's account has nothing learned: it starts from the default.
    with db.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM crm_sync.learned_rate_limits")).scalar_one()
    assert rows == 1


def _technician(db, company_id: int) -> int:
    with db.connect() as conn:
        return conn.execute(
            sa.text("SELECT technician_id FROM check_ins WHERE company_id = :c LIMIT 1"), {"c": company_id}
        ).scalar_one()


def test_an_admin_limit_caps_the_learned_rate(db, sandbox, sleeps, instant_rate_limits, monkeypatch):
    crm = "housecallpro"
    company_id = _company(db, sandbox, crm, 3, settings={"requestsPerMinute": 30}, requests_per_minute=0)
    assert _sync(db, crm, company_id, "r1").status == "success"  # binds the account
    with db.connect() as conn:
        account = conn.execute(
            sa.text("SELECT crm_account FROM crm_sync.crm_accounts WHERE company_id = :c"), {"c": company_id}
        ).scalar_one()
    rate_state.save(db, company_id, crm, account, {"default": 1.5})  # 90 / min learned before the admin set 30
    monkeypatch.setattr(rate_limit, "_LIMITERS", {})
    more = check_in_rows(company_id, _technician(db, company_id), 2, messy=False, start=recent(), seed=13)
    insert_check_ins(db, iter(more))
    assert _sync(db, crm, company_id, "r2").status == "success"
    (limiter,) = rate_limit._LIMITERS.values()
    assert limiter.ceiling == 30 and limiter.current == 30  # the admin's limit, never the learned 90
    assert rate_state.load(db, company_id, crm, account) == {}  # at the ceiling: nothing below it to keep


# ============================================================================ HubSpot defaults (issue #11 section 2)
@pytest.mark.parametrize(
    ("credentials", "settings", "per_10s"),
    [
        ({"accessToken": "pat-na1-x"}, {}, 190),  # private app, tier not set: Professional/Enterprise
        ({"accessToken": "pat-na1-x"}, {"accountTier": "Starter"}, 100),
        ({"accessToken": "pat-na1-x"}, {"accountTier": "free"}, 100),
        ({"accessToken": "pat-na1-x"}, {"accountTier": "enterprise"}, 190),
        ({"accessToken": "pat-na1-x"}, {"accountTier": "api_limit_increase"}, 250),
        ({"accessToken": "pat-na1-x"}, {"accountTier": "starter", "rateLimitPer10s": 50}, 50),  # the admin's
        ({"refreshToken": "r", "clientId": "c", "clientSecret": "s"}, {}, 110),  # public OAuth app, any tier
        ({"refreshToken": "r", "clientId": "c", "clientSecret": "s"}, {"accountTier": "enterprise"}, 110),
        ({"refreshToken": "r", "clientId": "c", "clientSecret": "s"}, {"rateLimitPer10s": 80}, 80),
    ],
)
def test_hubspot_default_limit_by_credential_type_and_tier(credentials, settings, per_10s):
    hook = HubSpotHook(credentials=credentials, settings=settings)
    assert hook.rate_limits == {"default": RateLimit(per_10s, 10.0), "search": RateLimit(5, 1.0)}
    assert hook.setting_warnings == []


def test_hubspot_unknown_tier_is_a_warning_and_the_default():
    hook = HubSpotHook(credentials={"accessToken": "pat-na1-x"}, settings={"accountTier": "platinum"})
    assert hook.rate_limits["default"] == RateLimit(190, 10.0)
    assert len(hook.setting_warnings) == 1 and "crmSettings.accountTier" in hook.setting_warnings[0]
