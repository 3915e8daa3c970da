"""HousecallProHook against Housecall Pro's documented request and response shapes (``responses``),
and the Housecall Pro destination against the sandbox (calls per check-in, markers, addresses)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from airflow.sdk import Connection

from crm_hooks.base import CrmHook
from crm_hooks.errors import BadCredentialsError, BadRecordError, ConfigurationError, RateLimitedError, RetryableError
from crm_hooks.housecallpro import HousecallProHook, HousecallProUnconfirmedWrite
from crm_hooks.rate_limit import RateLimit

API = "https://api.housecallpro.com"
KEY = "hcp-unit-key-0d3f8a6b2c914e57"


class FastHousecallPro(HousecallProHook):
    backoff_seconds = 0.001
    backoff_max_seconds = 0.002


def hook(credentials=None, settings=None, **kwargs) -> FastHousecallPro:
    kwargs.setdefault("account_key", f"hcp-{uuid.uuid4()}")
    return FastHousecallPro(credentials=credentials or {"apiKey": KEY}, settings=settings, **kwargs)


def body(call) -> dict:
    return json.loads(call.request.body)


def query(call) -> dict:
    return {k: v if len(v) > 1 else v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def page(key, items, page=1, total_pages=1, size=50):
    return {"page": page, "page_size": size, "total_pages": total_pages, "total_items": len(items), key: items}


pytestmark = pytest.mark.usefixtures("instant_rate_limits")


# ---------------------------------------------------------------------- auth
def test_api_key_is_sent_as_token_without_any_token_call(rsps):
    rsps.add(responses.GET, f"{API}/customers", json=page("customers", []))
    h = hook(settings={"companyId": "loc-7"})
    assert list(h.search_customers("ann@x.com")) == []
    assert len(rsps.calls) == 1
    headers = rsps.calls[0].request.headers
    assert headers["Authorization"] == f"Token {KEY}"
    assert headers["X-Company-Id"] == "loc-7"
    assert h.stats.token_refreshes == 1  # the static key, cached; no HTTP token call


def test_missing_api_key_names_the_key(rsps):
    h = hook(credentials={"baseUrl": API})
    with pytest.raises(ConfigurationError, match="apiKey"):
        h.get_customer("cus_1")
    assert not rsps.calls


@pytest.mark.parametrize(
    "status,body_", [(401, {"message": "Unauthorized"}), (403, {"error": {"message": "Forbidden"}}), (401, None)]
)
def test_401_403_are_bad_credentials_naming_the_max_plan(rsps, status, body_):
    rsps.add(
        responses.GET,
        f"{API}/customers/cus_1",
        status=status,
        **({"json": body_} if body_ is not None else {"body": ""}),
    )
    with pytest.raises(BadCredentialsError) as err:
        hook().get_customer("cus_1")
    assert "MAX plan" in str(err.value) and KEY not in str(err.value)
    assert err.value.status == status


def test_401_is_resent_once_then_fails(rsps):
    rsps.add(responses.GET, f"{API}/customers/cus_1", status=401, json={"message": "Unauthorized"})
    with pytest.raises(BadCredentialsError):
        hook().get_customer("cus_1")
    assert len(rsps.calls) == 2  # the base's one re-send after a 401; a static key cannot refresh


def test_test_connection_on_401_hides_the_key(rsps):
    rsps.add(responses.GET, f"{API}/customers", status=401, json={"message": f"bad key Token {KEY}"})
    ok, message = hook().test_connection()
    assert not ok and KEY not in message and "MAX plan" in message


def test_check_access_request(rsps):
    rsps.add(responses.GET, f"{API}/customers", json=page("customers", []))
    assert hook().check_access().startswith("Connected to Housecall Pro")
    assert query(rsps.calls[0]) == {"page": "1", "page_size": "1"}


def test_base_url_override_must_be_allowed(rsps, monkeypatch):
    monkeypatch.setenv("CRM_SYNC_ALLOWED_HOSTS", "sandbox.internal:8765")
    with pytest.raises(ConfigurationError, match="CRM_SYNC_ALLOWED_HOSTS"):
        hook({"apiKey": KEY, "baseUrl": "https://evil.example.com"}).get_customer("cus_1")
    with pytest.raises(ConfigurationError, match="https"):
        hook({"apiKey": KEY, "baseUrl": "http://api.housecallpro.com"}).get_customer("cus_1")
    rsps.add(responses.GET, "http://sandbox.internal:8765/housecallpro/customers/cus_1", json={"id": "cus_1"})
    assert hook({"apiKey": KEY, "baseUrl": "http://sandbox.internal:8765/housecallpro/"}).get_customer("cus_1") == {
        "id": "cus_1"
    }
    assert not [c for c in rsps.calls if "evil" in c.request.url]


def test_credentials_from_connection_and_env(monkeypatch, rsps):
    conn = Connection(
        conn_id="x",
        conn_type="crm_housecallpro",
        password=KEY,
        extra=json.dumps({"baseUrl": f"{API}", "crmSettings": {"companyId": "loc-1"}}),
    )
    assert HousecallProHook.credentials_from_connection(conn) == {"apiKey": KEY, "baseUrl": API}
    monkeypatch.setenv("AIRFLOW_CONN_CRM_HOUSECALLPRO_DEFAULT", conn.as_json())
    rsps.add(responses.GET, f"{API}/customers/cus_1", json={"id": "cus_1"})
    h = FastHousecallPro(account_key=f"hcp-{uuid.uuid4()}")
    assert h.settings == {"companyId": "loc-1"}
    assert h.get_customer("cus_1") == {"id": "cus_1"}
    assert rsps.calls[0].request.headers["X-Company-Id"] == "loc-1"


def test_from_integration_uses_the_app_keys():
    h = HousecallProHook.from_integration({"credentials": {"apiKey": KEY}, "crmSettings": {"requestsPerMinute": 60}})
    assert h.cred("apiKey") == KEY and h.rate_limits == {"default": RateLimit(60.0, 60.0)}


def test_rate_limits_and_account_id():
    assert hook().rate_limits == {"default": RateLimit(120.0, 60.0)}
    assert hook(settings={"requestsPerMinute": "bad"}).rate_limits["default"].requests == 120.0
    assert hook(settings={"requestsPerMinute": 0}).rate_limits["default"].requests == 120.0
    ident = hook().account_id()
    assert len(ident) == 12 and ident not in KEY and ident != hook(settings={"companyId": "x"}).account_id()
    assert HousecallProHook.batch_size == 1 and HousecallProHook.secret_keys == ("apiKey",)


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "status,payload,cls,text",
    [
        (422, {"error": {"message": "address not found for this customer"}}, BadRecordError, "address not found"),
        (
            422,
            {"errors": {"zip": ["is missing"], "city": ["is missing"]}},
            BadRecordError,
            "zip is missing; city is missing",
        ),
        (404, {"error": "job not found"}, BadRecordError, "job not found"),
        (400, {"message": "Unit price must be a number", "unit_price": "nan"}, BadRecordError, "Unit price"),
        (429, {"error": {"message": "Too many requests"}}, RateLimitedError, "Too many"),
        (500, "<html>oops</html>", RetryableError, "oops"),
        (502, None, RetryableError, "Bad Gateway"),
    ],
)
def test_classify_error_reads_each_documented_body(status, payload, cls, text):
    response = requests.Response()
    response.status_code = status
    response.reason = {502: "Bad Gateway"}.get(status, "")
    response._content = (json.dumps(payload) if isinstance(payload, dict) else (payload or "")).encode()
    error = hook().classify_error(response)
    assert type(error) is cls and text in str(error) and error.status == status


def test_error_text_never_echoes_the_key(rsps):
    rsps.add(responses.POST, f"{API}/jobs", status=422, json={"error": {"message": f"key {KEY} cannot do that"}})
    with pytest.raises(BadRecordError) as err:
        hook().create_job({"customer_id": "c", "address_id": "a"})
    assert KEY not in str(err.value)


def test_reads_retry_5xx_and_honour_retry_after(rsps, sleeps):
    url = f"{API}/jobs/job_1"
    rsps.add(responses.GET, url, status=503)
    rsps.add(responses.GET, url, status=429, headers={"Retry-After": "7"}, json={"error": {"message": "slow"}})
    rsps.add(responses.GET, url, json={"id": "job_1"})
    h = hook()
    assert h.get_job("job_1") == {"id": "job_1"}
    assert 7.0 in sleeps and h.stats.retries == 2 and h.stats.rate_limited == 1


# ---------------------------------------------------------------------- creates are never re-sent blindly
def test_create_after_a_5xx_is_unconfirmed_and_not_resent(rsps, sleeps):
    rsps.add(responses.POST, f"{API}/jobs", status=502)
    with pytest.raises(HousecallProUnconfirmedWrite) as err:
        hook().create_job({"customer_id": "c", "address_id": "a"})
    assert len(rsps.calls) == 1 and err.value.status == 502 and isinstance(err.value, RetryableError)


def test_create_after_a_timeout_is_unconfirmed(rsps, sleeps):
    rsps.add(responses.POST, f"{API}/customers", body=requests.ConnectTimeout("slow"))
    with pytest.raises(HousecallProUnconfirmedWrite) as err:
        hook().create_customer({"email": "a@x.com"})
    assert len(rsps.calls) == 1 and err.value.status is None


def test_create_after_a_429_is_resent(rsps, sleeps):
    rsps.add(
        responses.POST,
        f"{API}/customers/cus_1/addresses",
        status=429,
        headers={"Retry-After": "2"},
        json={"error": {"message": "Too many requests"}},
    )
    rsps.add(responses.POST, f"{API}/customers/cus_1/addresses", json={"id": "adr_1"})
    h = hook()
    assert h.create_address("cus_1", {"street": "1 Elm"}) == {"id": "adr_1"}
    assert len(rsps.calls) == 2 and 2.0 in sleeps and h.stats.retries == 1
    assert h.max_attempts == 5  # narrowed only for the duration of one send


def test_429_that_never_clears_is_a_rate_limit_error(rsps, sleeps):
    rsps.add(responses.POST, f"{API}/jobs", status=429, json={"error": {"message": "Too many requests"}})
    with pytest.raises(RateLimitedError):
        hook(max_attempts=3).create_job({"customer_id": "c", "address_id": "a"})
    assert len(rsps.calls) == 3


# ---------------------------------------------------------------------- request shapes
def test_search_customers_shape_and_pages(rsps):
    rsps.add(responses.GET, f"{API}/customers", json=page("customers", [{"id": "cus_1"}], 1, 2))
    rsps.add(responses.GET, f"{API}/customers", json=page("customers", [{"id": "cus_2"}], 2, 2))
    found = list(hook().search_customers("5125550100"))
    assert [c["id"] for c in found] == ["cus_1", "cus_2"]
    assert query(rsps.calls[0]) == {"q": "5125550100", "sort_direction": "desc", "page": "1", "page_size": "50"}
    assert query(rsps.calls[1])["page"] == "2"


def test_search_stops_early_and_respects_max_pages(rsps):
    for n in (1, 2, 3):
        rsps.add(responses.GET, f"{API}/customers", json=page("customers", [{"id": f"cus_{n}"}], n, 9))
    h = hook()
    assert next(iter(h.search_customers("Ann Smith")))["id"] == "cus_1"
    assert len(rsps.calls) == 1  # lazily: the caller stopped after the first hit
    assert len(list(h.search_customers("Ann Smith", max_pages=2))) == 2


def test_create_and_update_customer_shapes(rsps):
    rsps.add(responses.POST, f"{API}/customers", status=201, json={"id": "cus_1", "addresses": [{"id": "adr_1"}]})
    rsps.add(responses.PUT, f"{API}/customers/cus_1", json={"id": "cus_1"})
    h = hook()
    payload = {
        "first_name": "Ann",
        "email": "ann@x.com",
        "notifications_enabled": False,
        "addresses": [{"street": "1 Elm", "country": "US"}],
    }
    assert h.create_customer(payload)["addresses"] == [{"id": "adr_1"}]
    h.update_customer("cus_1", {"last_name": "Smith"})
    assert body(rsps.calls[0]) == payload and rsps.calls[0].request.headers["Content-Type"] == "application/json"
    assert body(rsps.calls[1]) == {"last_name": "Smith"}


def test_job_shapes(rsps):
    rsps.add(responses.POST, f"{API}/jobs", status=201, json={"id": "job_1", "notes": []})
    rsps.add(responses.POST, f"{API}/jobs/job_1/notes", status=201, json={"id": "nte_1", "content": "hi"})
    rsps.add(
        responses.DELETE, f"{API}/jobs/job_1/notes/nte_0", status=404, json={"error": {"message": "note not found"}}
    )
    rsps.add(responses.DELETE, f"{API}/jobs/job_1/notes/nte_1", status=200)
    h = hook()
    job = {"customer_id": "cus_1", "address_id": "adr_1", "notes": "x", "tags": ["Rank It Pro"]}
    assert h.create_job(job)["id"] == "job_1"
    assert h.add_job_note("job_1", "hi") == {"id": "nte_1", "content": "hi"}
    h.delete_job_note("job_1", "nte_0")  # already gone: fine
    h.delete_job_note("job_1", "nte_1")
    assert body(rsps.calls[0]) == job and body(rsps.calls[1]) == {"content": "hi"}
    assert h.stats.by_endpoint["POST /jobs"] == 1


def test_list_jobs_shape_and_last_page(rsps):
    rsps.add(responses.GET, f"{API}/jobs", json=page("jobs", [{"id": "job_2"}, {"id": "job_1"}], 1, 1, 100))
    assert [j["id"] for j in hook().list_jobs("cus_1")] == ["job_2", "job_1"]
    assert query(rsps.calls[0]) == {
        "customer_id": "cus_1",
        "sort_by": "created_at",
        "sort_direction": "desc",
        "page": "1",
        "page_size": "100",
    }
    assert len(rsps.calls) == 1
    # every customer's jobs (crash recovery): no customer filter, the same order
    list(hook().list_jobs(None))
    assert "customer_id" not in query(rsps.calls[1]) and query(rsps.calls[1])["sort_by"] == "created_at"


def test_list_job_types_pages(rsps):
    rsps.add(responses.GET, f"{API}/job_fields/job_types", json=page("job_types", [{"id": "t1", "name": "A"}], 1, 2))
    rsps.add(responses.GET, f"{API}/job_fields/job_types", json=page("job_types", [{"id": "t2", "name": "B"}], 2, 2))
    assert [t["id"] for t in hook().list_job_types()] == ["t1", "t2"]


def test_ids_in_paths_are_validated(rsps):
    with pytest.raises(ValueError):
        hook().get_job("../customers")
    with pytest.raises(ValueError):
        hook().delete_job_note("job_1", "a/b")
    assert not rsps.calls


# ---------------------------------------------------------------------- the destination against the sandbox
@pytest.fixture
def hcp(sandbox):
    """A Housecall Pro destination on a fresh sandbox company (no rate-limit waits)."""
    from crm_sync.destinations.housecallpro import HousecallProDestination
    from crm_sync.models import SyncSettings

    key = f"hcp-dest-{uuid.uuid4().hex}"
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={"crm": "housecallpro", "account": "dest", "credentials": {"apiKey": key}},
        timeout=10,
    ).raise_for_status()
    requests.post(
        f"{sandbox.url}/_sandbox/records/housecallpro/dest/job_types", json=[{"name": "AC Repair"}], timeout=10
    ).raise_for_status()

    def make(**crm_settings):
        h = HousecallProHook(
            credentials={"apiKey": key, "baseUrl": f"{sandbox.url}/housecallpro"},
            settings=crm_settings,
            account_key=f"hcp-{uuid.uuid4()}",
        )
        dest = HousecallProDestination(h, SyncSettings())
        dest.prepare()
        return dest

    make.url = sandbox.url
    return make


def check_ins(n, start=0, **overrides):
    from crm_sync.models import SyncSettings
    from crm_sync.prepare import prepare_check_in

    moment = datetime.now() - timedelta(days=1)
    return [
        prepare_check_in(
            {
                "id": 500 + i,
                "company_id": 7,
                "job_type": "AC Repair",
                "customer_name": f"Ann Lee{i}",
                "customer_email": f"ann{i}@example.com",
                "customer_phone": None,
                "address": f"{i} Oak St",
                "city": "Austin",
                "state": "TX",
                "zip": "78701",
                "notes": f"visit {i}",
                "created_at": moment,
                **overrides,
            },
            SyncSettings(),
        )
        for i in range(start, start + n)
    ]


def stored(url, obj):
    return requests.get(f"{url}/_sandbox/records/housecallpro/dest/{obj}", timeout=10).json()


def test_new_customer_then_repeat_check_ins_cost_one_call_each(hcp):
    dest = hcp()
    rows = check_ins(1)
    wanted = [(rows[0].match_keys[0], rows[0].customer)]
    assert dest.match_customers(wanted) == {}
    created = dest.create_customers(rows)[rows[0].customer_key]
    assert created.ok and created.created and created.extra["parent_id"]
    ref = dest._refs[rows[0].customer_key]
    calls = dest.hook.stats.api_calls
    # a returning customer served from the customer map: one POST /jobs per new check-in
    repeat = [check_ins(1, id=900 + i, notes=f"again {i}")[0] for i in range(3)]
    results = dest.create_visits([(r, ref) for r in repeat])
    assert all(res.ok for res in results.values()) and len(results) == 3
    assert dest.hook.stats.api_calls - calls == 3
    jobs = stored(hcp.url, "jobs")
    assert len(jobs) == 3 and {j["tags"][0] for j in jobs} == {"Rank It Pro"}
    assert {j["job_fields"]["job_type"]["name"] for j in jobs} == {"AC Repair"}
    assert all(j["work_status"] == "needs scheduling" for j in jobs)


def test_find_visits_reads_markers_in_a_new_run(hcp):
    first = hcp()
    rows = check_ins(3)
    first.create_customers(rows)
    first.create_visits([(r, first._refs[r.customer_key]) for r in rows[:2]])
    fresh = hcp()  # a new run: customers come from the map, the destination has seen none of them
    found = fresh.find_visits(rows)
    assert set(found) == {rows[0].visit_key, rows[1].visit_key}
    # a job list per customer, then one page of every customer's recent jobs for the row not found
    assert fresh.hook.stats.by_endpoint["GET /customers"] == 3 and fresh.hook.stats.by_endpoint["GET /jobs"] == 4


def two_records_with_one_phone(url):
    """Customer A (phone only) and customer B (same phone, an email), each with a service address."""
    address = {"street": "9 Elm St", "city": "Austin", "state": "TX", "zip": "78701", "country": "US"}
    ids = []
    for extra in ({}, {"email": "john.williams@example.com"}):
        body = {"first_name": "John", "last_name": "Williams", "mobile_number": "512-555-0160", **extra}
        resp = requests.post(f"{url}/_sandbox/records/housecallpro/dest/customers", json=body, timeout=10)
        resp.raise_for_status()
        ids.append(resp.json()["id"])
    return ids, address


def test_interrupted_job_is_recovered_under_its_first_customer_whatever_the_rerun_resolves(hcp):
    """Issue 13: the job an interrupted attempt created under customer A is found when the re-run resolves
    the row to customer B: by the customer the ledger recorded, and without it by a scan of every
    customer's recent jobs; it stays with A."""
    from crm_sync.destinations.base import CustomerRef

    first = hcp()
    (a, b), _ = two_records_with_one_phone(hcp.url)
    rows = check_ins(2, customer_email=None, customer_phone="(512) 555-0160", customer_name="John Williams")
    reported = {}
    created = first.create_visits([(r, CustomerRef(a)) for r in rows], reported.update)
    assert {k: v["visit_id"] for k, v in reported.items()} == {k: res.crm_id for k, res in created.items()}
    resolved_b = {rows[0].customer_key: CustomerRef(b)}
    with_intent = hcp().recover_visits(rows[:1], {rows[0].visit_key: {"customer_id": a}}, resolved_b)
    scanned = hcp().recover_visits(rows[1:], {}, resolved_b)
    assert with_intent[rows[0].visit_key].customer_id == a and scanned[rows[1].visit_key].customer_id == a
    assert {v.crm_id for v in (*with_intent.values(), *scanned.values())} == {r.crm_id for r in created.values()}
    assert len(stored(hcp.url, "jobs")) == 2


