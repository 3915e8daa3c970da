"""A real distributed Airflow deployment on this machine, driven through the REST API like an operator.

Metadata in PostgreSQL (127.0.0.1:5432), CeleryExecutor with Redis (127.0.0.1:6379) as the broker and
PostgreSQL as the result backend, a scheduler, a dag-processor, an api-server on a loopback port and two
Celery workers (``w1``, ``w2``, one slot each); the Rank It Pro database is another fresh PostgreSQL
database and the CRMs are the sandbox. The module starts all of it once, and stops every process it
started. Without PostgreSQL or Redis it skips locally and fails under CI (``.ci/run`` starts both).

Checked: the mapped sync tasks (shards of two companies each: ``max_shards`` 2 over four companies per CRM)
ran on both workers, the per-CRM pools held concurrency at their size across workers (``crm_salesforce``
has 1 slot: no two of its shards overlap), every company got its own run row, the end state is exactly
once; the operators' path: trigger with params as the UI does, run state and task logs read back through
the API, the trigger form's params equal the README's params table; a headless Chromium screenshot of
the trigger form (``docs/trigger-form.png``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from browser import Chromium, assert_not_blank, require_chromium
from e2e_helpers import HS_TOKEN, check_in_ids, ledger, recent, records, register, seed
from localdev.airflow_env import ROOT
from localdev.demo_data import (
    check_in_rows,
    create_company,
    hubspot_integration,
    insert_check_ins,
    salesforce_integration,
)
from localdev.distributed import DAG_ID, Deployment, running_deployment

PG_SERVER = os.environ.get("CRM_SYNC_TEST_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CRM_SYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")  # a db number of its own
#: Pool sizes for the deployment: Salesforce at 1 slot proves a pool serialises across workers.
POOL_SLOTS = {"crm_hubspot": 2, "crm_salesforce": 1}
WORKERS = ("w1", "w2")
#: One slot per worker: two mapped tasks in flight together (the HubSpot pool lets two run) are then on two
#: workers. With two slots one worker could hold both, and a run whose tasks never overlapped three at a time
#: ran all four on one worker (seen in CI: a scheduling accident, not a deployment fault).
WORKER_SLOTS = 1
CHECK_INS = 8  # per company


def _require(url: str, what: str) -> None:
    parsed = sa.engine.make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        msg = f"{what} is not reachable at {host}:{port} ({exc}); the distributed deployment test needs it"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}. CI must provide it (.ci/run starts PostgreSQL and Redis).")
        pytest.skip(msg)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------------- the deployment
@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    _require(PG_SERVER, "PostgreSQL")
    _require(REDIS_URL, "Redis")
    from crm_sandbox.server import SandboxServer

    sandbox = SandboxServer(port=0).start()
    dep = None
    try:
        with running_deployment(
            tmp_path_factory.mktemp("distributed"),
            pg_server=PG_SERVER,
            redis_url=REDIS_URL,
            prefix="crm_dist",
            pool_slots=POOL_SLOTS,
            workers=WORKERS,
            worker_concurrency=WORKER_SLOTS,
            worker_env=lambda name: {
                "CRM_SYNC_TEST_WORKER_NAME": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "distributed_worker_name.hostname",
            },
            pythonpath=[ROOT / "tests"],
            seed=lambda engine: seed_companies(engine, sandbox.url),
        ) as dep:
            dep.sandbox = sandbox
            yield dep
    finally:
        sandbox.stop()
    if dep:
        print(f"deployment timings: {dep.timings}")
    leftovers = dep.leftovers if dep else []
    assert not leftovers, f"processes still running after stop: {leftovers}"


def seed_companies(engine: sa.Engine, sandbox_url: str) -> dict[str, list[int]]:
    """Four HubSpot and four Salesforce companies (each its own CRM account), plus broken configurations."""
    base = seed(engine, sandbox_url, hubspot=CHECK_INS, salesforce=CHECK_INS, broken=True)
    ids: dict[str, list[int]] = {
        "hubspot": [base["hubspot"]],
        "salesforce": [base["salesforce"]],
        "accounts": {base["hubspot"]: "hs", base["salesforce"]: "sf"},
    }
    for i in range(2, 5):
        token = f"{HS_TOKEN}-{i}"
        register(sandbox_url, "hubspot", f"hs{i}", {"accessToken": token})
        cid, tid = create_company(engine, f"HubSpot Co {i}", {"hubspot": hubspot_integration(sandbox_url, token)})
        insert_check_ins(engine, check_in_rows(cid, tid, CHECK_INS, seed=i, start=recent()))
        ids["hubspot"].append(cid)
        ids["accounts"][cid] = f"hs{i}"
        creds = {"client_id": f"3MVG9dist.{i}", "client_secret": f"sf-dist-secret-{i}-{secrets.token_hex(4)}"}
        register(
            sandbox_url,
            "salesforce",
            f"sf{i}",
            {"clientId": creds["client_id"], "clientSecret": creds["client_secret"]},
        )
        cid, tid = create_company(
            engine, f"Salesforce Co {i}", {"salesforce": salesforce_integration(sandbox_url, **creds)}
        )
        insert_check_ins(engine, check_in_rows(cid, tid, CHECK_INS, seed=i, start=recent()))
        ids["salesforce"].append(cid)
        ids["accounts"][cid] = f"sf{i}"
    return ids


def visit_markers(sandbox_url: str, accounts: dict[int, str]) -> Counter:
    """How many CRM visit records carry each sync marker, over every company's account."""
    keys: Counter = Counter()
    for account in sorted(set(accounts.values())):
        if account.startswith("hs"):
            for note in records(sandbox_url, "hubspot", account, "notes"):
                keys[note["properties"].get("rankitpro_checkin_key")] += 1
        else:
            for case in records(sandbox_url, "salesforce", account, "Case"):
                keys[case.get("RankItPro_CheckIn_Key__c")] += 1
    return keys


