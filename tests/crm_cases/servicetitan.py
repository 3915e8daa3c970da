from crm_cases import CrmCase, seed_record

CREDS = {
    "clientId": "cid.conf-st-client",
    "clientSecret": "cs1.conf-st-secret-5a6b7c",
    "tenantId": "1234567",
    "appKey": "ak1.conf-st-appkey-8d9e0f",
}
#: The sandbox's default reference data (business unit, job type, campaign).
JOB_DEFAULTS = {"businessUnitId": 1001, "jobTypeId": 2001, "campaignId": 3001, "priority": "Normal"}


def _integration(url: str, secret: str = CREDS["clientSecret"]) -> dict:
    return {
        "name": "ServiceTitan",
        "status": "active",
        "credentials": {
            **CREDS,
            "clientSecret": secret,
            "baseUrl": f"{url}/servicetitan",
            "authUrl": f"{url}/servicetitan",
        },
        "crmSettings": dict(JOB_DEFAULTS),
        "syncSettings": {"customerMatchStrategy": "all"},
    }


def _marker(record: dict) -> str | None:
    return next((e["value"] for e in record.get("externalData") or [] if e["key"] == "rankitpro_checkin_key"), None)


def _seed_candidate(url: str, first: str, last: str, phone: str, email: str | None = None) -> tuple[str, str]:
    """A customer with a phone (and email) contact and one service location (jobs need a location)."""
    address = {"street": "4100 Burnet Rd", "city": "Austin", "state": "TX", "zip": "78756", "country": "USA"}
    contacts = [{"type": "Phone", "value": phone}, *([{"type": "Email", "value": email}] if email else [])]
    customer = seed_record(
        url,
        "servicetitan",
        "conf",
        "customers",
        {
            "name": f"{first} {last}",
            "type": "Residential",
            "address": address,
            "contacts": contacts,
        },
    )
    location = seed_record(
        url, "servicetitan", "conf", "locations", {"customerId": customer["id"], "name": "Home", "address": address}
    )
    return str(customer["id"]), str(location["id"])


def _seed_customer(url: str, first: str, last: str, phone: str) -> str:
    return _seed_candidate(url, first, last, phone)[0]


# ServiceTitan access tokens live 900 s; the sandbox account's 1-second tokens make them expire mid-run.
CASE = CrmCase(
    crm_type="servicetitan",
    account="conf",
    sandbox_credentials=dict(CREDS),
    integration=_integration,
    bad_integration=lambda url: _integration(url, "wrong-secret-000"),
    visit_object="jobs",
    visit_marker=_marker,
    customer_object="customers",
    secrets=(CREDS["clientSecret"], CREDS["appKey"]),
    short_token_limits={"token_ttl_seconds": 1},
    seed_customer=_seed_customer,
    seed_candidate=_seed_candidate,
    # A new customer's location is created with it (POST /customers with locations[]): one kill point.
    kill_points=("create_customer", "create_job"),
    visit_customer=lambda job: str(job["customerId"]),
)