def test_recorded_job_without_its_marker_note_gets_it(hcp):
    """A crash after ``POST /jobs`` and before the note (a CRM that drops ``JobCreate.notes``): the job id the
    ledger recorded is read back and its marker note added, instead of a second job."""
    from crm_sync.mapping import housecallpro as mapping

    dest = hcp()
    (a, _), address = two_records_with_one_phone(hcp.url)
    address_id = dest.hook.create_address(a, address)["id"]
    row = check_ins(1)[0]
    job = dest.hook.create_job({"customer_id": a, "address_id": address_id})  # no notes: the step left undone
    found = hcp().recover_visits([row], {row.visit_key: {"customer_id": a, "visit_id": job["id"]}}, {})
    assert found[row.visit_key].crm_id == job["id"] and found[row.visit_key].customer_id == a
    (stored_job,) = stored(hcp.url, "jobs")
    assert [mapping.markers_in(n["content"]) for n in stored_job["notes"]] == [{row.visit_key}]


def test_job_create_that_times_out_is_found_not_duplicated(hcp, monkeypatch):
    from crm_sync.destinations import housecallpro as destination_module

    dest = hcp()
    rows = check_ins(1)
    dest.create_customers(rows)
    monkeypatch.setattr(CrmHook, "timeout", (2.0, 0.3))
    monkeypatch.setattr(destination_module, "UNCONFIRMED_GRACE_SECONDS", 1.0)
    requests.post(
        f"{hcp.url}/_sandbox/faults",
        json={"crm": "housecallpro", "latency_ms": 800, "count": 1, "path_contains": "/housecallpro/jobs"},
        timeout=5,
    )
    result = dest.create_visits([(rows[0], dest._refs[rows[0].customer_key])])[rows[0].visit_key]
    assert result.ok
    jobs = stored(hcp.url, "jobs")
    assert [j["id"] for j in jobs] == [result.crm_id]


