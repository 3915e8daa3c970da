"""The sync's own store of live OAuth token pairs, so no app save and no concurrent task can lose them.

Jobber rotates the refresh token on every refresh and invalidates the previous one at once
(https://developer.getjobber.com/docs/building_your_app/refresh_token_rotation). The Rank It Pro
app saves a company's whole ``crm_integrations`` JSON from a copy it read earlier, so writing the
rotated pair there is not enough: an admin saving any setting writes an invalidated refresh token
back. And two tasks (the automatic customer index, a sync, a backfill chunk, a reconciliation) can
need a new access token at the same moment; with rotation the second refresh of the same token fails.

So the live pair (``accessToken``, ``refreshToken``) lives in ``crm_sync.integration_credentials``,
encrypted with Airflow's Fernet key, and:

* **The app's value is adopted only on a reconnect.** Each row remembers the fingerprint (sha256) of
  the app's refresh token the live pair descends from, and of every refresh token the sync wrote. While
  the app's refresh token matches one of them, its copy is stale and the stored pair wins; a refresh
  token the sync has never seen means the admin connected again, and the app's value is used (and
  recorded by the next write). The sync never writes tokens into ``crm_integrations``: the app is not
  the source of truth for the live pair, and no write of ours can clobber an admin's reconnect.
* **One refresh at a time.** :meth:`TokenStore.exclusive` holds a PostgreSQL advisory lock per
  company x CRM around "read the live pair -> refresh at the CRM -> write the new pair"; a task that
  waited re-reads the pair and uses the access token the winner stored instead of refreshing again.
* **Writes are compare-and-set** on the row's ``version``: a write never replaces a pair it did not read.

Without a Fernet key (``AIRFLOW__CORE__FERNET_KEY``) the store refuses before any refresh token is
redeemed: rotated tokens are never stored in plaintext.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from crm_hooks.errors import ConfigurationError, RetryableError
from crm_sync.db import sql
from crm_sync.integrations import check_integration
from crm_sync.settings import parse_integrations

log = logging.getLogger(__name__)

#: The credential keys whose live value the sync owns; every other key (client id and secret,
#: URL overrides) is always the app's.
TOKEN_KEYS = ("accessToken", "refreshToken")
#: How many fingerprints of refresh tokens the sync wrote a row remembers (a stale app copy holds one of them
#: only if something mirrored the sync's tokens into the app).
WRITTEN_KEPT = 20
#: Longest wait for another task's refresh of the same integration (its token request has its own retries).
LOCK_TIMEOUT_SECONDS = 180


def fingerprint(token: Any) -> str:
    """sha256 hex of a token ('' for none): tells values apart without storing them."""
    text = _text(token)
    return hashlib.sha256(text.encode()).hexdigest() if text else ""


def _fernet() -> Any:
    """Airflow's Fernet (``AIRFLOW__CORE__FERNET_KEY``; several keys, comma-separated, while rotating it)."""
    try:
        from airflow.sdk.crypto import get_fernet

        fernet = get_fernet()
    except Exception as exc:  # noqa: BLE001 - AirflowException for an invalid key, ImportError
        raise ConfigurationError(
            f"the Fernet key is unusable ({type(exc).__name__}): set AIRFLOW__CORE__FERNET_KEY "
            "to a key made by cryptography.fernet.Fernet.generate_key()"
        ) from None
    if not getattr(fernet, "is_encrypted", False):
        raise ConfigurationError(
            "no Fernet key is configured: set AIRFLOW__CORE__FERNET_KEY; the sync refuses to "
            "store rotating CRM tokens unencrypted"
        )
    return fernet


@dataclass
class _Held:
    """What one holder of the lock read: the pair to use, the row version to compare-and-set against."""

    conn: sa.Connection
    live: dict[str, str | None]
    version: int
    app_fingerprint: str
    written: list[str] = field(default_factory=list)