def assert_exactly_once(dep: Deployment) -> Counter:
    """Every check-in has one ledger row; synced ones have exactly one CRM record, quarantined ones none."""
    keys = visit_markers(dep.sandbox.url, dep.ids["accounts"])
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    for crm in ("hubspot", "salesforce"):
        for company_id in dep.ids[crm]:
            rows = ledger(dep.engine, company_id, crm)
            assert set(rows) == check_in_ids(dep.engine, company_id), "every check-in has a ledger row"
            assert {r["status"] for r in rows.values()} <= {"synced", "quarantined"}
            for cid, r in rows.items():
                key = f"rankitpro-{company_id}-{cid}"
                if r["status"] == "synced":
                    assert keys[key] == 1 and r["crm_visit_id"], (cid, r)
                else:
                    assert keys[key] == 0 and r["last_error"], (cid, r)
    return keys


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end at the same instant as a start does not overlap)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = open_ = 0
    for _, delta in events:
        open_ += delta
        most = max(most, open_)
    return most


# ---------------------------------------------------------------------- distributed execution
def test_sync_runs_on_both_workers_within_pools_exactly_once(deployment):
    dep = deployment
    assert "crm_salesforce: created (1 slots)" in dep.pools_output, dep.pools_output
    pools = {p["name"]: p["slots"] for p in dep.api("GET", "/pools").json()["pools"]}
    assert {k: pools.get(k) for k in POOL_SLOTS} == POOL_SLOTS

    assert dep.api("GET", f"/dags/{DAG_ID}").json()["is_paused"] is True  # paused at creation
    dep.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    # A slower CRM, so syncs of one pool are in flight together and the pool limit is what holds them.
    requests.post(
        f"{dep.sandbox.url}/_sandbox/faults", json={"latency_ms": 150, "rate": 1.0}, timeout=5
    ).raise_for_status()
    started = time.monotonic()
    try:
        # Two shards per CRM, two companies each: shards are the unit of work; the HubSpot pair is queued
        # together and a worker holds one task at a time, so both workers get some.
        run_id = dep.trigger({"max_shards": 2})
        run = dep.wait_run(run_id)
    finally:
        requests.delete(f"{dep.sandbox.url}/_sandbox/faults", timeout=5)
    dep.timings["first run"] = time.monotonic() - started
    tis = dep.task_instances(run_id)
    # CRM types no company uses expand to nothing: their sync task is skipped, everything else succeeded.
    failed = [
        (t["task_id"], t["map_index"], t["state"])
        for t in tis
        if t["state"] != "success"
        and not (t["state"] == "skipped" and t["task_id"].startswith("sync_") and t["map_index"] == -1)
    ]
    assert run["state"] == "success" and not failed, failed

    mapped = [t for t in tis if t["task_id"].startswith("sync_") and t["map_index"] >= 0]
    per_crm = Counter(t["task_id"] for t in mapped)
    assert per_crm == {"sync_hubspot": 2, "sync_salesforce": 2}, per_crm
    for crm in ("hubspot", "salesforce"):
        named = sorted(t["rendered_map_index"] for t in mapped if t["task_id"] == f"sync_{crm}")
        shown = sorted(int(c) for label in named for c in label.removeprefix("companies ").split(", "))
        assert shown == sorted(dep.ids[crm]), named  # each shard named after its two companies
    hosts = Counter(t["hostname"].split(".")[0] for t in mapped)
    assert set(hosts) == set(WORKERS), f"mapped task instances per worker: {dict(hosts)}"

    for pool, slots in POOL_SLOTS.items():
        spans = [(_ts(t["start_date"]), _ts(t["end_date"])) for t in mapped if t["pool"] == pool]
        assert len(spans) == 2
        assert max_overlap(spans) <= slots, f"{pool} ({slots} slots) ran {max_overlap(spans)} at once: {spans}"
    sf_hosts = {t["hostname"] for t in mapped if t["pool"] == "crm_salesforce"}
    hs_spans = [(_ts(t["start_date"]), _ts(t["end_date"])) for t in mapped if t["pool"] == "crm_hubspot"]
    print(
        f"per worker: {dict(hosts)}; salesforce pool ran on {sorted(sf_hosts)}; "
        f"hubspot max concurrency {max_overlap(hs_spans)}"
    )

    keys = assert_exactly_once(dep)
    assert sum(keys.values()) >= 6 * CHECK_INS  # a few rows per company are quarantined for bad data
    with dep.engine.connect() as conn:
        problems = conn.execute(
            sa.text("SELECT count(*) FROM crm_sync.runs WHERE status = 'config_error' AND run_id = :r"), {"r": run_id}
        ).scalar()
    assert problems == 3  # broken JSON, unknown CRM, no credentials: reported, the rest synced
    with dep.engine.connect() as conn:
        per_company = dict(
            conn.execute(
                sa.text("SELECT company_id, status FROM crm_sync.runs WHERE run_id = :r AND status <> 'config_error'"),
                {"r": run_id},
            ).all()
        )
    # Each company of a shard synced as before: its own run row.
    assert set(per_company) == set(dep.ids["hubspot"]) | set(dep.ids["salesforce"]), per_company
    assert set(per_company.values()) <= {"success", "partial"}, per_company


