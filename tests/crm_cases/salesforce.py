from crm_cases import CrmCase, seed_record
from localdev.demo_data import salesforce_integration

CLIENT = {"client_id": "3MVG9conf.client", "client_secret": "sf-conf-secret-4e5f6a"}


def _seed_candidate(url: str, first: str, last: str, phone: str, email: str | None = None) -> tuple[str, str]:
    account = seed_record(url, "salesforce", "conf", "Account", {"Name": f"{first} {last}"})["Id"]
    body = {"FirstName": first, "LastName": last, "Phone": phone, "AccountId": account}
    if email:
        body["Email"] = email
    return seed_record(url, "salesforce", "conf", "Contact", body)["Id"], account


def _seed_customer(url: str, first: str, last: str, phone: str) -> str:
    return _seed_candidate(url, first, last, phone)[0]


CASE = CrmCase(
    crm_type="salesforce",
    account="conf",
    sandbox_credentials={"clientId": CLIENT["client_id"], "clientSecret": CLIENT["client_secret"]},
    integration=lambda url: salesforce_integration(url, **CLIENT),
    bad_integration=lambda url: salesforce_integration(
        url, client_id=CLIENT["client_id"], client_secret="wrong-secret-000"
    ),
    visit_object="Case",
    visit_marker=lambda rec: rec.get("RankItPro_CheckIn_Key__c"),
    customer_object="Contact",
    secrets=(CLIENT["client_secret"],),
    short_token_limits={"token_ttl_seconds": 1},
    base_url_key="myDomainUrl",
    seed_customer=_seed_customer,
    seed_candidate=_seed_candidate,
    kill_points=("upsert_records:Account", "upsert_records:Contact", "upsert_records:Case"),
    visit_customer=lambda case: case.get("ContactId"),
)
