"""FieldEdgeHook against FieldEdge's documented request/response shapes (``responses``, no network),
then the hook and the destination against the sandbox's FieldEdge (real HTTP)."""

from __future__ import annotations

import base64
import json
import time
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
    QuotaExhaustedError,
    RateLimitedError,
    RetryableError,
)
from crm_hooks.fieldedge import (
    DEFAULT_AUTH_URL,
    DEFAULT_BASE_URL,
    FieldEdgeHook,
    LeadLookupRefusedError,
    record_phone,
)
from crm_hooks.rate_limit import RateLimit
from crm_sync.destinations.base import CustomerRef
from crm_sync.destinations.fieldedge import FieldEdgeDestination
from crm_sync.models import SyncSettings
from crm_sync.prepare import prepare_check_in

pytestmark = pytest.mark.usefixtures("instant_rate_limits")

API = DEFAULT_BASE_URL
TOKEN_URL = f"{DEFAULT_AUTH_URL}/oauth/token"
SECRET = "fe-client-secret-9f8e7d6c"
CREDS = {"clientId": "fe-client-1", "clientSecret": SECRET, "targetId": "tenant-777"}
SEARCH = f"{API}/v1/customers/search"
CUSTOMERS = f"{API}/v1/customers"
LEADS = f"{API}/v1/leads"


class FastFieldEdge(FieldEdgeHook):
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002


def hook(credentials=None, **kwargs) -> FastFieldEdge:
    kwargs.setdefault("account_key", f"fe-{uuid.uuid4()}")
    return FastFieldEdge(credentials=credentials if credentials is not None else dict(CREDS), **kwargs)


def token_ok(rsps, token="eyJ.fe-access-token-0001.sig", **extra):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": token, "token_type": "Bearer", **extra})


def calls(rsps, url, method=None):
    return [
        c for c in rsps.calls if c.request.url.split("?")[0] == url and (method is None or c.request.method == method)
    ]


def body(call) -> dict:
    return json.loads(call.request.body)


def jwt(exp: float) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp, "target_id": "tenant-777"}).encode()).rstrip(b"=")
    return f"eyJhbGciOiJIUzI1NiJ9.{claims.decode()}.c2ln"


# ---------------------------------------------------------------------- auth
def test_token_request_shape_bearer_and_caching(rsps):
    token_ok(rsps, expires_in=3600)
    rsps.add(responses.GET, SEARCH, status=204)
    h = hook()
    assert h.search_customers(email="ann@example.com") == []
    assert h.search_customers(email="bob@example.com") == []
    token_calls = calls(rsps, TOKEN_URL)
    assert len(token_calls) == 1
    req = token_calls[0].request
    assert req.headers["Content-Type"] == "application/json" and "Authorization" not in req.headers
    assert body(token_calls[0]) == {
        "grant_type": "client_credentials",
        "client_id": "fe-client-1",
        "client_secret": SECRET,
        "target_id": "tenant-777",
    }
    api = calls(rsps, SEARCH)[0].request
    assert api.headers["Authorization"] == "Bearer eyJ.fe-access-token-0001.sig"
    assert "Ocp-Apim-Subscription-Key" not in api.headers


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"expires_in": 900}, 900.0),
        ({}, 1800.0),  # from the JWT's exp claim
    ],
)
def test_token_lifetime_from_expires_in_or_jwt_exp(rsps, extra, expected):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": jwt(time.time() + 1800), **extra})
    _, lifetime = hook().fetch_token()
    assert lifetime == pytest.approx(expected, abs=5)


def test_token_lifetime_falls_back_to_setting(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "opaque-token-value"})
    assert hook(settings={"tokenSeconds": 600}).fetch_token()[1] == 600.0


