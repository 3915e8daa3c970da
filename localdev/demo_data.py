"""Generated Rank It Pro data for the demo, the tests and the benchmarks.

Check-ins look like what technicians type on a phone: names as "LAST, FIRST" or
missing, emails in capitals or with two addresses, phones in every US format,
HTML and very long notes, photos in each shape the column has held. Repeat
customers come back. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

FIRST = [
    "Ann",
    "Bob",
    "Carla",
    "Dmitri",
    "Elena",
    "Frank",
    "Grace",
    "Hector",
    "Ivy",
    "José",
    "Kim",
    "Liam",
    "Maria",
    "Nina",
    "Owen",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Zoë",
]
LAST = [
    "Smith",
    "Nguyen",
    "Garcia",
    "Okafor",
    "Müller",
    "Johnson",
    "Patel",
    "Kowalski",
    "Brown",
    "Núñez",
    "O'Brien",
    "Lee",
    "Martinez",
    "Davis",
    "Chen",
    "Wilson",
]
JOBS = ["AC Repair", "Furnace Tune-up", "Water Heater Install", "Drain Cleaning", "Panel Upgrade", "Leak Repair"]
STREETS = ["Oak St", "Maple Ave", "Congress Ave", "Elm Dr", "Lamar Blvd", "Cedar Ln"]


@dataclass
class DemoCompany:
    """A company of the demo, with its integrations and the sandbox accounts behind them."""

    name: str
    integrations: Any  # dict, or raw text for broken rows
    accounts: list[dict[str, Any]] = field(default_factory=list)
    check_ins: int = 40


def hubspot_integration(base_url: str, token: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": "HubSpot",
        "status": "active",
        "lastConfigured": "2026-10-02T14:11:09.120Z",
        "credentials": {"accessToken": token, "baseUrl": f"{base_url}/hubspot"},
        "syncSettings": {
            "syncCustomers": True,
            "createNewCustomers": True,
            "updateExistingCustomers": True,
            "syncCheckInsAsJobs": True,
            "syncPhotos": True,
            "customerMatchStrategy": "all",
            "customFieldMapping": {},
            **settings,
        },
    }


def salesforce_integration(
    base_url: str,
    *,
    client_id: str,
    client_secret: str,
    username: str | None = None,
    password: str | None = None,
    security_token: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    creds: dict[str, Any] = {"clientId": client_id, "clientSecret": client_secret}
    if username:
        creds.update(
            username=username, password=password, securityToken=security_token, authUrl=f"{base_url}/salesforce"
        )
    else:
        creds["myDomainUrl"] = f"{base_url}/salesforce"
    return {
        "name": "Salesforce",
        "status": "active",
        "credentials": creds,
        "syncSettings": {"customerMatchStrategy": "all", **settings},
    }


def servicetitan_integration(
    base_url: str, *, client_id: str, client_secret: str, tenant_id: str, app_key: str, **settings: Any
) -> dict[str, Any]:
    """Job defaults are the sandbox's reference data (business unit 1001, job type 2001, campaign 3001)."""
    return {
        "name": "ServiceTitan",
        "status": "active",
        "credentials": {
            "clientId": client_id,
            "clientSecret": client_secret,
            "tenantId": tenant_id,
            "appKey": app_key,
            "baseUrl": f"{base_url}/servicetitan",
            "authUrl": f"{base_url}/servicetitan",
        },
        "crmSettings": {"businessUnitId": 1001, "jobTypeId": 2001, "campaignId": 3001, "priority": "Normal"},
        "syncSettings": {"customerMatchStrategy": "all", **settings},
    }


def housecallpro_integration(base_url: str, api_key: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": "Housecall Pro",
        "status": "active",
        "credentials": {"apiKey": api_key, "baseUrl": f"{base_url}/housecallpro"},
        "syncSettings": {"customerMatchStrategy": "all", **settings},
    }


def jobber_integration(
    base_url: str, *, client_id: str, client_secret: str, refresh_token: str, **settings: Any
) -> dict[str, Any]:
    return {
        "name": "Jobber",
        "status": "active",
        "credentials": {
            "clientId": client_id,
            "clientSecret": client_secret,
            "refreshToken": refresh_token,
            "baseUrl": f"{base_url}/jobber/api",
        },
        "syncSettings": {"customerMatchStrategy": "all", **settings},
    }


