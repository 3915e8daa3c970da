"""Rotated refresh tokens survive stale app saves and concurrent refreshes (issue #10, section 6).

Jobber rotates the refresh token on every refresh and the sandbox, like Jobber, invalidates the
previous one at once. The Rank It Pro app saves its whole ``crm_integrations`` JSON from a copy it
read earlier, and the customer index can refresh while a sync does. Real embedded PostgreSQL, the
sandbox over HTTP, the real engine, customer import and token store.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid

import pytest
import requests
import sqlalchemy as sa

from crm_hooks.errors import ConfigurationError
from crm_sync.customer_import import import_customers
from crm_sync.destinations import destination_for
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import credentials_writer, load_integration
from crm_sync.settings import parse_sync_settings
from e2e_helpers import recent
from localdev.demo_data import check_in_rows, create_company, insert_check_ins

ACCOUNT = "rot"
CLIENT_ID = "jb-rot-client-41c2"
CLIENT_SECRET = "jb-rot-client-secret-8e07"
FIRST_REFRESH = "jb-rot-refresh-first-2b9d"
TOKEN_ENDPOINT = "POST /jobber/api/oauth/token"


def authorize(sandbox, refresh_token: str) -> None:
    """A (new) authorization of the app in the sandbox: ``refresh_token`` becomes the only valid one."""
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        timeout=10,
        json={
            "crm": "jobber",
            "account": ACCOUNT,
            "credentials": {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "refreshToken": refresh_token},
        },
    ).raise_for_status()


def expire_access_tokens(sandbox) -> None:
    """Every access token dies: the next call must refresh with the live refresh token."""
    requests.post(f"{sandbox.url}/_sandbox/accounts/jobber/{ACCOUNT}/expire-tokens", timeout=10).raise_for_status()


def token_refreshes(sandbox) -> int:
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["jobber"][ACCOUNT]
    return stats["by_endpoint"].get(TOKEN_ENDPOINT, 0)


def refresh_is_valid(sandbox, refresh_token: str) -> bool:
    """Whether Jobber (the sandbox) still accepts ``refresh_token`` -- spends it when it does."""
    answer = requests.post(
        f"{sandbox.url}/jobber/api/oauth/token",
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": refresh_token,
        },
    )
    return answer.status_code == 200


def app_json(db, company_id: int) -> str:
    with db.connect() as conn:
        return conn.execute(sa.text("SELECT crm_integrations FROM companies WHERE id = :c"), {"c": company_id}).scalar()


def app_saves(db, company_id: int, raw: str) -> None:
    """The app writes its whole JSON, as it does when an admin saves any setting."""
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE companies SET crm_integrations = :raw WHERE id = :c"), {"raw": raw, "c": company_id}
        )


def stored_row(db, company_id: int) -> dict | None:
    with db.connect() as conn:
        row = (
            conn.execute(
                sa.text("SELECT * FROM crm_sync.integration_credentials WHERE company_id = :c AND crm_type = 'jobber'"),
                {"c": company_id},
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def jobber_company(db, sandbox, n: int = 4) -> tuple[int, int]:
    """A company with an active Jobber integration (the app's first connection) and ``n`` check-ins."""
    authorize(sandbox, FIRST_REFRESH)
    integration = {
        "name": "Jobber",
        "status": "active",
        "credentials": {
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "refreshToken": FIRST_REFRESH,
            "baseUrl": f"{sandbox.url}/jobber/api",
        },
        "crmSettings": {"aliasesPerRequest": 25},
        "syncSettings": {
            "syncCustomers": True,
            "createNewCustomers": True,
            "syncCheckInsAsJobs": True,
            "customerMatchStrategy": "all",
        },
    }
    company_id, tech = create_company(db, f"Rotation Roofing {uuid.uuid4().hex[:6]}", {"jobber": integration})
    insert_check_ins(db, check_in_rows(company_id, tech, n, messy=False, start=recent()))
    return company_id, tech


def more_check_ins(db, company_id: int, tech: int, n: int, seed: int) -> None:
    insert_check_ins(db, check_in_rows(company_id, tech, n, seed=seed, messy=False, start=recent()))


def sync(db, company_id: int, run_id: str):
    """One engine run; the integration is read from the database, as the DAG task does."""
    return IntegrationSync(
        db,
        company_id=company_id,
        crm_type="jobber",
        integration=load_integration(db, company_id, "jobber"),
        run_id=run_id,
        options=SyncOptions(),
    ).run()


def live_pair(db, company_id: int) -> dict:
    from crm_sync.token_store import TokenStore

    return TokenStore(db, company_id, "jobber").live()


# ---------------------------------------------------------------------- race 1: the app saves a stale copy
def test_an_app_save_from_a_stale_copy_does_not_bring_back_the_invalidated_refresh_token(db, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    company_id, tech = jobber_company(db, sandbox)
    stale_copy = app_json(db, company_id)  # the admin's settings page, opened before the sync runs

    first = sync(db, company_id, "r1")
    assert first.status == "success" and first.synced == 4, first.error
    assert token_refreshes(sandbox) == 1
    assert not refresh_is_valid(sandbox, FIRST_REFRESH)  # rotated: Jobber has invalidated the app's token

    # The admin changes an unrelated setting and saves the whole JSON from the copy read before the rotation.
    edited = json.loads(stale_copy)
    edited["jobber"]["crmSettings"]["aliasesPerRequest"] = 10
    app_saves(db, company_id, json.dumps(edited))
    expire_access_tokens(sandbox)  # the next run must refresh, with the live refresh token
    more_check_ins(db, company_id, tech, 3, seed=8)

    second = sync(db, company_id, "r2")
    assert second.status == "success" and second.synced == 3, second.error
    assert token_refreshes(sandbox) == 2
    saved = json.loads(app_json(db, company_id))["jobber"]
    assert saved["crmSettings"]["aliasesPerRequest"] == 10  # the admin's change is kept
    assert saved["credentials"]["refreshToken"] == FIRST_REFRESH  # the sync never writes tokens into the app
    live = live_pair(db, company_id)
    assert live["refreshToken"] not in (None, FIRST_REFRESH)
    everything = caplog.text + repr([first, second])
    assert live["refreshToken"] not in everything and live["accessToken"] not in everything
    assert refresh_is_valid(sandbox, live["refreshToken"])  # the stored pair is Jobber's live one


# ---------------------------------------------------------------------- race 2: concurrent refresh
def test_the_customer_index_and_a_sync_refreshing_at_once_spend_the_refresh_token_once(db, sandbox):
    company_id, _ = jobber_company(db, sandbox, n=3)
    # Every token request is slow: whichever task refreshes first still holds the lock when the other asks.
    requests.post(
        f"{sandbox.url}/_sandbox/faults",
        timeout=5,
        json={"crm": "jobber", "path_contains": "/oauth/token", "latency_ms": 700, "count": 2},
    ).raise_for_status()
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def index() -> None:
        integration = load_integration(db, company_id, "jobber")
        start.wait()
        outcomes["index"] = import_customers(db, company_id, "jobber", integration, trigger="auto")

    def run_sync() -> None:
        integration = load_integration(db, company_id, "jobber")
        start.wait()
        outcomes["sync"] = IntegrationSync(
            db, company_id=company_id, crm_type="jobber", integration=integration, run_id="race", options=SyncOptions()
        ).run()

    threads = [threading.Thread(target=index), threading.Thread(target=run_sync)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert outcomes["index"].status == "success", outcomes["index"].error
    assert outcomes["sync"].status == "success", outcomes["sync"].error
    assert token_refreshes(sandbox) == 1  # the task that waited used the winner's access token

    live = live_pair(db, company_id)
    # Both tasks' hooks can call the API afterwards: a fresh hook from the app's JSON gets the live pair.
    assert _hook(db, company_id).account()["id"]
    assert token_refreshes(sandbox) == 1
    expire_access_tokens(sandbox)
    assert _hook(db, company_id).account()["id"]  # refreshes with the stored (live) refresh token
    assert token_refreshes(sandbox) == 2
    assert live_pair(db, company_id)["refreshToken"] != live["refreshToken"]


def test_two_hooks_in_two_threads_refresh_once_and_both_work(db, sandbox):
    company_id, _ = jobber_company(db, sandbox, n=0)
    requests.post(
        f"{sandbox.url}/_sandbox/faults",
        timeout=5,
        json={"crm": "jobber", "path_contains": "/oauth/token", "latency_ms": 700, "count": 2},
    ).raise_for_status()
    hooks = [_hook(db, company_id), _hook(db, company_id)]
    start = threading.Barrier(2)
    accounts: list[dict] = []

    def call(hook) -> None:
        start.wait()
        accounts.append(hook.account())

    threads = [threading.Thread(target=call, args=(h,)) for h in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(accounts) == 2 and token_refreshes(sandbox) == 1
    assert [h.stats.token_refreshes for h in hooks] == [1, 1]
    assert (
        hooks[0].credentials["refreshToken"]
        == hooks[1].credentials["refreshToken"]
        == live_pair(db, company_id)["refreshToken"]
    )
    for hook in hooks:  # both keep working on the same pair
        assert hook.account()["id"]


# ---------------------------------------------------------------------- admin reconnect
def test_an_admin_reconnect_is_adopted_and_then_protected_like_the_first_connection(db, sandbox):
    company_id, tech = jobber_company(db, sandbox, n=2)
    assert sync(db, company_id, "r1").status == "success"
    old_live = live_pair(db, company_id)["refreshToken"]

    # The admin reconnects Jobber: a new authorization, a new refresh token in the app's JSON.
    reconnected = "jb-rot-refresh-reconnect-7f31"
    authorize(sandbox, reconnected)
    expire_access_tokens(sandbox)
    data = json.loads(app_json(db, company_id))
    data["jobber"]["credentials"]["refreshToken"] = reconnected
    app_saves(db, company_id, json.dumps(data))
    stale_copy = app_json(db, company_id)
    more_check_ins(db, company_id, tech, 2, seed=8)

    result = sync(db, company_id, "r2")
    assert result.status == "success" and result.synced == 2, result.error
    from crm_sync.token_store import fingerprint

    row = stored_row(db, company_id)
    assert row["app_fingerprint"] == fingerprint(reconnected)  # the live pair now descends from the reconnect
    assert live_pair(db, company_id)["refreshToken"] not in (old_live, reconnected)

    # The new chain is protected like the first: a stale save of the reconnect's JSON loses nothing.
    app_saves(db, company_id, stale_copy)
    expire_access_tokens(sandbox)
    more_check_ins(db, company_id, tech, 2, seed=9)
    again = sync(db, company_id, "r3")
    assert again.status == "success" and again.synced == 2, again.error


# ---------------------------------------------------------------------- encryption, compare-and-set
def test_the_stored_pair_is_encrypted_with_airflows_fernet_key(db, sandbox):
    from cryptography.fernet import Fernet, MultiFernet

    company_id, _ = jobber_company(db, sandbox, n=0)
    assert _hook(db, company_id).account()["id"]
    live = live_pair(db, company_id)
    row = stored_row(db, company_id)
    raw = json.dumps({k: str(v) for k, v in row.items()})
    assert live["refreshToken"] not in raw and live["accessToken"] not in raw and "refreshToken" not in raw
    keys = MultiFernet([Fernet(k) for k in os.environ["AIRFLOW__CORE__FERNET_KEY"].split(",")])
    assert json.loads(keys.decrypt(row["ciphertext"].encode())) == live


def test_without_a_fernet_key_nothing_is_refreshed_or_stored(db, sandbox, monkeypatch):
    from airflow.sdk.crypto import get_fernet

    company_id, _ = jobber_company(db, sandbox, n=0)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    get_fernet.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="AIRFLOW__CORE__FERNET_KEY"):
            _hook(db, company_id).account()
    finally:
        monkeypatch.undo()
        get_fernet.cache_clear()
    assert token_refreshes(sandbox) == 0 and refresh_is_valid(sandbox, FIRST_REFRESH)  # not spent
    assert stored_row(db, company_id) is None


def test_a_write_that_did_not_read_the_current_version_is_refused(db, sandbox):
    company_id, _ = jobber_company(db, sandbox, n=0)
    assert _hook(db, company_id).account()["id"]
    before = stored_row(db, company_id)
    from crm_sync.token_store import TokenStore

    store = TokenStore(db, company_id, "jobber")
    with store.exclusive():
        with db.begin() as conn:  # a writer that bypassed the lock
            conn.execute(
                sa.text("UPDATE crm_sync.integration_credentials SET version = version + 1 WHERE company_id = :c"),
                {"c": company_id},
            )
        with pytest.raises(ConfigurationError, match="not overwritten"):
            store({"accessToken": "jb-rot-access-x", "refreshToken": "jb-rot-refresh-x"})
    after = stored_row(db, company_id)
    assert after["ciphertext"] == before["ciphertext"] and after["version"] == before["version"] + 1


def _hook(db, company_id: int):
    """A Jobber hook built the way every task builds one: the app's JSON plus the sync's token store."""
    integration = load_integration(db, company_id, "jobber")
    settings, _ = parse_sync_settings(integration.get("syncSettings"))
    return destination_for(
        "jobber", integration, settings, credentials_writer=credentials_writer(db, company_id, "jobber")
    ).hook


def test_a_task_that_cannot_get_the_refresh_lock_gets_a_retryable_error_without_secrets(db, sandbox, monkeypatch):
    from crm_hooks.errors import RetryableError
    from crm_sync import token_store

    company_id, _ = jobber_company(db, sandbox, n=0)
    monkeypatch.setattr(token_store, "LOCK_TIMEOUT_SECONDS", 1)
    with token_store.TokenStore(db, company_id, "jobber").exclusive():  # another task is refreshing
        with pytest.raises(RetryableError, match="refresh lock") as caught:
            _hook(db, company_id).account()
    assert FIRST_REFRESH not in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    assert token_refreshes(sandbox) == 0
    assert _hook(db, company_id).account()["id"]  # the lock was released
