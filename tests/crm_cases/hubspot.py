from crm_cases import CrmCase, seed_record
from localdev.demo_data import hubspot_integration

TOKEN = "pat-na1-conf-8c1d2e3f-4a5b-6c7d"
CLIENT_SECRET = "hs-conf-client-secret-77"
REFRESH = "hs-conf-refresh-token-0099"


def _oauth(url: str, secret: str = CLIENT_SECRET) -> dict:
    integration = hubspot_integration(url, "")
    integration["credentials"] = {
        "clientId": "hs-conf-client",
        "clientSecret": secret,
        "refreshToken": REFRESH,
        "baseUrl": f"{url}/hubspot",
    }
    return integration


def _seed_customer(url: str, first: str, last: str, phone: str, email: str | None = None) -> str:
    body = {"properties": {"firstname": first, "lastname": last, "phone": phone, **({"email": email} if email else {})}}
    return seed_record(url, "hubspot", "conf", "contacts", body)["id"]


# OAuth (30-minute tokens in production) so token expiry mid-run is exercised; the private-app
# token path is covered by the end-to-end tests.
CASE = CrmCase(
    crm_type="hubspot",
    account="conf",
    sandbox_credentials={"clientId": "hs-conf-client", "clientSecret": CLIENT_SECRET, "refreshToken": REFRESH},
    integration=_oauth,
    bad_integration=lambda url: _oauth(url, "wrong-secret-000"),
    visit_object="notes",
    visit_marker=lambda rec: rec["properties"].get("rankitpro_checkin_key"),
    customer_object="contacts",
    secrets=(CLIENT_SECRET, REFRESH),
    short_token_limits={"token_ttl_seconds": 1},
    seed_customer=_seed_customer,
    seed_candidate=lambda url, first, last, phone, email: (_seed_customer(url, first, last, phone, email), None),
    kill_points=("batch_upsert:contacts", "batch_create:notes"),
    visit_customer=lambda note: next((str(a["to"]["id"]) for a in note.get("associations") or []), None),
)