class TokenStore:
    """The credentials writer of one company x CRM (what :class:`crm_hooks.base.CrmHook` calls).

    Calling it stores rotated tokens; :meth:`exclusive` is the lock a hook holds around a refresh
    (:meth:`crm_hooks.base.CrmHook.credential_rotation`). The lock is re-entrant within a thread.
    """

    def __init__(self, engine: Engine, company_id: int, crm_type: str):
        self.engine = engine
        self.company_id = int(company_id)
        self.crm_type = crm_type
        self._local = threading.local()

    @property
    def _params(self) -> dict[str, Any]:
        return {"company_id": self.company_id, "crm_type": self.crm_type}

    # ------------------------------------------------------------------ the lock
    @contextlib.contextmanager
    def exclusive(self) -> Iterator[dict[str, str | None]]:
        """Hold the integration's refresh lock; yields the live ``accessToken``/``refreshToken`` (None: absent).

        Raises :class:`ConfigurationError` without a Fernet key (before the caller spends its refresh
        token) or when the integration is gone, :class:`RetryableError` when the lock or the database is
        unavailable. No message carries a token or ciphertext.
        """
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:  # re-entered by the same thread
            yield dict(held.live)
            return
        _fernet()
        conn = self._connect()
        try:
            self._local.held = held = self._read(conn)
            yield dict(held.live)
        finally:
            self._local.held = None
            try:
                conn.rollback()
                conn.execute(sql("integration_credentials_unlock"), self._params)
                conn.commit()
            except sa.exc.SQLAlchemyError:
                conn.invalidate()  # the server releases a session lock with its connection
            conn.close()

    def _connect(self) -> sa.Connection:
        conn = self.engine.connect()
        try:
            conn.execute(
                sa.text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{LOCK_TIMEOUT_SECONDS * 1000}"}
            )
            conn.execute(sql("integration_credentials_lock"), self._params)
            conn.commit()  # the session lock stays; the transaction-local lock_timeout ends
            return conn
        except sa.exc.SQLAlchemyError as exc:
            conn.close()
            raise RetryableError(
                f"{self.crm_type}: the token refresh lock of company {self.company_id} is "
                f"unavailable ({type(exc).__name__}; another task may still be refreshing)"
            ) from None

    def _read(self, conn: sa.Connection) -> _Held:
        """The live pair: the stored one while the app's refresh token is one it descends from, else the app's."""
        try:
            raw = conn.execute(sql("company_integrations"), {"company_id": self.company_id}).scalar()
            row = conn.execute(sql("integration_credentials_get"), self._params).first()
            conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            raise RetryableError(
                f"{self.crm_type}: reading the stored credentials of company {self.company_id} "
                f"failed ({type(exc).__name__})"
            ) from None
        integrations, error = parse_integrations(raw)
        integration = integrations.get(self.crm_type)
        problem = error or check_integration(self.crm_type, integration)
        if problem:
            raise ConfigurationError(problem)
        app = {k: _text(integration["credentials"].get(k)) for k in TOKEN_KEYS}
        app_print = fingerprint(app["refreshToken"])
        if row is None:
            return _Held(conn, app, 0, app_print)
        written = list(row.written_fingerprints or [])
        if app_print not in (row.app_fingerprint, *written):
            # A refresh token the sync never saw: the admin reconnected. Recorded by the next write.
            return _Held(conn, app, int(row.version), app_print, written)
        return _Held(conn, self._decrypt(row.ciphertext), int(row.version), row.app_fingerprint, written)

    def _decrypt(self, ciphertext: str) -> dict[str, str | None]:
        try:
            data = json.loads(_fernet().decrypt(ciphertext.encode()))
        except Exception:  # noqa: BLE001 - InvalidToken (another key), corrupt JSON: never echo the value
            raise ConfigurationError(
                f"{self.crm_type}: the stored token pair of company {self.company_id} cannot be decrypted with "
                "AIRFLOW__CORE__FERNET_KEY (was the key replaced? list the old key after the new one, "
                "comma-separated), or reconnect the integration in Rank It Pro"
            ) from None
        return {k: _text(data.get(k)) for k in TOKEN_KEYS}

    # ------------------------------------------------------------------ writes
    def __call__(self, credentials: Mapping[str, Any]) -> None:
        """Store rotated tokens (only :data:`TOKEN_KEYS` of ``credentials``), committed before this returns.

        Inside :meth:`exclusive` the write is compared against the version read there; outside it, the
        lock is taken for the write. A version that moved (a writer that bypassed the lock) is refused
        rather than overwritten.
        """
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            with self.exclusive():
                self(credentials)
            return
        live = {**held.live, **{k: _text(credentials[k]) for k in TOKEN_KEYS if k in credentials}}
        written = held.written
        if live["refreshToken"] and live["refreshToken"] != held.live.get("refreshToken"):
            written = [fingerprint(live["refreshToken"]), *written][:WRITTEN_KEPT]
        params = {
            **self._params,
            "ciphertext": _fernet().encrypt(json.dumps(live).encode()).decode(),
            "app_fingerprint": held.app_fingerprint,
            "written_fingerprints": written,
            "expected_version": held.version,
        }
        statement = "integration_credentials_insert" if held.version == 0 else "integration_credentials_update"
        try:
            version = held.conn.execute(sql(statement), params).scalar()
            held.conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            held.conn.rollback()
            raise RetryableError(
                f"{self.crm_type}: storing the rotated tokens of company {self.company_id} failed "
                f"({type(exc).__name__})"
            ) from None
        if version is None:
            raise ConfigurationError(
                f"{self.crm_type}: the stored token pair of company {self.company_id} changed "
                "while this task held the refresh lock; not overwritten"
            )
        held.live, held.version, held.written = live, int(version), written

    # ------------------------------------------------------------------ client-credentials sessions
    #: seconds of life a kept access token must have left to be used (the hook refreshes a minute before)
    SESSION_MARGIN_SECONDS: ClassVar[float] = 120.0

    def cached_session(self, credentials: Mapping[str, Any]) -> tuple[str, float, dict[str, Any]] | None:
        """The access token an earlier run got with these exact credentials (client-credentials grant), as
        ``(token, seconds left, the token answer without tokens)``; None: none usable (absent, expiring, other
        credentials, no Fernet key). A database error is None too: the caller fetches a token as before."""
        try:
            fernet = _fernet()
            with self.engine.connect() as conn:
                row = conn.execute(sql("access_token_get"), self._params).first()
        except (ConfigurationError, sa.exc.SQLAlchemyError):
            return None
        if row is None or float(row.seconds_left) < self.SESSION_MARGIN_SECONDS:
            return None
        if row.credentials_fingerprint != self._credentials_print(credentials):
            return None
        try:
            data = json.loads(fernet.decrypt(row.ciphertext.encode()))
        except Exception:  # noqa: BLE001 - another key, corrupt row: fetch a new token (never echo the value)
            return None
        token = _text(data.get("token"))
        answer = data.get("answer")
        if token is None or not isinstance(answer, dict):
            return None
        return token, float(row.seconds_left), answer

    def keep_session(
        self, credentials: Mapping[str, Any], token: str, seconds: float, answer: Mapping[str, Any]
    ) -> None:
        """Keep a client-credentials access token for the next runs (encrypted; nothing without a Fernet key).
        ``answer``: what the token response said besides tokens (Salesforce's instance and identity URLs)."""
        try:
            fernet = _fernet()
        except ConfigurationError:
            return
        clean = {k: v for k, v in answer.items() if k not in ("access_token", "refresh_token", "id_token")}
        params = {
            **self._params,
            "credentials_fingerprint": self._credentials_print(credentials),
            "ciphertext": fernet.encrypt(json.dumps({"token": token, "answer": clean}).encode()).decode(),
            "seconds": float(seconds),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(sql("access_token_upsert"), params)
        except sa.exc.SQLAlchemyError as exc:  # the run goes on with its token; the next one fetches again
            log.warning("%s: could not keep the access token (%s)", self.crm_type, type(exc).__name__)

    def forget_session(self) -> None:
        """Drop the kept access token (the CRM refused it: a 401)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sql("access_token_delete"), self._params)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("%s: could not drop the kept access token (%s)", self.crm_type, type(exc).__name__)

    def _credentials_print(self, credentials: Mapping[str, Any]) -> str:
        """Salted PBKDF2 of the credentials: tells them apart, no secret can be read back from it."""
        material = json.dumps(dict(credentials), sort_keys=True, default=str).encode()
        salt = f"rankitpro-access-token:{self.company_id}:{self.crm_type}".encode()
        return hashlib.pbkdf2_hmac("sha256", material, salt, 20_000).hex()

    # ------------------------------------------------------------------ inspection
    def live(self) -> dict[str, str | None]:
        """The live pair as a hook would get it (takes the lock briefly; never log the result)."""
        with self.exclusive() as pair:
            return pair


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


__all__ = ["TOKEN_KEYS", "TokenStore", "fingerprint"]
