"""JobberHook against Jobber's documented request and response shapes (``responses``, no network).

Plus the destination's lookups that the sandbox cannot provoke (a job the search does not
return, a chunk failing after another landed).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import UTC, date, datetime
from urllib.parse import parse_qs

import pytest
import requests
import responses
from airflow.sdk import Connection

from crm_hooks import jobber as jobber_module
from crm_hooks.auth import jwt_expiry
from crm_hooks.errors import (
    BadCredentialsError,
    ConfigurationError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.jobber import JobberHook
from crm_hooks.jobber_cost import cost_budget
from crm_hooks.jobber_graphql import f

pytestmark = pytest.mark.usefixtures("instant_rate_limits")

API = "https://api.getjobber.com/api"
GRAPHQL = f"{API}/graphql"
TOKEN = f"{API}/oauth/token"
REFRESH = "jb-refresh-0000-aaaa"
ROTATED = "jb-refresh-1111-bbbb"
CLIENT_SECRET = "jb-client-secret-cccc"
THROTTLE = {"maximumAvailable": 10000, "currentlyAvailable": 9990, "restoreRate": 500}


def jwt(seconds: float) -> str:
    """A JWT-shaped token expiring in ``seconds`` (Jobber's access tokens are JWTs)."""

    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part({'exp': int(time.time() + seconds), 'n': uuid.uuid4().hex})}.sig"


class FastJobber(JobberHook):
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002


def hook(credentials=None, writer=None, **kwargs) -> FastJobber:
    kwargs.setdefault("account_key", f"jb-{uuid.uuid4()}")
    creds = (
        credentials
        if credentials is not None
        else {"clientId": "cid", "clientSecret": CLIENT_SECRET, "refreshToken": REFRESH}
    )
    return FastJobber(credentials=creds, credentials_writer=writer, **kwargs)


def gql(data=None, errors=None, requested=10, actual=5, throttle=None, **extensions) -> dict:
    body = {
        "extensions": {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": throttle or THROTTLE,
            },
            **extensions,
        }
    }
    if data is not None or errors is None:
        body["data"] = data
    if errors is not None:
        body["errors"] = errors
    return body


def sent(call) -> dict:
    return json.loads(call.request.body)


def graphql_calls(rsps):
    return [c for c in rsps.calls if c.request.url == GRAPHQL]


# ---------------------------------------------------------------------- auth and rotation
def test_refresh_request_shape_and_rotated_tokens_written_before_use(rsps):
    access = jwt(3600)
    rsps.add(
        responses.POST,
        TOKEN,
        json={"access_token": access, "refresh_token": ROTATED, "expires_at": "2026-11-25 21:04:31 UTC"},
    )
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "MQ==", "name": "Acme HVAC"}}))
    order = []

    def writer(creds):
        order.append(("write", dict(creds), len(rsps.calls)))

    h = hook(writer=writer)
    assert h.account() == {"id": "MQ==", "name": "Acme HVAC"}
    token_req = rsps.calls[0].request
    assert token_req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_req.body) == {
        "client_id": ["cid"],
        "client_secret": [CLIENT_SECRET],
        "grant_type": ["refresh_token"],
        "refresh_token": [REFRESH],
    }
    # written once, only the rotated keys, after the token call and before the GraphQL call
    assert order == [("write", {"accessToken": access, "refreshToken": ROTATED}, 1)]
    assert rsps.calls[1].request.headers["Authorization"] == f"Bearer {access}"
    assert h.credentials["refreshToken"] == ROTATED and h.credentials["clientSecret"] == CLIENT_SECRET
    assert {access, ROTATED} <= set(h.secrets())
    assert h.stats.token_refreshes == 1


def test_expiry_comes_from_the_jwt_exp_claim_and_the_next_refresh_uses_the_rotated_token(rsps):
    access = jwt(30)
    rsps.add(responses.POST, TOKEN, json={"access_token": access, "refresh_token": ROTATED})
    rsps.add(responses.POST, TOKEN, json={"access_token": jwt(3600), "refresh_token": "jb-refresh-2222"})
    writes = []
    h = hook(writer=writes.append)
    token, seconds = h.fetch_token()
    assert token == access and 27 < seconds <= 30
    h.fetch_token()  # 30 s left is inside the two-minute margin: refresh again
    assert [w["refreshToken"] for w in writes] == [ROTATED, "jb-refresh-2222"]
    assert parse_qs(rsps.calls[1].request.body)["refresh_token"] == [ROTATED]  # never the dead one
    assert abs(jwt_expiry(access) - time.time() - 30) < 2 and jwt_expiry("not-a-jwt") is None


