"""``Destination.iter_customers`` of every CRM against the vendor's documented list request and pagination
(``responses``): two pages, then the end; what is requested, and what comes back as ``CrmCustomerRecord``."""

from __future__ import annotations

import base64
import json
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from crm_hooks.fieldedge import FieldEdgeHook
from crm_hooks.housecallpro import HousecallProHook
from crm_hooks.hubspot import HubSpotHook
from crm_hooks.jobber import JobberHook
from crm_hooks.salesforce import SalesforceHook
from crm_hooks.servicetitan import ServiceTitanHook
from crm_sync.destinations import destination_class
from crm_sync.destinations.base import CrmCustomerRecord, ReadNotSupported
from crm_sync.models import SyncSettings

pytestmark = pytest.mark.usefixtures("instant_rate_limits")


def query(call) -> dict:
    return {k: v if len(v) > 1 else v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def destination(crm_type: str, hook):
    return destination_class(crm_type)(hook, SyncSettings())


def test_hubspot_lists_contacts_100_per_page_following_the_after_cursor(rsps):
    url = "https://api.hubapi.com/crm/v3/objects/contacts"
    rsps.add(
        responses.GET,
        url,
        json={
            "results": [
                {
                    "id": "101",
                    "properties": {
                        "email": "Ann@X.com",
                        "phone": "(512) 555-0100",
                        "firstname": "Ann",
                        "lastname": "Lee",
                        "rankitpro_customer_key": "email:ann@x.com",
                    },
                }
            ],
            "paging": {"next": {"after": "101", "link": f"{url}?after=101"}},
        },
    )
    rsps.add(responses.GET, url, json={"results": [{"id": "102", "properties": {"firstname": "Bo"}}]})
    hook = HubSpotHook(credentials={"accessToken": "pat-na1-unit"}, account_key=f"hs-{uuid.uuid4()}")
    got = list(destination("hubspot", hook).iter_customers())
    assert got == [
        CrmCustomerRecord("101", name="Ann Lee", email="Ann@X.com", phone="(512) 555-0100", sync_key="email:ann@x.com"),
        CrmCustomerRecord("102", name="Bo"),
    ]
    first, second = (query(c) for c in rsps.calls)
    assert first == {
        "limit": "100",
        "archived": "false",
        "properties": "email,phone,firstname,lastname,rankitpro_customer_key",
    }
    assert second == {**first, "after": "101"}
    assert all(c.request.method == "GET" for c in rsps.calls)


def test_salesforce_queries_contacts_with_their_account_following_next_records_url(rsps):
    domain = "https://acme.my.salesforce.com"
    data = f"{domain}/services/data/v62.0"
    rsps.add(
        responses.POST,
        f"{domain}/services/oauth2/token",
        json={"access_token": "00D!unit", "instance_url": domain, "token_type": "Bearer"},
    )
    rsps.add(
        responses.GET,
        f"{data}/sobjects/Contact/describe",
        json={"name": "Contact", "fields": [{"name": "Id"}, {"name": "RankItPro_Customer_Key__c"}]},
    )
    rsps.add(
        responses.GET,
        f"{data}/query",
        json={
            "totalSize": 2,
            "done": False,
            "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-2000",
            "records": [
                {
                    "attributes": {"type": "Contact"},
                    "Id": "003A1",
                    "AccountId": "001A1",
                    "FirstName": "Ann",
                    "LastName": "Lee",
                    "Email": "ann@x.com",
                    "Phone": "512.555.0100",
                    "RankItPro_Customer_Key__c": None,
                }
            ],
        },
    )
    rsps.add(
        responses.GET,
        f"{data}/query/01gD0000002HU6KIAW-2000",
        json={
            "totalSize": 2,
            "done": True,
            "records": [
                {
                    "attributes": {"type": "Contact"},
                    "Id": "003A2",
                    "AccountId": None,
                    "LastName": "Park",
                    "RankItPro_Customer_Key__c": "phone:+15125550177",
                }
            ],
        },
    )
    hook = SalesforceHook(
        credentials={"clientId": "cid", "clientSecret": "cs-unit", "myDomainUrl": domain},
        account_key=f"sf-{uuid.uuid4()}",
    )
    got = list(destination("salesforce", hook).iter_customers())
    assert got == [
        CrmCustomerRecord("003A1", parent_id="001A1", name="Ann Lee", email="ann@x.com", phone="512.555.0100"),
        CrmCustomerRecord("003A2", name="Park", sync_key="phone:+15125550177"),
    ]
    soql = query(rsps.calls[2])["q"]
    assert soql == (
        "SELECT Id, AccountId, FirstName, LastName, Email, Phone, RankItPro_Customer_Key__c "
        "FROM Contact ORDER BY CreatedDate, Id"
    )
    assert rsps.calls[3].request.url == f"{data}/query/01gD0000002HU6KIAW-2000"


def test_salesforce_leaves_the_marker_out_when_the_org_lacks_it(rsps):
    domain = "https://acme.my.salesforce.com"
    data = f"{domain}/services/data/v62.0"
    rsps.add(
        responses.POST,
        f"{domain}/services/oauth2/token",
        json={"access_token": "00D!unit", "instance_url": domain, "token_type": "Bearer"},
    )
    rsps.add(responses.GET, f"{data}/sobjects/Contact/describe", json={"name": "Contact", "fields": [{"name": "Id"}]})
    rsps.add(responses.GET, f"{data}/query", json={"totalSize": 0, "done": True, "records": []})
    hook = SalesforceHook(
        credentials={"clientId": "cid", "clientSecret": "cs-unit", "myDomainUrl": domain},
        account_key=f"sf-{uuid.uuid4()}",
    )
    assert list(destination("salesforce", hook).iter_customers()) == []
    assert "RankItPro_Customer_Key__c" not in query(rsps.calls[2])["q"]


def test_servicetitan_pages_contacts_locations_and_customers_by_page_and_has_more(rsps):
    api, tenant = "https://api.servicetitan.io", "1234567"
    crm = f"{api}/crm/v2/tenant/{tenant}"
    rsps.add(
        responses.POST,
        "https://auth.servicetitan.io/connect/token",
        json={"access_token": "st-unit", "expires_in": 900, "token_type": "Bearer"},
    )

    def page(data, more, number):
        return {"page": number, "pageSize": 2, "hasMore": more, "data": data}

    rsps.add(
        responses.GET,
        f"{crm}/customers/contacts",
        json=page(
            [
                {
                    "id": 1,
                    "type": "Email",
                    "value": "ann@x.com",
                    "customerId": 11,
                    "modifiedOn": "2026-01-01T00:00:00Z",
                },
                {"id": 2, "type": "MobilePhone", "value": "(512) 555-0100", "customerId": 11},
            ],
            True,
            1,
        ),
    )
    rsps.add(
        responses.GET,
        f"{crm}/customers/contacts",
        json=page(
            [
                {"id": 3, "type": "Phone", "value": "512-555-0177", "customerId": 12},
                {"id": 4, "type": "Fax", "value": "512-555-0000", "customerId": 12},
            ],
            False,
            2,
        ),
    )
    rsps.add(
        responses.GET,
        f"{crm}/locations",
        json=page(
            [{"id": 21, "customerId": 11, "active": True}, {"id": 22, "customerId": 11, "active": True}], False, 1
        ),
    )
    rsps.add(responses.GET, f"{crm}/customers", json=page([{"id": 11, "name": "Ann Lee"}], True, 1))
    rsps.add(responses.GET, f"{crm}/customers", json=page([{"id": 12, "name": "Lee Park"}], False, 2))
    hook = ServiceTitanHook(
        credentials={"clientId": "cid", "clientSecret": "cs", "tenantId": tenant, "appKey": "ak"},
        account_key=f"st-{uuid.uuid4()}",
    )
    got = list(destination("servicetitan", hook).iter_customers(page_size=2))
    assert got == [
        CrmCustomerRecord("11", parent_id="21", name="Ann Lee", email="ann@x.com", phone="(512) 555-0100"),
        CrmCustomerRecord("12", name="Lee Park", phone="512-555-0177"),
    ]
    lists = [(urlsplit(c.request.url).path, query(c)) for c in rsps.calls[1:]]
    assert lists == [
        (
            f"/crm/v2/tenant/{tenant}/customers/contacts",
            {"modifiedOnOrAfter": "2000-01-01T00:00:00Z", "page": "1", "pageSize": "2"},
        ),
        (
            f"/crm/v2/tenant/{tenant}/customers/contacts",
            {"modifiedOnOrAfter": "2000-01-01T00:00:00Z", "page": "2", "pageSize": "2"},
        ),
        (f"/crm/v2/tenant/{tenant}/locations", {"sort": "+Id", "page": "1", "pageSize": "2"}),
        (f"/crm/v2/tenant/{tenant}/customers", {"sort": "+Id", "page": "1", "pageSize": "2"}),
        (f"/crm/v2/tenant/{tenant}/customers", {"sort": "+Id", "page": "2", "pageSize": "2"}),
    ]
    assert all(c.request.headers["ST-App-Key"] == "ak" for c in rsps.calls[1:])


def test_housecallpro_pages_customers_oldest_first_until_total_pages(rsps):
    url = "https://api.housecallpro.com/customers"

    def page(items, number):
        return {"page": number, "page_size": 100, "total_pages": 2, "total_items": 2, "customers": items}

    rsps.add(
        responses.GET,
        url,
        json=page(
            [
                {
                    "id": "cus_1",
                    "first_name": "Ann",
                    "last_name": "Lee",
                    "email": "ann@x.com",
                    "home_number": "512-555-0100",
                    "addresses": [{"id": "adr_1", "type": "service", "street": "1 Main"}],
                }
            ],
            1,
        ),
    )
    rsps.add(
        responses.GET,
        url,
        json=page(
            [{"id": "cus_2", "mobile_number": "(512) 555-0177", "work_number": "512-555-0000", "addresses": []}], 2
        ),
    )
    hook = HousecallProHook(credentials={"apiKey": "hcp-unit"}, account_key=f"hcp-{uuid.uuid4()}")
    got = list(destination("housecallpro", hook).iter_customers())
    assert got == [
        CrmCustomerRecord("cus_1", parent_id="adr_1", name="Ann Lee", email="ann@x.com", phone="512-555-0100"),
        CrmCustomerRecord("cus_2", phone="(512) 555-0177"),
    ]
    assert [query(c) for c in rsps.calls] == [
        {"sort_by": "created_at", "sort_direction": "asc", "page": "1", "page_size": "100"},
        {"sort_by": "created_at", "sort_direction": "asc", "page": "2", "page_size": "100"},
    ]


def _jwt(seconds: float) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part({'exp': int(time.time() + seconds)})}.sig"