def test_customer_at_another_property_gets_that_address(hcp):
    dest = hcp()
    rows = check_ins(1)
    dest.create_customers(rows)
    ref = dest._refs[rows[0].customer_key]
    moved = check_ins(1, id=777, address="77 Pine Rd")[0]
    from crm_sync.destinations.base import CustomerRef

    result = dest.create_visits([(moved, CustomerRef(ref.crm_id))])[moved.visit_key]
    assert result.ok
    (customer,) = stored(hcp.url, "customers")
    assert [a["street"] for a in customer["addresses"]] == ["0 Oak St", "77 Pine Rd"]
    (job,) = stored(hcp.url, "jobs")
    assert job["address"]["street"] == "77 Pine Rd"


def test_rows_that_cannot_become_jobs_get_a_reason(hcp):
    dest = hcp()
    rows = check_ins(2, address=None)
    dest.create_customers(rows)
    no_customer = dest.create_visits([(rows[0], None)])[rows[0].visit_key]
    assert "syncCustomers is off" in no_customer.error
    no_address = dest.create_visits([(rows[1], dest._refs[rows[1].customer_key])])[rows[1].visit_key]
    assert "service address" in no_address.error
    assert stored(hcp.url, "jobs") == []


def test_update_replaces_the_marker_note(hcp):
    dest = hcp()
    rows = check_ins(1)
    dest.create_customers(rows)
    ref = dest._refs[rows[0].customer_key]
    job_id = dest.create_visits([(rows[0], ref)])[rows[0].visit_key].crm_id
    edited = check_ins(1, notes="edited by the technician")[0]
    assert dest.update_visits([(edited, job_id, ref)])[edited.visit_key].ok
    (job,) = stored(hcp.url, "jobs")
    assert len(job["notes"]) == 1 and "edited by the technician" in job["notes"][0]["content"]
    calls = dest.hook.stats.api_calls
    dest.update_visits([(edited, job_id, ref)])  # unchanged: one read, nothing written
    assert dest.hook.stats.api_calls - calls == 1