def test_a_valid_stored_access_token_is_used_without_refreshing(rsps):
    stored = jwt(3600)
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}))
    h = hook({"clientId": "cid", "clientSecret": CLIENT_SECRET, "refreshToken": REFRESH, "accessToken": stored})
    h.account()
    assert [c.request.url for c in rsps.calls] == [GRAPHQL]
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {stored}"


def test_401_refreshes_once_and_never_reuses_the_refused_token(rsps):
    stored, fresh = jwt(3600), jwt(3600)
    rsps.add(
        responses.POST,
        GRAPHQL,
        status=401,
        json={"error": "invalid_request", "error_description": "The access token is invalid"},
    )
    rsps.add(responses.POST, TOKEN, json={"access_token": fresh, "refresh_token": ROTATED})
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}))
    h = hook(
        {"clientId": "cid", "clientSecret": CLIENT_SECRET, "refreshToken": REFRESH, "accessToken": stored},
        writer=lambda creds: None,
    )
    h.account()
    assert [c.request.headers.get("Authorization") for c in graphql_calls(rsps)] == [
        f"Bearer {stored}",
        f"Bearer {fresh}",
    ]
    # A call that took the stored token before waiting for its rate-limit slot answers 401 too: the fresh
    # token is kept, nothing is redeemed again.
    h.invalidate_token(refused={"Authorization": f"Bearer {stored}"})
    assert h.auth_headers() == {"Authorization": f"Bearer {fresh}"}
    assert len([c for c in rsps.calls if c.request.url == TOKEN]) == 1


def test_without_a_writer_the_refresh_token_is_never_redeemed(rsps):
    h = hook()
    with pytest.raises(ConfigurationError, match="credentials writer"):
        h.account()
    assert len(rsps.calls) == 0


def test_a_writer_that_keeps_failing_stops_before_the_new_token_is_used(rsps):
    rsps.add(responses.POST, TOKEN, json={"access_token": jwt(3600), "refresh_token": ROTATED})
    attempts = []

    def broken(creds):
        attempts.append(1)
        raise RuntimeError(f"database down while writing {creds['refreshToken']}")

    h = hook(writer=broken)
    with pytest.raises(BadCredentialsError) as info:
        h.account()
    assert len(attempts) == 2 and graphql_calls(rsps) == []
    assert ROTATED not in str(info.value) and "reconnect Jobber" in str(info.value)
    assert h.credentials["refreshToken"] == REFRESH  # nothing unsaved is kept as if it were stored


def test_dead_refresh_token_asks_to_reconnect_without_leaking(rsps):
    rsps.add(
        responses.POST,
        TOKEN,
        status=400,
        json={"error": "invalid_grant", "error_description": f"The provided refresh token is not valid. {REFRESH}"},
    )
    h = hook(writer=lambda creds: None)
    with pytest.raises(BadCredentialsError) as info:
        h.account()
    assert "invalid_grant" in str(info.value) and "reconnect Jobber" in str(info.value)
    assert REFRESH not in str(info.value)
    ok, message = h.test_connection()
    assert ok is False and REFRESH not in message and CLIENT_SECRET not in message


def test_bare_api_key_works_until_refused_then_asks_to_reconnect(rsps):
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}))
    rsps.add(responses.POST, GRAPHQL, status=401, json={"error": "invalid_request"})
    h = hook({"apiKey": "legacy-bearer-token-123"})
    h.account()
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer legacy-bearer-token-123"
    with pytest.raises(BadCredentialsError, match="reconnect Jobber"):
        h.account()
    assert all(c.request.url == GRAPHQL for c in rsps.calls)  # no token endpoint without a refresh token


def test_an_expired_bare_jwt_fails_before_any_request(rsps):
    h = hook({"apiKey": jwt(-10)})
    with pytest.raises(BadCredentialsError, match="expired"):
        h.account()
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("creds", "missing"),
    [
        ({"clientId": "cid"}, "refreshToken, clientId and clientSecret"),
        ({"refreshToken": REFRESH}, "clientId, clientSecret"),
        ({"refreshToken": REFRESH, "clientId": "cid", "clientSecret": " "}, "clientSecret"),
    ],
)
def test_missing_keys_are_named(rsps, creds, missing):
    h = hook(creds, writer=lambda c: None)
    with pytest.raises(ConfigurationError, match=missing):
        h.account()
    assert len(rsps.calls) == 0