def test_subscription_key_is_sent_when_configured(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, SEARCH, status=204)
    h = hook({**CREDS, "subscriptionKey": "apim-sub-key-123456"})
    h.search_customers(phone="+15125550100")
    assert calls(rsps, SEARCH)[0].request.headers["Ocp-Apim-Subscription-Key"] == "apim-sub-key-123456"
    assert "apim-sub-key-123456" in h.secrets()


def test_legacy_only_credentials_explain_what_fieldedge_needs(rsps):
    legacy = {"apiKey": "legacy-api-key-5555", "username": "office@acme.example", "password": "Legacy-Pass-1"}
    with pytest.raises(ConfigurationError) as err:
        hook(legacy).search_customers(email="a@example.com")
    text = str(err.value)
    for needed in ("clientId", "clientSecret", "targetId", "FieldEdge Marketplace", "Tenant ID"):
        assert needed in text
    assert "legacy-api-key-5555" not in text and "Legacy-Pass-1" not in text
    assert not rsps.calls


@pytest.mark.parametrize(
    ("creds", "missing"),
    [
        ({"clientId": "c", "clientSecret": "s"}, "targetId"),
        ({"clientId": "c", "targetId": "t", "clientSecret": " "}, "clientSecret"),
    ],
)
def test_missing_keys_are_named(rsps, creds, missing):
    with pytest.raises(ConfigurationError, match=f"missing {missing}"):
        hook(creds).fetch_token()
    assert not rsps.calls


def test_overrides_base_url_and_auth_url(rsps):
    rsps.add(responses.POST, "https://dev.marketplace.fieldedge.com/oauth/token", json={"access_token": "tok-dev"})
    rsps.add(responses.GET, "https://dev.api.fieldedge.com/leads/v1/customers/search", status=204)
    h = hook(
        {
            **CREDS,
            "baseUrl": "https://dev.api.fieldedge.com/leads/",
            "authUrl": "https://dev.marketplace.fieldedge.com/oauth/token",
        }
    )  # a full token URL works too
    assert h.token_url == "https://dev.marketplace.fieldedge.com/oauth/token"
    h.search_customers(email="a@example.com")
    assert [c.request.url.split("?")[0] for c in rsps.calls] == [
        "https://dev.marketplace.fieldedge.com/oauth/token",
        "https://dev.api.fieldedge.com/leads/v1/customers/search",
    ]


@pytest.mark.parametrize("key", ["baseUrl", "authUrl"])
def test_foreign_override_refused_before_any_request(rsps, monkeypatch, key):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "crm-sandbox.internal:8765")
    h = hook({**CREDS, key: "https://fieldedge.evil.example"})
    with pytest.raises(ConfigurationError, match="CRM_SYNC_ALLOWED_HOSTS"):
        h.validate()
    with pytest.raises(ConfigurationError):
        h.search_customers(email="a@example.com")
    assert not rsps.calls


def test_vendor_override_must_be_https(rsps):
    with pytest.raises(ConfigurationError, match="https"):
        hook({**CREDS, "baseUrl": "http://dev.api.fieldedge.com/leads"}).validate()


def test_bad_client_secret_is_bad_credentials_without_the_secret(rsps):
    rsps.add(
        responses.POST,
        TOKEN_URL,
        status=401,
        json={"error": "invalid_client", "error_description": f"Client authentication failed ({SECRET})"},
    )
    with pytest.raises(BadCredentialsError) as err:
        hook().search_customers(email="a@example.com")
    assert "invalid_client" in str(err.value) and SECRET not in str(err.value)
    ok, message = hook().test_connection()
    assert not ok and SECRET not in message


