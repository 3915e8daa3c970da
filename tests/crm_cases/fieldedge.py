from crm_cases import CrmCase, seed_record

CLIENT_ID = "fe-conf-client-7a1c"
CLIENT_SECRET = "fe-conf-client-secret-3d9e51"
TARGET_ID = "fe-conf-tenant-20417"


def _integration(url: str, secret: str = CLIENT_SECRET) -> dict:
    return {
        "name": "FieldEdge",
        "status": "active",
        "credentials": {
            "clientId": CLIENT_ID,
            "clientSecret": secret,
            "targetId": TARGET_ID,
            "baseUrl": f"{url}/fieldedge/leads",
            "authUrl": f"{url}/fieldedge",
        },
        "crmSettings": {"timezone": "America/Chicago"},
        "syncSettings": {"customerMatchStrategy": "all"},
    }


def _seed_candidate(url: str, first: str, last: str, phone: str, email: str | None) -> tuple[str, None]:
    body = {"firstName": first, "lastName": last, "phoneNumber": phone, **({"email": email} if email else {})}
    return seed_record(url, "fieldedge", "conf", "customers", body)["id"], None


# Gobo tokens are short-lived JWTs: a 1-second TTL exercises the refresh after a 401 mid-run.
CASE = CrmCase(
    crm_type="fieldedge",
    account="conf",
    sandbox_credentials={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "targetId": TARGET_ID},
    integration=_integration,
    bad_integration=lambda url: _integration(url, "wrong-secret-000"),
    visit_object="leads",
    visit_marker=lambda rec: rec.get("trackingId"),
    customer_object="customers",
    secrets=(CLIENT_SECRET,),
    short_token_limits={"token_ttl_seconds": 1},
    # No seed_customer: FieldEdge cannot list customers (the import tests skip it); the search finds these.
    seed_candidate=_seed_candidate,
    kill_points=("create_customer", "create_lead"),
    visit_customer=lambda lead: (lead.get("customer") or {}).get("customerId"),
)
