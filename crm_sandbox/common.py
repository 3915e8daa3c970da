"""Pieces shared by the CRM modules: vendor errors, the request gate, body parsing, helpers.

A CRM module subclasses :class:`CrmAdapter` (auth/limit/fault hooks plus admin
seeding) and declares its routes on an ``APIRouter`` whose dependencies call
:func:`open_request`. The gate runs, in order: injected faults, bearer-token
auth, request accounting, the CRM's own limits (``adapter.admit``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response

from crm_sandbox.state import Account, Fault, Record, SandboxState

#: Deliberately loose (like most CRMs): something@domain.tld, no spaces.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")

#: A record with a text value containing this marker fails the CRM's validation, with that
#: CRM's own validation error for the field: tests use it to make exactly one record of a
#: batch invalid (every CRM module honours it via :func:`poisoned_fields`).
INVALID_MARKER = "SANDBOX-INVALID"


def poisoned_fields(values: dict[str, Any]) -> list[str]:
    """Names of the fields whose text contains :data:`INVALID_MARKER`."""
    return [k for k, v in values.items() if isinstance(v, str) and INVALID_MARKER in v]


#: Path parameters substituted into the per-endpoint stats key (others stay as {name}).
STAT_PARAMS = frozenset({"objectType", "sobject", "field"})


class VendorError(Exception):
    """An HTTP error answered with a vendor-shaped JSON body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


#: RFC 6749 error descriptions as Doorkeeper (the OAuth server of Jobber and of FieldEdge's Gobo) words them.
UNSUPPORTED_GRANT = "The authorization grant type is not supported by the authorization server."
INVALID_CLIENT = (
    "Client authentication failed due to unknown client, no client authentication included, or "
    "unsupported authentication method."
)


def oauth_error(status: int, error: str, description: str | None = None) -> VendorError:
    """A token-endpoint error (RFC 6749 section 5.2): ``{error, error_description}``, or ``{error}`` alone."""
    body = {"error": error} if description is None else {"error": error, "error_description": description}
    return VendorError(status, body)


def jwt_segment(data: dict[str, Any]) -> str:
    """One part of a JWT: compact JSON, base64url without padding."""
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


class AdminError(Exception):
    """An admin-API error, answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(content=content, status_code=status, headers=headers, media_type="application/json")


def iso(ts: float | None = None) -> str:
    """``2026-11-24T10:00:00.000Z`` (the timestamp style both CRMs answer with)."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sandbox_state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def bearer(request: Request, schemes: tuple[str, ...] = ("bearer",)) -> str | None:
    """The token of ``Authorization: <scheme> <token>``, for any of ``schemes``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in schemes and token.strip():
        return token.strip()
    return None


def basic_auth(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


async def read_json(request: Request, bad: Callable[[str], VendorError]) -> Any:
    """The JSON body; ``bad(message)`` builds the vendor's error when it is not JSON."""
    raw = await request.body()
    if not raw:
        raise bad("Request body is empty")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"Invalid JSON body: {exc}") from None


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (last value wins)."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