def test_jobber_pages_the_clients_connection_with_first_and_after(rsps):
    api = "https://api.getjobber.com/api"
    throttle = {"maximumAvailable": 10000, "currentlyAvailable": 9990, "restoreRate": 500}

    def answer(nodes, more, cursor):
        return {
            "data": {"clients": {"nodes": nodes, "pageInfo": {"hasNextPage": more, "endCursor": cursor}}},
            "extensions": {"cost": {"requestedQueryCost": 803, "actualQueryCost": 12, "throttleStatus": throttle}},
        }

    rsps.add(responses.POST, f"{api}/oauth/token", json={"access_token": _jwt(3600), "refresh_token": "jb-r2"})
    rsps.add(
        responses.POST,
        f"{api}/graphql",
        json=answer(
            [
                {
                    "id": "Z2lkOi8vMQ==",
                    "firstName": "Ann",
                    "lastName": "Lee",
                    "companyName": None,
                    "emails": [{"address": "ann@x.com"}, {"address": "ann@work.com"}],
                    "phones": [{"number": "512-555-0100"}],
                }
            ],
            True,
            "MQ",
        ),
    )
    rsps.add(
        responses.POST,
        f"{api}/graphql",
        json=answer(
            [
                {
                    "id": "Z2lkOi8vMg==",
                    "firstName": None,
                    "lastName": None,
                    "companyName": "Park LLC",
                    "emails": [],
                    "phones": [],
                }
            ],
            False,
            "Mg",
        ),
    )
    hook = JobberHook(
        credentials={"clientId": "cid", "clientSecret": "cs", "refreshToken": "jb-r1"},
        credentials_writer=lambda creds: None,
        account_key=f"jb-{uuid.uuid4()}",
    )
    got = list(destination("jobber", hook).iter_customers())
    assert got == [
        CrmCustomerRecord("Z2lkOi8vMQ==", name="Ann Lee", email="ann@x.com", phone="512-555-0100"),
        CrmCustomerRecord("Z2lkOi8vMg=="),
    ]
    first, second = (json.loads(c.request.body) for c in rsps.calls[1:])
    assert "clients(first: 100)" in first["query"] and "pageInfo { hasNextPage endCursor }" in first["query"]
    assert "emails { address }" in first["query"] and first["variables"] == {}
    assert "clients(first: 100, after: $cursor)" in second["query"] and second["variables"] == {"cursor": "MQ"}
    assert all(c.request.headers["X-JOBBER-GRAPHQL-VERSION"] for c in rsps.calls[1:])


