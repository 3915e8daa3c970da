"""Which quarantine kind each refusal gets: the destinations' own refusals, and the engine's default.

Unit tests without network: the refusals below are decided before any request (that is what makes a
``crm_state`` row safe to retry: nothing of it reached the CRM).
"""

from __future__ import annotations

import pytest

from check_in_rows import prepare_valid, row_factory
from crm_cases import all_cases
from crm_sync.destinations import destination_for
from crm_sync.destinations.base import CustomerRef
from crm_sync.integration_sync import IntegrationSync
from crm_sync.mapping import servicetitan as st_mapping
from crm_sync.models import Customer, PreparedCheckIn, RecordResult, SyncSettings
from crm_sync.quarantine import QuarantineKind

CASES = {c.crm_type: c for c in all_cases()}
#: nothing listens here: a request would fail the test with a connection error
NOWHERE = "http://127.0.0.1:9"

row = row_factory(address=None, city=None, state=None, zip=None)


def _destination(crm_type: str, **settings):
    integration = CASES[crm_type].integration(NOWHERE)
    return destination_for(crm_type, integration, SyncSettings(**settings), credentials_writer=lambda creds: None)


def _no_street() -> PreparedCheckIn:
    return prepare_valid(row(id=11, customer_email="ann@example.com"))


@pytest.mark.parametrize("crm_type", ["housecallpro", "jobber", "servicetitan"])
def test_a_job_without_a_customer_is_a_configuration_refusal(crm_type):
    dest = _destination(crm_type, sync_customers=False)
    item = _no_street()
    (res,) = dest.create_visits([(item, None)]).values()
    assert not res.ok and res.kind == QuarantineKind.CONFIG and "syncCustomers" in res.error


def test_housecallpro_customer_without_any_address_is_crm_state():
    dest = _destination("housecallpro")
    item = _no_street()
    dest._records["cus_1"] = {"id": "cus_1", "addresses": []}  # the customer as this run read it
    (res,) = dest.create_visits([(item, CustomerRef("cus_1"))]).values()
    assert res.kind == QuarantineKind.CRM_STATE and "service address" in res.error


def test_jobber_client_without_any_property_is_crm_state():
    dest = _destination("jobber")
    dest._properties["c1"] = []  # the client as this run read it: no property
    (res,) = dest.create_visits([(_no_street(), CustomerRef("c1"))]).values()
    assert res.kind == QuarantineKind.CRM_STATE and "property" in res.error


def test_servicetitan_new_customer_without_a_complete_address_is_crm_state():
    dest = _destination("servicetitan")
    item = _no_street()
    dest._markers_checked.add(st_mapping.marker_value(item.customer_key))  # looked up already: not found
    (res,) = dest.create_customers([item]).values()
    assert res.kind == QuarantineKind.CRM_STATE and "street" in res.error


def test_fieldedge_customer_with_neither_email_nor_phone_is_no_identity():
    dest = _destination("fieldedge", customer_match_strategy="name")
    item = prepare_valid(
        row(id=12, customer_email=None, customer_phone=None), SyncSettings(customer_match_strategy="name")
    )
    (res,) = dest.create_customers([item]).values()
    assert res.kind == QuarantineKind.NO_IDENTITY


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        (RecordResult("k", error="HubSpot VALIDATION_ERROR (field email): bad"), QuarantineKind.CRM_REJECTED),
        (RecordResult("k", error="needs an address", kind=QuarantineKind.CRM_STATE), QuarantineKind.CRM_STATE),
        (None, QuarantineKind.CRM_REJECTED),  # the CRM answered nothing for the row
    ],
)
def test_the_engine_records_the_destination_kind_or_crm_rejected(result, kind):
    sync = IntegrationSync(None, company_id=1, crm_type="housecallpro", integration={}, run_id="u")  # no database
    item = PreparedCheckIn(5, 1, "h", Customer(email="a@x.com"), None, ["email:a@x.com"])
    outcomes: dict = {}
    results = {item.visit_key: result} if result is not None else {}
    sync._apply([item], results, {"email:a@x.com": CustomerRef("c1")}, outcomes, counter="visits_created")
    assert outcomes[5]["status"] == "quarantined" and outcomes[5]["error_kind"] == kind


def test_crm_rejected_reasons_name_the_field_when_the_crm_does():
    from crm_sync.destinations.hubspot import _error_text
    from crm_sync.destinations.salesforce import _errors_text

    hubspot = {
        "category": "VALIDATION_ERROR",
        "message": "Property values were not valid",
        "errors": [{"message": "Email is invalid", "context": {"propertyName": ["email"]}}],
    }
    assert _error_text(hubspot) == "HubSpot VALIDATION_ERROR (field email): Property values were not valid"
    assert _error_text({"category": "CONFLICT", "message": "exists"}) == "HubSpot CONFLICT: exists"
    salesforce = {"errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "bad", "fields": ["Email"]}]}
    assert _errors_text("Contact", salesforce) == "Salesforce Contact refused: INVALID_EMAIL_ADDRESS (field Email): bad"
