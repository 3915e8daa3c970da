from crm_cases import CrmCase, seed_record
from crm_sync.mapping.housecallpro import markers_in

API_KEY = "hcp-conf-key-5b7e2c91d04a4f3e"


def _integration(url: str, api_key: str = API_KEY) -> dict:
    return {
        "name": "Housecall Pro",
        "status": "active",
        "credentials": {"apiKey": api_key, "baseUrl": f"{url}/housecallpro"},
        "syncSettings": {
            "syncCustomers": True,
            "createNewCustomers": True,
            "updateExistingCustomers": True,
            "syncCheckInsAsJobs": True,
            "syncPhotos": True,
            "customerMatchStrategy": "all",
            "customFieldMapping": {},
        },
    }


def _marker(job: dict) -> str | None:
    keys = set().union(*(markers_in(n.get("content")) for n in job.get("notes") or [])) if job.get("notes") else set()
    return next(iter(keys), None)


def _seed_customer(url: str, first: str, last: str, phone: str, email: str | None = None) -> str:
    body = {"first_name": first, "last_name": last, "mobile_number": phone, **({"email": email} if email else {})}
    return seed_record(url, "housecallpro", "conf", "customers", body)["id"]


# Housecall Pro API keys never expire (no token endpoint): the token-refresh check is skipped.
CASE = CrmCase(
    crm_type="housecallpro",
    account="conf",
    sandbox_credentials={"apiKey": API_KEY},
    integration=_integration,
    bad_integration=lambda url: _integration(url, "hcp-wrong-key-000000000000"),
    visit_object="jobs",
    visit_marker=_marker,
    customer_object="customers",
    secrets=(API_KEY,),
    short_token_limits=None,
    seed_customer=_seed_customer,
    seed_candidate=lambda url, first, last, phone, email: (_seed_customer(url, first, last, phone, email), None),
    # The job's note is part of POST /jobs here (add_job_note only runs when a CRM drops JobCreate.notes).
    kill_points=("create_customer", "create_address", "create_job"),
    visit_customer=lambda job: (job.get("customer") or {}).get("id"),
)