def test_override_hosts_must_be_allowed_for_api_and_token(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*")
    bad = hook(
        {
            "clientId": "cid",
            "clientSecret": CLIENT_SECRET,
            "refreshToken": REFRESH,
            "baseUrl": "https://jobber.example.org/api",
        },
        writer=lambda c: None,
    )
    with pytest.raises(ConfigurationError, match="CRM_SYNC_ALLOWED_HOSTS"):
        bad.account()
    bad_auth = hook(
        {
            "clientId": "cid",
            "clientSecret": CLIENT_SECRET,
            "refreshToken": REFRESH,
            "authUrl": "http://evil.example.org",
        },
        writer=lambda c: None,
    )
    with pytest.raises(ConfigurationError, match="CRM_SYNC_ALLOWED_HOSTS"):
        bad_auth.account()
    assert len(rsps.calls) == 0
    base = "http://127.0.0.1:8099/jobber/api"
    rsps.add(responses.POST, f"{base}/oauth/token", json={"access_token": jwt(3600), "refresh_token": ROTATED})
    rsps.add(responses.POST, f"{base}/graphql", json=gql({"account": {"id": "1", "name": "Sandbox Co"}}))
    ok = hook(
        {"clientId": "cid", "clientSecret": CLIENT_SECRET, "refreshToken": REFRESH, "baseUrl": base},
        writer=lambda c: None,
    )
    assert ok.test_connection() == (True, "Connected to Jobber account Sandbox Co (API version 2025-04-16)")


def test_credentials_from_connection():
    conn = Connection(
        conn_id="j",
        conn_type="crm_jobber",
        login="cid",
        password=CLIENT_SECRET,
        extra=json.dumps(
            {
                "refreshToken": REFRESH,
                "extra__crm_jobber__baseUrl": "https://x.getjobber.com/api",
                "crmSettings": {"apiVersion": "2025-01-20"},
            }
        ),
    )
    assert JobberHook.credentials_from_connection(conn) == {
        "clientId": "cid",
        "clientSecret": CLIENT_SECRET,
        "refreshToken": REFRESH,
        "baseUrl": "https://x.getjobber.com/api",
    }


# ---------------------------------------------------------------------- GraphQL requests
def test_graphql_request_shape_version_header_and_aliases(rsps):
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql({"s0": {"nodes": [{"id": "MQ==", "emails": [{"address": "a@x.com"}]}]}, "s1": {"nodes": []}}),
    )
    h = hook({"apiKey": "legacy-bearer-token-123"}, settings={"apiVersion": "2025-01-20"})
    found = h.search_clients(["a@x.com", "5125550100", "a@x.com"], first=3)
    assert found == {"a@x.com": [{"id": "MQ==", "emails": [{"address": "a@x.com"}]}], "5125550100": []}
    req = rsps.calls[0].request
    assert req.headers["X-JOBBER-GRAPHQL-VERSION"] == "2025-01-20"
    assert req.headers["Content-Type"] == "application/json"
    body = sent(rsps.calls[0])
    assert body["variables"] == {"t0": "a@x.com", "t1": "5125550100"}
    assert body["query"].startswith("query RipClientSearch($t0: String!, $t1: String!) { s0: clients(")
    assert (
        "s1: clients(searchTerm: $t1, first: 3) { nodes { id firstName lastName companyName emails { address } "
        "phones { number } } }" in body["query"]
    )


def test_query_points_spent_are_counted_beside_the_requests(rsps):
    rsps.add(responses.POST, GRAPHQL, json=gql({"s0": {"nodes": []}}, actual=7))
    rsps.add(responses.POST, GRAPHQL, json=gql({"s0": {"nodes": []}}, actual=12))
    h = hook({"apiKey": "legacy-bearer-token-123"})
    h.search_clients(["a@x.com"], first=3)
    h.search_clients(["b@x.com"], first=3)
    assert (h.stats.api_calls, h.stats.quota_points) == (2, 19.0)
    assert h.stats.quota_restore_rate == THROTTLE["restoreRate"]


def test_invalid_api_version_setting_is_a_configuration_error(rsps):
    with pytest.raises(ConfigurationError, match="apiVersion"):
        hook({"apiKey": "t0k3n-legacy"}, settings={"apiVersion": "latest"}).account()
    assert len(rsps.calls) == 0


def test_query_cost_follows_jobbers_rule():
    # every field 1, nodes free, a connection's nodes times first (the rate-limit page's examples)
    assert f("quote", "id", "cost", "title", f("client", "id", "firstName"), id='"MTc1"').cost() == 7
    assert (
        f("quotes", f("edges", f("node", "id", "cost", "quoteNumber", "quoteStatus", "title")), first=10).cost() == 50
    )
    paged = f("jobs", f("nodes", "id", "title"), f("pageInfo", "hasNextPage", "endCursor"), first=100)
    assert paged.cost() == 203


def test_chunks_respect_cost_cap_and_alias_setting():
    h = hook({"apiKey": "t0k3n-legacy"}, settings={"aliasesPerRequest": 4})
    assert [len(c) for c in h.chunks(list(range(10)), 10)] == [4, 4, 2]
    assert [len(c) for c in hook({"apiKey": "t0k3n-legacy"}).chunks(list(range(30)), 1000)] == [2] * 15


