"""The one home of "send a create at most once": :meth:`CrmHook.send_write` behind ``request(resend=...)``
and ``request_json(resend=..., lookup=..., parse=...)``. No network: ``responses`` answers.
"""

from __future__ import annotations

import uuid

import pytest
import requests
import responses

from crm_hooks.base import CrmHook
from crm_hooks.errors import BadRecordError, RateLimitedError, RetryableError
from crm_hooks.rate_limit import RateLimit

BASE = "https://api.write-safety.example.com"
ITEMS = f"{BASE}/items"


class WriteHook(CrmHook):
    """A static-token hook whose errors are read by the base."""

    crm_type = "writesafety"
    vendor_domains = ("write-safety.example.com",)
    default_base_url = BASE
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002
    default_rate_limits = {"default": RateLimit(None)}

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": "Token k"}


def hook(max_attempts: int = 4) -> WriteHook:
    return WriteHook(credentials={"apiKey": "k"}, account_key=f"w-{uuid.uuid4()}", max_attempts=max_attempts)


def posts(rsps) -> int:
    return sum(1 for c in rsps.calls if c.request.method == "POST")


def test_always_resends_a_5xx_like_any_call(rsps, sleeps):
    rsps.add(responses.POST, ITEMS, status=503, json={})
    rsps.add(responses.POST, ITEMS, status=201, json={"id": "1"})
    assert hook().request_json("POST", "/items", json={}) == {"id": "1"}
    assert posts(rsps) == 2


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503, "json": {}},
        {"body": requests.ConnectionError("dropped")},
        {"body": requests.ReadTimeout("slow")},
    ],
)
def test_never_raises_an_uncertain_outcome_at_once(rsps, sleeps, failure):
    rsps.add(responses.POST, ITEMS, **failure)
    rsps.add(responses.POST, ITEMS, status=201, json={"id": "1"})
    with pytest.raises(RetryableError) as raised:
        hook().request("POST", "/items", json={}, resend="never")
    assert not isinstance(raised.value, RateLimitedError)
    assert posts(rsps) == 1 and sleeps == []


def test_never_resends_a_429_after_its_wait(rsps, sleeps):
    rsps.add(responses.POST, ITEMS, status=429, headers={"Retry-After": "3"}, json={})
    rsps.add(responses.POST, ITEMS, status=201, json={"id": "1"})
    h = hook()
    assert h.request("POST", "/items", json={}, resend="never").json() == {"id": "1"}
    assert posts(rsps) == 2 and sleeps == [3.0]
    assert h.stats.retries == 1 and h.stats.rate_limited == 1
    assert h.max_attempts == 4  # nothing narrowed on the hook


def test_never_gives_up_after_max_attempts_429s(rsps, sleeps):
    for _ in range(5):
        rsps.add(responses.POST, ITEMS, status=429, headers={"Retry-After": "1"}, json={})
    with pytest.raises(RateLimitedError):
        hook(max_attempts=3).request("POST", "/items", json={}, resend="never")
    assert posts(rsps) == 3


def test_never_does_not_retry_a_bad_record(rsps, sleeps):
    rsps.add(responses.POST, ITEMS, status=422, json={})
    with pytest.raises(BadRecordError):
        hook().request_json("POST", "/items", json={}, resend="never")
    assert posts(rsps) == 1


def test_after_lookup_returns_the_found_record_instead_of_resending(rsps, sleeps):
    rsps.add(responses.POST, ITEMS, status=504, json={})
    looked: list[int] = []

    def lookup():
        looked.append(1)
        return {"id": "stored-by-the-first-send"}

    assert hook().request_json("POST", "/items", json={}, resend="after_lookup", lookup=lookup) == {
        "id": "stored-by-the-first-send"
    }
    assert posts(rsps) == 1 and looked == [1]


def test_after_lookup_resends_when_the_lookup_finds_nothing(rsps, sleeps):
    rsps.add(responses.POST, ITEMS, body=requests.ConnectionError("dropped"))
    rsps.add(responses.POST, ITEMS, status=201, json={"id": "2"})
    looked: list[int] = []
    assert hook().request_json("POST", "/items", json={}, resend="after_lookup", lookup=lambda: looked.append(1)) == {
        "id": "2"
    }
    assert posts(rsps) == 2 and looked == [1]


def test_after_lookup_does_not_look_up_after_a_429(rsps, sleeps):
    rsps.add(responses.POST, ITEMS, status=429, json={})
    rsps.add(responses.POST, ITEMS, status=201, json={"id": "3"})
    looked: list[int] = []
    assert hook().request_json("POST", "/items", json={}, resend="after_lookup", lookup=lambda: looked.append(1)) == {
        "id": "3"
    }
    assert looked == []  # the CRM refused the first send: nothing to look for


def test_after_lookup_gives_up_with_the_last_retryable_error(rsps, sleeps):
    for _ in range(4):
        rsps.add(responses.POST, ITEMS, status=500, json={})
    looked: list[int] = []
    with pytest.raises(RetryableError):
        hook(max_attempts=3).request_json(
            "POST", "/items", json={}, resend="after_lookup", lookup=lambda: looked.append(1)
        )
    assert posts(rsps) == 3 and looked == [1, 1]


def test_parse_marks_an_unconfirming_2xx_uncertain(rsps, sleeps):
    rsps.add(responses.POST, ITEMS, status=201, json={"data": {}})

    def parse(body):
        if not body["data"].get("id"):
            raise RetryableError("no id")
        return body["data"]["id"]

    assert (
        hook().request_json("POST", "/items", json={}, resend="after_lookup", lookup=lambda: "found-7", parse=parse)
        == "found-7"
    )
    assert posts(rsps) == 1


def test_the_token_refresh_resend_still_happens_once(rsps, sleeps):
    class RefreshingHook(WriteHook):
        def fetch_token(self):
            self.fetched = getattr(self, "fetched", 0) + 1
            return f"t{self.fetched}", 3600

        def auth_headers(self):
            return {"Authorization": f"Bearer {self.access_token()}"}

    rsps.add(responses.POST, ITEMS, status=401, json={})
    rsps.add(responses.POST, ITEMS, status=201, json={"id": "4"})
    h = RefreshingHook(credentials={"apiKey": "k"}, account_key=f"w-{uuid.uuid4()}", max_attempts=1)
    assert h.request_json("POST", "/items", json={}, resend="never") == {"id": "4"}
    assert h.fetched == 2 and posts(rsps) == 2


def test_misused_policies_are_refused():
    with pytest.raises(ValueError):
        hook().request("POST", "/items", resend="after_lookup")
    with pytest.raises(ValueError):
        hook().request_json("POST", "/items", lookup=lambda: None)
    with pytest.raises(ValueError):
        hook().send_write(lambda: None, resend="always")