def endpoint_key(request: Request) -> str:
    """``METHOD /route/template`` with object-type parameters filled in, for stats."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    for name, value in request.path_params.items():
        if name in STAT_PARAMS:
            path = path.replace("{" + name + "}", str(value))
    return f"{request.method} {path}"


@dataclass
class Ctx:
    """One authenticated CRM request: the account plus headers every answer carries."""

    request: Request
    state: SandboxState
    account: Account
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def reply(self, body: Any, status: int = 200) -> Response:
        return json_response(body, status, self.headers)

    def no_content(self) -> Response:
        return Response(status_code=204, headers=self.headers)


class CrmAdapter(ABC):
    """What one CRM module plugs into the app: auth, limits, faults and admin seeding."""

    crm: ClassVar[str]
    router: ClassVar[APIRouter]
    #: Accepted keys of an account's ``limits`` / ``options``.
    settings: ClassVar[frozenset[str]] = frozenset({"enabled", "token_ttl_seconds"})
    #: Settings that hold a number (validated as >= 0).
    numeric_settings: ClassVar[frozenset[str]] = frozenset({"token_ttl_seconds"})

    @abstractmethod
    def identity(self, credentials: dict[str, Any]) -> tuple[list[str], list[str]]:
        """``(identity_keys, static_tokens)`` of valid credentials; ``ValueError`` if invalid."""

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Validate an account's ``limits`` + ``options`` before registration (``ValueError``)."""
        unknown = sorted(set(settings) - self.settings)
        if unknown:
            raise ValueError(f"unknown {self.crm} limits/options {unknown}; known: {sorted(self.settings)}")
        for key in self.numeric_settings & set(settings):
            value = settings[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{key} must be a non-negative number")

    @abstractmethod
    def prepare(self, account: Account) -> None:
        """Create the account's tables / indexes after (re-)registration."""

    @abstractmethod
    def unauthorized(self, reason: str) -> VendorError:
        """The vendor's 401 (``reason``: ``missing``, ``unknown`` or ``expired``)."""

    @abstractmethod
    def fault_error(self, fault: Fault) -> VendorError:
        """The error an injected fault answers with."""

    @abstractmethod
    def admit(self, ctx: Ctx, kind: str) -> float:
        """Apply the CRM's limits (raise ``VendorError``); return seconds to delay."""

    @abstractmethod
    def seed(self, account: Account, obj: str, body: dict[str, Any]) -> Record:
        """Insert a record directly (admin); ``AdminError`` when impossible."""

    @abstractmethod
    def export(self, account: Account, obj: str, record: Record) -> dict[str, Any]:
        """A stored record with all its fields, as the admin API lists it."""

    def objects(self, account: Account) -> list[str]:
        return list(account.tables)

    def object_name(self, account: Account, obj: str) -> str | None:
        """The canonical object name for an admin path segment, if the CRM has it."""
        return obj if obj in self.objects(account) else None

    def record_key(self, record_id: str) -> str:
        """The stored id for an id given in an admin path."""
        return record_id


def fault_error(fault: Fault, rate_limited_body: Any) -> VendorError:
    """Shared fault rendering: the CRM's 429 body, or a plain JSON 5xx."""
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(
            int(fault.retry_after) if float(fault.retry_after).is_integer() else fault.retry_after
        )
    if fault.status == 429:
        return VendorError(429, rate_limited_body, headers)
    return VendorError(int(fault.status or 500), {"status": "error", "message": "internal error"}, headers)


async def apply_fault(request: Request, adapter: CrmAdapter, account: Account | None, *, exempt: bool) -> None:
    """Fire a matching fault (latency and/or error) for this request, if any."""
    state = sandbox_state(request)
    fault = state.take_fault(adapter.crm, account.name if account else None, request.url.path, exempt=exempt)
    if fault is None:
        return
    if account is not None and fault.status:
        with state.lock:
            account.stats.faults += 1
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000.0)
    if fault.status:
        raise adapter.fault_error(fault)


async def open_request(request: Request, adapter: CrmAdapter, token: str | None, kind: str = "default") -> Ctx:
    """Gate one API request: faults, auth, accounting, limits; return its :class:`Ctx`."""
    state = sandbox_state(request)
    with state.lock:
        account, reason = state.resolve_token(adapter.crm, token)
        if account is not None:
            account.stats.requests += 1
            account.stats.by_endpoint[endpoint_key(request)] += 1
    await apply_fault(request, adapter, account, exempt=False)
    if account is None:
        raise adapter.unauthorized(reason)
    ctx = Ctx(request, state, account, token)
    request.state.sandbox_headers = ctx.headers
    with state.lock:
        try:
            delay = adapter.admit(ctx, kind)
        except VendorError:
            account.stats.rate_limited += 1
            raise
    if delay > 0:
        await asyncio.sleep(delay)
    return ctx