def test_throttled_answer_waits_for_the_bucket_then_succeeds(rsps, sleeps):
    throttled = gql(
        errors=[
            {
                "message": "Throttled",
                "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://developer.getjobber.com/docs/using_jobbers_api/api_rate_limits",
                },
            }
        ],
        requested=1500,
        actual=0,
        throttle={"maximumAvailable": 10000, "currentlyAvailable": 500, "restoreRate": 500},
    )
    rsps.add(responses.POST, GRAPHQL, json=throttled)
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}))
    h = hook({"apiKey": "t0k3n-legacy"})
    assert h.account()["name"] == "A"
    assert sleeps == [pytest.approx(2.1)]  # (1500 - 500) / 500 s, plus a margin
    assert h.stats.rate_limited == 1 and h.stats.retries == 1


@pytest.mark.parametrize(("headers", "expected"), [({"Retry-After": "7"}, [7.0]), ({}, None)])
def test_http_429_from_the_ddos_guard_is_retried(rsps, sleeps, headers, expected):
    rsps.add(responses.POST, GRAPHQL, status=429, headers=headers, json={"error": "Too Many Requests"})
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}))
    h = hook({"apiKey": "t0k3n-legacy"})
    h.account()
    assert h.stats.rate_limited == 1 and len(sleeps) == 1
    if expected:
        assert sleeps == expected


def test_5xx_and_timeouts_are_retried_then_raised(rsps, sleeps):
    rsps.add(responses.POST, GRAPHQL, status=503, json={"errors": [{"message": "Service temporarily unavailable"}]})
    rsps.add(responses.POST, GRAPHQL, body=requests.Timeout("read timed out"))
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}))
    h = hook({"apiKey": "t0k3n-legacy"}, max_attempts=3)
    assert h.account()["id"] == "1" and h.stats.retries == 2
    rsps.replace(responses.POST, GRAPHQL, status=502, body="<html>bad gateway</html>")
    with pytest.raises(RetryableError):
        hook({"apiKey": "t0k3n-legacy"}, max_attempts=2).account()


def test_document_the_version_rejects_is_a_configuration_error(rsps):
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            errors=[
                {
                    "message": "Field 'clientProperties' doesn't exist on type 'Client'",
                    "locations": [{"line": 1, "column": 9}],
                    "extensions": {"code": "undefinedField", "typeName": "Client", "fieldName": "clientProperties"},
                }
            ]
        ),
    )
    with pytest.raises(ConfigurationError, match="API version 2025-04-16 rejected"):
        hook({"apiKey": "t0k3n-legacy"}).get_clients(["MQ=="])


def test_disconnected_app_asks_to_reconnect(rsps):
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(errors=[{"message": "User has disconnected this app from their account. Please delete this token"}]),
    )
    with pytest.raises(BadCredentialsError, match="reconnect Jobber"):
        hook({"apiKey": "t0k3n-legacy"}).account()


def test_a_read_that_failed_in_part_is_never_taken_for_nothing_found(rsps):
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            {"s0": None, "s1": {"nodes": []}},
            errors=[{"message": "Internal error", "path": ["s0"], "locations": [{"line": 1, "column": 40}]}],
        ),
    )
    with pytest.raises(RetryableError, match="Internal error"):
        hook({"apiKey": "t0k3n-legacy"}).search_clients(["a@x.com", "b@x.com"])


def test_mutation_outcomes_user_errors_and_uncertain(rsps):
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            {
                "m0": {"job": {"id": "Sm9iMQ==", "jobNumber": 7, "title": "t (rankitpro-1-1)"}, "userErrors": []},
                "m1": {
                    "job": None,
                    "userErrors": [{"message": "Instructions is invalid", "path": ["input", "instructions"]}],
                },
            }
        ),
    )
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(None, errors=[{"message": "boom", "path": ["m1"], "locations": [{"line": 1, "column": 90}]}]),
    )
    h = hook({"apiKey": "t0k3n-legacy"})
    good, bad = h.create_jobs([{"propertyId": "p"}, {"propertyId": "p"}])
    assert good.ok and good.record["id"] == "Sm9iMQ=="
    assert (
        not bad.ok and not bad.uncertain and bad.error == "Jobber refused: Instructions is invalid (input.instructions)"
    )
    body = sent(rsps.calls[0])
    assert body["query"].startswith("mutation RipJobCreate($i0: JobCreateAttributes!, $i1: JobCreateAttributes!)")
    assert "m0: jobCreate(input: $i0) { job { id jobNumber title } userErrors { message path } }" in body["query"]
    # data null (a non-null payload failed): every alias may or may not have run
    outcomes = h.create_jobs([{"propertyId": "p"}, {"propertyId": "q"}])
    assert [o.uncertain for o in outcomes] == [True, True] and "boom" in outcomes[1].error