def fieldedge_integration(
    base_url: str, *, client_id: str, client_secret: str, target_id: str, **settings: Any
) -> dict[str, Any]:
    return {
        "name": "FieldEdge",
        "status": "active",
        "credentials": {
            "clientId": client_id,
            "clientSecret": client_secret,
            "targetId": target_id,
            "baseUrl": f"{base_url}/fieldedge/leads",
            "authUrl": f"{base_url}/fieldedge",
        },
        "crmSettings": {"timezone": "America/Chicago"},
        "syncSettings": {"customerMatchStrategy": "all", **settings},
    }


#: Made-up credentials of the demo's field-service CRM accounts (sandbox only).
ST = {
    "client_id": "cid.demo-metro",
    "client_secret": "cs1.demo-metro-secret-91",
    "tenant_id": "7654321",
    "app_key": "ak1.demo-metro-appkey-33",
}
HCP_KEY = "hcp-demo-key-sunrise-4c2e9a71"
JB = {"client_id": "jb-demo-client", "client_secret": "jb-demo-secret-6b1f", "refresh_token": "jb-demo-refresh-0a9d"}
FE = {"client_id": "fe-demo-client", "client_secret": "fe-demo-secret-2c8e40", "target_id": "fe-demo-tenant-5521"}


def demo_companies(base_url: str) -> list[DemoCompany]:
    """The demo's companies: healthy ones on each CRM, one on two CRMs, and broken configurations."""
    hs1 = "pat-na1-demo-lonestar-7f3a9c2e-51d4-4e0b-9a61"
    hs3 = "pat-na1-demo-peak-0c8d2b7a-93e1-4f6c-b2d0"
    sf2 = {"client_id": "3MVG9demo.bayplumbing", "client_secret": "sf-secret-bay-4b1e9d7c2a"}
    sf3 = {
        "client_id": "3MVG9demo.peak",
        "client_secret": "sf-secret-peak-77aa01fe",
        "username": "ops@peakelectric.example",
        "password": "Peak-Pass-2026!",
        "security_token": "TOKpeak9931",
    }
    return [
        DemoCompany(
            "Lone Star HVAC",
            {
                "hubspot": hubspot_integration(
                    base_url, hs1, customFieldMapping={"customerFeedback": "rip_customer_feedback"}
                )
            },
            [{"crm": "hubspot", "account": "lonestar", "credentials": {"accessToken": hs1}}],
        ),
        DemoCompany(
            "Bay Plumbing",
            {"salesforce": salesforce_integration(base_url, **sf2)},
            [
                {
                    "crm": "salesforce",
                    "account": "bay",
                    "credentials": {"clientId": sf2["client_id"], "clientSecret": sf2["client_secret"]},
                }
            ],
        ),
        DemoCompany(
            "Peak Electric",
            {"hubspot": hubspot_integration(base_url, hs3), "salesforce": salesforce_integration(base_url, **sf3)},
            [
                {"crm": "hubspot", "account": "peak", "credentials": {"accessToken": hs3}},
                {
                    "crm": "salesforce",
                    "account": "peak",
                    "credentials": {
                        "clientId": sf3["client_id"],
                        "clientSecret": sf3["client_secret"],
                        "username": sf3["username"],
                        "password": sf3["password"],
                        "securityToken": sf3["security_token"],
                    },
                },
            ],
        ),
        DemoCompany(
            "Metro Heating & Air",
            {"servicetitan": servicetitan_integration(base_url, **ST)},
            [
                {
                    "crm": "servicetitan",
                    "account": "metro",
                    "credentials": {
                        "clientId": ST["client_id"],
                        "clientSecret": ST["client_secret"],
                        "tenantId": ST["tenant_id"],
                        "appKey": ST["app_key"],
                    },
                }
            ],
        ),
        DemoCompany(
            "Sunrise Plumbing",
            {"housecallpro": housecallpro_integration(base_url, HCP_KEY)},
            [{"crm": "housecallpro", "account": "sunrise", "credentials": {"apiKey": HCP_KEY}}],
        ),
        DemoCompany(
            "Green Valley Lawn & Irrigation",
            {"jobber": jobber_integration(base_url, **JB)},
            [
                {
                    "crm": "jobber",
                    "account": "greenvalley",
                    "credentials": {
                        "clientId": JB["client_id"],
                        "clientSecret": JB["client_secret"],
                        "refreshToken": JB["refresh_token"],
                    },
                }
            ],
        ),
        DemoCompany(
            "Lakeside Electric",
            {"fieldedge": fieldedge_integration(base_url, **FE)},
            [
                {
                    "crm": "fieldedge",
                    "account": "lakeside",
                    "credentials": {
                        "clientId": FE["client_id"],
                        "clientSecret": FE["client_secret"],
                        "targetId": FE["target_id"],
                    },
                }
            ],
        ),
        DemoCompany(
            "Broken JSON Roofing", '{"hubspot": {"status": "active", "credentials": {"accessToken": ', check_ins=3
        ),
        DemoCompany(
            "Mystery CRM Pools", {"zoho": {"status": "active", "credentials": {"apiKey": "zz-secret-1"}}}, check_ins=3
        ),
        DemoCompany(
            "No Credentials Garage Doors",
            {"hubspot": {"name": "HubSpot", "status": "active", "credentials": {}}},
            check_ins=3,
        ),
        DemoCompany(
            "Paused Landscaping",
            {"hubspot": {**hubspot_integration(base_url, "pat-na1-demo-paused-x1"), "status": "inactive"}},
            check_ins=3,
        ),
    ]


