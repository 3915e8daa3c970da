"""The sandbox FastAPI application: one router per CRM plus the ``/_sandbox`` admin API.

Adding a CRM = one module with a :class:`~crm_sandbox.common.CrmAdapter` subclass and
an ``APIRouter``, listed in :data:`ADAPTERS`.

Admin API (no auth; never subject to rate limits, and to faults only via ``path_contains``):

* ``GET  /_sandbox/health``
* ``POST /_sandbox/accounts`` ``{"crm", "account", "credentials", "limits"?, "options"?}``;
  ``GET /_sandbox/accounts``; ``DELETE /_sandbox/accounts/{crm}/{account}``
* ``POST /_sandbox/accounts/{crm}/{account}/expire-tokens``
* ``POST /_sandbox/faults`` / ``GET`` / ``DELETE /_sandbox/faults[/{id}]``
* ``GET  /_sandbox/stats``
* ``GET|POST /_sandbox/records/{crm}/{account}/{object}``, ``DELETE .../{id}``, ``PATCH .../{id}`` (edit fields)
* ``POST /_sandbox/reset`` ``{"keep_accounts": false}``, ``POST /_sandbox/save`` ``{"path"?}``
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response

import crm_sandbox
from crm_sandbox.common import (
    AdminError,
    CrmAdapter,
    VendorError,
    fault_error,
    json_response,
)
from crm_sandbox.state import Account, ConflictError, Fault, SandboxState


def _adapters() -> dict[str, CrmAdapter]:
    """Every module of the package with an ``ADAPTER`` serves one CRM: a new CRM is one module."""
    found = {}
    for module in pkgutil.iter_modules(crm_sandbox.__path__):
        if module.name.startswith("_") or module.name in ("app", "server"):
            continue
        adapter = getattr(importlib.import_module(f"crm_sandbox.{module.name}"), "ADAPTER", None)
        if isinstance(adapter, CrmAdapter):
            found[adapter.crm] = adapter
    return dict(sorted(found.items()))


ADAPTERS: dict[str, CrmAdapter] = _adapters()


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


async def _admin_fault(request: Request) -> None:
    """Admin routes fail only for a CRM-less fault whose ``path_contains`` names them.

    ``/_sandbox/faults`` itself is never faulted, so faults can always be cleared.
    """
    path = request.url.path
    if path.startswith("/_sandbox/faults"):
        return
    fault = _state(request).take_fault("_sandbox", None, path, exempt=True)
    if fault is None:
        return
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000.0)
    if fault.status:
        raise fault_error(fault, {"error": "rate limited (injected fault)"})


admin = APIRouter(prefix="/_sandbox", tags=["sandbox admin"], dependencies=[Depends(_admin_fault)])


async def _body(request: Request, *, optional: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise AdminError(400, "a JSON body is required")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise AdminError(400, f"invalid JSON: {exc}") from None


def _adapter(crm: str) -> CrmAdapter:
    adapter = ADAPTERS.get(crm)
    if adapter is None:
        raise AdminError(404, f"unknown crm {crm!r} (known: {sorted(ADAPTERS)})")
    return adapter


def _account(state: SandboxState, crm: str, name: str) -> Account:
    account = state.account(crm, name)
    if account is None:
        raise AdminError(404, f"no {crm} account {name!r}")
    return account


def _dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise AdminError(400, f"{key} must be a JSON object")
    return value


@admin.get("/health")
async def health() -> Any:
    return {"ok": True, "crms": sorted(ADAPTERS)}


@admin.post("/accounts")
async def register_account(request: Request) -> Any:
    """Register (or update, keeping its records) one CRM account."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise AdminError(400, "body must be a JSON object")
    adapter = _adapter(str(body.get("crm")))
    name = body.get("account")
    if not isinstance(name, str) or not name or "/" in name:
        raise AdminError(400, "account must be a non-empty string without '/'")
    credentials, limits, options = _dict(body, "credentials"), _dict(body, "limits"), _dict(body, "options")
    try:
        adapter.check_settings({**limits, **options})
        keys, static_tokens = adapter.identity(credentials)
    except ValueError as exc:
        raise AdminError(400, str(exc)) from None
    state = _state(request)
    with state.lock:
        try:
            account, created = state.register_account(
                adapter.crm,
                name,
                credentials,
                limits=limits,
                options=options,
                identity_keys=keys,
                static_tokens=static_tokens,
            )
        except ConflictError as exc:
            raise AdminError(409, str(exc)) from None
        adapter.prepare(account)
    return json_response({"crm": adapter.crm, "account": name, "created": created}, 201 if created else 200)


@admin.get("/accounts")
async def list_accounts(request: Request) -> Any:
    state = _state(request)
    with state.lock:
        return [
            {"crm": a.crm, "account": a.name, "credentials": a.credentials, "limits": a.limits, "options": a.options}
            for a in state.accounts.values()
        ]


@admin.delete("/accounts/{crm}/{account}")
async def delete_account(crm: str, account: str, request: Request) -> Response:
    state = _state(request)
    with state.lock:
        _account(state, crm, account)
        state.remove_account(crm, account)
    return Response(status_code=204)


@admin.post("/accounts/{crm}/{account}/expire-tokens")
async def expire_tokens(crm: str, account: str, request: Request) -> Any:
    """Expire every token the account was issued (static tokens stay valid)."""
    state = _state(request)
    _account(state, crm, account)
    return {"expired": state.expire_tokens(crm, account)}


@admin.post("/faults")
async def add_fault(request: Request) -> Any:
    body = await _body(request)
    if not isinstance(body, dict):
        raise AdminError(400, "body must be a JSON object")
    if body.get("crm") is not None:
        _adapter(str(body["crm"]))
    try:
        fault = Fault.from_request(body)
    except ValueError as exc:
        raise AdminError(400, str(exc)) from None
    _state(request).add_fault(fault)
    return json_response(fault.to_json(), 201)