def test_jobs_created_after_follows_cursors(rsps):
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            {"jobs": {"nodes": [{"id": "1", "title": "a"}], "pageInfo": {"hasNextPage": True, "endCursor": "Y3Vy"}}}
        ),
    )
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            {"jobs": {"nodes": [{"id": "2", "title": "b"}], "pageInfo": {"hasNextPage": False, "endCursor": "Y3Vz"}}}
        ),
    )
    h = hook({"apiKey": "t0k3n-legacy"})
    jobs = list(h.jobs_created_after(datetime(2026, 11, 20, 12, 0, tzinfo=UTC)))
    assert [j["id"] for j in jobs] == ["1", "2"]
    first, second = sent(rsps.calls[0]), sent(rsps.calls[1])
    assert first["variables"] == {"filter": {"createdAt": {"after": "2026-11-20T12:00:00Z"}}}
    assert second["variables"]["cursor"] == "Y3Vy" and "after: $cursor" in second["query"]


def test_cost_budget_waits_for_points_before_sending(rsps, monkeypatch):
    waits = []
    monkeypatch.setattr(jobber_module, "_sleep", waits.append)
    low = {"maximumAvailable": 10000, "currentlyAvailable": 10, "restoreRate": 500}
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}, throttle=low))
    h = hook({"apiKey": "t0k3n-legacy"})
    h.account()
    assert waits == []
    h.search_clients(["a@x.com"] * 1 + ["b@x.com"])  # ~160 points requested, 10 left
    assert len(waits) == 1 and 0.2 < waits[0] < 0.4
    budget = cost_budget(h.account_key)
    assert budget.maximum == 10000 and budget.restore == 500
    # a run's rate_share keeps the rest of the bucket for other apps
    assert budget.wait_for(100, time.monotonic(), share=0.5) > 9.0


def test_version_warning_is_logged_once(rsps, caplog):
    caplog.set_level(logging.WARNING)
    warning = {"version": "2023-11-15", "warning": "API Version 2023-11-15 is no longer supported"}
    rsps.add(responses.POST, GRAPHQL, json=gql({"account": {"id": "1", "name": "A"}}, versioning=warning))
    h = hook({"apiKey": "t0k3n-legacy"})
    h.account()
    h.account()
    assert caplog.text.count("no longer supported") == 1


def test_token_endpoint_outage_is_retryable_and_5xx_bodies_are_redacted(rsps, sleeps):
    rsps.add(
        responses.POST,
        TOKEN,
        status=503,
        json={"error": "server_error", "error_description": f"refresh_token={REFRESH} failed"},
    )
    h = hook(writer=lambda c: None, max_attempts=2)
    with pytest.raises(RetryableError) as info:
        h.account()
    assert REFRESH not in str(info.value)


# ---------------------------------------------------------------------- the destination's lookups
def _destination(h):
    from crm_sync.destinations.jobber import JobberDestination
    from crm_sync.models import SyncSettings

    return JobberDestination(h, SyncSettings())


def _row(check_in_id: int):
    from crm_sync.models import SyncSettings
    from crm_sync.prepare import prepare_check_in

    return prepare_check_in(
        {
            "id": check_in_id,
            "company_id": 5,
            "customer_name": "Ann Lee",
            "customer_email": "ann@example.com",
            "address": "1 Main St",
            "zip": "78701",
            "created_at": datetime(2026, 11, 20, 9, 0),
        },
        SyncSettings(),
    )


def test_find_visits_scans_recent_jobs_for_keys_the_search_misses(rsps):
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            {
                "s0": {"nodes": [{"id": "J1", "title": "AC (rankitpro-5-1)"}]},
                "s1": {"nodes": [{"id": "J9", "title": "AC (rankitpro-5-21)"}]},  # fuzzy hit: not the same key
                "s2": {"nodes": []},
            }
        ),
    )
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            {
                "jobs": {
                    "nodes": [{"id": "J2", "title": "AC (rankitpro-5-2)"}, {"id": "J7", "title": "Office job"}],
                    "pageInfo": {"hasNextPage": True, "endCursor": "Y3Vy"},
                }
            }
        ),
    )
    dest = _destination(hook({"apiKey": "t0k3n-legacy"}))
    rows = [_row(1), _row(2), _row(3)]
    rsps.add(responses.POST, GRAPHQL, json=gql({"jobs": {"nodes": [], "pageInfo": {"hasNextPage": False}}}))
    assert dest.find_visits(rows) == {"rankitpro-5-1": "J1", "rankitpro-5-2": "J2"}
    scan = sent(rsps.calls[1])
    assert scan["variables"]["filter"] == {"createdAt": {"after": "2026-11-19T09:00:00Z"}}  # check-in - 1 day
    assert len(graphql_calls(rsps)) == 3


