"""Jobber through the sandbox: OAuth with rotating refresh tokens and 1-second access tokens.

Every refresh kills the previous refresh token, so a run only survives token expiry when
the hook stores the new tokens (the sync's encrypted token store) before using them: the
conformance ``sync()`` builds each run's hook from the app's JSON, whose refresh token is dead.
"""

import re

from crm_cases import CrmCase, seed_record

CLIENT_ID = "jb-conf-client-7d1e"
CLIENT_SECRET = "jb-conf-client-secret-5a9c"
REFRESH = "jb-conf-refresh-token-3f0b"
_MARKER = re.compile(r"rankitpro-\d+-\d+")


def _integration(url: str, secret: str = CLIENT_SECRET) -> dict:
    return {
        "name": "Jobber",
        "status": "active",
        "lastConfigured": "2026-10-02T14:11:09.120Z",
        "credentials": {
            "clientId": CLIENT_ID,
            "clientSecret": secret,
            "refreshToken": REFRESH,
            "baseUrl": f"{url}/jobber/api",
        },
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


def _marker(record: dict) -> str | None:
    found = _MARKER.findall(record.get("title") or "")
    return found[0] if found else None


def _seed_customer(url: str, first: str, last: str, phone: str, email: str | None = None) -> str:
    body = {"firstName": first, "lastName": last, "phones": [phone], **({"emails": [email]} if email else {})}
    return seed_record(url, "jobber", "conf", "clients", body)["id"]


CASE = CrmCase(
    crm_type="jobber",
    account="conf",
    sandbox_credentials={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "refreshToken": REFRESH},
    integration=_integration,
    bad_integration=lambda url: _integration(url, "wrong-secret-000"),
    visit_object="jobs",
    visit_marker=_marker,
    customer_object="clients",
    secrets=(CLIENT_SECRET, REFRESH),
    short_token_limits={"token_ttl_seconds": 1},
    seed_customer=_seed_customer,
    seed_candidate=lambda url, first, last, phone, email: (_seed_customer(url, first, last, phone, email), None),
    kill_points=("create_clients", "create_properties", "create_jobs", "close_jobs"),
    visit_finished=lambda job: job.get("jobStatus") == "archived",  # jobClose done
    visit_customer=lambda job: job.get("clientId"),
)
