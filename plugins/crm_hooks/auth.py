"""How a hook gets the token it sends: one small class per token shape, shared by the CRMs.

* :class:`StaticToken`: a key used as is (Housecall Pro API key, HubSpot private-app token).
* :class:`ClientCredentials`: the OAuth 2.0 client-credentials grant (ServiceTitan, FieldEdge,
  Salesforce at My Domain); :class:`SalesforcePassword` is Salesforce's username-password grant at
  the same endpoint.
* :class:`RefreshToken`: the OAuth 2.0 refresh-token grant, run inside the hook's
  :meth:`~crm_hooks.base.CrmHook.credential_rotation` so a rotated pair reaches the credentials
  writer (:class:`crm_sync.token_store.TokenStore`) before it is used (HubSpot OAuth; Jobber
  subclasses it for its JWT expiry and one-time refresh tokens).

Grants: RFC 6749 sections 4.4 (client credentials), 4.3 (password) and 6 (refresh)
(https://www.rfc-editor.org/rfc/rfc6749). An authenticator is bound to its hook: token requests go
through :meth:`~crm_hooks.base.CrmHook.request_json` (allowed hosts, retries, budget, masking) and
:meth:`~crm_hooks.base.CrmHook.access_token` caches what :meth:`Authenticator.fetch_token` returns.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import requests

from crm_hooks.errors import BadCredentialsError

if TYPE_CHECKING:
    from crm_hooks.base import CrmHook

#: Lifetime given to a token that does not expire (the base refreshes a minute before it).
NEVER_EXPIRES = 365 * 86400.0


def jwt_expiry(token: str | None) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it (only to schedule the
    refresh); None when ``token`` is not a JWT with one."""
    parts = str(token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (ValueError, KeyError, TypeError):  # binascii.Error is a ValueError
        return None


def is_token_request(response: requests.Response, token_path: str) -> bool:
    """True when ``response`` answers a request to a token endpoint ending in ``token_path``
    (its 4xx means bad client credentials or a dead refresh token, not a bad record)."""
    url = response.url or (response.request.url if response.request is not None else "") or ""
    return bool(token_path) and url.split("?")[0].rstrip("/").endswith(token_path)


class Authenticator:
    """Obtains a token for ``hook``: :meth:`fetch_token` -> ``(token, expires_in_seconds)``.

    :param token_path: the token endpoint's path (for :meth:`is_token_request`; empty for none).
    """

    def __init__(self, hook: CrmHook, *, token_path: str = ""):
        self.hook = hook
        self.token_path = token_path

    def fetch_token(self) -> tuple[str, float]:
        raise NotImplementedError

    def is_token_request(self, response: requests.Response) -> bool:
        return is_token_request(response, self.token_path)

    def access_token_from(self, body: Any, hint: str = "") -> str:
        """``body["access_token"]``, or a :class:`BadCredentialsError` naming the CRM (and ``hint``)."""
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not token:
            raise BadCredentialsError(
                f"{self.hook.crm_type}: the token response has no access_token" + (f"; {hint}" if hint else "")
            )
        return str(token)


class StaticToken(Authenticator):
    """A key that is the token (no token endpoint): the first of ``keys`` the credentials hold.

    :raises ConfigurationError: none of ``keys`` is set (named by the hook's :meth:`require`).
    """

    def __init__(self, hook: CrmHook, *keys: str, lifetime: float = NEVER_EXPIRES):
        super().__init__(hook)
        self.keys = keys
        self.lifetime = lifetime

    def fetch_token(self) -> tuple[str, float]:
        for key in self.keys:
            value = self.hook.cred(key)
            if value is not None:
                return str(value), self.lifetime
        self.hook.require(*self.keys[:1])
        raise AssertionError("unreachable: require raised")  # pragma: no cover


class ClientCredentials(Authenticator):
    """The OAuth 2.0 client-credentials grant: ``POST token_url()`` with :meth:`token_request`'s body.

    :param token_url: the full token URL (read when a token is needed: overrides are validated then).
    :param form: the request's keyword arguments (``data=`` form, ``json=``, ``auth=`` for HTTP Basic);
        it also checks the credentials it reads.
    :param lifetime: ``(body, token) -> seconds`` (the CRM's ``expires_in``, a JWT claim, a setting).
    :param on_token: called with the answer before the token is used (Salesforce's ``instance_url``).
    :param limit: the hook's rate limit the token endpoint counts against.
    """

    def __init__(
        self,
        hook: CrmHook,
        *,
        token_path: str,
        token_url: Callable[[], str],
        form: Callable[[], dict[str, Any]],
        lifetime: Callable[[Mapping[str, Any], str], float],
        on_token: Callable[[Mapping[str, Any]], None] | None = None,
        limit: str = "default",
    ):
        super().__init__(hook, token_path=token_path)
        self.token_url = token_url
        self.form = form
        self.lifetime = lifetime
        self.on_token = on_token
        self.limit = limit

    def fetch_token(self) -> tuple[str, float]:
        """A token an earlier run got with the same credentials, while it lives (the hook's credentials writer
        keeps them encrypted, :meth:`crm_sync.token_store.TokenStore.cached_session`); else a new one, kept."""
        store = self.hook.credentials_writer
        cached = getattr(store, "cached_session", None)
        kept = cached(self.hook.credentials) if cached is not None else None
        if kept is not None:
            token, seconds, answer = kept
            self.hook.add_runtime_secret(token)
            if self.on_token is not None:
                self.on_token(answer)
            return token, seconds
        request = self.form()
        body = self.hook.request_json(
            "POST",
            self.token_url(),
            authenticated=False,
            limit=self.limit,
            endpoint=f"POST {self.token_path}",
            **request,
        )
        token = self.access_token_from(body)
        if self.on_token is not None:
            self.on_token(body)
        lifetime = self.lifetime(body, token)
        keep = getattr(store, "keep_session", None)
        if keep is not None and isinstance(body, Mapping):
            keep(self.hook.credentials, token, lifetime, body)
        return token, lifetime


class SalesforcePassword(ClientCredentials):
    """Salesforce's username-password grant (``grant_type=password``; password + security token).

    Salesforce advises against it and is retiring it (it bypasses MFA): knowledge article 000886201,
    https://help.salesforce.com/s/articleView?id=000886201&language=en_US&type=1. The hook uses it only
    when the credentials hold a username and password.
    """

    def __init__(self, hook: CrmHook, **kwargs: Any):
        super().__init__(hook, form=self._password_form, **kwargs)

    def _password_form(self) -> dict[str, Any]:
        client_id, client_secret, username, password = self.hook.require(
            "clientId", "clientSecret", "username", "password"
        )
        return {
            "data": {
                "grant_type": "password",
                "client_id": client_id,
                "client_secret": client_secret,
                "username": username,
                "password": f"{password}{self.hook.cred('securityToken') or ''}",
            }
        }


class RefreshToken(Authenticator):
    """The OAuth 2.0 refresh-token grant, with rotation.

    The refresh runs inside :meth:`~crm_hooks.base.CrmHook.credential_rotation` (the live pair, one
    refresh per integration at a time). ``POST token_url()`` form ``grant_type=refresh_token, client_id,
    client_secret, refresh_token``. Subclasses adjust :meth:`stored_token` (reuse a still-valid access
    token), :meth:`lifetime` and :meth:`store` (what reaches the credentials writer).

    :param default_seconds: the lifetime when the answer has no ``expires_in``.
    :param hint: appended to token errors (e.g. "reconnect Jobber in Rank It Pro").
    """

    def __init__(
        self, hook: CrmHook, *, token_path: str, token_url: Callable[[], str], default_seconds: float, hint: str = ""
    ):
        super().__init__(hook, token_path=token_path)
        self.token_url = token_url
        self.default_seconds = default_seconds
        self.hint = hint

    def fetch_token(self) -> tuple[str, float]:
        stored = self.stored_token()
        if stored is not None:
            return stored
        self.before_refresh()
        with self.hook.credential_rotation():
            stored = self.stored_token()  # the live pair: another task may have refreshed meanwhile
            if stored is not None:
                return stored
            return self.redeem()

    def before_refresh(self) -> None:
        """Checks once a refresh is needed, before the lock is taken (Jobber refuses without a writer)."""

    def stored_token(self) -> tuple[str, float] | None:
        """A still-usable access token from the credentials, or None to refresh (default: always refresh)."""
        return None

    def redeem(self) -> tuple[str, float]:
        """Redeem the refresh token; the answer's tokens go through :meth:`store` before they are used."""
        hook = self.hook
        client_id, client_secret, refresh_token = hook.require("clientId", "clientSecret", "refreshToken")
        body = hook.request_json(
            "POST",
            self.token_url(),
            authenticated=False,
            endpoint=f"POST {self.token_path}",
            data={
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": refresh_token,
            },
        )
        body = body if isinstance(body, Mapping) else {}
        access = self.access_token_from(body, self.hint)
        self.store(access, str(body.get("refresh_token") or refresh_token), str(refresh_token), body)
        return access, self.lifetime(body, access)

    def lifetime(self, body: Mapping[str, Any], token: str) -> float:
        return float(body.get("expires_in") or self.default_seconds)

    def store(self, access: str, refresh: str, previous: str, body: Mapping[str, Any]) -> None:
        """Keep a rotated refresh token: registered as a secret, in the hook's credentials, and handed to
        the credentials writer (if any). An unchanged refresh token is not written."""
        if refresh == previous:
            return
        hook = self.hook
        hook.add_runtime_secret(refresh)
        hook.replace_credentials({**hook.credentials, "refreshToken": refresh})
        if hook.credentials_writer is not None:
            hook.credentials_writer(dict(hook.credentials))


__all__ = [
    "NEVER_EXPIRES",
    "Authenticator",
    "ClientCredentials",
    "RefreshToken",
    "SalesforcePassword",
    "StaticToken",
    "is_token_request",
    "jwt_expiry",
]
