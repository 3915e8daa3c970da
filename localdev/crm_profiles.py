"""For each CRM: a sandbox account and the integration object that points a company at it.

The demo and the benchmark use these; a new CRM adds one profile. Credentials here are
made up for the local sandbox only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localdev.demo_data import (
    FE,
    HCP_KEY,
    JB,
    ST,
    fieldedge_integration,
    housecallpro_integration,
    hubspot_integration,
    jobber_integration,
    salesforce_integration,
    servicetitan_integration,
)


@dataclass(frozen=True)
class CrmProfile:
    crm_type: str
    #: credentials registered in the sandbox for the account
    sandbox_credentials: dict[str, Any]
    #: (sandbox base URL) -> the integration object as the app stores it
    integration: Callable[[str], dict[str, Any]]
    #: sandbox account options (e.g. custom fields)
    sandbox_options: dict[str, Any] = field(default_factory=dict)
    #: requests per second the benchmark paces the sandbox and the hook at, when the CRM
    #: documents no per-second limit (Salesforce: its allocation is per day)
    stand_in_rps: float | None = None

    def account_body(self, account: str, **limits: Any) -> dict[str, Any]:
        """The ``POST /_sandbox/accounts`` body for this CRM."""
        body: dict[str, Any] = {"crm": self.crm_type, "account": account, "credentials": self.sandbox_credentials}
        if limits:
            body["limits"] = limits
        if self.sandbox_options:
            body["options"] = self.sandbox_options
        return body


_HS_TOKEN = "pat-na1-bench-0000-1111-2222"
_SF = {"client_id": "3MVG9bench.client", "client_secret": "sf-bench-secret-123"}

PROFILES: dict[str, CrmProfile] = {
    "hubspot": CrmProfile("hubspot", {"accessToken": _HS_TOKEN}, lambda url: hubspot_integration(url, _HS_TOKEN)),
    "salesforce": CrmProfile(
        "salesforce",
        {"clientId": _SF["client_id"], "clientSecret": _SF["client_secret"]},
        lambda url: salesforce_integration(url, **_SF),
        stand_in_rps=10.0,
    ),
    "servicetitan": CrmProfile(
        "servicetitan",
        {
            "clientId": ST["client_id"],
            "clientSecret": ST["client_secret"],
            "tenantId": ST["tenant_id"],
            "appKey": ST["app_key"],
        },
        lambda url: servicetitan_integration(url, **ST),
    ),
    "housecallpro": CrmProfile("housecallpro", {"apiKey": HCP_KEY}, lambda url: housecallpro_integration(url, HCP_KEY)),
    "jobber": CrmProfile(
        "jobber",
        {"clientId": JB["client_id"], "clientSecret": JB["client_secret"], "refreshToken": JB["refresh_token"]},
        lambda url: jobber_integration(url, **JB),
    ),
    "fieldedge": CrmProfile(
        "fieldedge",
        {"clientId": FE["client_id"], "clientSecret": FE["client_secret"], "targetId": FE["target_id"]},
        lambda url: fieldedge_integration(url, **FE),
    ),
}