def test_invalid_job_is_refused_alone(hcp):
    dest = hcp()
    rows = check_ins(3)
    rows[1] = check_ins(1, start=1, notes="SANDBOX-INVALID")[0]
    dest.create_customers(rows)
    results = dest.create_visits([(r, dest._refs[r.customer_key]) for r in rows])
    assert results[rows[0].visit_key].ok and results[rows[2].visit_key].ok
    assert "notes is invalid" in results[rows[1].visit_key].error
    assert len(stored(hcp.url, "jobs")) == 2


def test_custom_fields_and_missing_customers_are_warned_at_start(hcp):
    from crm_sync.models import SyncSettings

    dest = hcp()
    dest.settings = SyncSettings(sync_customers=False, custom_field_mapping={"customerFeedback": "x"})
    dest.warnings.clear()
    dest.prepare()
    assert any("no custom fields" in w for w in dest.warnings)
    assert any("syncCustomers is off" in w for w in dest.warnings)


def test_update_customers_reads_once_and_writes_only_what_differs(hcp):
    from crm_sync.destinations.base import CustomerRef

    first = hcp()
    rows = check_ins(1)
    first.create_customers(rows)
    crm_id = first._refs[rows[0].customer_key].crm_id
    dest = hcp()  # a new run: the customer comes from the customer map
    same = check_ins(1, id=801, address="5 Elm Dr")[0]  # only the street changed
    assert dest.update_customers([(CustomerRef(crm_id, "adr_x"), same)])[crm_id].ok
    assert dest.hook.stats.by_endpoint == {"GET /job_fields/job_types": 1, "GET /customers/{id}": 1}
    renamed = check_ins(1, id=802, customer_name="Ann Leigh")[0]
    dest.update_customers([(CustomerRef(crm_id, "adr_x"), renamed)])
    assert (
        dest.hook.stats.by_endpoint["PUT /customers/{id}"] == 1
        and dest.hook.stats.by_endpoint["GET /customers/{id}"] == 1
    )
    (customer,) = stored(hcp.url, "customers")
    assert customer["last_name"] == "Leigh" and customer["email"] == "ann0@example.com"
    # the run now knows the customer: the job goes to the check-in's street, not the remembered address
    result = dest.create_visits([(same, CustomerRef(crm_id, "adr_x"))])[same.visit_key]
    assert result.ok and stored(hcp.url, "jobs")[0]["address"]["street"] == "5 Elm Dr"