def test_a_chunk_failing_after_another_landed_leaves_the_rest_uncertain(rsps):
    h = hook({"apiKey": "t0k3n-legacy"}, settings={"aliasesPerRequest": 1})
    dest = _destination(h)
    dest._properties["C1"] = [("P1", "1 main st|78701")]
    from crm_sync.destinations.base import CustomerRef

    rsps.add(
        responses.POST, GRAPHQL, json=gql({"m0": {"job": {"id": "J1", "jobNumber": 1, "title": "x"}, "userErrors": []}})
    )
    rsps.add(responses.POST, GRAPHQL, status=401, json={"error": "invalid_request"})
    rows = [_row(1), _row(2), _row(3)]
    results = dest.create_visits([(r, CustomerRef("C1")) for r in rows])
    assert results["rankitpro-5-1"].ok and results["rankitpro-5-1"].crm_id == "J1"
    assert results["rankitpro-5-2"].uncertain and results["rankitpro-5-3"].uncertain
    assert "reconnect Jobber" in results["rankitpro-5-2"].error


def test_classify_error_mapping():
    h = hook({"apiKey": "t0k3n-legacy"})

    def classify(status, payload, url=GRAPHQL, headers=None):
        resp = requests.Response()
        resp.status_code = status
        resp._content = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        resp.url = url
        resp.headers.update(headers or {})
        return h.classify_error(resp)

    e = classify(401, {"error": "invalid_request", "error_description": "The access token expired"})
    assert type(e) is BadCredentialsError and "The access token expired" in str(e)
    assert type(classify(403, {"message": "Forbidden"})) is BadCredentialsError
    e = classify(429, "Retry later\n", headers={"Retry-After": "4"})
    assert isinstance(e, RateLimitedError) and e.retry_after == 4.0
    e = classify(400, {"errors": [{"message": "The X-JOBBER-GRAPHQL-VERSION header is required"}]})
    assert type(e) is ConfigurationError and "X-JOBBER-GRAPHQL-VERSION" in str(e)
    assert type(classify(500, {"errors": [{"message": "Internal"}]})) is RetryableError
    e = classify(401, {"error": "invalid_client", "error_description": "Client authentication failed"}, url=TOKEN)
    assert type(e) is BadCredentialsError and "reconnect Jobber" in str(e)


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503, "json": {"errors": [{"message": "Service temporarily unavailable"}]}},
        {"body": requests.ReadTimeout("read timed out")},
    ],
    ids=["5xx", "timeout"],
)
def test_a_mutation_that_may_have_run_is_never_sent_twice(rsps, sleeps, failure):
    rsps.add(responses.POST, GRAPHQL, **failure)
    rsps.add(responses.POST, GRAPHQL, json=gql({"m0": {"job": {"id": "J1"}, "userErrors": []}}))
    h = hook({"apiKey": "t0k3n-legacy"})
    with pytest.raises(RetryableError):
        h.create_jobs([{"propertyId": "p"}])
    assert len(graphql_calls(rsps)) == 1 and sleeps == []


def test_a_mutation_refused_unexecuted_is_sent_again(rsps, sleeps):
    rsps.add(responses.POST, GRAPHQL, status=429, headers={"Retry-After": "2"}, json={"error": "Too Many Requests"})
    rsps.add(
        responses.POST,
        GRAPHQL,
        json=gql(
            errors=[{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            requested=900,
            actual=0,
            throttle={"maximumAvailable": 10000, "currentlyAvailable": 400, "restoreRate": 500},
        ),
    )
    rsps.add(responses.POST, GRAPHQL, json=gql({"m0": {"job": {"id": "J1"}, "userErrors": []}}))
    h = hook({"apiKey": "t0k3n-legacy"})
    (outcome,) = h.create_jobs([{"propertyId": "p"}])
    assert outcome.ok and len(graphql_calls(rsps)) == 3
    assert sleeps == [2.0, pytest.approx(1.1)] and h.stats.rate_limited == 2 and h.stats.retries == 2
    assert h.max_attempts == FastJobber.max_attempts_default


# ---------------------------------------------------------------------- the sandbox speaks Jobber
SBX_CREDS = {"clientId": "sbx-client", "clientSecret": "sbx-secret-0001", "refreshToken": "sbx-refresh-0001"}


def sandbox_account(sandbox, name="jb", credentials=None, **limits) -> str:
    body = {"crm": "jobber", "account": name, "credentials": credentials or SBX_CREDS}
    if limits:
        body["limits"] = limits
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    return name


def sandbox_hook(sandbox, writes, credentials=None, **kwargs) -> FastJobber:
    creds = {**(credentials or SBX_CREDS), "baseUrl": f"{sandbox.url}/jobber/api"}
    return FastJobber(credentials=creds, credentials_writer=writes.append, account_key=f"jb-{uuid.uuid4()}", **kwargs)


@pytest.fixture
def live(rsps):
    """Let requests to the sandbox through the ``responses`` mock of this module."""
    rsps.add_passthru("http://127.0.0.1")
    return rsps


def test_sandbox_rotates_refresh_tokens_and_kills_the_old_one(live, sandbox):
    sandbox_account(sandbox, token_ttl_seconds=1)
    writes: list[dict] = []
    h = sandbox_hook(sandbox, writes)
    assert h.account()["name"] == "jb"
    time.sleep(1.1)
    h.account()  # the 1-second token expired: refreshed with the rotated refresh token
    assert len(writes) == 2 and writes[0]["refreshToken"] != writes[1]["refreshToken"]
    token_url = f"{sandbox.url}/jobber/api/oauth/token"
    old = requests.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": "sbx-client",
            "client_secret": "sbx-secret-0001",
            "refresh_token": "sbx-refresh-0001",
        },
    )
    assert old.status_code == 400 and old.json() == {
        "error": "invalid_grant",
        "error_description": "The provided refresh token is not valid.",
    }
    wrong = requests.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": "sbx-client",
            "client_secret": "nope",
            "refresh_token": writes[1]["refreshToken"],
        },
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    # a refused client authentication rotates nothing: the stored token still works
    assert sandbox_hook(sandbox, writes, {**SBX_CREDS, "refreshToken": writes[1]["refreshToken"]}).account()


