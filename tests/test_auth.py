"""The authenticators of :mod:`crm_hooks.auth`, each on a minimal hook. No network: ``responses`` answers."""

from __future__ import annotations

import base64
import json
import time
import uuid
from contextlib import contextmanager
from urllib.parse import parse_qs

import pytest
import requests
import responses

from crm_hooks.auth import (
    NEVER_EXPIRES,
    ClientCredentials,
    RefreshToken,
    SalesforcePassword,
    StaticToken,
    is_token_request,
    jwt_expiry,
)
from crm_hooks.base import CrmHook
from crm_hooks.errors import BadCredentialsError, ConfigurationError
from crm_hooks.rate_limit import RateLimit

BASE = "https://api.auth-test.example.com"
TOKEN_PATH = "/oauth/token"
TOKEN_URL = f"{BASE}{TOKEN_PATH}"


class AuthHook(CrmHook):
    crm_type = "authtest"
    vendor_domains = ("auth-test.example.com",)
    default_base_url = BASE
    secret_keys = ("clientSecret", "refreshToken", "apiKey")
    default_rate_limits = {"default": RateLimit(None)}
    backoff_seconds = 0.001


def hook(writer=None, **creds) -> AuthHook:
    return AuthHook(credentials=creds, account_key=f"a-{uuid.uuid4()}", credentials_writer=writer)


def jwt(exp: float) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{claims}.sig"


def form(call) -> dict[str, list[str]]:
    return parse_qs(call.request.body)


# ---------------------------------------------------------------------- helpers
def test_jwt_expiry_reads_the_claim_and_ignores_other_tokens():
    assert jwt_expiry(jwt(1_900_000_000)) == 1_900_000_000
    assert jwt_expiry("opaque-token") is None and jwt_expiry(None) is None and jwt_expiry("a.!!!.c") is None


def test_is_token_request_matches_the_token_path_only():
    response = requests.Response()
    response.url = f"{TOKEN_URL}?x=1"
    assert is_token_request(response, TOKEN_PATH)
    response.url = f"{BASE}/items"
    assert not is_token_request(response, TOKEN_PATH) and not is_token_request(response, "")


# ---------------------------------------------------------------------- static token
def test_static_token_is_the_first_key_set_and_does_not_expire():
    assert StaticToken(hook(apiKey="k-1"), "apiKey").fetch_token() == ("k-1", NEVER_EXPIRES)
    assert StaticToken(hook(accessToken="t-2"), "apiKey", "accessToken").fetch_token()[0] == "t-2"
    with pytest.raises(ConfigurationError, match="apiKey"):
        StaticToken(hook(), "apiKey").fetch_token()


# ---------------------------------------------------------------------- client credentials
def test_client_credentials_posts_the_form_and_reads_the_lifetime(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-1", "expires_in": 900})
    seen = []
    h = hook(clientId="c", clientSecret="s")
    auth = ClientCredentials(
        h,
        token_path=TOKEN_PATH,
        token_url=lambda: TOKEN_URL,
        form=lambda: {"data": {"grant_type": "client_credentials", "client_id": "c"}},
        lifetime=lambda body, token: float(body["expires_in"]),
        on_token=seen.append,
    )
    assert auth.fetch_token() == ("at-1", 900.0)
    assert form(rsps.calls[0]) == {"grant_type": ["client_credentials"], "client_id": ["c"]}
    assert seen == [{"access_token": "at-1", "expires_in": 900}]
    assert "Authorization" not in rsps.calls[0].request.headers


def test_client_credentials_without_a_token_is_bad_credentials(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"token_type": "bearer"})
    auth = ClientCredentials(
        hook(), token_path=TOKEN_PATH, token_url=lambda: TOKEN_URL, form=dict, lifetime=lambda body, token: 60.0
    )
    with pytest.raises(BadCredentialsError, match="authtest: the token response has no access_token"):
        auth.fetch_token()


