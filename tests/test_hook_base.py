"""The shared CrmHook machinery: retries, Retry-After, token refresh, hosts, secrets, limits, stats.

Also the registry and the Airflow provider info. No network: ``responses`` intercepts requests.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import airflow
import jsonschema
import pytest
import requests
import responses

from crm_hooks import rate_limit
from crm_hooks.base import CrmHook
from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    ConfigurationError,
    QuotaExhaustedError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.rate_limit import RateLimit, RollingWindowLimiter

BASE = "https://api.example-crm.com"
TOKEN_URL = f"{BASE}/oauth/token"
SECRET = "s3cr3t-client-secret-value"


class DemoHook(CrmHook):
    """A minimal OAuth hook: client secret -> token at TOKEN_URL; errors read by the base."""

    conn_type = "crm_demo"
    hook_name = "Demo"
    crm_type = "demo"
    vendor_domains = ("example-crm.com",)
    default_base_url = BASE
    secret_keys = ("clientSecret",)
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002
    rate_limits = {"default": RateLimit(None), "slow": RateLimit(2, 1.0)}
    tokens_issued = 0

    def fetch_token(self):
        body = self.request_json(
            "POST",
            f"{self.base_url}/oauth/token",
            authenticated=False,
            data={"client_secret": self.require("clientSecret")[0]},
        )
        return body["access_token"], body.get("expires_in", 3600)

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.access_token()}"}

    def classify_error(self, response):
        error = super().classify_error(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        code = body[0].get("errorCode") if isinstance(body, list) and body else None
        if code == "REQUEST_LIMIT_EXCEEDED":
            return QuotaExhaustedError(str(error), status=response.status_code, code=code)
        return error

    def check_access(self):
        self.request("GET", "/ping")
        return "ok"


def make_hook(**creds) -> DemoHook:
    credentials = {"clientSecret": SECRET, **creds}
    return DemoHook(credentials=credentials, account_key=f"test-{uuid.uuid4()}")


def token_ok(rsps, token="tok-1111"):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": token, "expires_in": 3600})


def calls_to(rsps, url):
    return [c for c in rsps.calls if c.request.url.split("?")[0] == url]


# ---------------------------------------------------------------------- retries
def test_429_retry_after_is_honoured(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=429, headers={"Retry-After": "7"}, json={})
    rsps.add(responses.GET, f"{BASE}/items", json={"ok": True})
    hook = make_hook()
    assert hook.request_json("GET", "/items") == {"ok": True}
    assert len(calls_to(rsps, f"{BASE}/items")) == 2
    assert len(sleeps) == 1 and 7.0 <= sleeps[0] <= 7.7  # what the server asked, plus at most 10% jitter
    assert hook.stats.rate_limited == 1 and hook.stats.retries == 1


def test_429_with_small_real_retry_after(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=429, headers={"Retry-After": "0.01"})
    rsps.add(responses.GET, f"{BASE}/items", json=[1])
    assert make_hook().request_json("GET", "/items") == [1]


def test_retry_after_longer_than_cap_fails_fast(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimitedError) as info:
        make_hook().request("GET", "/items")
    assert info.value.retry_after == 3600
    assert len(calls_to(rsps, f"{BASE}/items")) == 1


def test_5xx_then_success(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=503, json={"message": "busy"})
    rsps.add(responses.GET, f"{BASE}/items", status=500, json={"message": "oops"})
    rsps.add(responses.GET, f"{BASE}/items", json={"ok": 1})
    hook = make_hook()
    assert hook.request_json("GET", "/items") == {"ok": 1}
    assert hook.stats.server_errors == 2 and hook.stats.retries == 2
    assert len(sleeps) == 2 and all(s <= hook.backoff_max_seconds for s in sleeps)


def test_connection_error_is_retried(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", body=requests.ConnectionError("reset"))
    rsps.add(responses.GET, f"{BASE}/items", json={"ok": 1})
    assert make_hook().request_json("GET", "/items") == {"ok": 1}
    assert len(calls_to(rsps, f"{BASE}/items")) == 2


def test_exhausted_retries_raise_retryable_after_max_attempts(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=502, body="bad gateway")
    hook = DemoHook(credentials={"clientSecret": SECRET}, account_key=f"t-{uuid.uuid4()}", max_attempts=3)
    with pytest.raises(RetryableError) as info:
        hook.request("GET", "/items")
    assert info.value.status == 502
    assert len(calls_to(rsps, f"{BASE}/items")) == 3  # max_attempts is the number of attempts
    assert hook.stats.retries == 2


def test_bad_record_is_not_retried(rsps):
    token_ok(rsps)
    rsps.add(responses.POST, f"{BASE}/items", status=400, json={"message": "email invalid"})
    with pytest.raises(BadRecordError):
        make_hook().request("POST", "/items", json={})
    assert len(calls_to(rsps, f"{BASE}/items")) == 1


# ---------------------------------------------------------------------- auth
def test_401_refreshes_token_once_then_succeeds(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-old1", "expires_in": 3600})
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-new2", "expires_in": 3600})
    rsps.add(responses.GET, f"{BASE}/items", status=401, json={"message": "expired"})
    rsps.add(responses.GET, f"{BASE}/items", json={"ok": 1})
    hook = make_hook()
    assert hook.request_json("GET", "/items") == {"ok": 1}
    item_calls = calls_to(rsps, f"{BASE}/items")
    assert [c.request.headers["Authorization"] for c in item_calls] == ["Bearer tok-old1", "Bearer tok-new2"]
    assert hook.stats.token_refreshes == 2 and hook.stats.retries == 0


def test_a_401_for_a_token_already_replaced_keeps_the_new_one(rsps):
    """Calls take their token before waiting for a rate-limit slot: one still carrying the old token after
    another call's 401 replaced it must not throw the new one away (one fetch per refusal, not per call)."""
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-old1", "expires_in": 3600})
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-new2", "expires_in": 3600})
    hook = make_hook()
    stale = hook.auth_headers()  # a call waiting for its slot with the old token
    hook.invalidate_token(refused=hook.auth_headers())  # the first 401: replaced
    assert hook.auth_headers() == {"Authorization": "Bearer tok-new2"}
    hook.invalidate_token(refused=stale)  # the waiting call's 401 names the old token: nothing forgotten
    assert hook.auth_headers() == {"Authorization": "Bearer tok-new2"}
    assert len(calls_to(rsps, TOKEN_URL)) == 2
    hook.invalidate_token()  # no headers (the Test button, credential health): always forgotten
    hook.auth_headers()
    assert len(calls_to(rsps, TOKEN_URL)) == 3


