"""HubSpotHook against HubSpot's documented request and response shapes (``responses``, no network)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs

import pytest
import requests
import responses
from airflow.sdk import Connection

from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    ConfigurationError,
    QuotaExhaustedError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.hubspot import BatchOutcome, HubSpotConflictError, HubSpotHook
from crm_hooks.rate_limit import RateLimit

pytestmark = pytest.mark.usefixtures("instant_rate_limits")

API = "https://api.hubapi.com"
PAT = "pat-na1-11111111-2222-3333-4444-555555555555"
REFRESH = "rt-0000-refresh-token-value"
CLIENT_SECRET = "cs-0000-client-secret-value"


class FastHubSpot(HubSpotHook):
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002


def hook(credentials=None, **kwargs) -> FastHubSpot:
    kwargs.setdefault("account_key", f"hs-{uuid.uuid4()}")
    return FastHubSpot(credentials=credentials or {"accessToken": PAT}, **kwargs)


def oauth_hook(**extra) -> FastHubSpot:
    return hook({"refreshToken": REFRESH, "clientId": "client-id-1", "clientSecret": CLIENT_SECRET, **extra})


def body(call) -> dict:
    return json.loads(call.request.body)


def error_body(status_category, message, **extra):
    return {
        "status": "error",
        "message": message,
        "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
        "category": status_category,
        **extra,
    }


# ---------------------------------------------------------------------- auth
def test_private_app_token_is_sent_as_bearer_without_token_call(rsps):
    rsps.add(responses.GET, f"{API}/crm/v3/properties/contacts", json={"results": [{"name": "email"}]})
    h = hook()
    assert h.get_properties("contacts") == [{"name": "email"}]
    assert len(rsps.calls) == 1
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {PAT}"


def test_oauth_refresh_request_shape_and_caching(rsps):
    rsps.add(
        responses.POST,
        f"{API}/oauth/v3/token",
        json={"access_token": "at-fresh-0001", "refresh_token": REFRESH, "expires_in": 1800, "token_type": "bearer"},
    )
    rsps.add(responses.GET, f"{API}/crm/v3/properties/notes", json={"results": []})
    h = oauth_hook(accessToken="at-stale-from-app")  # both present: the refresh flow wins
    h.get_properties("notes")
    h.get_properties("notes")
    token_calls = [c for c in rsps.calls if c.request.url.endswith("/oauth/v3/token")]
    assert len(token_calls) == 1
    req = token_calls[0].request
    assert req.url == f"{API}/oauth/v3/token"  # v3, nothing in the query string (v1 is deprecated 2027-02-16)
    assert not any("/oauth/v1/" in c.request.url for c in rsps.calls)
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in req.headers
    assert parse_qs(req.body) == {
        "grant_type": ["refresh_token"],
        "client_id": ["client-id-1"],
        "client_secret": [CLIENT_SECRET],
        "refresh_token": [REFRESH],
    }
    assert rsps.calls[-1].request.headers["Authorization"] == "Bearer at-fresh-0001"
    assert h.stats.token_refreshes == 1


def test_oauth_rotated_refresh_token_is_written_back(rsps):
    rsps.add(
        responses.POST,
        f"{API}/oauth/v3/token",
        json={"access_token": "at-fresh-0002", "refresh_token": "rt-rotated-9999", "expires_in": 1800},
    )
    written = []
    h = FastHubSpot(
        credentials={"refreshToken": REFRESH, "clientId": "c", "clientSecret": CLIENT_SECRET},
        account_key=f"hs-{uuid.uuid4()}",
        credentials_writer=written.append,
    )
    assert h.access_token() == "at-fresh-0002"
    assert written and written[0]["refreshToken"] == "rt-rotated-9999"
    assert "rt-rotated-9999" in h.secrets()


def test_oauth_bad_refresh_token_is_bad_credentials_without_secret(rsps):
    rsps.add(
        responses.POST,
        f"{API}/oauth/v3/token",
        status=400,
        json={
            "status": "BAD_REFRESH_TOKEN",
            "message": f"missing or unknown refresh token {REFRESH}",
            "correlationId": "x",
        },
    )
    h = oauth_hook()
    with pytest.raises(BadCredentialsError) as info:
        h.get_properties("contacts")
    assert "BAD_REFRESH_TOKEN" in str(info.value) and REFRESH not in str(info.value)
    ok, message = h.test_connection()
    assert ok is False and REFRESH not in message and CLIENT_SECRET not in message


@pytest.mark.parametrize(
    ("creds", "missing"),
    [
        ({}, "accessToken"),
        ({"refreshToken": REFRESH}, "clientId, clientSecret"),
        ({"refreshToken": REFRESH, "clientId": "c", "accessToken": "  "}, "clientSecret"),
    ],
)
def test_missing_credentials_name_the_keys(rsps, creds, missing):
    h = FastHubSpot(credentials=creds or {"name": "x"}, account_key=f"hs-{uuid.uuid4()}")
    with pytest.raises(ConfigurationError, match=missing):
        h.get_properties("contacts")
    ok, message = h.test_connection()
    assert ok is False and missing in message
    assert len(rsps.calls) == 0


def test_base_url_override_must_be_allowed(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*")
    with pytest.raises(ConfigurationError):
        hook({"accessToken": PAT, "baseUrl": "https://api.hubapi.example.org"}).get_properties("contacts")
    rsps.add(responses.GET, "http://127.0.0.1:8099/hubspot/crm/v3/properties/contacts", json={"results": []})
    assert hook({"accessToken": PAT, "baseUrl": "http://127.0.0.1:8099/hubspot"}).get_properties("contacts") == []
    assert len(rsps.calls) == 1


def test_oauth_token_endpoint_follows_base_url(rsps):
    base = "http://127.0.0.1:8099/hubspot"
    rsps.add(responses.POST, f"{base}/oauth/v3/token", json={"access_token": "at-sbx-1", "expires_in": 1800})
    rsps.add(responses.GET, f"{base}/crm/v3/objects/contacts", json={"results": []})
    assert oauth_hook(baseUrl=base).test_connection() == (True, "Connected to HubSpot (contacts readable)")


# ---------------------------------------------------------------------- errors
def test_429_daily_is_quota_exhausted_and_not_retried(rsps, sleeps):
    rsps.add(
        responses.POST,
        f"{API}/crm/v3/objects/contacts/batch/upsert",
        status=429,
        json=error_body(
            "RATE_LIMITS", "You have reached your daily limit.", errorType="RATE_LIMIT", policyName="DAILY"
        ),
    )
    with pytest.raises(QuotaExhaustedError):
        hook().batch_upsert("contacts", [{"idProperty": "email", "id": "a@x.com", "properties": {}}])
    assert len(rsps.calls) == 1 and sleeps == []


@pytest.mark.parametrize(("policy", "wait"), [("TEN_SECONDLY_ROLLING", 10.0), ("SECONDLY", 1.0)])
def test_429_policy_waits_like_hubspot_sdk(rsps, sleeps, policy, wait):
    url = f"{API}/crm/v3/objects/contacts/search"
    rsps.add(
        responses.POST,
        url,
        status=429,
        json=error_body("RATE_LIMITS", "You have reached your limit.", errorType="RATE_LIMIT", policyName=policy),
    )
    rsps.add(responses.POST, url, json={"total": 0, "results": []})
    h = hook()
    assert h.search("contacts", [{"filters": []}]) == []
    assert len(sleeps) == 1 and wait <= sleeps[0] <= wait * 1.1  # the SDK's wait, plus at most 10% jitter
    assert h.stats.rate_limited == 1


def test_429_retry_after_header_wins(rsps, sleeps):
    url = f"{API}/crm/v3/properties/contacts"
    rsps.add(
        responses.GET,
        url,
        status=429,
        headers={"Retry-After": "3"},
        json=error_body("RATE_LIMITS", "limit", policyName="TEN_SECONDLY_ROLLING"),
    )
    rsps.add(responses.GET, url, json={"results": []})
    hook().get_properties("contacts")
    assert sleeps == [3.0]


def test_classify_error_mapping():
    h = hook()

    def classify(status, payload, url=f"{API}/crm/v3/objects/contacts"):
        resp = requests.Response()
        resp.status_code = status
        resp._content = json.dumps(payload).encode()
        resp.url = url
        resp.headers["Content-Type"] = "application/json"
        return h.classify_error(resp)

    e = classify(401, error_body("INVALID_AUTHENTICATION", "Authentication credentials not found."))
    assert isinstance(e, BadCredentialsError) and e.code == "INVALID_AUTHENTICATION"
    e = classify(
        403,
        error_body(
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes.",
            errors=[{"message": "missing crm.objects.contacts.write"}],
        ),
    )
    assert isinstance(e, BadCredentialsError) and "MISSING_SCOPES" in str(e)
    e = classify(400, error_body("VALIDATION_ERROR", "Property values were not valid"))
    assert type(e) is BadRecordError and e.code == "VALIDATION_ERROR"
    e = classify(404, error_body("OBJECT_NOT_FOUND", "Object not found"))
    assert type(e) is BadRecordError
    e = classify(502, {"message": "bad gateway"})
    assert isinstance(e, RetryableError) and not isinstance(e, RateLimitedError)
    e = classify(423, error_body("LOCKED", "locked"))
    assert isinstance(e, RetryableError)
    e = classify(409, error_body("CONFLICT", "Contact already exists. Existing ID: 4521"))
    assert isinstance(e, HubSpotConflictError) and e.existing_id == "4521" and "Existing ID: 4521" in str(e)
    # only category + message: no correlation id, no raw body
    assert "aeb5f871" not in str(e) and "status" not in str(e)


def test_error_message_never_echoes_token(rsps):
    rsps.add(
        responses.POST,
        f"{API}/crm/v3/objects/notes",
        status=400,
        json=error_body("VALIDATION_ERROR", f"bad header Authorization: Bearer {PAT}"),
    )
    with pytest.raises(BadRecordError) as info:
        hook().create_object("notes", {"hs_timestamp": "2026-11-20T08:00:00Z"})
    assert PAT not in str(info.value) and "VALIDATION_ERROR" in str(info.value)


def test_test_connection_on_401(rsps):
    rsps.add(
        responses.GET,
        f"{API}/crm/v3/objects/contacts",
        status=401,
        json=error_body("INVALID_AUTHENTICATION", f"token {PAT} is expired"),
    )
    ok, message = hook().test_connection()
    assert ok is False
    assert "401" in message and "INVALID_AUTHENTICATION" in message and PAT not in message


# ---------------------------------------------------------------------- properties
def test_create_property_shape_and_conflict(rsps):
    url = f"{API}/crm/v3/properties/contacts"
    rsps.add(responses.POST, url, status=201, json={"name": "rip_customer_key", "hasUniqueValue": True})
    rsps.add(
        responses.POST,
        url,
        status=409,
        json=error_body("CONFLICT", "A property named 'rip_customer_key' already exists."),
    )
    h = hook()
    assert (
        h.create_property("contacts", "rip_customer_key", "Rank It Pro key", unique=True)["name"] == "rip_customer_key"
    )
    assert body(rsps.calls[0]) == {
        "name": "rip_customer_key",
        "label": "Rank It Pro key",
        "type": "string",
        "fieldType": "text",
        "groupName": "contactinformation",
        "hasUniqueValue": True,
    }
    assert h.create_property("contacts", "rip_customer_key", "Rank It Pro key", unique=True) == {}
    rsps.add(responses.POST, f"{API}/crm/v3/properties/notes", status=201, json={"name": "rip_visit_key"})
    h.create_property("notes", "rip_visit_key", "Visit key", group_name="rip")
    assert body(rsps.calls[-1])["groupName"] == "rip"


def test_create_property_group_for_other_objects_comes_from_existing_properties(rsps):
    rsps.add(
        responses.GET,
        f"{API}/crm/v3/properties/notes",
        json={
            "results": [
                {"name": "hs_note_body", "groupName": "engagement_props"},
                {"name": "hs_timestamp", "groupName": "engagement_props"},
                {"name": "hs_attachment_ids", "groupName": "attachments"},
            ]
        },
    )
    rsps.add(responses.POST, f"{API}/crm/v3/properties/notes", status=201, json={"name": "rip_visit_key"})
    hook().create_property("notes", "rip_visit_key", "Rank It Pro check-in key", unique=True)
    assert body(rsps.calls[-1])["groupName"] == "engagement_props"
    assert body(rsps.calls[-1])["hasUniqueValue"] is True


def test_object_type_is_validated(rsps):
    with pytest.raises(ValueError):
        hook().get_properties("contacts/../../account-info")
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------------- reads
def test_batch_read_chunks_and_partial_207(rsps):
    url = f"{API}/crm/v3/objects/contacts/batch/read"
    rsps.add(
        responses.POST,
        url,
        status=207,
        json={
            "status": "COMPLETE",
            "results": [{"id": "1", "properties": {"email": "a@x.com"}}],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects",
                    "context": {"ids": ["b@x.com"]},
                }
            ],
            "startedAt": "2026-11-20T08:00:00Z",
            "completedAt": "2026-11-20T08:00:01Z",
        },
    )
    rsps.add(responses.POST, url, json={"status": "COMPLETE", "results": [{"id": "2"}]})
    ids = [f"user{i}@x.com" for i in range(150)]
    found = hook().batch_read("contacts", ids, id_property="email", properties=["email", "phone"])
    assert [r["id"] for r in found] == ["1", "2"]
    first, second = body(rsps.calls[0]), body(rsps.calls[1])
    assert len(first["inputs"]) == 100 and len(second["inputs"]) == 50
    assert first["inputs"][0] == {"id": "user0@x.com"}
    assert first["idProperty"] == "email" and first["properties"] == ["email", "phone"]
    assert first["propertiesWithHistory"] == []
    assert "archived=false" in rsps.calls[0].request.url


def test_search_follows_paging_and_uses_search_bucket(rsps):
    url = f"{API}/crm/v3/objects/contacts/search"
    rsps.add(
        responses.POST,
        url,
        json={
            "total": 3,
            "results": [{"id": "1"}, {"id": "2"}],
            "paging": {"next": {"after": "2", "link": "?after=2"}},
        },
    )
    rsps.add(responses.POST, url, json={"total": 3, "results": [{"id": "3"}]})
    groups = [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "a@x.com"}]}]
    h = hook()
    assert [r["id"] for r in h.search("contacts", groups, properties=["email"], limit=2)] == ["1", "2", "3"]
    first, second = body(rsps.calls[0]), body(rsps.calls[1])
    assert first == {"filterGroups": groups, "properties": ["email"], "limit": 2, "sorts": []}
    assert second["after"] == "2"
    assert h.stats.by_endpoint["POST /crm/v3/objects/contacts/search"] == 2
    with pytest.raises(ValueError):
        h.search("contacts", groups, limit=500)


def test_rate_limits_from_settings():
    assert hook().rate_limits == {"default": RateLimit(190, 10.0), "search": RateLimit(5, 1.0)}
    assert hook(settings={"rateLimitPer10s": 100}).rate_limits["default"] == RateLimit(100, 10.0)
    assert hook(settings={"rateLimitPer10s": "junk"}).rate_limits["default"] == RateLimit(190, 10.0)


def test_account_id_is_short_and_not_the_token():
    a, b = hook().account_id(), hook({"accessToken": PAT + "x"}).account_id()
    assert len(a) == 12 and a != b and a not in PAT
    h = FastHubSpot(credentials={"accessToken": PAT})
    assert h.account_key.startswith("hubspot:https://api.hubapi.com:") and PAT not in h.account_key


# ---------------------------------------------------------------------- writes
def test_batch_upsert_207_partial(rsps):
    url = f"{API}/crm/v3/objects/contacts/batch/upsert"
    rsps.add(
        responses.POST,
        url,
        status=207,
        json={
            "status": "COMPLETE",
            "results": [{"id": "101", "new": True, "properties": {"email": "a@x.com"}}],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": "Email address b@ is invalid",
                    "context": {"objectWriteTraceId": ["ci-2"]},
                    "errors": [],
                    "links": {},
                }
            ],
            "startedAt": "2026-11-20T08:00:00Z",
            "completedAt": "2026-11-20T08:00:01Z",
        },
    )
    inputs = [
        {"idProperty": "email", "id": "a@x.com", "properties": {"firstname": "Ann"}, "objectWriteTraceId": "ci-1"},
        {"idProperty": "email", "id": "b@", "properties": {}, "objectWriteTraceId": "ci-2"},
    ]
    outcome = hook().batch_upsert("contacts", inputs)
    assert isinstance(outcome, BatchOutcome) and not outcome.ok
    assert outcome.results[0]["new"] is True
    assert set(outcome.errors_by_trace_id()) == {"ci-2"}
    assert body(rsps.calls[0]) == {"inputs": inputs}
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {PAT}"


@pytest.mark.parametrize("operation", ["create", "update", "upsert"])
def test_batch_writes_shape_and_limits(rsps, operation):
    url = f"{API}/crm/v3/objects/notes/batch/{operation}"
    rsps.add(
        responses.POST,
        url,
        status=201 if operation == "create" else 200,
        json={"status": "COMPLETE", "results": [{"id": "9"}]},
    )
    h = hook()
    method = getattr(h, f"batch_{operation}")
    inputs = [
        {
            "properties": {"hs_note_body": "visit"},
            "id": "9",
            "associations": [
                {"to": {"id": "101"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}
            ],
        }
    ]
    assert method("notes", inputs) == BatchOutcome(results=[{"id": "9"}], errors=[])
    assert body(rsps.calls[0]) == {"inputs": inputs}
    with pytest.raises(ValueError, match="at most 100"):
        method("notes", [{"properties": {}}] * 101)
    assert method("notes", []) == BatchOutcome()
    assert len(rsps.calls) == 1


def test_whole_batch_400_raises(rsps):
    rsps.add(
        responses.POST,
        f"{API}/crm/v3/objects/contacts/batch/upsert",
        status=400,
        json=error_body("VALIDATION_ERROR", "Duplicate IDs found in batch input: [a@x.com]"),
    )
    with pytest.raises(BadRecordError, match="Duplicate IDs"):
        hook().batch_upsert("contacts", [{"idProperty": "email", "id": "a@x.com", "properties": {}}] * 2)


def test_create_object_shape_and_existing_id(rsps):
    url = f"{API}/crm/v3/objects/contacts"
    rsps.add(responses.POST, url, status=201, json={"id": "555", "properties": {"email": "a@x.com"}})
    rsps.add(responses.POST, url, status=409, json=error_body("CONFLICT", "Contact already exists. Existing ID: 555"))
    h = hook()
    assert h.create_object("contacts", {"email": "a@x.com"})["id"] == "555"
    assert body(rsps.calls[0]) == {"properties": {"email": "a@x.com"}, "associations": []}
    with pytest.raises(HubSpotConflictError) as info:
        h.create_object("contacts", {"email": "a@x.com"})
    assert info.value.existing_id == "555" and info.value.code == "CONFLICT" and info.value.status == 409
    assert isinstance(info.value, BadRecordError)
    assert len(rsps.calls) == 2  # a conflict is not retried


def test_server_errors_are_retried(rsps, sleeps):
    url = f"{API}/crm/v3/objects/contacts/batch/create"
    rsps.add(responses.POST, url, status=502, body="<html>bad gateway</html>")
    rsps.add(responses.POST, url, status=201, json={"results": [{"id": "1"}]})
    assert hook().batch_create("contacts", [{"properties": {"email": "a@x.com"}}]).results == [{"id": "1"}]


def test_check_access_request(rsps):
    rsps.add(responses.GET, f"{API}/crm/v3/objects/contacts", json={"results": []})
    assert hook().test_connection() == (True, "Connected to HubSpot (contacts readable)")
    assert rsps.calls[0].request.url == f"{API}/crm/v3/objects/contacts?limit=1"


# ---------------------------------------------------------------------- connections
def test_credentials_from_connection():
    conn = Connection(
        conn_id="hs",
        conn_type="crm_hubspot",
        password=PAT,
        extra=json.dumps(
            {
                "clientId": "cid-1",
                "extra__crm_hubspot__clientSecret": CLIENT_SECRET,
                "refreshToken": "",
                "baseUrl": "http://127.0.0.1:8099/hubspot",
            }
        ),
    )
    assert HubSpotHook.credentials_from_connection(conn) == {
        "accessToken": PAT,
        "clientId": "cid-1",
        "clientSecret": CLIENT_SECRET,
        "baseUrl": "http://127.0.0.1:8099/hubspot",
    }


def test_hook_from_airflow_connection_env(monkeypatch, rsps):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM_HUBSPOT_DEFAULT",
        json.dumps({"conn_type": "crm_hubspot", "password": PAT, "extra": {"crmSettings": {"rateLimitPer10s": 100}}}),
    )
    rsps.add(responses.GET, f"{API}/crm/v3/objects/contacts", json={"results": []})
    h = FastHubSpot(account_key=f"hs-{uuid.uuid4()}")
    assert h.conn_id == "crm_hubspot_default"
    assert h.test_connection()[0] is True
    assert h.rate_limits["default"] == RateLimit(100, 10.0)


def test_from_integration_uses_app_keys(rsps):
    integration = {
        "name": "HubSpot",
        "status": "active",
        "credentials": {"accessToken": PAT},
        "crmSettings": {"rateLimitPer10s": 100},
    }
    h = FastHubSpot.from_integration(integration, account_key=f"hs-{uuid.uuid4()}")
    assert h.cred("accessToken") == PAT and h.rate_limits["default"].requests == 100