def test_sandbox_graphql_shapes_validation_and_poisoned_fields(live, sandbox):
    sandbox_account(sandbox)
    h = sandbox_hook(sandbox, [])
    (created, bad) = h.create_clients(
        [
            {
                "firstName": "Ann",
                "lastName": "Lee",
                "emails": [{"description": "MAIN", "primary": True, "address": "ann@example.com"}],
                "phones": [{"description": "MAIN", "primary": True, "number": "(512) 555-0100 ext. 7"}],
                "properties": [{"address": {"street1": "1 Main St", "postalCode": "78701"}}],
            },
            {"firstName": "SANDBOX-INVALID"},
        ]
    )
    assert created.ok and bad.error == "Jobber refused: First name is invalid (input.firstName)"
    client_id = created.record["id"]
    prop = created.record["clientProperties"]["nodes"][0]
    assert prop["address"]["street1"] == "1 Main St"
    found = h.search_clients(["ann@example.com", "5125550100", "ann lee", "nobody@example.com"])
    assert [len(found[t]) for t in ("ann@example.com", "5125550100", "ann lee", "nobody@example.com")] == [1, 1, 1, 0]
    job_input = {
        "propertyId": prop["id"],
        "title": "AC (rankitpro-1-2)",
        "instructions": "ok",
        "scheduling": {"createVisits": True, "notifyTeam": False},
        "invoicing": {"invoicingType": "FIXED_PRICE", "invoicingSchedule": "NEVER"},
    }
    ok, poisoned, missing = h.create_jobs(
        [job_input, {**job_input, "instructions": "SANDBOX-INVALID"}, {**job_input, "propertyId": "OTk5OTk="}]
    )
    assert ok.ok and "Instructions is invalid" in poisoned.error and "Property not found" in missing.error
    assert h.search_jobs(["rankitpro-1-2"])["rankitpro-1-2"][0]["id"] == ok.record["id"]
    assert [o.ok for o in h.close_jobs([ok.record["id"]])] == [True]
    assert h.get_clients([client_id, "OTk5OTk="])["OTk5OTk="] is None
    jobs = requests.get(f"{sandbox.url}/_sandbox/records/jobber/jb/jobs", timeout=5).json()
    assert len(jobs) == 1 and jobs[0]["jobStatus"] == "archived"
    # a document the schema does not know: no data, a graphql-ruby style error
    bad_doc = requests.post(
        f"{sandbox.url}/jobber/api/graphql",
        json={"query": "{ account { id nme } }"},
        headers={**h.auth_headers(), "X-JOBBER-GRAPHQL-VERSION": "2025-04-16"},
    ).json()
    assert "data" not in bad_doc and bad_doc["errors"][0]["extensions"]["code"] == "undefinedField"
    no_version = requests.post(
        f"{sandbox.url}/jobber/api/graphql", json={"query": "{ account { id } }"}, headers=h.auth_headers()
    )
    assert no_version.status_code == 400