# ---------------------------------------------------------------------- the operators' path
def test_trigger_with_params_and_read_state_and_logs_through_the_api(deployment):
    dep = deployment
    dep.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    company = dep.ids["hubspot"][1]
    # New check-ins for one company; the run is limited to it and to HubSpot, as an operator would.
    with dep.engine.connect() as conn:
        tid = conn.execute(sa.text("SELECT id FROM technicians WHERE company_id = :c"), {"c": company}).scalar()
    insert_check_ins(dep.engine, check_in_rows(company, tid, 6, seed=99, start=recent()))

    # The form validates like the API does: a value outside the documented range is refused.
    bad = dep.api(
        "POST", f"/dags/{DAG_ID}/dagRuns", expect=400, json={"logical_date": None, "conf": {"batch_size": 500}}
    )
    assert "batch_size" in bad.text

    conf = {"company_ids": [company], "crm_types": ["hubspot"], "batch_size": 5, "lookback_days": 3, "rate_share": 0.5}
    run_id = dep.trigger(conf)
    run = dep.wait_run(run_id)
    assert run["state"] == "success", run
    assert run["conf"] == conf and run["triggered_by"] == "rest_api"

    tis = {(t["task_id"], t["map_index"]): t for t in dep.task_instances(run_id)}
    synced = [t for (task, idx), t in tis.items() if task == "sync_hubspot" and idx >= 0]
    assert len(synced) == 1 and synced[0]["rendered_map_index"] == f"company {company}", synced
    assert synced[0]["rendered_fields"]["batch_size"] == "5"
    assert synced[0]["rendered_fields"]["rate_share"] == "0.5"
    assert not [t for (task, idx), t in tis.items() if task == "sync_salesforce" and idx >= 0]

    ti = synced[0]
    log = dep.api(
        "GET",
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/sync_hubspot/logs/{ti['try_number']}",
        params={"map_index": ti["map_index"]},
        headers={"Accept": "application/json"},
    ).json()
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in log["content"])
    assert f"company {company} -> hubspot" in text, text[-3000:]
    counts = re.search(r"'visits_created': (\d+)", text)
    assert counts and int(counts.group(1)) >= 5, text[-3000:]  # the 6 new check-ins, less any quarantined
    discover = dep.api(
        "GET",
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/discover_salesforce/logs/1",
        headers={"Accept": "application/json"},
    ).json()
    assert discover["content"]
    assert_exactly_once(dep)