def test_401_refreshes_the_token_once(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-old"})
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok-new"})
    rsps.add(
        responses.GET,
        SEARCH,
        status=401,
        json={"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."},
    )
    rsps.add(responses.GET, SEARCH, json={"customers": [{"id": "c1"}]})
    assert hook().search_customers(email="a@example.com") == [{"id": "c1"}]
    assert [c.request.headers["Authorization"] for c in calls(rsps, SEARCH)] == ["Bearer tok-old", "Bearer tok-new"]


def test_401_after_refresh_is_bad_credentials(rsps):
    token_ok(rsps)
    rsps.add(
        responses.GET,
        SEARCH,
        status=401,
        json={"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."},
    )
    with pytest.raises(BadCredentialsError, match="Access token is missing or invalid"):
        hook().search_customers(email="a@example.com")
    assert len(calls(rsps, SEARCH)) == 2


# ---------------------------------------------------------------------- errors and limits
def test_classify_error_mapping():
    h = hook()

    def response(status, payload=None, url=SEARCH, headers=None):
        r = requests.Response()
        r.status_code, r.url = status, url
        r._content = json.dumps(payload).encode() if payload is not None else b""
        r.headers.update(headers or {})
        return r

    problem = {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": {"firstName": ["firstName must not contain numbers."]},
    }
    bad = h.classify_error(response(400, problem))
    assert isinstance(bad, BadRecordError) and "firstName must not contain numbers" in str(bad)
    limited = h.classify_error(
        response(
            429,
            {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 7 seconds."},
            headers={"Retry-After": "7"},
        )
    )
    assert isinstance(limited, RateLimitedError) and limited.retry_after == 7.0
    quota = h.classify_error(
        response(
            403, {"statusCode": 403, "message": "Out of call volume quota. Quota will be replenished in 02:11:00."}
        )
    )
    assert isinstance(quota, QuotaExhaustedError)
    assert isinstance(h.classify_error(response(403, {"statusCode": 403, "message": "Forbidden"})), BadCredentialsError)
    assert isinstance(h.classify_error(response(503)), RetryableError)
    token = h.classify_error(
        response(400, {"error": "invalid_request", "error_description": "target_id missing"}, url=TOKEN_URL)
    )
    assert isinstance(token, BadCredentialsError) and "target_id missing" in str(token)


def test_429_retry_after_is_honoured(rsps, sleeps):
    token_ok(rsps)
    rsps.add(
        responses.GET,
        SEARCH,
        status=429,
        headers={"Retry-After": "3"},
        json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 3 seconds."},
    )
    rsps.add(responses.GET, SEARCH, status=204)
    h = hook()
    assert h.search_customers(email="a@example.com") == []
    assert 3.0 in sleeps and h.stats.rate_limited == 1


def test_quota_is_never_retried(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, SEARCH, status=403, json={"statusCode": 403, "message": "Out of call volume quota."})
    with pytest.raises(QuotaExhaustedError):
        hook().search_customers(email="a@example.com")
    assert len(calls(rsps, SEARCH)) == 1 and not sleeps


def test_server_errors_on_reads_are_retried(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, SEARCH, status=500, json={"statusCode": 500, "message": "Internal server error"})
    rsps.add(responses.GET, SEARCH, json={"customers": []})
    assert hook().search_customers(email="a@example.com") == []
    assert len(calls(rsps, SEARCH)) == 2


def test_rate_limits_from_settings_and_account_id():
    assert hook().rate_limits["default"] == RateLimit(100, 10.0)
    assert hook(settings={"rateLimitPer10s": 40}).rate_limits["default"] == RateLimit(40, 10.0)
    assert hook(settings={"rateLimitPer10s": "junk"}).rate_limits["default"] == RateLimit(100, 10.0)
    assert hook().rate_limits["token"] == RateLimit(None)
    account = hook().account_id()
    assert (
        len(account) == 12 and "tenant-777" not in account and account != hook({**CREDS, "targetId": "t2"}).account_id()
    )


# ---------------------------------------------------------------------- customers
def test_search_request_shape_and_answers(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, SEARCH, json={"customers": [{"id": "c9", "primaryPhone": "+1-214-555-0198"}]})
    h = hook()
    found = h.search_customers(email="ann@example.com", phone="+12145550198")
    assert found == [{"id": "c9", "primaryPhone": "+1-214-555-0198"}]
    assert record_phone(found[0]) == "+12145550198"
    query = parse_qs(urlsplit(calls(rsps, SEARCH)[0].request.url).query)
    assert query == {"email": ["ann@example.com"], "phone": ["+12145550198"]}
    with pytest.raises(ValueError):
        h.search_customers()


def test_create_customer_shape_and_id(rsps):
    token_ok(rsps)
    rsps.add(
        responses.POST,
        CUSTOMERS,
        status=201,
        json={"data": {"customerId": "9f1a6b1c-3a3e", "createdAt": "2026-02-09T10:15:30Z"}},
    )
    payload = {"firstName": "Sam", "lastName": "Wilson", "email": "sam@test.com", "phoneNumber": "+14155552671"}
    assert hook().create_customer(payload) == "9f1a6b1c-3a3e"
    assert body(calls(rsps, CUSTOMERS, "POST")[0]) == payload


def test_create_customer_after_a_5xx_looks_up_before_posting_again(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.POST, CUSTOMERS, status=502, json={"statusCode": 502, "message": "Bad gateway"})
    rsps.add(responses.GET, SEARCH, json={"customers": [{"id": "landed-1", "primaryEmail": "SAM@test.com"}]})
    h = hook()
    assert h.create_customer({"email": "sam@test.com", "lastName": "Wilson"}) == "landed-1"
    assert len(calls(rsps, CUSTOMERS, "POST")) == 1  # never sent twice
    assert h.stats.retries == 1


def test_create_customer_after_a_timeout_posts_again_when_nothing_landed(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.POST, CUSTOMERS, body=requests.ConnectionError("reset by peer"))
    rsps.add(responses.GET, SEARCH, status=204)
    rsps.add(responses.POST, CUSTOMERS, status=201, json={"data": {"customerId": "c-2"}})
    assert hook().create_customer({"phoneNumber": "+15125550100"}) == "c-2"
    assert len(calls(rsps, CUSTOMERS, "POST")) == 2 and len(calls(rsps, SEARCH)) == 1


def test_create_after_429_is_resent_without_a_look_up(rsps, sleeps):
    token_ok(rsps)
    rsps.add(
        responses.POST,
        CUSTOMERS,
        status=429,
        headers={"Retry-After": "2"},
        json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 2 seconds."},
    )
    rsps.add(responses.POST, CUSTOMERS, status=201, json={"data": {"customerId": "c-3"}})
    assert hook().create_customer({"email": "a@example.com"}) == "c-3"
    assert 2.0 in sleeps and not calls(rsps, SEARCH)


def test_create_validation_error_is_bad_record_and_not_retried(rsps, sleeps):
    token_ok(rsps)
    rsps.add(
        responses.POST,
        CUSTOMERS,
        status=400,
        json={
            "title": "One or more validation errors occurred.",
            "status": 400,
            "errors": {"email": ["Email is required when phone number is not provided."]},
        },
    )
    with pytest.raises(BadRecordError, match="Email is required"):
        hook().create_customer({"firstName": "Ann"})
    assert len(calls(rsps, CUSTOMERS, "POST")) == 1 and not sleeps


def test_create_answer_without_id_is_resolved_by_look_up(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.POST, CUSTOMERS, status=201, json={"data": {"createdAt": "2026-02-09T10:15:30Z"}})
    rsps.add(responses.GET, SEARCH, json={"customers": [{"id": "c-4", "primaryEmail": "a@example.com"}]})
    assert hook().create_customer({"email": "a@example.com"}) == "c-4"
    assert len(calls(rsps, CUSTOMERS, "POST")) == 1


def test_get_and_update_customer(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{CUSTOMERS}/c-5", json={"data": {"id": "c-5", "firstName": "Ann"}})
    rsps.add(responses.GET, f"{CUSTOMERS}/gone", status=204)
    rsps.add(responses.PUT, f"{CUSTOMERS}/c-5", json={"data": {"customerId": "c-5"}})
    h = hook()
    assert h.get_customer("c-5") == {"id": "c-5", "firstName": "Ann"}
    assert h.get_customer("gone") is None
    assert h.update_customer("c-5", {"firstName": "Anne"}) == {"customerId": "c-5"}
    assert body(calls(rsps, f"{CUSTOMERS}/c-5", "PUT")[0]) == {"firstName": "Anne"}
    with pytest.raises(ValueError):
        h.get_customer("../v1/leads")
    with pytest.raises(ValueError):
        h.get_lead("..")


# ---------------------------------------------------------------------- leads
def test_create_lead_shape_and_id(rsps):
    token_ok(rsps)
    rsps.add(responses.POST, LEADS, status=201, json={"data": {"leadId": "lead-1", "createdAt": "x"}})
    payload = {"trackingId": "rankitpro-9-42", "source": "rankitpro", "customer": {"email": "a@example.com"}}
    assert hook().create_lead(payload) == "lead-1"
    assert body(calls(rsps, LEADS, "POST")[0]) == payload


def test_create_lead_after_a_5xx_finds_it_by_tracking_id(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.POST, LEADS, status=500, json={"statusCode": 500, "message": "Internal server error"})
    rsps.add(
        responses.GET,
        LEADS,
        json={
            "leads": [
                {"leadId": "other", "trackingId": "rankitpro-9-4"},
                {"leadId": "lead-2", "trackingId": "rankitpro-9-42"},
            ]
        },
    )
    assert hook().create_lead({"trackingId": "rankitpro-9-42"}) == "lead-2"
    assert len(calls(rsps, LEADS, "POST")) == 1
    assert parse_qs(urlsplit(calls(rsps, LEADS, "GET")[0].request.url).query) == {"trackingId": ["rankitpro-9-42"]}


def test_create_lead_without_look_up_resends(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.POST, LEADS, status=503)
    rsps.add(responses.POST, LEADS, status=201, json={"data": {"leadId": "lead-3"}})
    assert hook().create_lead({"trackingId": "rankitpro-9-42"}, look_up=False) == "lead-3"
    assert not calls(rsps, LEADS, "GET")


def test_lead_look_up_unsupported_stops_with_an_explanation(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, LEADS, status=404, json={"statusCode": 404, "message": "Resource not found"})
    with pytest.raises(ConfigurationError, match="leadLookup"):
        hook().find_leads("rankitpro-9-42")


def test_a_refused_look_up_is_remembered_and_a_lost_create_is_never_resent(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.POST, LEADS, status=500, json={"statusCode": 500, "message": "Internal server error"})
    rsps.add(responses.GET, LEADS, status=404, json={"statusCode": 404, "message": "Resource not found"})
    h = hook()
    with pytest.raises(RetryableError, match="may have been created .* not sent again"):
        h.create_lead({"trackingId": "rankitpro-9-42"})
    assert len(calls(rsps, LEADS, "POST")) == 1 and len(calls(rsps, LEADS, "GET")) == 1
    assert h.lead_lookup_refused
    with pytest.raises(LeadLookupRefusedError, match="refused earlier in this run"):
        h.find_leads("rankitpro-9-43")  # known refused: no second request
    assert len(calls(rsps, LEADS, "GET")) == 1


def test_find_leads_and_get_lead(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, LEADS, status=204)
    rsps.add(responses.GET, f"{LEADS}/lead-9", json={"data": {"leadId": "lead-9", "status": "InProcess"}})
    rsps.add(responses.GET, f"{LEADS}/none", status=204)
    h = hook()
    assert h.find_leads("rankitpro-1-1") == []
    assert h.get_lead("lead-9") == {"leadId": "lead-9", "status": "InProcess"}
    assert h.get_lead("none") is None


def test_check_access_request(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, SEARCH, status=204)
    ok, message = hook().test_connection()
    assert ok and "FieldEdge" in message
    assert len(calls(rsps, SEARCH)) == 1


# ---------------------------------------------------------------------- building
def test_credentials_from_connection():
    conn = Connection(
        conn_id="fe",
        conn_type="crm_fieldedge",
        login="cid",
        password=SECRET,
        extra=json.dumps({"targetId": "t-1", "extra__crm_fieldedge__baseUrl": "https://dev.api.fieldedge.com/leads"}),
    )
    assert FieldEdgeHook.credentials_from_connection(conn) == {
        "clientId": "cid",
        "clientSecret": SECRET,
        "targetId": "t-1",
        "baseUrl": "https://dev.api.fieldedge.com/leads",
    }


def test_hook_from_airflow_connection_env(monkeypatch, rsps):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM_FIELDEDGE_DEFAULT",
        json.dumps(
            {
                "conn_type": "crm_fieldedge",
                "login": "cid",
                "password": SECRET,
                "extra": {"targetId": "t-1", "crmSettings": {"rateLimitPer10s": 20}},
            }
        ),
    )
    token_ok(rsps)
    rsps.add(responses.GET, SEARCH, status=204)
    h = FastFieldEdge(account_key=f"fe-{uuid.uuid4()}")
    assert h.test_connection()[0]
    assert body(calls(rsps, TOKEN_URL)[0])["target_id"] == "t-1"
    assert h.rate_limits["default"] == RateLimit(20, 10.0)


def test_from_integration_uses_app_keys():
    h = FieldEdgeHook.from_integration({"credentials": dict(CREDS), "crmSettings": {"rateLimitPer10s": 50}})
    assert h.oauth_keys() == ("fe-client-1", SECRET, "tenant-777")
    assert h.rate_limits["default"] == RateLimit(50, 10.0)


# ====================================================================== against the sandbox
TENANT = {"clientId": "fe-sbx-client", "clientSecret": "fe-sbx-secret-4471", "targetId": "tenant-sbx"}


def sandbox_tenant(sandbox, **limits) -> dict:
    """Register a tenant; return the integration credentials pointing at the sandbox."""
    creds = {k: f"{v}-{uuid.uuid4().hex[:6]}" for k, v in TENANT.items()}
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={"crm": "fieldedge", "account": creds["targetId"], "credentials": creds, "limits": limits},
    ).raise_for_status()
    return {**creds, "baseUrl": f"{sandbox.url}/fieldedge/leads", "authUrl": f"{sandbox.url}/fieldedge"}


def sandbox_records(sandbox, creds, obj):
    return requests.get(f"{sandbox.url}/_sandbox/records/fieldedge/{creds['targetId']}/{obj}", timeout=10).json()


def destination(creds, strategy="all", **crm_settings) -> FieldEdgeDestination:
    dest = FieldEdgeDestination(hook(creds, settings=crm_settings), SyncSettings(customer_match_strategy=strategy))
    dest.prepare()
    return dest


def row(check_in_id=1, **overrides):
    strategy = overrides.pop("_strategy", "all")
    raw = {
        "id": check_in_id,
        "company_id": 5,
        "job_type": "AC Repair",
        "notes": "Replaced capacitor.",
        "customer_name": "Ann Lee",
        "customer_email": "ann@example.com",
        "customer_phone": "(512) 555-0100",
        "address": "1 Oak St",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "created_at": "2026-11-20 14:05:09",
        **overrides,
    }
    item = prepare_check_in(raw, SyncSettings(customer_match_strategy=strategy))
    assert item.error is None, item.error
    return item


def test_sandbox_token_expiry_is_refreshed(sandbox):
    creds = sandbox_tenant(sandbox)
    h = hook(creds)
    assert h.search_customers(email="nobody@example.com") == []
    requests.post(f"{sandbox.url}/_sandbox/accounts/fieldedge/{creds['targetId']}/expire-tokens").raise_for_status()
    assert h.search_customers(email="nobody@example.com") == []
    assert h.stats.token_refreshes == 2


def test_sandbox_bad_secret_and_wrong_tenant(sandbox):
    creds = sandbox_tenant(sandbox)
    with pytest.raises(BadCredentialsError, match="invalid_client"):
        hook({**creds, "clientSecret": "wrong"}).fetch_token()
    with pytest.raises(BadCredentialsError, match="target_id"):
        hook({**creds, "targetId": "someone-else"}).fetch_token()


def test_sandbox_rate_limit_and_quota_answers(sandbox, sleeps):
    creds = sandbox_tenant(sandbox, rate_limit_calls=1, rate_limit_period=30)
    h = hook(creds, max_attempts=1)
    h.search_customers(email="a@example.com")
    with pytest.raises(RateLimitedError) as err:
        h.search_customers(email="a@example.com")
    assert err.value.retry_after == 30.0 and "Rate limit is exceeded" in str(err.value)
    quota = sandbox_tenant(sandbox, daily_quota=1)
    q = hook(quota)
    q.search_customers(email="a@example.com")
    with pytest.raises(QuotaExhaustedError):
        q.search_customers(email="a@example.com")


def test_sandbox_validation_and_poisoned_fields(sandbox):
    h = hook(sandbox_tenant(sandbox))
    with pytest.raises(BadRecordError, match="firstName must not contain numbers"):
        h.create_customer({"firstName": "Ann2", "email": "a@example.com"})
    with pytest.raises(BadRecordError, match="Email is required when phone number is not provided"):
        h.create_customer({"firstName": "Ann"})
    with pytest.raises(BadRecordError, match="appointment.availabilityNotes"):
        h.create_lead(
            {
                "trackingId": "t-1",
                "customer": {"email": "a@example.com"},
                "appointment": {"availabilityNotes": "SANDBOX-INVALID"},
            }
        )


def test_destination_one_search_answers_email_and_phone_then_create(sandbox):
    creds = sandbox_tenant(sandbox)
    dest = destination(creds)
    item = row()
    assert dest.match_customers([(item.match_keys[0], item.customer)]) == {}
    assert dest.match_customers([(item.match_keys[1], item.customer)]) == {}  # answered by the same search
    assert dest.hook.stats.by_endpoint == {"POST /oauth/token": 1, "GET /v1/customers/search": 1}
    created = dest.create_customers([item])[item.customer_key]
    assert created.ok and created.created
    fresh = destination(creds)
    assert fresh.match_customers([(k, item.customer) for k in item.match_keys]) == {
        k: CustomerRef(created.crm_id) for k in item.match_keys
    }


def test_destination_name_strategy_matches_first_and_last_name(sandbox):
    creds = sandbox_tenant(sandbox)
    requests.post(
        f"{sandbox.url}/_sandbox/records/fieldedge/{creds['targetId']}/customers",
        json=[
            {"id": "c-ann-smith", "firstName": "Ann", "lastName": "Smith", "primaryEmail": "as@example.com"},
            {"id": "c-ann-lee", "firstName": "Ann", "lastName": "Lee", "primaryPhone": "+15125550199"},
        ],
    ).raise_for_status()
    item = row(_strategy="name", customer_email=None)
    assert item.match_keys == ["name:ann lee"]
    assert destination(creds, "name").match_customers([(item.match_keys[0], item.customer)]) == {
        "name:ann lee": CustomerRef("c-ann-lee")
    }


def test_destination_update_customer_merges_and_skips_unchanged(sandbox):
    creds = sandbox_tenant(sandbox)
    requests.post(
        f"{sandbox.url}/_sandbox/records/fieldedge/{creds['targetId']}/customers",
        json={
            "id": "c-1",
            "firstName": "Ann",
            "lastName": "Lee",
            "companyName": "Lee Bakery",
            "email": "ann@example.com",
            "phoneNumber": "+15125550100",
            "address1": "9 Old Rd",
            "city": "Austin",
            "state": "TX",
            "zip": "78701",
        },
    ).raise_for_status()
    dest = destination(creds)
    item = row()
    assert dest.update_customers([(CustomerRef("c-1"), item)])["c-1"].ok
    stored = sandbox_records(sandbox, creds, "customers")[0]
    assert stored["address1"] == "1 Oak St" and stored["companyName"] == "Lee Bakery"
    again = dest.update_customers([(CustomerRef("c-1"), item)])
    assert again["c-1"].ok
    assert dest.hook.stats.by_endpoint.get("PUT /v1/customers/{customerId}") == 1  # unchanged: no second PUT
    assert dest.hook.stats.by_endpoint.get("GET /v1/customers/{customerId}") == 2


def test_destination_lead_marker_find_and_no_update(sandbox):
    creds = sandbox_tenant(sandbox)
    dest = destination(creds, timezone="America/New_York")
    item = row(7)
    ref = CustomerRef(dest.create_customers([item])[item.customer_key].crm_id)
    created = dest.create_visits([(item, ref)])[item.visit_key]
    assert created.ok
    assert destination(creds).find_visits([item, row(8)]) == {item.visit_key: created.crm_id}
    lead = sandbox_records(sandbox, creds, "leads")[0]
    assert lead["trackingId"] == item.visit_key and lead["customer"]["customerId"] == ref.crm_id
    assert lead["appointment"]["timezone"] == "America/New_York"
    before = dict(dest.hook.stats.by_endpoint)
    updated = dest.update_visits([(item, created.crm_id, ref)])[item.visit_key]
    assert updated.ok and updated.crm_id == created.crm_id
    assert dest.hook.stats.by_endpoint == before  # no call
    assert any("cannot be updated" in w for w in item.warnings)


def test_destination_refuses_customer_without_email_or_phone_without_a_call(sandbox):
    dest = destination(sandbox_tenant(sandbox), "name")
    item = row(_strategy="name", customer_email=None, customer_phone=None)
    result = dest.create_customers([item])[item.customer_key]
    assert result.error and "email or a phone" in result.error
    assert "POST /v1/customers" not in dest.hook.stats.by_endpoint


def test_destination_settings(sandbox):
    creds = sandbox_tenant(sandbox)
    with pytest.raises(ConfigurationError, match="timezone"):
        destination(creds, timezone="Mars/Olympus")
    off = destination(creds, leadLookup="false")
    assert off.find_visits([row()]) == {} and any("leadLookup is off" in w for w in off.warnings)
    with pytest.raises(ConfigurationError, match="targetId"):
        destination({k: v for k, v in creds.items() if k != "targetId"})


def test_destination_stopping_error_after_a_write_leaves_the_rest_uncertain(sandbox, rsps):
    rsps.add_passthru(sandbox.url)
    creds = sandbox_tenant(sandbox)
    dest = destination(creds)
    items = [row(21, customer_email="a1@example.com"), row(22, customer_email="a2@example.com")]
    rsps.add(responses.POST, f"{sandbox.url}/fieldedge/leads/v1/leads", status=201, json={"data": {"leadId": "L1"}})
    rsps.add(
        responses.POST,
        f"{sandbox.url}/fieldedge/leads/v1/leads",
        status=403,
        json={"statusCode": 403, "message": "Out of call volume quota."},
    )
    # One customer: its leads go in one lane, in order (the mocked answers are given out in order).
    results = dest.create_visits([(i, CustomerRef("C1")) for i in items])
    assert results[items[0].visit_key].ok and results[items[0].visit_key].crm_id == "L1"
    assert results[items[1].visit_key].uncertain  # kept in_flight: looked up next run
    with pytest.raises(QuotaExhaustedError):  # nothing written yet: the engine stops
        dest.create_visits([(items[1], None)])