def test_sandbox_query_cost_throttles_and_ddos_guard(live, sandbox, sleeps):
    sandbox_account(sandbox, query_cost_max=100, restore_rate=1000)
    h = sandbox_hook(sandbox, [])
    with pytest.raises(ConfigurationError, match="never fits"):  # 200 points can never fit a 100-point bucket
        list(h.jobs_created_after(datetime(2026, 1, 1, tzinfo=UTC)))
    # 80 points per search: once the bucket is known, one alias per document, waiting for points
    assert h.search_clients(["a@example.com", "b@example.com"]) == {"a@example.com": [], "b@example.com": []}
    raw = requests.post(
        f"{sandbox.url}/jobber/api/graphql",
        json={"query": "{ jobs(first: 100) { nodes { id title } } }"},
        headers={**h.auth_headers(), "X-JOBBER-GRAPHQL-VERSION": "2025-04-16"},
    ).json()
    assert raw["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert raw["extensions"]["cost"]["requestedQueryCost"] == 200
    assert raw["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 100
    sandbox_account(sandbox, "ddos", {**SBX_CREDS, "refreshToken": "sbx-refresh-ddos"}, requests_per_5min=1)
    d = sandbox_hook(sandbox, [], {**SBX_CREDS, "refreshToken": "sbx-refresh-ddos"}, max_attempts=2)
    d.account()
    with pytest.raises(RateLimitedError):
        d.account()
    assert d.stats.rate_limited == 2


def test_sandbox_bare_tokens_expire(live, sandbox):
    sandbox_account(sandbox, "legacy", {"apiKey": "legacy-bearer-abcdef"})
    h = sandbox_hook(sandbox, [], {"apiKey": "legacy-bearer-abcdef"})
    assert h.account()["name"] == "legacy"
    requests.post(f"{sandbox.url}/_sandbox/accounts/jobber/legacy/expire-tokens", timeout=5).raise_for_status()
    with pytest.raises(BadCredentialsError, match="reconnect Jobber"):
        sandbox_hook(sandbox, [], {"apiKey": "legacy-bearer-abcdef"}).account()


# ---------------------------------------------------------------------- API version age (pure, fixed dates)
@pytest.mark.parametrize(
    ("pinned", "today", "months"),
    [
        ("2025-04-16", date(2026, 7, 15), None),  # 14 months and 29 days: not yet
        ("2025-04-16", date(2026, 7, 16), 15),  # 15 months to the day
        ("2025-04-16", date(2026, 12, 6), 19),
        ("2024-12-31", date(2026, 3, 30), None),  # month ends: 14 months
        ("2024-12-31", date(2026, 3, 31), 15),
    ],
)
def test_version_age_warning_from_fixed_dates(pinned, today, months):
    warning = jobber_module.version_age_warning(pinned, today)
    if months is None:
        assert warning is None
    else:
        assert f"the pinned API version {pinned} is {months} months old" in warning
        assert "crmSettings.apiVersion" in warning and "changelog" in warning


def test_version_warning_names_the_version_jobber_answered_with():
    recent_pin = jobber_module.version_age_warning("2026-10-01", date(2026, 12, 6), reported="2026-10-01")
    assert recent_pin is None
    upgraded = jobber_module.version_age_warning("2026-10-01", date(2026, 12, 6), reported="2026-11-20")
    assert "Jobber answered as version 2026-11-20, not the pinned 2026-10-01" in upgraded
    assert "months old" not in upgraded


def test_the_hook_reads_the_reported_version_and_warns_once(rsps):
    body = gql({"account": {"id": "1", "name": "Co"}}, versioning={"version": "2025-06-01", "warning": "upgrade"})
    rsps.add(responses.POST, GRAPHQL, json=body)
    rsps.add(responses.POST, GRAPHQL, json=body)
    h = hook({"accessToken": jwt(3600), "refreshToken": REFRESH, "clientId": "c", "clientSecret": CLIENT_SECRET})
    h.account()
    h.account()
    assert h.reported_api_version == "2025-06-01"
    warnings = h.version_warnings(today=date(2025, 5, 1))
    assert warnings == [
        "jobber: Jobber answered as version 2025-06-01, not the pinned 2025-04-16 (it was upgraded): check "
        "https://developer.getjobber.com/docs/changelog and pin a current version in crmSettings.apiVersion "
        "(or upgrade the sync)",
        "jobber API version: upgrade",
    ]


def test_sandbox_reports_the_version_and_upgrades_a_removed_one(live, sandbox):
    body = {"crm": "jobber", "account": "jb", "credentials": SBX_CREDS, "options": {"oldest_api_version": "2026-01-20"}}
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()
    writes: list[dict] = []
    h = sandbox_hook(sandbox, writes)
    h.account()
    assert h.reported_api_version == "2026-01-20"  # the pinned 2025-04-16 is older: upgraded, as Jobber does
    assert "has been removed" in (h.vendor_version_warning or "")
    current = sandbox_hook(sandbox, [], credentials={**SBX_CREDS, **writes[-1]}, settings={"apiVersion": "2026-02-01"})
    current.account()
    assert current.reported_api_version == "2026-02-01" and current.vendor_version_warning is None