def readme_params(dag_id: str) -> dict[str, dict[str, Any]]:
    """The params table of ``### `dag_id` `` in README.md: name -> {type, default, meaning} as written."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(rf"^### `{re.escape(dag_id)}`\n(.*?)(?=^#{{1,3}} )", readme, re.DOTALL | re.MULTILINE)
    assert section, f"README.md has no section ### `{dag_id}`"
    table = re.search(
        r"^\| param \| type \| default \| meaning \|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", section.group(1), re.MULTILINE
    )
    assert table, f"README.md section {dag_id} has no params table (| param | type | default | meaning |)"
    rows = {}
    for line in table.group(1).splitlines():
        name, type_, default, meaning = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[name.strip("`")] = {"type": type_, "default": default, "meaning": meaning}
    return rows


def schema_from_readme(type_text: str) -> dict[str, Any]:
    """``integer 1–200 or empty`` -> the JSON schema the trigger form uses."""
    m = re.fullmatch(
        r"(array of (integers|strings)|integer|number|string|boolean)(?: ([\d.]+)–([\d.]+))?"
        r"( or empty)?",
        type_text,
    )
    assert m, f"README type {type_text!r} is not one of the documented forms"
    base, items, lo, hi, nullable = m.groups()
    schema: dict[str, Any] = {}
    if items:
        schema = {"type": "array", "items": {"type": items[:-1]}}
    else:
        schema = {"type": base}
    if lo is not None:
        cast = int if base == "integer" else float
        schema.update(minimum=cast(lo), maximum=cast(hi))
    if nullable:
        schema["type"] = ["null", schema["type"]]
    return schema


def test_trigger_form_params_are_what_the_readme_documents(deployment):
    dag_ids = [d["dag_id"] for d in deployment.api("GET", "/dags").json()["dags"]]
    assert DAG_ID in dag_ids
    for dag_id in dag_ids:
        documented = readme_params(dag_id)
        form = deployment.api("GET", f"/dags/{dag_id}/details").json()["params"]
        assert list(form) == list(documented), f"{dag_id}: form fields {list(form)} vs README {list(documented)}"
        for name, doc in documented.items():
            schema, value = form[name]["schema"], form[name]["value"]
            want = schema_from_readme(doc["type"])
            got = {k: schema[k] for k in want if k in schema}
            if "items" in want:
                got["items"] = {"type": schema.get("items", {}).get("type")}
            assert got == want, f"{dag_id}.{name}: form schema {schema} vs README {doc['type']!r}"
            default = doc["default"].strip("`")
            expected_default = json.loads(default) if re.fullmatch(r"[\[\]\d.\-\"truefalsn,]+", default) else None
            assert value == expected_default, f"{dag_id}.{name}: form default {value!r} vs README {doc['default']!r}"
            description = form[name]["description"] or ""
            assert description.rstrip(".") == doc["meaning"].rstrip("."), (
                f"{dag_id}.{name}: form description {description!r} vs README meaning {doc['meaning']!r}"
            )
            assert schema.get("title"), f"{dag_id}.{name} has no title in the form"


# ---------------------------------------------------------------------- the trigger form, as operators see it
SCREENSHOT = ROOT / "docs" / "trigger-form.png"
FORM_LABELS = ("Company ids", "CRM types", "Batch size", "Edit look-back (days)", "Rate-limit share")


def chromium_screenshot(
    url: str,
    token: str,
    user_data_dir: Path,
    *,
    wait_for: tuple[str, ...],
    click: str | None = None,
    size: tuple[int, int] = (1280, 1300),
    timeout: float = 90,
) -> tuple[bytes, str]:
    """Open ``url`` in headless Chromium with the API token as the UI's ``_token`` cookie (the login page
    sets the same cookie), click the element ``click`` (a CSS selector) once it is there, wait until every
    text of ``wait_for`` is on the page; returns (PNG, page text)."""
    with Chromium(user_data_dir, size=size, timeout=timeout) as browser:
        deadline = time.monotonic() + timeout
        browser.cdp("Network.enable")
        browser.cdp("Network.setCookie", name="_token", value=token, url=url, path="/")
        browser.navigate(url, wait_load=False)
        text = ""
        while click and time.monotonic() < deadline:
            if browser.evaluate(
                f"(() => {{ const e = document.querySelector({json.dumps(click)}); if (e) e.click(); return !!e; }})()"
            ):
                break
            time.sleep(0.5)
        while time.monotonic() < deadline:
            text = browser.evaluate("document.body ? document.body.innerText : ''") or ""
            if all(w in text for w in wait_for):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"{url} never showed {wait_for}; page text:\n{text[:3000]}")
        time.sleep(1.5)  # let transitions and fonts settle
        return browser.screenshot(), text


def test_trigger_form_screenshot(deployment, tmp_path):
    require_chromium()
    # The DAG page's Trigger button opens the trigger form (Airflow 3.3 has no URL of its own for it).
    png, text = chromium_screenshot(
        f"{deployment.api_url}/dags/{DAG_ID}",
        deployment.token,
        tmp_path / "chromium",
        click='[data-testid="trigger-dag-button"]',
        wait_for=FORM_LABELS,
    )
    assert "Trigger" in text
    assert_not_blank(png)
    (tmp_path / "trigger-form.png").write_bytes(png)
    if os.environ.get("CRM_SYNC_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(png)


def test_committed_trigger_form_screenshot_is_a_real_picture():
    assert SCREENSHOT.exists(), "docs/trigger-form.png: run CRM_SYNC_UPDATE_SCREENSHOT=1 make test"
    assert SCREENSHOT.stat().st_size > 20_000
    assert_not_blank(SCREENSHOT.read_bytes())
