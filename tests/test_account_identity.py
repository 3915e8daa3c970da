"""Request shapes of the account-identity calls (issue #10 section 4): the value comes from the CRM's answer.

The sandbox-level check for all six CRMs is
``test_conformance.py::test_account_identity_is_read_from_the_crm_once_per_hook``;
two accounts of one CRM end to end are in ``test_crm_account_switch.py``.
"""

from __future__ import annotations

import uuid

import pytest
import responses

from crm_hooks.errors import ConfigurationError
from crm_hooks.housecallpro import HousecallProHook
from crm_hooks.hubspot import HubSpotHook
from crm_hooks.salesforce import SalesforceHook

pytestmark = pytest.mark.usefixtures("instant_rate_limits")
ORG = "00D5g000004SbRtEAK"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def test_hubspot_portal_id_from_account_info(rsps):
    rsps.add(
        responses.GET,
        "https://api.hubapi.com/account-info/v3/details",
        json={"portalId": 62515, "accountType": "STANDARD", "timeZone": "US/Eastern"},
    )
    hook = HubSpotHook(credentials={"accessToken": "pat-na1-unit"}, account_key=f"hs-{uuid.uuid4()}")
    assert hook.account_identity() == "62515"
    assert hook.account_identity() == "62515"  # cached: one call
    assert len(rsps.calls) == 1
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer pat-na1-unit"


def test_hubspot_answer_without_portal_id_is_a_configuration_error(rsps):
    rsps.add(responses.GET, "https://api.hubapi.com/account-info/v3/details", json={"accountType": "STANDARD"})
    hook = HubSpotHook(credentials={"accessToken": "pat-na1-unit"}, account_key=f"hs-{uuid.uuid4()}")
    with pytest.raises(ConfigurationError, match="did not say which account"):
        hook.account_identity()


def _salesforce(rsps, identity_url: str | None) -> SalesforceHook:
    body = {"access_token": "00D!session", "instance_url": "https://acme.my.salesforce.com", "token_type": "Bearer"}
    if identity_url:
        body["id"] = identity_url
    rsps.add(responses.POST, "https://acme.my.salesforce.com/services/oauth2/token", json=body)
    return SalesforceHook(
        credentials={
            "clientId": "cid",
            "clientSecret": "cs-unit-0001",
            "myDomainUrl": "https://acme.my.salesforce.com",
        },
        account_key=f"sf-{uuid.uuid4()}",
    )


def test_salesforce_org_id_from_the_token_responses_identity_url(rsps):
    hook = _salesforce(rsps, f"https://login.salesforce.com/id/{ORG}/0055g00000BXe1kAAD")
    assert hook.account_identity() == ORG
    assert len(rsps.calls) == 1  # the token call only


def test_salesforce_org_id_from_userinfo_when_the_token_response_has_no_identity_url(rsps):
    hook = _salesforce(rsps, None)
    rsps.add(
        responses.GET,
        "https://acme.my.salesforce.com/services/oauth2/userinfo",
        json={"organization_id": ORG, "user_id": "0055g00000BXe1kAAD"},
    )
    assert hook.account_identity() == ORG
    assert rsps.calls[1].request.headers["Authorization"] == "Bearer 00D!session"


def test_housecallpro_company_id_from_get_company(rsps):
    rsps.add(
        responses.GET,
        "https://api.housecallpro.com/company",
        json={"id": "4f1b7f2e-6c1e-4c71-9a8e-0d4b9f1f2c3a", "name": "Acme Plumbing"},
    )
    hook = HousecallProHook(credentials={"apiKey": "hcp-unit-key"}, account_key=f"hcp-{uuid.uuid4()}")
    assert hook.account_identity() == "4f1b7f2e-6c1e-4c71-9a8e-0d4b9f1f2c3a"
    assert rsps.calls[0].request.headers["Authorization"] == "Token hcp-unit-key"
