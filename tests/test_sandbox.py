"""The CRM sandbox over real HTTP (``SandboxServer`` + ``requests``)."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from crm_sandbox import SandboxServer

SF_VERSION = "v62.0"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register(sandbox: SandboxServer, crm: str, credentials: dict[str, Any], **extra: Any) -> str:
    account = _name(crm)
    r = requests.post(
        f"{sandbox.url}/_sandbox/accounts", json={"crm": crm, "account": account, "credentials": credentials, **extra}
    )
    assert r.status_code == 201, r.text
    return account


def hubspot_account(sandbox: SandboxServer, **extra: Any) -> tuple[str, dict[str, str]]:
    token = "pat-" + uuid.uuid4().hex
    return register(sandbox, "hubspot", {"accessToken": token}, **extra), {"Authorization": f"Bearer {token}"}


def salesforce_org(sandbox: SandboxServer, **extra: Any) -> tuple[str, dict[str, str]]:
    """An org with both flows configured; returns (account, client credentials)."""
    creds = {
        "clientId": "cid-" + uuid.uuid4().hex,
        "clientSecret": "secret",
        "username": "ops@example.com",
        "password": "pw",
        "securityToken": "TOKEN123",
    }
    return register(sandbox, "salesforce", creds, **extra), creds


def sf_login(sandbox: SandboxServer, creds: dict[str, str]) -> tuple[str, dict[str, str]]:
    r = requests.post(
        f"{sandbox.url}/salesforce/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["clientId"], creds["clientSecret"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return f"{body['instance_url']}/services/data/{SF_VERSION}", {"Authorization": f"Bearer {body['access_token']}"}


# --------------------------------------------------------------------------- accounts


def test_account_registration_and_auth(sandbox: SandboxServer) -> None:
    account, headers = hubspot_account(sandbox)
    contacts = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    assert requests.get(contacts, headers=headers).status_code == 200

    for bad in ({"Authorization": "Bearer nope"}, {}):
        r = requests.get(contacts, headers=bad)
        assert r.status_code == 401
        body = r.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["message"].startswith("Authentication credentials not found") and body["correlationId"]

    admin = f"{sandbox.url}/_sandbox/accounts"
    assert requests.post(admin, json={"crm": "hubspot", "account": "x", "credentials": {}}).status_code == 400
    assert requests.post(admin, json={"crm": "nope", "account": "x", "credentials": {}}).status_code == 404
    assert (
        requests.post(
            admin,
            json={"crm": "hubspot", "account": "x", "credentials": {"accessToken": "t"}, "limits": {"ten_seconds": 5}},
        ).status_code
        == 400
    )
    token = headers["Authorization"].split()[1]
    clash = requests.post(
        admin, json={"crm": "hubspot", "account": _name("other"), "credentials": {"accessToken": token}}
    )
    assert clash.status_code == 409
    again = requests.post(admin, json={"crm": "hubspot", "account": account, "credentials": {"accessToken": token}})
    assert again.status_code == 200 and again.json()["created"] is False


def test_deleting_an_account_closes_it(sandbox: SandboxServer) -> None:
    account, headers = hubspot_account(sandbox)
    contacts = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    assert requests.get(contacts, headers=headers).status_code == 200
    deleted = requests.delete(f"{sandbox.url}/_sandbox/accounts/hubspot/{account}")
    assert deleted.status_code == 204, deleted.text
    assert requests.get(contacts, headers=headers).status_code == 401  # its token went with it
    listed = requests.get(f"{sandbox.url}/_sandbox/accounts").json()
    assert account not in {a["account"] for a in listed}
    assert requests.delete(f"{sandbox.url}/_sandbox/accounts/hubspot/{account}").status_code == 404


def test_accounts_do_not_share_records(sandbox: SandboxServer) -> None:
    _, first = hubspot_account(sandbox)
    _, second = hubspot_account(sandbox)
    url = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    assert requests.post(url, json={"properties": {"email": "same@example.com"}}, headers=first).status_code == 201
    assert requests.post(url, json={"properties": {"email": "same@example.com"}}, headers=second).status_code == 201
    assert len(requests.get(url, headers=second).json()["results"]) == 1


# --------------------------------------------------------------------------- HubSpot


def test_hubspot_batch_upsert_new_existing_and_partial_errors(sandbox: SandboxServer) -> None:
    _, headers = hubspot_account(sandbox)
    base = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    existing = requests.post(
        base, json={"properties": {"email": "old@example.com", "firstname": "Old"}}, headers=headers
    )
    assert existing.status_code == 201
    existing_id = existing.json()["id"]

    inputs = [
        {
            "idProperty": "email",
            "id": "OLD@example.com",
            "properties": {"lastname": "Timer"},
            "objectWriteTraceId": "a",
        },
        {"idProperty": "email", "id": "new@example.com", "properties": {"firstname": "New"}, "objectWriteTraceId": "b"},
    ]
    r = requests.post(f"{base}/batch/upsert", json={"inputs": inputs}, headers=headers)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["new"] for x in results] == [False, True]
    assert results[0]["id"] == existing_id and results[0]["properties"]["lastname"] == "Timer"
    assert results[1]["properties"]["email"] == "new@example.com"

    inputs = [
        {"idProperty": "email", "id": "ok@example.com", "properties": {"firstname": "Ok"}, "objectWriteTraceId": "t1"},
        {"idProperty": "email", "id": "not-an-email", "properties": {}, "objectWriteTraceId": "t2"},
        {"idProperty": "email", "id": "x@example.com", "properties": {"shoe_size": "9"}, "objectWriteTraceId": "t3"},
        {"idProperty": "email", "id": "new@example.com", "properties": {"city": "Austin"}, "objectWriteTraceId": "t4"},
    ]
    r = requests.post(f"{base}/batch/upsert", json={"inputs": inputs}, headers=headers)
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["status"] == "COMPLETE" and body["numErrors"] == 2
    assert [x["objectWriteTraceId"] for x in body["results"]] == ["t1", "t4"]
    errors = {e["context"]["objectWriteTraceId"][0]: e for e in body["errors"]}
    assert set(errors) == {"t2", "t3"}
    assert all(e["category"] == "VALIDATION_ERROR" for e in errors.values())
    assert 'Property \\"shoe_size\\" does not exist' in errors["t3"]["message"]

    bad = requests.post(
        f"{base}/batch/upsert",
        json={"inputs": [{"idProperty": "firstname", "id": "x", "properties": {}}]},
        headers=headers,
    )
    assert bad.status_code == 400 and bad.json()["category"] == "VALIDATION_ERROR"
    too_many = [{"idProperty": "email", "id": f"u{i}@example.com", "properties": {}} for i in range(101)]
    assert requests.post(f"{base}/batch/upsert", json={"inputs": too_many}, headers=headers).status_code == 400


def test_hubspot_create_conflicts_and_batch_all_or_nothing(sandbox: SandboxServer) -> None:
    _, headers = hubspot_account(sandbox)
    base = f"{sandbox.url}/hubspot/crm/v3/objects"
    first = requests.post(f"{base}/contacts", json={"properties": {"email": "dup@example.com"}}, headers=headers)
    assert first.status_code == 201
    body = first.json()
    assert body["archived"] is False and body["properties"]["hs_object_id"] == body["id"]

    dup = requests.post(f"{base}/contacts", json={"properties": {"email": "DUP@example.com"}}, headers=headers)
    assert dup.status_code == 409
    assert dup.json()["category"] == "CONFLICT"
    assert dup.json()["message"] == f"Contact already exists. Existing ID: {body['id']}"

    batch = {"inputs": [{"properties": {"email": "fresh@example.com"}}, {"properties": {"phone": "555"}}]}
    r = requests.post(f"{base}/contacts/batch/create", json=batch, headers=headers)
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR" and r.json()["errors"]
    listed = requests.get(f"{base}/contacts", headers=headers).json()["results"]
    assert [c["properties"]["email"] for c in listed] == ["dup@example.com"]  # nothing of the failed batch

    note = {"hs_timestamp": "2026-11-24T10:00:00Z", "hs_note_body": "Replaced water heater"}
    assoc = [
        {"to": {"id": body["id"]}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}
    ]
    r = requests.post(
        f"{base}/notes/batch/create", json={"inputs": [{"properties": note, "associations": assoc}]}, headers=headers
    )
    assert r.status_code == 201 and r.json()["status"] == "COMPLETE"
    missing = [{"to": {"id": "999999"}, "types": assoc[0]["types"]}]
    r = requests.post(f"{base}/notes", json={"properties": note, "associations": missing}, headers=headers)
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    r = requests.post(
        f"{base}/notes", json={"properties": {"hs_note_body": "x" * 65_537, "hs_timestamp": "1"}}, headers=headers
    )
    assert r.status_code == 400


def test_hubspot_search_by_phone_formats_and_email_case(sandbox: SandboxServer) -> None:
    account, headers = hubspot_account(sandbox, limits={"search_per_second": 50})  # default 5/s would trip here
    seeded = requests.post(
        f"{sandbox.url}/_sandbox/records/hubspot/{account}/contacts",
        json={"properties": {"email": "Pat@Example.com", "phone": "(512) 555-0100"}},
    )
    assert seeded.status_code == 201
    contact_id = seeded.json()["id"]
    url = f"{sandbox.url}/hubspot/crm/v3/objects/contacts/search"

    def search(prop: str, value: str) -> list[str]:
        body = {
            "filterGroups": [{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}],
            "properties": ["email", "phone"],
            "limit": 10,
        }
        r = requests.post(url, json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert "X-HubSpot-RateLimit-Max" not in r.headers  # search answers carry no rate-limit headers
        return [x["id"] for x in r.json()["results"]]

    for phone in ("+15125550100", "512-555-0100", "5125550100", "1 (512) 555 0100"):
        assert search("phone", phone) == [contact_id], phone
    assert search("phone", "5125550101") == []
    assert search("email", "pat@example.COM") == [contact_id]
    either = {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "IN", "values": ["nobody@x.com"]}]},
            {"filters": [{"propertyName": "phone", "operator": "HAS_PROPERTY"}]},
        ]
    }
    assert requests.post(url, json=either, headers=headers).json()["total"] == 1


def test_hubspot_rate_limits(sandbox: SandboxServer) -> None:
    _, headers = hubspot_account(sandbox, limits={"ten_secondly": 3, "search_per_second": 2})
    url = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    remaining = []
    for _ in range(3):
        r = requests.get(url, headers=headers)
        assert r.status_code == 200
        assert r.headers["X-HubSpot-RateLimit-Max"] == "3"
        assert r.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        remaining.append(int(r.headers["X-HubSpot-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    r = requests.get(url, headers=headers)
    assert r.status_code == 429
    assert r.json()["policyName"] == "TEN_SECONDLY_ROLLING" and r.json()["errorType"] == "RATE_LIMIT"
    assert "Retry-After" not in r.headers

    search = {"filterGroups": [], "limit": 1}
    codes = [requests.post(f"{url}/search", json=search, headers=headers).status_code for _ in range(3)]
    assert codes[:2] == [200, 200]  # search is exempt from the ten-secondly window...
    assert codes[2] == 429  # ...but has its own per-second limit
    r = requests.post(f"{url}/search", json=search, headers=headers)
    assert r.json()["policyName"] == "SECONDLY"

    stats = requests.get(f"{sandbox.url}/_sandbox/stats").json()["hubspot"]
    assert any(s["rate_limited"] >= 3 for s in stats.values())


def test_hubspot_oauth_refresh_and_token_expiry(sandbox: SandboxServer) -> None:
    creds = {"clientId": "app-1", "clientSecret": "app-secret", "refreshToken": "rt-" + uuid.uuid4().hex}
    account = register(sandbox, "hubspot", creds, limits={"token_ttl_seconds": 1})
    token_url = f"{sandbox.url}/hubspot/oauth/v3/token"
    form = {
        "grant_type": "refresh_token",
        "client_id": "app-1",
        "client_secret": "app-secret",
        "refresh_token": creds["refreshToken"],
    }

    bad = requests.post(token_url, data={**form, "client_secret": "wrong"})
    assert bad.status_code == 400 and bad.json()["status"] == "BAD_CLIENT_SECRET"
    assert requests.post(token_url, data={**form, "refresh_token": "nope"}).json()["status"] == "BAD_REFRESH_TOKEN"

    r = requests.post(token_url, data=form)
    assert r.status_code == 200
    issued = r.json()
    assert (
        issued["token_type"] == "bearer"
        and issued["expires_in"] == 1
        and issued["refresh_token"] == form["refresh_token"]
    )
    contacts = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    ok = requests.get(contacts, headers=headers)
    assert ok.status_code == 200 and "X-HubSpot-RateLimit-Daily" not in ok.headers  # no daily headers for OAuth

    time.sleep(1.1)
    expired = requests.get(contacts, headers=headers)
    assert expired.status_code == 401 and expired.json()["category"] == "EXPIRED_AUTHENTICATION"

    fresh = {"Authorization": f"Bearer {requests.post(token_url, data=form).json()['access_token']}"}
    assert requests.get(contacts, headers=fresh).status_code == 200
    r = requests.post(f"{sandbox.url}/_sandbox/accounts/hubspot/{account}/expire-tokens")
    assert r.json() == {"expired": 1}
    assert requests.get(contacts, headers=fresh).status_code == 401


def test_hubspot_unique_property_upsert(sandbox: SandboxServer) -> None:
    _, headers = hubspot_account(sandbox)
    props = f"{sandbox.url}/hubspot/crm/v3/properties/contacts"
    definition = {
        "name": "rankitpro_customer_key",
        "label": "Rank It Pro key",
        "type": "string",
        "fieldType": "text",
        "groupName": "contactinformation",
        "hasUniqueValue": True,
    }
    assert requests.post(props, json=definition, headers=headers).status_code == 201
    assert requests.post(props, json=definition, headers=headers).status_code == 409
    names = {p["name"]: p for p in requests.get(props, headers=headers).json()["results"]}
    assert names["rankitpro_customer_key"]["hasUniqueValue"] is True and "email" in names

    url = f"{sandbox.url}/hubspot/crm/v3/objects/contacts/batch/upsert"
    item = {"idProperty": "rankitpro_customer_key", "id": "cust-1", "properties": {"firstname": "Kim"}}
    first = requests.post(url, json={"inputs": [item]}, headers=headers).json()["results"][0]
    second = requests.post(url, json={"inputs": [{**item, "properties": {"lastname": "Lee"}}]}, headers=headers)
    assert first["new"] is True and second.json()["results"][0] == {
        **second.json()["results"][0],
        "new": False,
        "id": first["id"],
    }
    clash = requests.post(
        f"{sandbox.url}/hubspot/crm/v3/objects/contacts",
        json={"properties": {"lastname": "Other", "rankitpro_customer_key": "CUST-1"}},
        headers=headers,
    )
    assert clash.status_code == 400 and first["id"] in clash.json()["message"]


# --------------------------------------------------------------------------- Salesforce


def test_salesforce_token_flows(sandbox: SandboxServer) -> None:
    account, creds = salesforce_org(sandbox)
    token_url = f"{sandbox.url}/salesforce/services/oauth2/token"
    form = {"grant_type": "client_credentials", "client_id": creds["clientId"], "client_secret": creds["clientSecret"]}
    by_form = requests.post(token_url, data=form)
    basic = base64.b64encode(f"{creds['clientId']}:{creds['clientSecret']}".encode()).decode()
    by_basic = requests.post(
        token_url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    password = requests.post(
        token_url,
        data={
            "grant_type": "password",
            "client_id": creds["clientId"],
            "client_secret": creds["clientSecret"],
            "username": creds["username"],
            "password": creds["password"] + creds["securityToken"],
        },
    )
    for r in (by_form, by_basic, password):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["instance_url"] == f"{sandbox.url}/salesforce" and body["token_type"] == "Bearer"
        assert {"access_token", "id", "issued_at", "signature"} <= set(body)
        usage = requests.get(
            f"{body['instance_url']}/services/data/{SF_VERSION}/limits",
            headers={"Authorization": f"Bearer {body['access_token']}"},
        )
        assert usage.status_code == 200 and usage.json()["DailyApiRequests"]["Max"] == 100_000
        assert usage.headers["Sforce-Limit-Info"].startswith("api-usage=")

    no_token = requests.post(
        token_url,
        data={
            "grant_type": "password",
            "client_id": creds["clientId"],
            "client_secret": creds["clientSecret"],
            "username": creds["username"],
            "password": creds["password"],
        },
    )
    assert no_token.status_code == 400 and no_token.json() == {
        "error": "invalid_grant",
        "error_description": "authentication failure",
    }
    wrong_secret = requests.post(token_url, data={**form, "client_secret": "nope"})
    assert wrong_secret.status_code == 400 and wrong_secret.json()["error"] == "invalid_client"


def test_salesforce_collections_upsert_and_record_errors(sandbox: SandboxServer) -> None:
    _, creds = salesforce_org(sandbox, options={"custom_fields": {"Case": ["Customer_Feedback__c"]}})
    base, headers = sf_login(sandbox, creds)
    url = f"{base}/composite/sobjects/Account/RankItPro_Customer_Key__c"
    accounts = [
        {"attributes": {"type": "Account"}, "Name": f"Home {i}", "RankItPro_Customer_Key__c": f"c{i}"} for i in range(3)
    ]
    r = requests.patch(url, json={"allOrNone": False, "records": accounts}, headers=headers)
    assert r.status_code == 200
    created = r.json()
    assert [x["created"] for x in created] == [True] * 3 and all(
        x["id"].startswith("001") and len(x["id"]) == 18 for x in created
    )
    accounts[0]["Phone"] = "512-555-0100"
    again = requests.patch(
        url,
        json={
            "records": accounts[:1]
            + [{"attributes": {"type": "Account"}, "Name": "New", "RankItPro_Customer_Key__c": "c9"}]
        },
        headers=headers,
    ).json()
    assert [x["created"] for x in again] == [False, True] and again[0]["id"] == created[0]["id"]

    contacts = [
        {"attributes": {"type": "Contact"}, "RankItPro_Customer_Key__c": "p1", "FirstName": "No last name"},
        {"attributes": {"type": "Contact"}, "RankItPro_Customer_Key__c": "p2", "LastName": "Doe", "Email": "bad@"},
        {
            "attributes": {"type": "Contact"},
            "RankItPro_Customer_Key__c": "p3",
            "LastName": "Doe",
            "AccountId": "001" + "0" * 15,
        },
        {"attributes": {"type": "Contact"}, "RankItPro_Customer_Key__c": "p4", "LastName": "Doe", "Shoe__c": "9"},
        {
            "attributes": {"type": "Contact"},
            "RankItPro_Customer_Key__c": "p5",
            "LastName": "Doe",
            "Email": "Doe@Example.com",
            "AccountId": created[0]["id"],
        },
    ]
    res = requests.patch(
        f"{base}/composite/sobjects/Contact/RankItPro_Customer_Key__c", json={"records": contacts}, headers=headers
    ).json()
    codes = [x["errors"][0]["statusCode"] if not x["success"] else "OK" for x in res]
    assert codes == [
        "REQUIRED_FIELD_MISSING",
        "INVALID_EMAIL_ADDRESS",
        "INVALID_CROSS_REFERENCE_KEY",
        "INVALID_FIELD",
        "OK",
    ]
    assert res[0]["errors"][0] == {
        "statusCode": "REQUIRED_FIELD_MISSING",
        "message": "Required fields are missing: [LastName]",
        "fields": ["LastName"],
    }

    case = {
        "attributes": {"type": "Case"},
        "RankItPro_CheckIn_Key__c": "k1",
        "Subject": "Visit",
        "Customer_Feedback__c": "Great",
        "ContactId": res[4]["id"],
    }
    too_long = {**case, "RankItPro_CheckIn_Key__c": "k2", "Description": "x" * 32_001}
    rolled = requests.patch(
        f"{base}/composite/sobjects/Case/RankItPro_CheckIn_Key__c",
        json={"allOrNone": True, "records": [case, too_long]},
        headers=headers,
    ).json()
    assert [x["errors"][0]["statusCode"] for x in rolled] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "STRING_TOO_LONG"]
    ok = requests.patch(
        f"{base}/composite/sobjects/Case/RankItPro_CheckIn_Key__c", json={"records": [case]}, headers=headers
    ).json()[0]
    stored = requests.get(f"{base}/sobjects/Case/{ok['id']}", headers=headers).json()
    assert stored["Status"] == "New" and stored["Customer_Feedback__c"] == "Great"

    not_external = requests.patch(f"{base}/composite/sobjects/Account/Name", json={"records": []}, headers=headers)
    assert not_external.status_code == 400 and not_external.json()[0]["errorCode"] == "INVALID_FIELD"
    big = requests.post(
        f"{base}/composite/sobjects",
        json={"records": [{"attributes": {"type": "Account"}, "Name": "x"}] * 201},
        headers=headers,
    )
    assert big.status_code == 400 and big.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    single = requests.post(f"{base}/sobjects/Contact", json={"FirstName": "x"}, headers=headers)
    assert single.status_code == 400 and single.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"

    _, plain = salesforce_org(sandbox, options={"missing_external_ids": True})
    plain_base, plain_headers = sf_login(sandbox, plain)
    r = requests.patch(
        f"{plain_base}/composite/sobjects/Account/RankItPro_Customer_Key__c",
        json={"records": []},
        headers=plain_headers,
    )
    assert r.status_code == 400 and "does not exist" in r.json()[0]["message"]


def test_salesforce_soql(sandbox: SandboxServer) -> None:
    account, creds = salesforce_org(sandbox)
    base, headers = sf_login(sandbox, creds)
    seed = [
        {"LastName": f"L{i}", "Email": f"user{i}@example.com", "RankItPro_Customer_Key__c": f"k{i}"}
        for i in range(2100)
    ]
    assert requests.post(f"{sandbox.url}/_sandbox/records/salesforce/{account}/Contact", json=seed).status_code == 201

    q = (
        "SELECT Id, Email FROM Contact "
        "WHERE Email IN ('USER1@example.com', 'user2@example.com', 'o\\'neil@x.com') LIMIT 10"
    )
    r = requests.get(f"{base}/query", params={"q": q}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totalSize"] == 2 and body["done"] is True
    assert [x["Email"] for x in body["records"]] == ["user1@example.com", "user2@example.com"]
    assert body["records"][0]["attributes"]["type"] == "Contact"

    q = "SELECT Id FROM Contact WHERE RankItPro_Customer_Key__c = 'k5' OR Email = 'user6@example.com'"
    assert requests.get(f"{base}/query", params={"q": q}, headers=headers).json()["totalSize"] == 2

    everything = requests.get(f"{base}/query", params={"q": "SELECT Id FROM Contact"}, headers=headers).json()
    assert everything["totalSize"] == 2100 and not everything["done"] and len(everything["records"]) == 2000
    assert everything["nextRecordsUrl"].startswith(f"/salesforce/services/data/{SF_VERSION}/query/01g")
    rest = requests.get(sandbox.url + everything["nextRecordsUrl"], headers=headers).json()
    assert rest["done"] is True and len(rest["records"]) == 100

    for bad in ("SELECT Id FROM Contact WHERE", "SELECT Id FROM Contact WHERE Email = 'unterminated"):
        r = requests.get(f"{base}/query", params={"q": bad}, headers=headers)
        assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_QUERY"
    r = requests.get(f"{base}/query", params={"q": "SELECT Nope__c FROM Contact"}, headers=headers)
    assert r.json()[0]["errorCode"] == "INVALID_FIELD"


def test_salesforce_daily_allocation_and_session_expiry(sandbox: SandboxServer) -> None:
    account, creds = salesforce_org(sandbox, limits={"daily_api_requests": 3})
    base, headers = sf_login(sandbox, creds)
    usage = [requests.get(f"{base}/limits", headers=headers).headers["Sforce-Limit-Info"] for _ in range(3)]
    assert usage == ["api-usage=1/3", "api-usage=2/3", "api-usage=3/3"]
    r = requests.get(f"{base}/limits", headers=headers)
    assert r.status_code == 403 and r.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert "Retry-After" not in r.headers

    _, creds = salesforce_org(sandbox)
    base, headers = sf_login(sandbox, creds)
    account = [
        a["account"]
        for a in requests.get(f"{sandbox.url}/_sandbox/accounts").json()
        if a["credentials"].get("clientId") == creds["clientId"]
    ][0]
    assert requests.get(f"{base}/sobjects/Contact/describe", headers=headers).status_code == 200
    requests.post(f"{sandbox.url}/_sandbox/accounts/salesforce/{account}/expire-tokens")
    r = requests.get(f"{base}/sobjects/Contact/describe", headers=headers)
    assert r.status_code == 401 and r.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    base, headers = sf_login(sandbox, creds)
    assert requests.get(f"{base}/sobjects/Contact/describe", headers=headers).status_code == 200


def test_salesforce_per_second_pacing(sandbox: SandboxServer) -> None:
    _, creds = salesforce_org(sandbox, limits={"per_second": 10})
    base, headers = sf_login(sandbox, creds)
    started = time.monotonic()
    for _ in range(15):
        assert requests.get(f"{base}/limits", headers=headers).status_code == 200
    assert time.monotonic() - started >= 0.45  # requests 11-15 waited for a free slot


# --------------------------------------------------------------------------- faults & persistence


def test_fault_injection_count(sandbox: SandboxServer) -> None:
    account, headers = hubspot_account(sandbox)
    url = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    faults = f"{sandbox.url}/_sandbox/faults"
    r = requests.post(faults, json={"crm": "hubspot", "account": account, "status": 503, "count": 2})
    assert r.status_code == 201
    assert [requests.get(url, headers=headers).status_code for _ in range(3)] == [503, 503, 200]

    requests.post(faults, json={"crm": "hubspot", "account": account, "status": 429, "count": 1, "retry_after": 3})
    r = requests.get(url, headers=headers)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3" and r.json()["policyName"] == "TEN_SECONDLY_ROLLING"

    requests.post(faults, json={"crm": "salesforce", "status": 500, "rate": 1.0})
    assert requests.get(url, headers=headers).status_code == 200  # other CRM untouched
    _, creds = salesforce_org(sandbox)
    base, sf_headers = sf_login(sandbox, creds)  # token endpoint exempt
    r = requests.get(f"{base}/limits", headers=sf_headers)
    assert r.status_code == 500 and r.json() == {"status": "error", "message": "internal error"}
    assert requests.delete(faults).json()["cleared"] == 1
    assert requests.get(f"{base}/limits", headers=sf_headers).status_code == 200

    stats = requests.get(f"{sandbox.url}/_sandbox/stats").json()["hubspot"][account]
    assert stats["faults"] == 3 and stats["requests"] == 5
    assert stats["by_endpoint"]["GET /hubspot/crm/v3/objects/contacts"] == 5


def test_state_save_and_load_round_trip(tmp_path) -> None:
    state_file = tmp_path / "sandbox.json"
    with SandboxServer(state_file=state_file) as first:
        hs_account, hs_headers = hubspot_account(first)
        created = requests.post(
            f"{first.url}/hubspot/crm/v3/objects/contacts",
            json={"properties": {"email": "keep@example.com", "phone": "512 555 0199"}},
            headers=hs_headers,
        ).json()
        sf_account, creds = salesforce_org(first)
        base, sf_headers = sf_login(first, creds)
        sf_id = requests.post(
            f"{base}/sobjects/Account", json={"Name": "Kept", "RankItPro_Customer_Key__c": "k"}, headers=sf_headers
        ).json()["id"]
        assert requests.post(f"{first.url}/_sandbox/save").json()["saved"] == str(state_file)
    assert state_file.exists()

    with SandboxServer(state_file=state_file) as second:
        records = requests.get(f"{second.url}/_sandbox/records/hubspot/{hs_account}/contacts").json()
        assert [r["id"] for r in records] == [created["id"]]
        dup = requests.post(
            f"{second.url}/hubspot/crm/v3/objects/contacts",
            json={"properties": {"email": "KEEP@example.com"}},
            headers=hs_headers,
        )
        assert dup.status_code == 409  # static token and email index survived
        found = requests.post(
            f"{second.url}/hubspot/crm/v3/objects/contacts/search",
            headers=hs_headers,
            json={
                "filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+1 512-555-0199"}]}]
            },
        ).json()
        assert found["total"] == 1
        base = base.replace(first.url, second.url)
        r = requests.get(f"{base}/sobjects/Account/{sf_id}", headers=sf_headers)  # issued token still valid
        assert r.status_code == 200 and r.json()["Name"] == "Kept"
        upsert = requests.patch(
            f"{base}/composite/sobjects/Account/RankItPro_Customer_Key__c",
            headers=sf_headers,
            json={"records": [{"attributes": {"type": "Account"}, "Name": "Kept 2", "RankItPro_Customer_Key__c": "K"}]},
        ).json()
        assert upsert[0] == {"id": sf_id, "success": True, "errors": [], "created": False}
        assert requests.get(f"{second.url}/_sandbox/stats").json()["salesforce"][sf_account]["objects"]["Account"] == 1


def test_hubspot_hook_refreshes_on_the_v3_token_endpoint_only(sandbox: SandboxServer) -> None:
    from crm_hooks.hubspot import HubSpotHook

    creds = {"clientId": "app-3", "clientSecret": "app-secret-3", "refreshToken": "rt-" + uuid.uuid4().hex}
    account = register(sandbox, "hubspot", creds)
    hook = HubSpotHook(credentials={**creds, "baseUrl": f"{sandbox.url}/hubspot"}, account_key=account)
    assert hook.test_connection() == (True, "Connected to HubSpot (contacts readable)")
    by_endpoint = requests.get(f"{sandbox.url}/_sandbox/stats").json()["hubspot"][account]["by_endpoint"]
    assert by_endpoint.get("POST /hubspot/oauth/v3/token") == 1 and "POST /hubspot/oauth/v1/token" not in by_endpoint
    # v3 takes its parameters in the body: the same form in the query string is refused
    form = {"grant_type": "refresh_token", "client_id": "app-3", "client_secret": "app-secret-3"}
    refused = requests.post(f"{sandbox.url}/hubspot/oauth/v3/token", params={**form, "refresh_token": "x"})
    assert refused.status_code == 400 and refused.json()["status"] == "BAD_REQUEST"
