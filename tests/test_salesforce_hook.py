"""SalesforceHook against Salesforce's documented request and response shapes (``responses``, no network)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from urllib.parse import parse_qs, unquote_plus, urlsplit

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
from crm_hooks.rate_limit import RateLimit
from crm_hooks.salesforce import SalesforceHook
from crm_hooks.soql import soql_in, soql_quote

pytestmark = pytest.mark.usefixtures("instant_rate_limits")

MY_DOMAIN = "https://acme.my.salesforce.com"
INSTANCE = "https://acme.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v62.0"
CLIENT_SECRET = "cs-salesforce-secret-0001"
PASSWORD = "pw-Hunter2-long"
SEC_TOKEN = "sectok-XYZ-0001"
LIMIT_HEADER = {"Sforce-Limit-Info": "api-usage=18/5000"}


class FastSalesforce(SalesforceHook):
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002


def cc_hook(**extra) -> FastSalesforce:
    creds = {"clientId": "cid-0001", "clientSecret": CLIENT_SECRET, "myDomainUrl": MY_DOMAIN, **extra}
    settings = creds.pop("settings", None)
    return FastSalesforce(credentials=creds, settings=settings, account_key=f"sf-{uuid.uuid4()}")


def pw_hook(**extra) -> FastSalesforce:
    creds = {
        "clientId": "cid-0001",
        "clientSecret": CLIENT_SECRET,
        "username": "ops@acme.com",
        "password": PASSWORD,
        "securityToken": SEC_TOKEN,
        **extra,
    }
    return FastSalesforce(credentials=creds, account_key=f"sf-{uuid.uuid4()}")


def token_ok(rsps, url=f"{MY_DOMAIN}/services/oauth2/token", token="00Dxx!session-0001", instance=INSTANCE):
    payload = {
        "access_token": token,
        "token_type": "Bearer",
        "id": "https://login.salesforce.com/id/00D/005",
        "issued_at": "1763625603004",
        "signature": "sig",
    }
    if instance:
        payload["instance_url"] = instance
    rsps.add(responses.POST, url, json=payload)


def token_calls(rsps):
    return [c for c in rsps.calls if c.request.url.endswith("/services/oauth2/token")]


def data_calls(rsps):
    return [c for c in rsps.calls if "/services/data/" in c.request.url]


def sf_error(code, message, fields=None):
    item = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return [item]


# ---------------------------------------------------------------------- auth flows
def test_client_credentials_token_request(rsps):
    token_ok(rsps)
    rsps.add(
        responses.GET,
        f"{DATA}/limits",
        json={"DailyApiRequests": {"Max": 5000, "Remaining": 4982}},
        headers=LIMIT_HEADER,
    )
    h = cc_hook()
    assert h.auth_flow == "client_credentials"
    assert h.limits()["DailyApiRequests"]["Max"] == 5000
    (tok,) = token_calls(rsps)
    assert tok.request.url == f"{MY_DOMAIN}/services/oauth2/token"
    assert parse_qs(tok.request.body) == {"grant_type": ["client_credentials"]}
    expected = base64.b64encode(f"cid-0001:{CLIENT_SECRET}".encode()).decode()
    assert tok.request.headers["Authorization"] == f"Basic {expected}"
    (call,) = data_calls(rsps)
    assert call.request.headers["Authorization"] == "Bearer 00Dxx!session-0001"


def test_password_flow_token_request(rsps):
    token_ok(rsps, url="https://login.salesforce.com/services/oauth2/token")
    rsps.add(responses.GET, f"{DATA}/limits", json={})
    h = pw_hook()
    assert h.auth_flow == "password"
    h.limits()
    (tok,) = token_calls(rsps)
    assert tok.request.url == "https://login.salesforce.com/services/oauth2/token"
    assert "Authorization" not in tok.request.headers
    assert parse_qs(tok.request.body) == {
        "grant_type": ["password"],
        "client_id": ["cid-0001"],
        "client_secret": [CLIENT_SECRET],
        "username": ["ops@acme.com"],
        "password": [PASSWORD + SEC_TOKEN],
    }


@pytest.mark.parametrize(
    ("extra", "token_host"),
    [
        ({"authUrl": "https://test.salesforce.com"}, "https://test.salesforce.com"),
        ({"instanceUrl": "https://acme.my.salesforce.com/"}, "https://acme.my.salesforce.com"),
        (
            {"myDomainUrl": "https://acme2.my.salesforce.com", "instanceUrl": "https://na1.salesforce.com"},
            "https://acme2.my.salesforce.com",
        ),
    ],
)
def test_password_flow_token_host(extra, token_host):
    h = pw_hook(**extra)
    assert h.auth_flow == "password"
    assert h.token_url == f"{token_host}/services/oauth2/token"


def test_password_flow_without_security_token(rsps):
    token_ok(rsps, url="https://login.salesforce.com/services/oauth2/token")
    h = pw_hook(securityToken="")
    h.access_token()
    assert parse_qs(token_calls(rsps)[0].request.body)["password"] == [PASSWORD]


@pytest.mark.parametrize(
    ("creds", "expected"),
    [
        (
            {},
            "client credentials flow is missing myDomainUrl, clientId, clientSecret; "
            "username-password flow is missing clientId, clientSecret, username, password",
        ),
        ({"clientId": "c", "username": "u", "password": "p"}, "missing clientSecret"),
        ({"clientSecret": "s", "myDomainUrl": MY_DOMAIN}, "missing clientId"),
        ({"clientId": "c", "clientSecret": "s", "username": "u"}, "missing password"),
        (
            {"clientId": "c", "clientSecret": "s", "instanceUrl": INSTANCE},
            "client credentials flow is missing myDomainUrl;",
        ),
    ],
)
def test_missing_keys_name_what_each_flow_needs(rsps, creds, expected):
    h = FastSalesforce(credentials=creds or {"x": "y"}, account_key=f"sf-{uuid.uuid4()}")
    with pytest.raises(ConfigurationError) as info:
        h.limits()
    assert expected in str(info.value)
    ok, message = h.test_connection()
    assert ok is False and expected in message
    assert len(rsps.calls) == 0


def test_oauth_error_is_bad_credentials_with_description(rsps):
    rsps.add(
        responses.POST,
        "https://login.salesforce.com/services/oauth2/token",
        status=400,
        json={"error": "invalid_grant", "error_description": f"authentication failure for {PASSWORD}"},
    )
    h = pw_hook()
    with pytest.raises(BadCredentialsError) as info:
        h.limits()
    assert "invalid_grant: authentication failure" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert len(token_calls(rsps)) == 1  # not retried
    ok, message = h.test_connection()
    assert ok is False and "authentication failure" in message
    for secret in (PASSWORD, SEC_TOKEN, CLIENT_SECRET):
        assert secret not in message


def test_token_endpoint_5xx_is_retried(rsps, sleeps):
    rsps.add(responses.POST, f"{MY_DOMAIN}/services/oauth2/token", status=503, body="unavailable")
    token_ok(rsps)
    assert cc_hook().access_token() == "00Dxx!session-0001"


def test_foreign_instance_url_is_refused(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*")
    token_ok(rsps, instance="https://collector.attacker.example")
    with pytest.raises(ConfigurationError, match="instance_url"):
        cc_hook().limits()
    assert data_calls(rsps) == []
    rsps.replace(
        responses.POST,
        f"{MY_DOMAIN}/services/oauth2/token",
        json={"access_token": "t-0001", "instance_url": "http://acme.my.salesforce.com"},
    )
    with pytest.raises(ConfigurationError, match="https"):
        cc_hook().limits()
    assert data_calls(rsps) == []


def test_my_domain_override_must_be_allowed(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "127.0.0.1:*")
    with pytest.raises(ConfigurationError, match="myDomainUrl"):
        cc_hook(myDomainUrl="https://acme.example.net").limits()
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    "next_url", ["/services/data/v62.0/query/01gX-1", "/salesforce/services/data/v62.0/query/01gX-1"]
)
def test_sandbox_prefix_base_urls(rsps, next_url):
    """The local sandbox serves Salesforce under http://127.0.0.1:PORT/salesforce (allowed in conftest)."""
    base = "http://127.0.0.1:8099/salesforce"
    token_ok(rsps, url=f"{base}/services/oauth2/token", instance=base)
    rsps.add(
        responses.GET,
        f"{base}/services/data/v62.0/query",
        json={"totalSize": 2, "done": False, "records": [{"Id": "001A"}], "nextRecordsUrl": next_url},
    )
    rsps.add(
        responses.GET,
        f"{base}/services/data/v62.0/query/01gX-1",
        json={"totalSize": 2, "done": True, "records": [{"Id": "001B"}]},
    )
    h = cc_hook(myDomainUrl=base)
    assert [r["Id"] for r in h.query("SELECT Id FROM Account")] == ["001A", "001B"]