def _phone(rng: random.Random, digits: str) -> str:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return rng.choice(
        [
            f"({a}) {b}-{c}",
            f"{a}-{b}-{c}",
            f"{a}.{b}.{c}",
            f"{a}{b}{c}",
            f"+1 {a} {b} {c}",
            f"1-{a}-{b}-{c}",
            f"{a} {b} {c} x{rng.randint(10, 99)}",
        ]
    )


def customer_pool(rng: random.Random, size: int) -> list[dict[str, str | None]]:
    pool = []
    for i in range(size):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        digits = f"512555{i % 10000:04d}" if i < 10000 else f"{rng.randint(201, 989)}555{rng.randint(0, 9999):04d}"
        pool.append(
            {
                "first": first,
                "last": last,
                "email": f"{first}.{last}.{i}@example.com".lower()
                .replace("'", "")
                .replace("ü", "u")
                .replace("ñ", "n")
                .replace("é", "e")
                .replace("ë", "e"),
                "digits": digits,
                "street": f"{rng.randint(100, 9999)} {rng.choice(STREETS)}",
            }
        )
    return pool


def check_in_rows(
    company_id: int,
    technician_id: int,
    n: int,
    *,
    seed: int = 7,
    repeat_share: float = 0.4,
    messy: bool = True,
    start: datetime | None = None,
    awkward: bool = False,
) -> Iterator[dict[str, Any]]:
    """``n`` check-ins for one company; ``repeat_share`` of them for customers seen before.

    ``awkward`` adds the shapes CRMs refuse in one field (issue 15), every :data:`AWKWARD_EVERY` rows
    (decided by position, so the random stream, and every other row, stay as without it).
    """
    rng = random.Random(seed * 1000 + company_id)
    pool = customer_pool(rng, max(1, int(n * (1 - repeat_share)) + 1))
    start = start or (datetime.now(UTC) - timedelta(days=3)).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    for i in range(n):
        c = pool[i] if i < len(pool) and rng.random() > repeat_share else rng.choice(pool[: max(1, min(i, len(pool)))])
        name = f"{c['first']} {c['last']}"
        email: str | None = c["email"]
        phone: str | None = _phone(rng, c["digits"])
        notes = f"Replaced capacitor and checked refrigerant for {c['first']}."
        photos: Any = [f"https://cdn.rankitpro.example/p/{company_id}/{i}-a.jpg"]
        if messy:
            roll = rng.random()
            if roll < 0.08:
                name = f"{c['last'].upper()}, {c['first'].upper()}"
            elif roll < 0.12:
                email = f"  {c['email'].upper()} "
            elif roll < 0.15:
                email = f"{c['email']}, office@example.com"
            elif roll < 0.18:
                notes = f"<p>Customer said <b>thanks</b> &amp; paid.</p><script>x()</script>{notes}"
            elif roll < 0.20:
                photos = [{"url": f"https://cdn.rankitpro.example/p/{company_id}/{i}-b.jpg"}, "not a url"]
            elif roll < 0.22:
                photos = f"https://cdn.rankitpro.example/p/{company_id}/{i}-c.jpg"
        if messy and i % 17 == 5:
            # A row nobody can match: no name, a broken email, no phone.
            name, email, phone = None, "not-an-email@", None
        if messy and i % 23 == 7:
            notes = "Long install log. " + ("All joints pressure-tested; no leaks found. " * 1700)
        street: str | None = c["street"]
        if awkward:
            name, email, phone, street = _awkward(i, c, name, email, phone, street)
        yield {
            "job_type": rng.choice(JOBS),
            "notes": notes,
            "customer_name": name,
            "customer_email": email,
            "customer_phone": phone,
            "work_performed": "Diagnosed and repaired.",
            "materials_used": "Capacitor 45/5",
            # A returning customer is visited at home: the same address as before.
            "address": street,
            "city": "Austin",
            "state": "TX",
            "zip": "78701",
            "photos": json.dumps(photos),
            "customer_feedback": rng.choice(["Great job", None]),
            "follow_up_required": rng.random() < 0.1,
            "technician_id": technician_id,
            "company_id": company_id,
            "created_at": start + timedelta(minutes=7 * i),
        }