@admin.get("/faults")
async def list_faults(request: Request) -> Any:
    state = _state(request)
    with state.lock:
        return [f.to_json() for f in state.faults]


@admin.delete("/faults")
async def clear_faults(request: Request) -> Any:
    return {"cleared": _state(request).clear_faults()}


@admin.delete("/faults/{fault_id}")
async def delete_fault(fault_id: str, request: Request) -> Response:
    state = _state(request)
    with state.lock:
        before = len(state.faults)
        state.faults = [f for f in state.faults if f.id != fault_id]
        if len(state.faults) == before:
            raise AdminError(404, f"no fault {fault_id!r}")
    return Response(status_code=204)


@admin.get("/stats")
async def stats(request: Request) -> Any:
    """Per CRM and account: stored object counts, requests, 429/403s, injected faults, endpoints."""
    state = _state(request)
    out: dict[str, dict[str, Any]] = {crm: {} for crm in ADAPTERS}
    with state.lock:
        for account in state.accounts.values():
            adapter = ADAPTERS.get(account.crm)
            if adapter is None:
                continue
            st = account.stats
            out[account.crm][account.name] = {
                "objects": {o: len(account.tables[o]) if o in account.tables else 0 for o in adapter.objects(account)},
                "requests": st.requests,
                "rate_limited": st.rate_limited,
                "faults": st.faults,
                "by_endpoint": dict(st.by_endpoint),
            }
    return out


def _object(adapter: CrmAdapter, account: Account, obj: str) -> str:
    name = adapter.object_name(account, obj)
    if name is None:
        raise AdminError(404, f"unknown {adapter.crm} object {obj!r} (known: {adapter.objects(account)})")
    return name


@admin.get("/records/{crm}/{account}/{obj}")
async def list_records(crm: str, account: str, obj: str, request: Request) -> Any:
    adapter, state = _adapter(crm), _state(request)
    with state.lock:
        acct = _account(state, crm, account)
        name = _object(adapter, acct, obj)
        return [adapter.export(acct, name, r) for r in acct.tables[name]]


@admin.post("/records/{crm}/{account}/{obj}")
async def seed_records(crm: str, account: str, obj: str, request: Request) -> Any:
    """Insert records directly (one object, or a list), skipping vendor validation."""
    adapter, state = _adapter(crm), _state(request)
    body = await _body(request)
    items = body if isinstance(body, list) else [body]
    if not all(isinstance(i, dict) for i in items):
        raise AdminError(400, "body must be a record object or a list of them")
    with state.lock:
        acct = _account(state, crm, account)
        name = _object(adapter, acct, obj)
        created = [adapter.export(acct, name, adapter.seed(acct, name, item)) for item in items]
    return json_response(created if isinstance(body, list) else created[0], 201)


@admin.delete("/records/{crm}/{account}/{obj}/{record_id}")
async def delete_record(crm: str, account: str, obj: str, record_id: str, request: Request) -> Response:
    adapter, state = _adapter(crm), _state(request)
    with state.lock:
        acct = _account(state, crm, account)
        name = _object(adapter, acct, obj)
        if acct.tables[name].remove(adapter.record_key(record_id)) is None:
            raise AdminError(404, f"no {name} {record_id!r}")
    return Response(status_code=204)


@admin.patch("/records/{crm}/{account}/{obj}/{record_id}")
async def edit_record(crm: str, account: str, obj: str, record_id: str, request: Request) -> Any:
    """Change stored fields of one record behind the client's back (tests of drift detection):
    ``{"field": value, ...}`` is merged into the record's stored fields, skipping vendor validation."""
    adapter, state = _adapter(crm), _state(request)
    body = await _body(request)
    if not isinstance(body, dict) or not body:
        raise AdminError(400, "body must be an object of fields to change")
    with state.lock:
        acct = _account(state, crm, account)
        name = _object(adapter, acct, obj)
        table = acct.tables[name]
        record = table.get(adapter.record_key(record_id))
        if record is None or not isinstance(record.get("fields"), dict):
            raise AdminError(404, f"no {name} {record_id!r}")
        table.put({**record, "fields": {**record["fields"], **body}})  # records are immutable: put a new dict
        return adapter.export(acct, name, table.get(adapter.record_key(record_id)))


@admin.post("/reset")
async def reset(request: Request) -> Any:
    body = await _body(request, optional=True)
    keep = bool(body.get("keep_accounts", False)) if isinstance(body, dict) else False
    _state(request).reset(keep_accounts=keep)
    return {"reset": True, "keep_accounts": keep}


@admin.post("/save")
async def save(request: Request) -> Any:
    body = await _body(request, optional=True)
    path = body.get("path") if isinstance(body, dict) else None
    try:
        target = _state(request).save(path)
    except ValueError as exc:
        raise AdminError(400, str(exc)) from None
    return {"saved": str(target)}


async def _vendor_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VendorError)
    headers = {**getattr(request.state, "sandbox_headers", {}), **exc.headers}
    return json_response(exc.body, exc.status, headers)


async def _admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    return json_response({"error": exc.message}, exc.status)


def create_app(state: SandboxState | None = None) -> FastAPI:
    """The sandbox app over ``state`` (a fresh in-memory state by default)."""
    app = FastAPI(
        title="rankitpro CRM sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json", redoc_url=None
    )
    app.state.sandbox = state if state is not None else SandboxState()
    for adapter in ADAPTERS.values():
        app.include_router(adapter.router)
    app.include_router(admin)
    app.add_exception_handler(VendorError, _vendor_error)
    app.add_exception_handler(AdminError, _admin_error)
    return app