def test_jobber_lowers_the_page_size_to_fit_the_query_cost_cap(rsps):
    hook = JobberHook(
        credentials={"clientId": "cid", "clientSecret": "cs", "refreshToken": "jb-r1"},
        credentials_writer=lambda creds: None,
        account_key=f"jb-{uuid.uuid4()}",
    )
    api = "https://api.getjobber.com/api"
    rsps.add(responses.POST, f"{api}/oauth/token", json={"access_token": _jwt(3600), "refresh_token": "jb-r2"})
    rsps.add(
        responses.POST,
        f"{api}/graphql",
        json={"data": {"clients": {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}}},
    )
    assert list(hook.iter_all_clients(page_size=10_000)) == []
    sent = json.loads(rsps.calls[1].request.body)["query"]
    first = int(sent.split("clients(first: ")[1].split(")")[0])
    assert 1 <= first < 10_000 and first * 8 <= 2_500  # 8 points per client node, at most 2,500 per request


def test_fieldedge_says_it_cannot_list_customers_without_a_request(rsps):
    hook = FieldEdgeHook(
        credentials={"clientId": "cid", "clientSecret": "cs", "targetId": "t-1"}, account_key=f"fe-{uuid.uuid4()}"
    )
    with pytest.raises(ReadNotSupported, match="no endpoint that lists customers"):
        list(destination("fieldedge", hook).iter_customers())
    assert len(rsps.calls) == 0