#: One in this many rows of :func:`check_in_rows` ``awkward=True`` gets each awkward shape.
AWKWARD_EVERY = 31


def _awkward(
    i: int, c: dict[str, Any], name: str | None, email: str | None, phone: str | None, street: str | None
) -> tuple[str | None, str | None, str | None, str | None]:
    """Row ``i``'s awkward shape, if it has one (issue 15): a single name, a business name, a number
    without area code, a foreign number, an extension, no street, a name with neither email nor phone."""
    shape = i % AWKWARD_EVERY
    if shape == 2:
        name = c["first"]
    elif shape == 6:
        name, email = "Bob the Plumber", None
    elif shape == 10:
        name = f"{c['last']} Heating LLC"
    elif shape == 14:
        phone = "555-0134"
    elif shape == 18:
        phone = "+44 20 7946 0958"
    elif shape == 22:
        phone = f"512-555-{1000 + i % 9000:04d} ext 12"
    elif shape == 26:
        street = None
    elif shape == 29:
        email, phone = None, None
    return name, email, phone, street


INSERT_CHECK_IN = sa.text(
    "INSERT INTO check_ins (job_type, notes, customer_name, customer_email, customer_phone, work_performed, "
    "materials_used, address, city, state, zip, photos, customer_feedback, follow_up_required, technician_id, "
    "company_id, created_at) VALUES (:job_type, :notes, :customer_name, :customer_email, :customer_phone, "
    ":work_performed, :materials_used, :address, :city, :state, :zip, CAST(:photos AS jsonb), :customer_feedback, "
    ":follow_up_required, :technician_id, :company_id, :created_at)"
)


def create_company(engine: Engine, name: str, integrations: Any) -> tuple[int, int]:
    """Insert a company with one technician; returns (company_id, technician_id)."""
    raw = integrations if isinstance(integrations, str) or integrations is None else json.dumps(integrations)
    with engine.begin() as conn:
        company_id = conn.execute(
            sa.text(
                "INSERT INTO companies (name, plan, crm_integrations, crm_sync_history) "
                "VALUES (:n, 'pro', :i, '[]') RETURNING id"
            ),
            {"n": name, "i": raw},
        ).scalar_one()
        technician_id = conn.execute(
            sa.text(
                "INSERT INTO technicians (name, email, phone, location, company_id) "
                "VALUES ('Alex Tech', 'alex@example.com', '5125550000', 'Austin', :c) RETURNING id"
            ),
            {"c": company_id},
        ).scalar_one()
    return company_id, technician_id


def insert_check_ins(engine: Engine, rows: Iterator[dict[str, Any]], chunk: int = 5000) -> int:
    """Insert generated rows in chunks; returns how many."""
    count = 0
    buf: list[dict[str, Any]] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= chunk:
            with engine.begin() as conn:
                conn.execute(INSERT_CHECK_IN, buf)
            count += len(buf)
            buf = []
    if buf:
        with engine.begin() as conn:
            conn.execute(INSERT_CHECK_IN, buf)
        count += len(buf)
    return count


def seed_demo(engine: Engine, base_url: str) -> list[DemoCompany]:
    """Create the demo companies and their check-ins (once: does nothing if companies exist)."""
    companies = demo_companies(base_url)
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT count(*) FROM companies")).scalar():
            return companies
    for company in companies:
        company_id, technician_id = create_company(engine, company.name, company.integrations)
        insert_check_ins(engine, check_in_rows(company_id, technician_id, company.check_ins))
    return companies


def point_integrations_at(engine: Engine, base_url: str) -> None:
    """Demo only: rewrite the sandbox URLs in every integration (the sandbox port may change)."""
    with engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT id, crm_integrations FROM companies FOR UPDATE")).all()
        for company_id, raw in rows:
            try:
                data = json.loads(raw or "")
            except json.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            for integ in data.values():
                creds = integ.get("credentials") if isinstance(integ, dict) else None
                if not isinstance(creds, dict):
                    continue
                for key in ("baseUrl", "myDomainUrl", "authUrl"):
                    if creds.get(key):
                        # Keep the CRM's path under the sandbox, change only scheme, host and port.
                        creds[key] = base_url + urlsplit(creds[key]).path
            conn.execute(
                sa.text("UPDATE companies SET crm_integrations = :i WHERE id = :id"),
                {"i": json.dumps(data), "id": company_id},
            )