def test_salesforce_password_sends_password_plus_security_token(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "00D!x"})
    h = hook(clientId="c", clientSecret="s", username="u@x", password="pw", securityToken="TOK")
    auth = SalesforcePassword(h, token_path=TOKEN_PATH, token_url=lambda: TOKEN_URL, lifetime=lambda b, t: 3600.0)
    assert auth.fetch_token() == ("00D!x", 3600.0)
    assert form(rsps.calls[0]) == {
        "grant_type": ["password"],
        "client_id": ["c"],
        "client_secret": ["s"],
        "username": ["u@x"],
        "password": ["pwTOK"],
    }
    with pytest.raises(ConfigurationError, match="username, password"):
        SalesforcePassword(
            hook(clientId="c", clientSecret="s"),
            token_path=TOKEN_PATH,
            token_url=lambda: TOKEN_URL,
            lifetime=lambda b, t: 1.0,
        ).fetch_token()


# ---------------------------------------------------------------------- refresh token
def test_refresh_token_redeems_and_writes_a_rotated_token(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-2", "refresh_token": "rt-new", "expires_in": 1800})
    written = []
    h = hook(writer=written.append, clientId="c", clientSecret="s", refreshToken="rt-old")
    auth = RefreshToken(h, token_path=TOKEN_PATH, token_url=lambda: TOKEN_URL, default_seconds=60)
    assert auth.fetch_token() == ("at-2", 1800.0)
    assert form(rsps.calls[0]) == {
        "grant_type": ["refresh_token"],
        "client_id": ["c"],
        "client_secret": ["s"],
        "refresh_token": ["rt-old"],
    }
    assert written[0]["refreshToken"] == "rt-new" and h.cred("refreshToken") == "rt-new"
    assert "rt-new" in h.secrets()


def test_refresh_token_writes_nothing_when_the_token_did_not_rotate(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-3"})
    written = []
    h = hook(writer=written.append, clientId="c", clientSecret="s", refreshToken="rt-same")
    assert RefreshToken(h, token_path=TOKEN_PATH, token_url=lambda: TOKEN_URL, default_seconds=600).fetch_token() == (
        "at-3",
        600.0,
    )
    assert written == []


def test_refresh_token_runs_inside_the_writers_lock_with_the_live_pair(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at-4", "refresh_token": "rt-5"})
    events = []

    class Store:
        def __call__(self, credentials):
            events.append(("write", credentials["refreshToken"]))

        @contextmanager
        def exclusive(self):
            events.append("lock")
            yield {"refreshToken": "rt-live"}
            events.append("unlock")

    h = hook(writer=Store(), clientId="c", clientSecret="s", refreshToken="rt-stale")
    RefreshToken(h, token_path=TOKEN_PATH, token_url=lambda: TOKEN_URL, default_seconds=60).fetch_token()
    assert form(rsps.calls[0])["refresh_token"] == ["rt-live"]  # the live token, not the stale one
    assert events == ["lock", ("write", "rt-5"), "unlock"]


def test_refresh_token_subclass_reuses_a_stored_token_before_any_lock(rsps):
    class Reusing(RefreshToken):
        def stored_token(self):
            token = self.hook.cred("accessToken")
            return (token, 120.0) if token else None

        def before_refresh(self):
            raise AssertionError("no refresh needed")

    h = hook(clientId="c", clientSecret="s", refreshToken="r", accessToken=jwt(time.time() + 3600))
    token, _ = Reusing(h, token_path=TOKEN_PATH, token_url=lambda: TOKEN_URL, default_seconds=60).fetch_token()
    assert token == h.cred("accessToken") and len(rsps.calls) == 0


def test_the_hook_delegates_fetch_token_to_its_authenticator():
    class Keyed(AuthHook):
        def authenticator(self):
            return StaticToken(self, "apiKey")

    h = Keyed(credentials={"apiKey": "k-9"}, account_key=f"a-{uuid.uuid4()}")
    assert h.access_token() == "k-9" and h.stats.token_refreshes == 1
