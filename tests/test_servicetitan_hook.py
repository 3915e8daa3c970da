"""ServiceTitanHook against ServiceTitan's documented request and response shapes (``responses``, no network)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from airflow.sdk import Connection

from crm_hooks.errors import (
    BadCredentialsError,
    BadRecordError,
    ConfigurationError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.servicetitan import (
    DEFAULT_APPLICATION_GUID,
    WINDOW_SECONDS,
    JobDefaults,
    ServiceTitanHook,
    choose_reference,
)

pytestmark = pytest.mark.usefixtures("instant_rate_limits")

API = "https://api.servicetitan.io"
AUTH = "https://auth.servicetitan.io/connect/token"
TENANT = "1234567"
SECRET = "cs1.unit-client-secret-7f8e9d"
APP_KEY = "ak1.unit-app-key-0a1b2c3d"
CREDS = {"clientId": "cid.unit-client", "clientSecret": SECRET, "tenantId": TENANT, "appKey": APP_KEY}
CUSTOMERS = f"{API}/crm/v2/tenant/{TENANT}/customers"
JOBS = f"{API}/jpm/v2/tenant/{TENANT}/jobs"


class FastServiceTitan(ServiceTitanHook):
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002


def hook(credentials=None, settings=None, **kwargs) -> FastServiceTitan:
    kwargs.setdefault("account_key", f"st-{uuid.uuid4()}")
    return FastServiceTitan(credentials=CREDS if credentials is None else credentials, settings=settings, **kwargs)


def token(rsps, value="st-token-0001", url=AUTH, expires_in=900):
    rsps.add(responses.POST, url, json={"access_token": value, "expires_in": expires_in, "token_type": "Bearer"})


def page(data, has_more=False, number=1):
    return {"page": number, "pageSize": 50, "hasMore": has_more, "data": data}


def problem(status, title, errors=None):
    return {
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "title": title,
        "status": status,
        "traceId": "00-9f1c2d3e4f5a6b7c-01",
        "errors": errors or {},
        "data": {},
    }


def params(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def body(call) -> dict:
    return json.loads(call.request.body)


def api_calls(rsps):
    return [c for c in rsps.calls if not c.request.url.startswith(AUTH)]


# ---------------------------------------------------------------------- auth
def test_token_request_shape_caching_and_both_auth_headers(rsps):
    token(rsps)
    rsps.add(responses.GET, CUSTOMERS, json=page([]))
    h = hook()
    h.find_customers_by_phone("5125550100")
    h.find_customers_by_phone("5125550101")
    token_calls = [c for c in rsps.calls if c.request.url == AUTH]
    assert len(token_calls) == 1 and h.stats.token_refreshes == 1
    req = token_calls[0].request
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in req.headers and "ST-App-Key" not in req.headers
    assert parse_qs(req.body) == {
        "grant_type": ["client_credentials"],
        "client_id": ["cid.unit-client"],
        "client_secret": [SECRET],
    }
    for call in api_calls(rsps):
        assert call.request.headers["Authorization"] == "Bearer st-token-0001"
        assert call.request.headers["ST-App-Key"] == APP_KEY
    assert "st-token-0001" in h.secrets() and SECRET in h.secrets() and APP_KEY in h.secrets()


def test_token_is_refreshed_after_401_then_the_call_succeeds(rsps):
    token(rsps, "st-token-old")
    token(rsps, "st-token-new")
    rsps.add(responses.GET, CUSTOMERS, status=401, json=problem(401, "Unauthorized"))
    rsps.add(responses.GET, CUSTOMERS, json=page([{"id": 7}]))
    h = hook()
    assert h.find_customers_by_phone("5125550100") == [{"id": 7}]
    assert [c.request.headers["Authorization"] for c in api_calls(rsps)] == [
        "Bearer st-token-old",
        "Bearer st-token-new",
    ]
    assert h.stats.token_refreshes == 2


def test_401_twice_is_bad_credentials_naming_the_app_key(rsps):
    token(rsps, "st-token-a")
    token(rsps, "st-token-b")
    rsps.add(responses.GET, CUSTOMERS, status=401, json=problem(401, "Unauthorized"))
    rsps.add(responses.GET, CUSTOMERS, status=401, json=problem(401, "Unauthorized"))
    with pytest.raises(BadCredentialsError, match="appKey"):
        hook().find_customers_by_phone("5125550100")


def test_bad_client_secret_is_bad_credentials_without_the_secret(rsps, sleeps):
    rsps.add(responses.POST, AUTH, status=400, json={"error": "invalid_client"})
    h = hook()
    with pytest.raises(BadCredentialsError) as info:
        h.find_jobs_by_marker("rankitpro_checkin_key", ["rankitpro-1-1"])
    assert "invalid_client" in str(info.value) and "production" in str(info.value)
    assert SECRET not in str(info.value) and len(rsps.calls) == 1 and sleeps == []
    ok, message = h.test_connection()
    assert ok is False and SECRET not in message and APP_KEY not in message


@pytest.mark.parametrize(
    ("missing", "named"),
    [("appKey", "appKey (appKey is the ST-App-Key"), ("tenantId", "tenantId"), ("clientSecret", "clientSecret")],
)
def test_missing_credential_is_a_configuration_error_naming_it(rsps, missing, named):
    h = hook({k: v for k, v in CREDS.items() if k != missing})
    with pytest.raises(ConfigurationError, match=named.replace("(", r"\(")):
        h.find_customers_by_phone("5125550100")
    ok, message = h.test_connection()
    assert ok is False and missing in message
    assert len(rsps.calls) == 0


def test_tenant_must_be_numeric(rsps):
    with pytest.raises(ConfigurationError, match="numeric"):
        hook({**CREDS, "tenantId": "12/../../x"}).check_access()
    assert len(rsps.calls) == 0


def test_integration_environment_hosts(rsps):
    token(rsps, url="https://auth-integration.servicetitan.io/connect/token")
    rsps.add(responses.GET, f"https://api-integration.servicetitan.io/crm/v2/tenant/{TENANT}/customers", json=page([]))
    h = hook({**CREDS, "environment": "integration"})
    assert h.check_access() == f"Connected to ServiceTitan tenant {TENANT} (integration; customers readable)"
    assert params(rsps.calls[-1]) == {"page": ["1"], "pageSize": ["1"]}
    with pytest.raises(ConfigurationError, match="environment"):
        hook(settings={"environment": "staging"}).check_access()


def test_overrides_must_be_allowed_hosts_and_auth_url_takes_a_host_or_token_url(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*")
    with pytest.raises(ConfigurationError, match="CRM_SYNC_ALLOWED_HOSTS"):
        hook({**CREDS, "authUrl": "https://auth.servicetitan.example.org"}).check_access()
    with pytest.raises(ConfigurationError, match="CRM_SYNC_ALLOWED_HOSTS"):
        hook({**CREDS, "baseUrl": "https://evil.example.org"}).check_access()
    with pytest.raises(ConfigurationError, match="https"):
        hook({**CREDS, "baseUrl": "http://api.servicetitan.io"}).check_access()
    assert len(rsps.calls) == 0
    sandbox = "http://127.0.0.1:8765/servicetitan"
    token(rsps, url=f"{sandbox}/connect/token")
    rsps.add(responses.GET, f"{sandbox}/crm/v2/tenant/{TENANT}/customers", json=page([]))
    for auth_url in (sandbox, f"{sandbox}/connect/token"):
        assert hook({**CREDS, "baseUrl": sandbox, "authUrl": auth_url}).test_connection()[0] is True


# ---------------------------------------------------------------------- errors
def test_429_retry_after_is_honoured_and_defaults_to_one_second(rsps, sleeps):
    token(rsps)
    rsps.add(responses.GET, CUSTOMERS, status=429, headers={"Retry-After": "2"}, json=problem(429, "Too Many Requests"))
    rsps.add(responses.GET, CUSTOMERS, status=429, json=problem(429, "Too Many Requests"))
    rsps.add(responses.GET, CUSTOMERS, json=page([]))
    h = hook()
    assert h.find_customers_by_name("Ann Lee") == []
    assert sleeps == [2.0, 1.0] and h.stats.rate_limited == 2


def test_validation_error_is_a_bad_record_with_field_messages_not_retried(rsps, sleeps):
    token(rsps)
    rsps.add(
        responses.POST,
        JOBS,
        status=400,
        json=problem(
            400,
            "One or more validation errors occurred.",
            {"summary": ["The value is not valid."], "appointments[0].end": ["The end must be after the start."]},
        ),
    )
    with pytest.raises(BadRecordError) as info:
        hook().create_job({"customerId": 1})
    text = str(info.value)
    assert "One or more validation errors occurred. - summary: The value is not valid.; appointments[0].end" in text
    assert "traceId" not in text and "00-9f1c" not in text
    assert len(api_calls(rsps)) == 1 and sleeps == []


def test_classify_error_mapping():
    h = hook()

    def classify(status, payload, url=CUSTOMERS, headers=None):
        resp = requests.Response()
        resp.status_code = status
        resp._content = json.dumps(payload).encode()
        resp.url = url
        resp.headers.update(headers or {})
        return h.classify_error(resp)

    e = classify(403, problem(403, "Forbidden"))
    assert isinstance(e, BadCredentialsError) and "connected to tenant" in str(e)
    e = classify(404, problem(404, "Customer not found"))
    assert type(e) is BadRecordError and e.status == 404 and "Customer not found" in str(e)
    e = classify(409, problem(409, "Conflict"))
    assert type(e) is BadRecordError
    e = classify(503, {"message": "unavailable"})
    assert isinstance(e, RetryableError) and not isinstance(e, RateLimitedError)
    e = classify(429, problem(429, "Too Many Requests"), headers={"Retry-After": "0.25"})
    assert isinstance(e, RateLimitedError) and e.retry_after == 0.25
    e = classify(400, {"error": "invalid_client", "error_description": f"client_secret {SECRET}"}, url=AUTH)
    assert isinstance(e, BadCredentialsError) and SECRET not in str(e)


def test_5xx_then_success(rsps, sleeps):
    token(rsps)
    rsps.add(responses.GET, f"{API}/crm/v2/tenant/{TENANT}/locations", status=503)
    rsps.add(responses.GET, f"{API}/crm/v2/tenant/{TENANT}/locations", json=page([{"id": 9, "customerId": 5}]))
    h = hook()
    assert h.list_locations(5) == [{"id": 9, "customerId": 5}]
    assert h.stats.retries == 1 and len(sleeps) == 1


# ---------------------------------------------------------------------- customers
def test_customer_lookups_request_shapes(rsps):
    token(rsps)
    rsps.add(responses.GET, CUSTOMERS, json=page([{"id": 3, "name": "Ann Lee"}]))
    h = hook()
    assert h.find_customers_by_phone("5125550100") == [{"id": 3, "name": "Ann Lee"}]
    assert params(api_calls(rsps)[-1]) == {"phone": ["5125550100"], "sort": ["+Id"], "page": ["1"], "pageSize": ["50"]}
    h.find_customers_by_name("Ann Lee")
    assert params(api_calls(rsps)[-1])["name"] == ["Ann Lee"]
    assert "externalDataApplicationGuid" not in params(api_calls(rsps)[-1])


def test_find_by_marker_chunks_values_follows_pages_and_keys_by_value(rsps):
    token(rsps)
    guid = DEFAULT_APPLICATION_GUID
    values = [f"email:user{i}@example.com" for i in range(30)]
    rsps.add(
        responses.GET,
        CUSTOMERS,
        json=page([{"id": 1, "externalData": [{"key": "rankitpro_customer_key", "value": values[0]}]}], has_more=True),
    )
    rsps.add(
        responses.GET,
        CUSTOMERS,
        json=page(
            [
                {
                    "id": 2,
                    "externalData": [
                        {"key": "other", "value": values[1]},
                        {"key": "rankitpro_customer_key", "value": values[1]},
                    ],
                }
            ],
            number=2,
        ),
    )
    rsps.add(
        responses.GET,
        CUSTOMERS,
        json=page([{"id": 3, "externalData": [{"key": "rankitpro_customer_key", "value": values[29]}]}]),
    )
    found = hook().find_customers_by_marker("rankitpro_customer_key", values)
    assert {v: c["id"] for v, c in found.items()} == {values[0]: 1, values[1]: 2, values[29]: 3}
    calls = api_calls(rsps)
    assert [params(c)["page"] for c in calls] == [["1"], ["2"], ["1"]]
    first = params(calls[0])
    assert first["externalDataApplicationGuid"] == [guid] and first["externalDataKey"] == ["rankitpro_customer_key"]
    assert first["externalDataValues"] == [",".join(values[:25])]
    assert params(calls[2])["externalDataValues"] == [",".join(values[25:])]
    with pytest.raises(ValueError, match="commas"):
        hook().find_customers_by_marker("k", ["a,b"])


def test_application_guid_setting_is_used_and_validated(rsps):
    token(rsps)
    rsps.add(responses.GET, JOBS, json=page([]))
    guid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    hook(settings={"applicationGuid": guid}).find_jobs_by_marker("rankitpro_checkin_key", ["rankitpro-1-2"])
    assert params(api_calls(rsps)[-1])["externalDataApplicationGuid"] == [guid]
    with pytest.raises(ConfigurationError, match="applicationGuid"):
        hook(settings={"applicationGuid": "not-a-guid"}).application_guid  # noqa: B018


def _customer_request():
    return {
        "name": "Ann Lee",
        "address": {"street": "1 Main", "city": "Austin", "state": "TX", "zip": "78701", "country": "USA"},
        "locations": [
            {
                "name": "Ann Lee",
                "address": {"street": "1 Main", "city": "Austin", "state": "TX", "zip": "78701", "country": "USA"},
            }
        ],
        "externalData": {
            "applicationGuid": DEFAULT_APPLICATION_GUID,
            "externalData": [{"key": "rankitpro_customer_key", "value": "email:ann@example.com"}],
        },
    }


def test_create_customer_posts_the_request_and_returns_the_created_response(rsps):
    token(rsps)
    rsps.add(responses.POST, CUSTOMERS, json={"id": 11, "locations": [{"id": 12, "customerId": 11}], "contacts": []})
    created = hook().create_customer(_customer_request())
    assert created["locations"][0]["id"] == 12
    assert body(api_calls(rsps)[0]) == _customer_request()


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("read timed out"), 503], ids=["timeout", "503"])
def test_create_whose_answer_was_lost_is_found_by_its_marker_not_sent_again(rsps, sleeps, failure):
    token(rsps)
    if isinstance(failure, int):
        rsps.add(responses.POST, CUSTOMERS, status=failure, json={"message": "gateway"})
    else:
        rsps.add(responses.POST, CUSTOMERS, body=failure)
    rsps.add(
        responses.GET,
        CUSTOMERS,
        json=page([{"id": 11, "externalData": [{"key": "rankitpro_customer_key", "value": "email:ann@example.com"}]}]),
    )
    h = hook()
    assert h.create_customer(_customer_request())["id"] == 11
    methods = [c.request.method for c in api_calls(rsps)]
    assert methods == ["POST", "GET"] and h.stats.retries == 1


def test_create_whose_answer_was_lost_and_not_stored_is_sent_again(rsps, sleeps):
    token(rsps)
    rsps.add(responses.POST, JOBS, status=502)
    rsps.add(responses.GET, JOBS, json=page([]))
    rsps.add(responses.POST, JOBS, json={"id": 77, "externalData": []})
    job = {
        "customerId": 1,
        "externalData": {
            "applicationGuid": DEFAULT_APPLICATION_GUID,
            "externalData": [{"key": "rankitpro_checkin_key", "value": "rankitpro-1-9"}],
        },
    }
    assert hook().create_job(job)["id"] == 77
    calls = api_calls(rsps)
    assert [c.request.method for c in calls] == ["POST", "GET", "POST"]
    assert params(calls[1])["externalDataValues"] == ["rankitpro-1-9"]


def test_create_refused_with_429_is_resent_without_a_lookup(rsps, sleeps):
    token(rsps)
    rsps.add(responses.POST, JOBS, status=429, headers={"Retry-After": "0.5"}, json=problem(429, "Too Many Requests"))
    rsps.add(responses.POST, JOBS, json={"id": 78})
    assert hook().create_job({"customerId": 1})["id"] == 78
    assert [c.request.method for c in api_calls(rsps)] == ["POST", "POST"] and sleeps == [0.5]


def test_create_gives_up_after_max_attempts_with_a_retryable_error(rsps, sleeps):
    token(rsps)
    for _ in range(3):
        rsps.add(responses.POST, JOBS, status=503)
    rsps.add(responses.GET, JOBS, json=page([]))
    h = hook(max_attempts=3)
    with pytest.raises(RetryableError):
        h.create_job(
            {
                "customerId": 1,
                "externalData": {
                    "applicationGuid": DEFAULT_APPLICATION_GUID,
                    "externalData": [{"key": "rankitpro_checkin_key", "value": "rankitpro-1-3"}],
                },
            }
        )
    assert [c.request.method for c in api_calls(rsps)] == ["POST", "GET", "POST", "GET", "POST"]
    assert h.max_attempts == 3


def test_updates_and_locations_request_shapes(rsps):
    token(rsps)
    rsps.add(responses.PATCH, f"{CUSTOMERS}/11", json={"id": 11, "name": "Ann Lee"})
    rsps.add(responses.PATCH, f"{JOBS}/77", json={"id": 77})
    rsps.add(responses.POST, f"{API}/crm/v2/tenant/{TENANT}/locations", json={"id": 13})
    rsps.add(responses.GET, f"{API}/crm/v2/tenant/{TENANT}/locations", json=page([{"id": 12}], has_more=True))
    rsps.add(responses.GET, f"{API}/crm/v2/tenant/{TENANT}/locations", json=page([{"id": 13}], number=2))
    h = hook()
    h.update_customer("11", {"name": "Ann Lee"})
    h.update_job(77, {"summary": "<b>x</b>"})
    h.create_location({"name": "Ann", "address": {}, "customerId": 11})
    assert [loc["id"] for loc in h.list_locations(11)] == [12, 13]
    calls = api_calls(rsps)
    assert [(c.request.method, urlsplit(c.request.url).path) for c in calls[:3]] == [
        ("PATCH", f"/crm/v2/tenant/{TENANT}/customers/11"),
        ("PATCH", f"/jpm/v2/tenant/{TENANT}/jobs/77"),
        ("POST", f"/crm/v2/tenant/{TENANT}/locations"),
    ]
    assert body(calls[0]) == {"name": "Ann Lee"} and body(calls[1]) == {"summary": "<b>x</b>"}
    assert params(calls[3]) == {"customerId": ["11"], "sort": ["+Id"], "page": ["1"], "pageSize": ["50"]}
    with pytest.raises(ValueError):
        h.update_job("77/../../settings", {})


# ---------------------------------------------------------------------- reference data, access, config
def test_reference_reads_return_none_when_missing(rsps):
    token(rsps)
    rsps.add(responses.GET, f"{API}/jpm/v2/tenant/{TENANT}/job-types/2001", json={"id": 2001, "name": "Repair"})
    rsps.add(
        responses.GET,
        f"{API}/settings/v2/tenant/{TENANT}/business-units/9",
        status=404,
        json=problem(404, "Business unit not found"),
    )
    rsps.add(responses.GET, f"{API}/marketing/v2/tenant/{TENANT}/campaigns/3001", json={"id": 3001})
    h = hook()
    assert h.get_job_type(2001)["name"] == "Repair"
    assert h.get_business_unit(9) is None
    assert h.get_campaign(3001) == {"id": 3001}


def test_rate_limit_is_the_documented_60_per_second_with_a_jitter_margin():
    assert hook().rate_limits["default"].requests == 60 and hook().rate_limits["default"].per_seconds == WINDOW_SECONDS
    assert hook(settings={"requestsPerSecond": 20}).rate_limits["default"].requests == 20
    assert hook(settings={"requestsPerSecond": 500}).rate_limits["default"].requests == 60
    assert hook().batch_size == 1
    assert hook().account_id().startswith(f"{TENANT}-") and APP_KEY not in hook().account_key


def test_credentials_from_connection():
    conn = Connection(
        conn_id="crm_servicetitan_t",
        conn_type="crm_servicetitan",
        login="cid.c",
        password=SECRET,
        extra=json.dumps(
            {"tenantId": TENANT, "appKey": APP_KEY, "environment": "integration", "crmSettings": {"jobTypeId": 2001}}
        ),
    )
    assert ServiceTitanHook.credentials_from_connection(conn) == {
        "clientId": "cid.c",
        "clientSecret": SECRET,
        "tenantId": TENANT,
        "appKey": APP_KEY,
        "environment": "integration",
    }


# ---------------------------------------------------------------------- against the sandbox (real HTTP)
def sandbox_hook(sandbox, credentials=None, **limits) -> FastServiceTitan:
    creds = {**CREDS, "clientId": f"cid.{uuid.uuid4().hex[:8]}"}
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={"crm": "servicetitan", "account": creds["clientId"], "credentials": creds, "options": limits},
        timeout=10,
    ).raise_for_status()
    base = f"{sandbox.url}/servicetitan"
    return hook({**creds, "baseUrl": base, "authUrl": base, **(credentials or {})})


def test_sandbox_customer_and_job_round_trip(sandbox):
    from crm_sync.mapping import servicetitan as st
    from crm_sync.models import SyncSettings
    from crm_sync.prepare import prepare_check_in

    h = sandbox_hook(sandbox)
    row = prepare_check_in(
        {
            "id": 5,
            "company_id": 2,
            "customer_name": "Ann Lee",
            "customer_email": "ann@example.com",
            "customer_phone": "512-555-0100",
            "address": "1 Main St",
            "city": "Austin",
            "state": "TX",
            "zip": "78701",
            "notes": "Fixed it",
            "created_at": "2026-11-20T10:00:00",
        },
        SyncSettings(),
    )
    payload, _, _ = st.customer_payload(row, h.application_guid)
    created = h.create_customer(payload)
    customer_id, location_id = created["id"], created["locations"][0]["id"]
    assert [c["type"] for c in created["contacts"]] == ["Email", "Phone"]
    assert [c["id"] for c in h.find_customers_by_phone("(512) 555-0100")] == [customer_id]
    assert h.find_customers_by_phone("5125550199") == []
    assert [c["id"] for c in h.find_customers_by_name("ann lee")] == [customer_id]
    by_marker = h.find_customers_by_marker(st.CUSTOMER_MARKER_KEY, ["email:ann@example.com", "email:nobody@x.com"])
    assert list(by_marker) == ["email:ann@example.com"] and by_marker["email:ann@example.com"]["id"] == customer_id
    assert [loc["id"] for loc in h.list_locations(customer_id)] == [location_id]

    defaults = JobDefaults(1001, 2001, 3001, "Normal")
    job_payload, _ = st.job_payload(row, customer_id, location_id, defaults, h.application_guid, {})
    job = h.create_job(job_payload)
    assert job["jobStatus"] == "Scheduled" and job["externalData"] == [
        {"key": st.VISIT_MARKER_KEY, "value": "rankitpro-2-5"}
    ]
    assert (
        h.find_jobs_by_marker(st.VISIT_MARKER_KEY, ["rankitpro-2-5", "rankitpro-2-6"])["rankitpro-2-5"]["id"]
        == job["id"]
    )
    assert h.update_job(job["id"], {"summary": "Edited"})["summary"] == "Edited"
    assert h.update_customer(customer_id, {"name": "Ann B. Lee"})["name"] == "Ann B. Lee"
    # a marker written under another application guid is invisible to this one
    other = hook({**h.credentials, "applicationGuid": str(uuid.uuid4())})
    assert other.find_jobs_by_marker(st.VISIT_MARKER_KEY, ["rankitpro-2-5"]) == {}

    with pytest.raises(BadRecordError) as info:
        h.create_job({**job_payload, "summary": "SANDBOX-INVALID text", "jobTypeId": 999})
    assert "summary" in str(info.value) and "jobTypeId: Job type 999 not found" in str(info.value)
    with pytest.raises(BadRecordError, match="locations"):
        h.create_customer({**payload, "locations": []})
    assert h.get_job_type(2001)["id"] == 2001 and h.get_campaign(4) is None and h.get_business_unit(1001)


def test_sandbox_auth_failures_and_token_expiry(sandbox, sleeps):
    h = sandbox_hook(sandbox)
    assert h.test_connection()[0] is True
    account = h.cred("clientId")
    requests.post(f"{sandbox.url}/_sandbox/accounts/servicetitan/{account}/expire-tokens", timeout=5).raise_for_status()
    assert h.find_customers_by_phone("5125550100") == [] and h.stats.token_refreshes == 2

    ok, message = sandbox_hook(sandbox, {"appKey": "ak1.wrong"}).test_connection()
    assert ok is False and "ST-App-Key" in message and "ak1.wrong" not in message
    ok, message = sandbox_hook(sandbox, {"tenantId": "999"}).test_connection()
    assert ok is False and "403" in message and "tenant 999" in message
    ok, message = sandbox_hook(sandbox, {"clientSecret": "wrong-secret-000"}).test_connection()
    assert ok is False and "invalid_client" in message and "wrong-secret-000" not in message


def test_sandbox_rate_limit_is_a_429_with_retry_after(sandbox):
    h = sandbox_hook(sandbox, per_second=2)
    h.max_attempts = 1
    with pytest.raises(RateLimitedError) as info:
        for _ in range(4):
            h.find_customers_by_name("x")
    assert info.value.status == 429 and info.value.retry_after == 1.0 and "Too Many Requests" in str(info.value)


# ---------------------------------------------------------------------- job defaults discovered from the tenant
UNITS = [{"id": 11, "name": "HVAC", "active": True}, {"id": 12, "name": "Plumbing", "active": False}]
CAMPAIGNS = [{"id": 31, "name": "Google Ads", "active": True}, {"id": 32, "name": "Rank It Pro", "active": True}]


def test_choose_reference_single_active_named_ambiguous_none():
    assert choose_reference(UNITS, key="businessUnitId", wanted=None, tenant=TENANT) == 11  # the inactive one ignored
    assert choose_reference(CAMPAIGNS, key="campaignId", wanted="rank it pro", tenant=TENANT) == 32
    with pytest.raises(ConfigurationError) as ambiguous:
        choose_reference(CAMPAIGNS, key="campaignId", wanted=None, tenant=TENANT)
    assert str(ambiguous.value) == (
        f"servicetitan: tenant {TENANT} has 2 active campaigns: set crmSettings.campaignId (or campaignName) "
        "to one of: 31 'Google Ads'; 32 'Rank It Pro'"
    )
    with pytest.raises(ConfigurationError, match="no active campaign is named 'Yelp'.*31 'Google Ads'; 32 'Rank"):
        choose_reference(CAMPAIGNS, key="campaignId", wanted="Yelp", tenant=TENANT)
    with pytest.raises(ConfigurationError, match=f"tenant {TENANT} has no active job types: create one in"):
        choose_reference([], key="jobTypeId", wanted=None, tenant=TENANT)


def test_list_references_request_shape(rsps):
    token(rsps)
    units = f"{API}/settings/v2/tenant/{TENANT}/business-units"
    rsps.add(responses.GET, units, json=page(UNITS[:1], has_more=True))
    rsps.add(responses.GET, units, json=page([{"id": 13, "name": "Electrical", "active": True}], number=2))
    rsps.add(responses.GET, f"{API}/jpm/v2/tenant/{TENANT}/job-types", json=page([{"id": 21, "name": "Repair"}]))
    rsps.add(responses.GET, f"{API}/marketing/v2/tenant/{TENANT}/campaigns", json=page(CAMPAIGNS))
    h = hook()
    assert [u["id"] for u in h.list_references("businessUnitId")] == [11, 13]
    assert h.list_references("jobTypeId") == [{"id": 21, "name": "Repair"}]
    assert h.list_references("campaignId") == CAMPAIGNS
    calls = api_calls(rsps)
    assert [params(c)["page"] for c in calls] == [["1"], ["2"], ["1"], ["1"]]
    assert all(params(c)["active"] == ["True"] for c in calls)
    assert calls[0].request.headers["ST-App-Key"] == APP_KEY


def test_sandbox_serves_the_reference_lists(sandbox):
    campaigns = [{"id": 31, "name": "Google Ads"}, {"id": 32, "name": "Rank It Pro", "active": False}, 33]
    h = sandbox_hook(sandbox, campaigns=campaigns)
    assert [(c["id"], c["name"]) for c in h.list_references("campaignId")] == [(31, "Google Ads"), (33, "Campaign 33")]
    assert [u["id"] for u in h.list_references("businessUnitId")] == [1001]
    assert [t["id"] for t in h.list_references("jobTypeId")] == [2001]
    everything = requests.get(
        f"{h.base_url}/marketing/v2/tenant/{TENANT}/campaigns",
        params={"active": "Any", "name": "rank", "pageSize": 1},
        headers=h.auth_headers(),
        timeout=10,
    ).json()
    assert everything["data"] == [{**campaigns[1], "modifiedOn": everything["data"][0]["modifiedOn"], "category": None}]
    assert h.get_campaign(32)["active"] is False and h.get_campaign(34) is None