def test_401_twice_is_bad_credentials(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=401, json={"message": "nope"})
    with pytest.raises(BadCredentialsError):
        make_hook().request("GET", "/items")
    assert len(calls_to(rsps, f"{BASE}/items")) == 2
    assert len(calls_to(rsps, TOKEN_URL)) == 2


def test_token_is_cached_between_calls(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", json={})
    hook = make_hook()
    for _ in range(3):
        hook.request("GET", "/items")
    assert len(calls_to(rsps, TOKEN_URL)) == 1


def test_quota_exhausted_is_never_retried(rsps, sleeps):
    token_ok(rsps)
    rsps.add(
        responses.GET,
        f"{BASE}/items",
        status=403,
        json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
    )
    with pytest.raises(QuotaExhaustedError):
        make_hook().request("GET", "/items")
    assert len(calls_to(rsps, f"{BASE}/items")) == 1
    assert sleeps == []


# ---------------------------------------------------------------------- hosts
def test_disallowed_override_host_refused_before_any_request(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*")
    hook = make_hook(baseUrl="https://collector.attacker.example/api")
    with pytest.raises(ConfigurationError, match="not listed in CRM_SYNC_ALLOWED_HOSTS"):
        hook.request("GET", "/items")
    assert len(rsps.calls) == 0
    ok, message = hook.test_connection()
    assert not ok and "CRM_SYNC_ALLOWED_HOSTS" in message and len(rsps.calls) == 0


def test_vendor_override_must_be_https(rsps):
    with pytest.raises(ConfigurationError, match="https"):
        make_hook(baseUrl="http://eu1.example-crm.com").request("GET", "/x")
    assert len(rsps.calls) == 0


def test_allowed_host_via_env(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "sandbox.internal:8443, 127.0.0.1:*")
    base = "https://sandbox.internal:8443/demo"
    rsps.add(responses.POST, f"{base}/oauth/token", json={"access_token": "tok-sbx1"})
    rsps.add(responses.GET, f"{base}/items", json={"ok": 1})
    assert make_hook(baseUrl=base + "/").request_json("GET", "/items") == {"ok": 1}


# ---------------------------------------------------------------------- secrets
def test_secrets_never_in_exception_text(rsps):
    token = "tok-super-secret-access-9876"
    token_ok(rsps, token)
    echo = {"message": f"invalid request, you sent Authorization: Bearer {token} and secret {SECRET}"}
    rsps.add(responses.POST, f"{BASE}/items", status=400, json=echo)
    with pytest.raises(BadRecordError) as info:
        make_hook().request("POST", "/items", json={})
    text = str(info.value) + repr(info.value.args)
    assert token not in text and SECRET not in text and "***" in text


def test_test_connection_reports_failure_without_secret(rsps):
    rsps.add(responses.POST, TOKEN_URL, status=401, json={"error": f"bad client secret {SECRET}"})
    ok, message = make_hook().test_connection()
    assert ok is False and SECRET not in message and "401" in message


# ---------------------------------------------------------------------- rate limits
class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_rolling_window_allows_the_limit_per_window_and_no_more(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    limiter = RollingWindowLimiter(RateLimit(2, 1.0))
    times = []
    for _ in range(7):
        limiter.acquire()
        times.append(clock.now - 1000.0)
    assert times == pytest.approx([0.0, 0.0, 1.01, 1.01, 2.02, 2.02, 3.03])  # the window plus 10 ms
    # Never more than 2 calls in any 1-second window (the vendor's rule), yet ~the full rate is used.
    assert all(sum(1 for t in times if start <= t < start + 1.0) <= 2 for start in times)
    limiter.drain()
    assert limiter.acquire() == pytest.approx(1.01)


def test_a_slot_in_flight_is_freed_a_window_after_its_answer(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    limiter = RollingWindowLimiter(RateLimit(2, 1.0))
    limiter.acquire(in_flight=True)
    limiter.acquire(in_flight=True)
    clock.now += 0.3  # both answers take 0.3 s
    limiter.release()
    limiter.release()
    assert limiter.acquire() == pytest.approx(1.01)  # from the answers, not the sends (0.71)


def test_every_slot_in_flight_waits_for_an_answer(monkeypatch):
    import threading

    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    limiter = RollingWindowLimiter(RateLimit(1, 1.0))
    limiter.acquire(in_flight=True)
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (limiter.acquire(), got.set()), daemon=True)
    waiter.start()
    assert not got.wait(0.3)  # no clock can tell when an answer comes: it waits for one
    clock.now += 0.2
    limiter.release()
    assert got.wait(5)
    assert clock.now == pytest.approx(1000.0 + 0.2 + 1.01)  # then a whole window from that answer


@pytest.mark.parametrize("in_flight", [True, False])
def test_the_vendor_never_counts_more_than_its_limit_whatever_the_latency(monkeypatch, in_flight):
    """A vendor that counts each call when it arrives, at a random point between our send and its answer (up to
    150 ms of it): stamped at the answer, no window of its sees a sixth call of 5 per second; stamped at the
    send, as before, it did (that margin was a guess)."""
    import random

    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    limiter = RollingWindowLimiter(RateLimit(5, 1.0))
    rng = random.Random(5)
    arrivals = []
    for _ in range(2000):
        limiter.acquire(in_flight=in_flight)
        latency = rng.uniform(0.0, 0.15)
        arrivals.append(clock.now + rng.uniform(0.0, latency))
        clock.now += latency
        if in_flight:
            limiter.release()
    arrivals.sort()
    crowded = sum(1 for i in range(len(arrivals) - 5) if arrivals[i + 5] - arrivals[i] < 1.0)
    assert (crowded == 0) is in_flight, crowded
    assert len(arrivals) / (clock.now - 1000.0) > 0.9 * 5  # yet ~the full rate is used


def test_unlimited_bucket_never_waits(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    limiter = RollingWindowLimiter(RateLimit(None))
    assert [limiter.acquire() for _ in range(50)] == [0.0] * 50


def test_hook_calls_are_spaced_by_their_named_bucket(rsps, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", json={})
    hook = make_hook()
    for _ in range(4):
        hook.request("GET", "/items", limit="slow")
    assert len(clock.sleeps) == 1  # calls 3 and 4 waited for the window (from the answers) to roll on
    assert hook.stats.waited_seconds == pytest.approx(1.01)
    for _ in range(4):
        hook.request("GET", "/items")  # the unlimited default bucket
    assert hook.stats.waited_seconds == pytest.approx(1.01)


def test_buckets_are_shared_per_account_and_scaled(monkeypatch):
    key = f"acct-{uuid.uuid4()}"
    a = rate_limit.limiter_for(key, "default", RateLimit(10, 1.0).scaled(0.5))
    b = rate_limit.limiter_for(key, "default", RateLimit(10, 1.0).scaled(0.5))
    assert a is b and a.capacity == 5
    assert rate_limit.limiter_for(key, "search", RateLimit(5, 1.0)) is not a


def test_429_waits_its_retry_after_not_a_window(rsps, monkeypatch, sleeps):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=429, headers={"Retry-After": "0"})
    rsps.add(responses.GET, f"{BASE}/items", json={})
    hook = make_hook()
    hook.request("GET", "/items", limit="slow")
    assert hook.stats.waited_seconds == 0.0  # the vendor did not say the window is exhausted


def test_429_the_vendor_calls_window_exhausted_drains_the_limiter(rsps, monkeypatch, sleeps):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit, "time", clock)
    monkeypatch.setattr(DemoHook, "window_exhausted", lambda self, response: 1.0)
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=429, headers={"Retry-After": "0"})
    rsps.add(responses.GET, f"{BASE}/items", json={})
    hook = make_hook()
    hook.request("GET", "/items", limit="slow")
    assert hook.stats.waited_seconds == pytest.approx(1.01)  # the retry waited a whole window
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 1.1  # and the error's wait became the vendor's


# ---------------------------------------------------------------------- stats
def test_call_stats_counting(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{BASE}/items", status=503)
    rsps.add(responses.GET, f"{BASE}/items", json={})
    rsps.add(responses.POST, f"{BASE}/notes", json={})
    hook = make_hook()
    hook.request("GET", "/items?x=1")
    hook.request("POST", "/notes", endpoint="create note")
    stats = hook.stats.as_dict()
    assert stats["api_calls"] == 4  # token + 2 GET + 1 POST
    assert stats["retries"] == 1 and stats["server_errors"] == 1 and stats["token_refreshes"] == 1
    assert hook.stats.by_endpoint["GET /items"] == 2
    assert hook.stats.by_endpoint["create note"] == 1


# ---------------------------------------------------------------------- registry, provider info
def test_registry():
    from crm_hooks.hubspot import HubSpotHook
    from crm_hooks.registry import HOOKS, hook_class
    from crm_hooks.salesforce import SalesforceHook

    assert HOOKS["hubspot"] is HubSpotHook and HOOKS["salesforce"] is SalesforceHook
    assert set(HOOKS) <= {"servicetitan", "housecallpro", "jobber", "fieldedge", "hubspot", "salesforce"}
    assert hook_class("salesforce") is SalesforceHook
    with pytest.raises(ConfigurationError, match="unknown CRM type 'zoho'"):
        hook_class("zoho")


def _schema(name: str) -> dict:
    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_provider_info_matches_airflow_schema():
    from crm_hooks.provider_info import get_provider_info
    from crm_hooks.registry import HOOKS

    info = get_provider_info()
    jsonschema.validate(info, _schema("provider_info.schema.json"))
    assert info["package-name"] == "rankitpro-crm-sync"
    behaviour_schema = _schema("customized_form_field_behaviours.schema.json")
    by_type = {e["connection-type"]: e for e in info["connection-types"]}
    assert set(by_type) == {cls.conn_type for cls in HOOKS.values()}
    for cls in HOOKS.values():
        entry = by_type[cls.conn_type]
        module, _, name = entry["hook-class-name"].rpartition(".")
        assert getattr(__import__(module, fromlist=[name]), name) is cls
        assert entry["hook-name"] == cls.hook_name
        ui = entry["ui-field-behaviour"]
        jsonschema.validate(
            {"hidden_fields": ui["hidden-fields"], "relabeling": ui["relabeling"], "placeholders": ui["placeholders"]},
            behaviour_schema,
        )
        for field_name, spec in entry["conn-fields"].items():
            assert spec["label"] and "type" in spec["schema"]
            if field_name in cls.secret_keys:
                assert spec["schema"].get("format") == "password", field_name
        assert hasattr(cls, "test_connection") and cls.default_conn_name.startswith("crm_")
    json.dumps(info)  # plain data only


def test_hooks_import_first_in_a_fresh_interpreter():
    """Airflow calls get_provider_info while it initialises: importing a hook before Airflow must work."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = (
        f"import sys; sys.path[:0] = [{str(root / 'plugins')!r}]; "
        "import crm_hooks.registry as r; print(sorted(r.HOOKS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hubspot" in out.stdout


def test_token_refresh_resend_comes_on_top_of_max_attempts(rsps, sleeps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-aaaa"})
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-bbbb"})
    rsps.add(responses.GET, f"{BASE}/items", status=503)
    rsps.add(responses.GET, f"{BASE}/items", status=401)
    rsps.add(responses.GET, f"{BASE}/items", json={"ok": 1})
    hook = DemoHook(credentials={"clientSecret": SECRET}, account_key=f"t-{uuid.uuid4()}", max_attempts=2)
    assert hook.request_json("GET", "/items") == {"ok": 1}
    assert len(calls_to(rsps, f"{BASE}/items")) == 3