def test_job_types_unreadable_with_an_application_key_is_a_warning(rsps):
    from crm_sync.destinations.housecallpro import HousecallProDestination
    from crm_sync.models import SyncSettings

    rsps.add(responses.GET, f"{API}/job_fields/job_types", status=403, json={"error": {"message": "Forbidden"}})
    dest = HousecallProDestination(hook(), SyncSettings())
    dest.prepare()
    assert dest.job_types == {} and any("job types are not readable" in w for w in dest.warnings)
    rsps.replace(responses.GET, f"{API}/job_fields/job_types", status=401, json={"message": "Unauthorized"})
    with pytest.raises(BadCredentialsError, match="MAX plan"):
        HousecallProDestination(hook(), SyncSettings()).prepare()


@pytest.mark.parametrize("answer,reads", [({"id": "job_1"}, 1), ({"id": "job_1", "notes": []}, 0)])
def test_marker_note_is_added_when_the_created_job_does_not_show_it(rsps, answer, reads):
    from crm_sync.destinations.base import CustomerRef
    from crm_sync.destinations.housecallpro import HousecallProDestination
    from crm_sync.models import SyncSettings

    rsps.add(responses.POST, f"{API}/jobs", status=201, json=answer)
    rsps.add(responses.GET, f"{API}/jobs/job_1", json={"id": "job_1", "notes": []})
    rsps.add(responses.POST, f"{API}/jobs/job_1/notes", status=201, json={"id": "nte_1", "content": "x"})
    dest = HousecallProDestination(hook(settings={"tag": "RIP", "scheduleJobs": True}), SyncSettings())
    (row,) = check_ins(1)
    result = dest.create_visits([(row, CustomerRef("cus_1", "adr_1"))])[row.visit_key]
    assert result.ok and result.crm_id == "job_1"
    sent = body(rsps.calls[0])
    assert sent["tags"] == ["RIP"] and sent["address_id"] == "adr_1" and "scheduled_start" in sent["schedule"]
    assert dest.hook.stats.by_endpoint.get("GET /jobs/{id}", 0) == reads
    assert body(rsps.calls[-1])["content"] == sent["notes"]
