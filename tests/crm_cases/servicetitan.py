from crm_cases import CrmCase

CREDS = {"clientId": "cid.conf-st-client", "clientSecret": "cs1.conf-st-secret-5a6b7c", "tenantId": "1234567",
         "appKey": "ak1.conf-st-appkey-8d9e0f"}
#: The sandbox's default reference data (business unit, job type, campaign).
JOB_DEFAULTS = {"businessUnitId": 1001, "jobTypeId": 2001, "campaignId": 3001, "priority": "Normal"}


def _integration(url: str, secret: str = CREDS["clientSecret"]) -> dict:
    return {"name": "ServiceTitan", "status": "active",
            "credentials": {**CREDS, "clientSecret": secret, "baseUrl": f"{url}/servicetitan",
                            "authUrl": f"{url}/servicetitan"},
            "crmSettings": dict(JOB_DEFAULTS),
            "syncSettings": {"customerMatchStrategy": "all"}}


def _marker(record: dict) -> str | None:
    return next((e["value"] for e in record.get("externalData") or [] if e["key"] == "rankitpro_checkin_key"), None)


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
)