def test_missing_instance_url_falls_back_to_instance_setting(rsps):
    token_ok(rsps, url="https://login.salesforce.com/services/oauth2/token", instance=None)
    h = pw_hook(instanceUrl="https://acme.my.salesforce.com", authUrl="https://login.salesforce.com")
    assert h.base_url == "https://acme.my.salesforce.com"


def test_session_cached_for_session_seconds_and_refreshed_on_invalid_session(rsps):
    token_ok(rsps, token="00D!first-session")
    token_ok(rsps, token="00D!second-session")
    url = f"{DATA}/sobjects/Account/describe"
    rsps.add(responses.GET, url, status=401, json=sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
    rsps.add(responses.GET, url, json={"name": "Account", "fields": []}, headers=LIMIT_HEADER)
    h = cc_hook(settings={"sessionSeconds": 7200})
    assert h.describe("Account")["name"] == "Account"
    assert len(token_calls(rsps)) == 2
    auth = [c.request.headers["Authorization"] for c in data_calls(rsps)]
    assert auth == ["Bearer 00D!first-session", "Bearer 00D!second-session"]
    assert h._token_expires_at - time.monotonic() > 7000  # sessionSeconds, not a default


def test_invalid_session_twice_is_bad_credentials(rsps):
    token_ok(rsps)
    rsps.add(
        responses.GET, f"{DATA}/limits", status=401, json=sf_error("INVALID_SESSION_ID", "Session expired or invalid")
    )
    with pytest.raises(BadCredentialsError, match="INVALID_SESSION_ID"):
        cc_hook().limits()
    assert len(data_calls(rsps)) == 2


# ---------------------------------------------------------------------- errors
def test_request_limit_exceeded_is_quota_and_never_retried(rsps, sleeps):
    token_ok(rsps)
    rsps.add(
        responses.GET,
        f"{DATA}/limits",
        status=403,
        json=sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    )
    with pytest.raises(QuotaExhaustedError):
        cc_hook().limits()
    assert len(data_calls(rsps)) == 1 and sleeps == []


def _classify(hook, status, payload, headers=None):
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(payload).encode()
    resp.url = f"{DATA}/x"
    resp.headers.update(headers or {})
    return hook.classify_error(resp)


def test_classify_error_mapping():
    h = cc_hook()
    e = _classify(h, 403, sf_error("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."))
    assert isinstance(e, RateLimitedError)  # the concurrency limit clears by itself
    e = _classify(h, 429, sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
    assert isinstance(e, RateLimitedError)  # only a 403 means the daily allocation is gone
    e = _classify(h, 403, sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
    assert isinstance(e, QuotaExhaustedError)
    e = _classify(h, 403, sf_error("INSUFFICIENT_ACCESS", "no access"))
    assert isinstance(e, BadCredentialsError)
    e = _classify(h, 300, ["/services/data/v62.0/sobjects/Account/001A", "/services/data/v62.0/sobjects/Account/001B"])
    assert type(e) is BadRecordError and "2 records" in str(e) and e.status == 300
    e = _classify(h, 400, sf_error("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"]))
    assert type(e) is BadRecordError and e.code == "REQUIRED_FIELD_MISSING" and "LastName" in str(e)
    e = _classify(h, 404, sf_error("NOT_FOUND", "The requested resource does not exist"))
    assert type(e) is BadRecordError and e.code == "NOT_FOUND"
    e = _classify(h, 503, sf_error("SERVER_UNAVAILABLE", "Server unavailable"))
    assert isinstance(e, RetryableError) and not isinstance(e, RateLimitedError)
    e = _classify(h, 429, [], headers={"Retry-After": "2"})
    assert isinstance(e, RateLimitedError) and e.retry_after == 2
    e = _classify(h, 410, sf_error("GONE", "API version retired"))
    assert isinstance(e, ConfigurationError) and "apiVersion" in str(e)


def test_server_unavailable_is_retried(rsps, sleeps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{DATA}/limits", status=503, json=sf_error("SERVER_UNAVAILABLE", "busy"))
    rsps.add(responses.GET, f"{DATA}/limits", json={"ok": True})
    assert cc_hook().limits() == {"ok": True}


def test_upsert_multiple_matches_300_raises(rsps):
    token_ok(rsps)
    rsps.add(
        responses.PATCH,
        f"{DATA}/composite/sobjects/Contact/RIP_Key__c",
        status=300,
        json=["/services/data/v62.0/sobjects/Contact/003A", "/services/data/v62.0/sobjects/Contact/003B"],
    )
    with pytest.raises(BadRecordError, match="matches 2 records"):
        cc_hook().upsert_records("Contact", "RIP_Key__c", [{"RIP_Key__c": "k1", "LastName": "Doe"}])


# ---------------------------------------------------------------------- usage
def test_limit_info_header_and_budget(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{DATA}/limits", json={}, headers={"Sforce-Limit-Info": "api-usage=4500/5000"})
    rsps.add(
        responses.GET, f"{DATA}/limits", json={}, headers={"Sforce-Limit-Info": "api-usage=4501/5000; api-bursts=1/750"}
    )
    h = cc_hook()
    assert h.api_usage is None and h.budget_exhausted() is False
    h.limits()
    assert h.api_usage == (4500, 5000) and h.budget_exhausted() is True  # 90 % by default
    h.settings["dailyBudgetShare"] = 0.95
    assert h.budget_exhausted() is False
    h.limits()
    assert h.api_usage == (4501, 5000)


def test_check_access_reports_usage(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{DATA}/sobjects/Account/describe", json={"name": "Account"}, headers=LIMIT_HEADER)
    ok, message = cc_hook().test_connection()
    assert ok is True
    assert message == "Connected to Salesforce acme.my.salesforce.com (API v62.0, Account readable; API usage 18/5000)"


# ---------------------------------------------------------------------- API methods
def test_query_follows_next_records_url(rsps):
    token_ok(rsps)
    soql = "SELECT Id, Email FROM Contact WHERE " + soql_in("Email", ["o'neil@x.com", "a@x.com"])
    rsps.add(
        responses.GET,
        f"{DATA}/query",
        json={
            "totalSize": 3,
            "done": False,
            "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-2000",
            "records": [{"attributes": {"type": "Contact"}, "Id": "003A"}, {"Id": "003B"}],
        },
        headers=LIMIT_HEADER,
    )
    rsps.add(
        responses.GET,
        f"{DATA}/query/01gD0000002HU6KIAW-2000",
        json={"totalSize": 3, "done": True, "records": [{"Id": "003C"}]},
    )
    h = cc_hook()
    records = h.query(soql)
    assert data_calls(rsps) == []  # lazy
    assert [r["Id"] for r in records] == ["003A", "003B", "003C"]
    first = data_calls(rsps)[0].request.url
    assert unquote_plus(urlsplit(first).query) == f"q={soql}"
    assert h.stats.by_endpoint == {"POST /services/oauth2/token": 1, "GET query": 1, "GET query (next)": 1}


def test_query_absolute_next_url_must_be_allowed(rsps):
    token_ok(rsps)
    rsps.add(
        responses.GET,
        f"{DATA}/query",
        json={"done": False, "nextRecordsUrl": "https://attacker.example/next", "records": [{"Id": "1"}]},
    )
    with pytest.raises(ConfigurationError):
        list(cc_hook().query("SELECT Id FROM Account"))


def test_describe_is_cached(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{DATA}/sobjects/Case/describe", json={"name": "Case", "fields": [{"name": "Subject"}]})
    h = cc_hook()
    assert h.describe("Case") is h.describe("Case")
    assert len(data_calls(rsps)) == 1
    with pytest.raises(ValueError):
        h.describe("Case/../../limits")


def test_upsert_records_shape_and_per_record_errors(rsps):
    token_ok(rsps)
    url = f"{DATA}/composite/sobjects/Contact/RIP_Key__c"
    results = [
        {"id": "003A", "success": True, "errors": [], "created": True},
        {
            "success": False,
            "created": False,
            "errors": [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": "Required fields are missing: [LastName]",
                    "fields": ["LastName"],
                }
            ],
        },
    ]
    rsps.add(responses.PATCH, url, json=results)
    records = [
        {"RIP_Key__c": "rankitpro-7-1", "LastName": "Doe", "Email": "o'neil@x.com"},
        {"attributes": {"type": "Contact"}, "RIP_Key__c": "rankitpro-7-2"},
    ]
    assert cc_hook().upsert_records("Contact", "RIP_Key__c", records) == results
    (call,) = data_calls(rsps)
    assert call.request.method == "PATCH"
    assert call.request.headers["Authorization"] == "Bearer 00Dxx!session-0001"
    assert json.loads(call.request.body) == {
        "allOrNone": False,
        "records": [
            {
                "RIP_Key__c": "rankitpro-7-1",
                "LastName": "Doe",
                "Email": "o'neil@x.com",
                "attributes": {"type": "Contact"},
            },
            {"attributes": {"type": "Contact"}, "RIP_Key__c": "rankitpro-7-2"},
        ],
    }
    assert records[0].get("attributes") is None  # the caller's dicts are not modified


def test_upsert_records_validation(rsps):
    h = cc_hook()
    with pytest.raises(ValueError, match="at most 200"):
        h.upsert_records("Contact", "RIP_Key__c", [{"RIP_Key__c": str(i)} for i in range(201)])
    with pytest.raises(ValueError, match="external ID"):
        h.upsert_records("Contact", "RIP_Key__c", [{"LastName": "x"}])
    with pytest.raises(ValueError, match="expected 'Contact'"):
        h.upsert_records("Contact", "RIP_Key__c", [{"attributes": {"type": "Account"}, "RIP_Key__c": "k"}])
    with pytest.raises(ValueError):
        h.upsert_records("Contact", "RIP_Key__c/../x", [{"RIP_Key__c": "k"}])
    assert h.upsert_records("Contact", "RIP_Key__c", []) == []
    assert len(rsps.calls) == 0


def test_create_records(rsps):
    token_ok(rsps)
    rsps.add(responses.POST, f"{DATA}/composite/sobjects", json=[{"id": "500A", "success": True, "errors": []}])
    recs = [{"attributes": {"type": "Case"}, "Subject": "AC repair", "ContactId": "003A"}]
    assert cc_hook().create_records(recs, all_or_none=True)[0]["id"] == "500A"
    assert json.loads(data_calls(rsps)[0].request.body) == {"allOrNone": True, "records": recs}
    with pytest.raises(ValueError, match="attributes.type"):
        cc_hook().create_records([{"Subject": "x"}])


def test_update_records(rsps):
    token_ok(rsps)
    rsps.add(responses.PATCH, f"{DATA}/composite/sobjects", json=[{"id": "500A", "success": True, "errors": []}])
    recs = [{"attributes": {"type": "Case"}, "id": "500A", "Status": "Closed"}]
    assert cc_hook().update_records(recs)[0]["success"] is True
    call = data_calls(rsps)[0]
    assert call.request.method == "PATCH" and json.loads(call.request.body) == {"allOrNone": False, "records": recs}
    with pytest.raises(ValueError, match="no id"):
        cc_hook().update_records([{"attributes": {"type": "Case"}, "Status": "Closed"}])


def test_api_version_setting(rsps):
    token_ok(rsps)
    rsps.add(responses.GET, f"{INSTANCE}/services/data/v66.0/limits", json={"v": 66})
    assert cc_hook(settings={"apiVersion": "v66.0"}).limits() == {"v": 66}
    with pytest.raises(ConfigurationError, match="apiVersion"):
        cc_hook(settings={"apiVersion": "62"}).limits()


def test_rate_limits_and_account_key_need_no_token(rsps):
    h = cc_hook()
    assert h.rate_limits == {"default": RateLimit(None, 1.0)}
    assert cc_hook(settings={"requestsPerSecond": 20}).rate_limits["default"] == RateLimit(20, 1.0)
    plain = FastSalesforce(
        credentials={"clientId": "cid-0001", "clientSecret": CLIENT_SECRET, "myDomainUrl": MY_DOMAIN}
    )
    assert plain.account_key.startswith(f"salesforce:{MY_DOMAIN}:") and len(plain.account_id()) == 12
    assert CLIENT_SECRET not in plain.account_key
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------------- SOQL helpers
@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("Bob's BBQ", r"'Bob\'s BBQ'"),
        ("C:\\temp\\", r"'C:\\temp\\'"),
        ("\\'; DELETE", r"'\\\'; DELETE'"),
        ("' OR Name != '", r"'\' OR Name != \''"),
        ('say "hi"', r"""'say \"hi\"'"""),
        ("line1\nline2\r\t\b\f", r"'line1\nline2\r\t\b\f'"),
        ("nul\x00bell\x07", r"'nul\u0000bell\u0007'"),
        ("Zoë Ångström 山田 🙂", "'Zoë Ångström 山田 🙂'"),
        ("50%_off", "'50%_off'"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (1.5, "1.5"),
    ],
)
def test_soql_quote(value, literal):
    assert soql_quote(value) == literal


def test_soql_quote_like():
    assert soql_quote("50%_off\\", like=True) == r"'50\%\_off\\'"


def test_soql_in():
    assert soql_in("Email", ["a@x.com", "o'neil@x.com", "a@x.com"]) == r"Email IN ('a@x.com', 'o\'neil@x.com')"
    assert soql_in("Account.Name", ["Zoë"]) == "Account.Name IN ('Zoë')"
    with pytest.raises(ValueError):
        soql_in("Email", [])
    with pytest.raises(ValueError):
        soql_in("Email) OR (Id", ["x"])


# ---------------------------------------------------------------------- connections
def test_credentials_from_connection_password_flow():
    conn = Connection(
        conn_id="sf",
        conn_type="crm_salesforce",
        host="acme.my.salesforce.com",
        login="ops@acme.com",
        password=PASSWORD,
        extra=json.dumps(
            {
                "clientId": "cid",
                "clientSecret": CLIENT_SECRET,
                "securityToken": SEC_TOKEN,
                "authUrl": "https://test.salesforce.com",
            }
        ),
    )
    assert SalesforceHook.credentials_from_connection(conn) == {
        "username": "ops@acme.com",
        "password": PASSWORD,
        "clientId": "cid",
        "clientSecret": CLIENT_SECRET,
        "securityToken": SEC_TOKEN,
        "authUrl": "https://test.salesforce.com",
        "instanceUrl": "https://acme.my.salesforce.com",
    }


def test_credentials_from_connection_client_credentials():
    conn = Connection(
        conn_id="sf",
        conn_type="crm_salesforce",
        host="https://acme.my.salesforce.com",
        extra=json.dumps({"extra__crm_salesforce__clientId": "cid", "clientSecret": CLIENT_SECRET}),
    )
    creds = SalesforceHook.credentials_from_connection(conn)
    assert creds == {"clientId": "cid", "clientSecret": CLIENT_SECRET, "myDomainUrl": "https://acme.my.salesforce.com"}
    h = FastSalesforce(credentials=creds)
    assert h.auth_flow == "client_credentials"


def test_credentials_from_connection_host_with_port():
    conn = Connection(
        conn_id="sf",
        conn_type="crm_salesforce",
        host="http://127.0.0.1/salesforce",
        port=8099,
        extra=json.dumps({"clientId": "cid", "clientSecret": "s"}),
    )
    assert SalesforceHook.credentials_from_connection(conn)["myDomainUrl"] == "http://127.0.0.1:8099/salesforce"


def test_hook_from_airflow_connection_env(monkeypatch, rsps):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRM_SALESFORCE_DEFAULT",
        json.dumps(
            {
                "conn_type": "crm_salesforce",
                "host": MY_DOMAIN,
                "extra": {"clientId": "cid-0001", "clientSecret": CLIENT_SECRET, "crmSettings": {"apiVersion": "64.0"}},
            }
        ),
    )
    token_ok(rsps)
    rsps.add(responses.GET, f"{INSTANCE}/services/data/v64.0/sobjects/Account/describe", json={"name": "Account"})
    h = FastSalesforce(account_key=f"sf-{uuid.uuid4()}")
    ok, message = h.test_connection()
    assert ok is True and "v64.0" in message, message
