"""In-memory sandbox state: accounts, records, tokens, faults, limits and JSON persistence.

Everything a CRM module stores goes through :class:`SandboxState`, guarded by one
re-entrant lock (``state.lock``). Handlers take the lock for the short, CPU-only part
of a request and never sleep while holding it.

Records are plain JSON-able dicts ``{"id", "fields": {...}, "createdAt", "updatedAt", ...}``
kept per account in a :class:`Table`, which maintains dict indexes (case-folded text,
phone digits) so that look-ups by email / unique property / external id are O(1).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Record = dict[str, Any]

STATE_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- normalisers


def fold(value: Any) -> str | None:
    """Case-insensitive key for text (emails, external ids, unique values)."""
    if value is None:
        return None
    text = str(value).strip().casefold()
    return text or None


def phone_digits(value: Any) -> str | None:
    """Digits of a phone number, without the leading ``1`` of an 11-digit US number.

    So ``(512) 555-0100``, ``512.555.0100`` and ``+15125550100`` share one key.
    """
    if value is None:
        return None
    digits = re.sub(r"\D", "", str(value))
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits or None


#: Index kinds by name; the name is what gets persisted.
NORMALIZERS: dict[str, Callable[[Any], str | None]] = {"ci": fold, "phone": phone_digits}


# --------------------------------------------------------------------------- tables


class Table:
    """Records of one object type in one account, keyed by id, with value indexes.

    ``indexes`` maps a field name to a normaliser kind (see :data:`NORMALIZERS`).
    An index maps the normalised value to the set of record ids holding it; callers
    enforce uniqueness where the CRM does.
    """

    def __init__(self, indexes: dict[str, str] | None = None) -> None:
        self.records: dict[str, Record] = {}
        self.index_kinds: dict[str, str] = {}
        self._index: dict[str, dict[str, set[str]]] = {}
        self._order: dict[str, int] = {}
        self._seq = 0
        for name, kind in (indexes or {}).items():
            self.add_index(name, kind)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records.values())

    def add_index(self, field_name: str, kind: str = "ci") -> None:
        """Index ``field_name`` (existing records included); a no-op if already indexed."""
        if field_name in self.index_kinds:
            return
        if kind not in NORMALIZERS:
            raise ValueError(f"unknown index kind {kind!r}")
        self.index_kinds[field_name] = kind
        self._index[field_name] = {}
        for record in self.records.values():
            self._index_one(field_name, record, add=True)

    def is_indexed(self, field_name: str) -> bool:
        return field_name in self.index_kinds

    def get(self, record_id: str) -> Record | None:
        return self.records.get(record_id)

    def put(self, record: Record) -> Record | None:
        """Insert or replace ``record`` (by ``record["id"]``); return the previous version.

        Records are treated as immutable: to change one, put a new dict.
        """
        rid = record["id"]
        previous = self.records.get(rid)
        if previous is not None:
            for name in self._index:
                self._index_one(name, previous, add=False)
        else:
            self._seq += 1
            self._order[rid] = self._seq
        self.records[rid] = record
        for name in self._index:
            self._index_one(name, record, add=True)
        return previous

    def remove(self, record_id: str) -> Record | None:
        """Delete a record; return it (``None`` if it was not there)."""
        previous = self.records.pop(record_id, None)
        if previous is not None:
            self._order.pop(record_id, None)
            for name in self._index:
                self._index_one(name, previous, add=False)
        return previous

    def lookup(self, field_name: str, value: Any) -> list[str]:
        """Ids whose ``field_name`` normalises like ``value`` (index required), oldest first."""
        key = NORMALIZERS[self.index_kinds[field_name]](value)
        if key is None:
            return []
        return self.ordered(self._index[field_name].get(key, ()))

    def lookup_one(self, field_name: str, value: Any) -> str | None:
        ids = self.lookup(field_name, value)
        return ids[0] if ids else None

    def ordered(self, ids: Iterable[str]) -> list[str]:
        """``ids`` sorted by insertion order (stable pagination)."""
        order = self._order
        return sorted((i for i in ids if i in order), key=order.__getitem__)

    def clear(self) -> None:
        self.records.clear()
        self._order.clear()
        for idx in self._index.values():
            idx.clear()

    def _index_one(self, name: str, record: Record, *, add: bool) -> None:
        key = NORMALIZERS[self.index_kinds[name]](record["fields"].get(name))
        if key is None:
            return
        bucket = self._index[name]
        if add:
            bucket.setdefault(key, set()).add(record["id"])
        else:
            ids = bucket.get(key)
            if ids is not None:
                ids.discard(record["id"])
                if not ids:
                    del bucket[key]

    def to_json(self) -> dict[str, Any]:
        return {"indexes": dict(self.index_kinds), "records": list(self.records.values())}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        table = cls(data.get("indexes") or {})
        for record in data.get("records") or []:
            table.put(record)
        return table


class Journal:
    """Undo log over :meth:`Table.put` / :meth:`Table.remove` (all-or-none writes)."""

    def __init__(self) -> None:
        self._undo: list[tuple[Table, str, Record | None]] = []

    def put(self, table: Table, record: Record) -> Record | None:
        previous = table.put(record)
        self._undo.append((table, record["id"], previous))
        return previous

    def remove(self, table: Table, record_id: str) -> Record | None:
        previous = table.remove(record_id)
        if previous is not None:
            self._undo.append((table, record_id, previous))
        return previous

    def rollback(self) -> None:
        for table, rid, previous in reversed(self._undo):
            if previous is None:
                table.remove(rid)
            else:
                table.put(previous)
        self._undo.clear()


# --------------------------------------------------------------------------- limits


class SlidingWindow:
    """At most ``limit`` events in any ``seconds``-long rolling window (event log)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._events: deque[float] = deque()

    def _trim(self, now: float) -> None:
        cutoff = now - self.seconds
        events = self._events
        while events and events[0] <= cutoff:
            events.popleft()

    def try_acquire(self, now: float) -> bool:
        self._trim(now)
        if len(self._events) >= self.limit:
            return False
        self._events.append(now)
        return True

    def remaining(self, now: float) -> int:
        self._trim(now)
        return max(0, self.limit - len(self._events))


class BucketCounter:
    """Approximate rolling count over ``window`` seconds in ``buckets`` slots (daily quotas)."""

    def __init__(self, window: float = 86400.0, buckets: int = 24) -> None:
        self.width = window / buckets
        self.buckets = buckets
        self._counts: dict[int, int] = {}

    def _slot(self, now: float) -> int:
        return int(now // self.width)

    def total(self, now: float) -> int:
        oldest = self._slot(now) - self.buckets + 1
        for slot in [s for s in self._counts if s < oldest]:
            del self._counts[slot]
        return sum(self._counts.values())

    def add(self, now: float, n: int = 1) -> None:
        slot = self._slot(now)
        self._counts[slot] = self._counts.get(slot, 0) + n


class Pacer:
    """Schedules at most ``per_second`` request starts per second; returns how long to wait."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._starts: deque[float] = deque(maxlen=per_second)

    def reserve(self, now: float) -> float:
        start = now
        if len(self._starts) == self.per_second:
            start = max(now, self._starts[0] + 1.0)
        self._starts.append(start)
        return start - now


# --------------------------------------------------------------------------- accounts, tokens, faults


@dataclass
class AccountStats:
    requests: int = 0
    rate_limited: int = 0
    faults: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)


@dataclass
class Account:
    """One CRM tenant (HubSpot portal, Salesforce org) with its records and settings."""

    crm: str
    name: str
    credentials: dict[str, Any]
    limits: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    counter: int = 100
    #: not persisted: rate windows, caches, cursors (rebuilt on demand)
    runtime: dict[str, Any] = field(default_factory=dict)
    stats: AccountStats = field(default_factory=AccountStats)

    def setting(self, key: str, default: Any = None) -> Any:
        """A limit or option by name (``options`` first, then ``limits``)."""
        if key in self.options:
            return self.options[key]
        return self.limits.get(key, default)

    def table(self, name: str, indexes: dict[str, str] | None = None) -> Table:
        """The table ``name``, created (with ``indexes``) on first use."""
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = Table(indexes)
        else:
            for fname, kind in (indexes or {}).items():
                table.add_index(fname, kind)
        return table

    def fixed_number(self, purpose: str, digits: int = 8) -> int:
        """A stable number derived from the account's name (portal id, company id, ...): two accounts of
        one CRM get different identities, and an account keeps its identity across restarts."""
        seed = hashlib.sha256(f"{self.crm}:{self.name}:{purpose}".encode()).digest()
        low = 10 ** (digits - 1)
        return low + int.from_bytes(seed[:8], "big") % (9 * low)

    def next_seq(self) -> int:
        self.counter += 1
        return self.counter

    def to_json(self) -> dict[str, Any]:
        return {
            "crm": self.crm,
            "account": self.name,
            "credentials": self.credentials,
            "limits": self.limits,
            "options": self.options,
            "meta": self.meta,
            "counter": self.counter,
            "tables": {name: t.to_json() for name, t in self.tables.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return cls(
            crm=data["crm"],
            name=data["account"],
            credentials=data.get("credentials") or {},
            limits=data.get("limits") or {},
            options=data.get("options") or {},
            meta=data.get("meta") or {},
            counter=int(data.get("counter") or 100),
            tables={n: Table.from_json(t) for n, t in (data.get("tables") or {}).items()},
        )


@dataclass
class Token:
    """A bearer token. ``expires_at`` is wall-clock epoch seconds; ``None`` = never (static)."""

    crm: str
    value: str
    account: str
    kind: str  # "static" or "issued"
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


FAULT_STATUSES = (429, 500, 502, 503)


@dataclass
class Fault:
    """An injected failure/latency rule (see ``POST /_sandbox/faults``)."""

    id: str
    crm: str | None = None
    account: str | None = None
    status: int | None = None
    rate: float | None = None
    count: int | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    path_contains: str | None = None

    def matches(self, crm: str, account: str | None, path: str, exempt: bool) -> bool:
        if self.crm is not None and self.crm != crm:
            return False
        if self.account is not None and self.account != account:
            return False
        if self.path_contains is not None:
            return self.path_contains in path
        return not exempt

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> Fault:
        """Validate an admin request body; raise ``ValueError`` with a readable message."""
        known = {"crm", "account", "status", "rate", "count", "retry_after", "latency_ms", "path_contains"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        status = body.get("status")
        if status is not None and status not in FAULT_STATUSES:
            raise ValueError(f"status must be one of {FAULT_STATUSES}")
        rate, count = body.get("rate"), body.get("count")
        if rate is not None and count is not None:
            raise ValueError("give either rate or count, not both")
        if rate is not None and not (isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0):
            raise ValueError("rate must be a number in [0, 1]")
        if count is not None and not (isinstance(count, int) and count > 0):
            raise ValueError("count must be a positive integer")
        retry_after = body.get("retry_after")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)) or retry_after < 0
        ):
            raise ValueError("retry_after must be a non-negative number of seconds")
        latency = body.get("latency_ms") or 0
        if not isinstance(latency, int) or latency < 0:
            raise ValueError("latency_ms must be a non-negative integer")
        if status is None and not latency:
            raise ValueError("a fault needs a status and/or latency_ms")
        return cls(
            id=uuid.uuid4().hex[:12],
            crm=body.get("crm"),
            account=body.get("account"),
            status=status,
            rate=float(rate) if rate is not None else None,
            count=count,
            retry_after=retry_after,
            latency_ms=latency,
            path_contains=body.get("path_contains"),
        )


class ConflictError(Exception):
    """Registration would make two accounts share a credential."""


# --------------------------------------------------------------------------- the state


class SandboxState:
    """All sandbox data. Thread-safe via ``self.lock`` (held by callers for compound work)."""

    def __init__(self, state_file: str | os.PathLike[str] | None = None) -> None:
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.accounts: dict[tuple[str, str], Account] = {}
        self.tokens: dict[tuple[str, str], Token] = {}
        self.faults: list[Fault] = []
        self.random = random.Random()

    # accounts -----------------------------------------------------------------

    def account(self, crm: str, name: str) -> Account | None:
        return self.accounts.get((crm, name))

    def accounts_of(self, crm: str) -> list[Account]:
        return [a for (c, _), a in self.accounts.items() if c == crm]

    def register_account(
        self,
        crm: str,
        name: str,
        credentials: dict[str, Any],
        *,
        limits: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        identity_keys: Iterable[str] = (),
        static_tokens: Iterable[str] = (),
    ) -> tuple[Account, bool]:
        """Create or update an account; keep its records when it already exists.

        ``identity_keys`` (e.g. ``"client:<id>"``) must not be shared with another
        account of the same CRM; ``static_tokens`` become never-expiring bearer tokens.
        Returns ``(account, created)``; raises :class:`ConflictError`.
        """
        keys = set(identity_keys)
        tokens = list(static_tokens)
        with self.lock:
            for other in self.accounts_of(crm):
                if other.name == name:
                    continue
                shared = keys & set(other.meta.get("identity_keys", []))
                if shared:
                    raise ConflictError(f"credentials already used by {crm} account {other.name!r}")
            for tok in tokens:
                existing = self.tokens.get((crm, tok))
                if existing is not None and existing.account != name:
                    raise ConflictError(f"access token already used by {crm} account {existing.account!r}")
            account = self.accounts.get((crm, name))
            created = account is None
            if account is None:
                account = self.accounts[(crm, name)] = Account(crm=crm, name=name, credentials={})
            account.credentials = dict(credentials)
            account.limits = dict(limits or {})
            account.options = dict(options or {})
            account.meta["identity_keys"] = sorted(keys)
            account.runtime.clear()
            for key, tok in list(self.tokens.items()):
                if tok.account == name and tok.crm == crm and tok.kind == "static":
                    del self.tokens[key]
            for tok in tokens:
                self.tokens[(crm, tok)] = Token(crm, tok, name, "static")
            return account, created

    def remove_account(self, crm: str, name: str) -> None:
        """Drop an account, its records and every token it was issued (a vendor account closed)."""
        with self.lock:
            self.accounts.pop((crm, name), None)
            for key, tok in list(self.tokens.items()):
                if tok.crm == crm and tok.account == name:
                    del self.tokens[key]

    # tokens -------------------------------------------------------------------

    def issue_token(self, account: Account, value: str, ttl_seconds: float) -> Token:
        token = Token(account.crm, value, account.name, "issued", time.time() + ttl_seconds)
        with self.lock:
            self.tokens[(account.crm, value)] = token
        return token

    def resolve_token(self, crm: str, value: str | None) -> tuple[Account | None, str]:
        """``(account, "ok")``, or ``(None, "missing" | "unknown" | "expired")``."""
        if not value:
            return None, "missing"
        token = self.tokens.get((crm, value))
        if token is None:
            return None, "unknown"
        if token.expired(time.time()):
            return None, "expired"
        account = self.accounts.get((crm, token.account))
        return (account, "ok") if account is not None else (None, "unknown")

    def expire_tokens(self, crm: str, name: str) -> int:
        """Expire every issued (not static) token of an account now; return how many."""
        now = time.time()
        n = 0
        with self.lock:
            for tok in self.tokens.values():
                if tok.crm == crm and tok.account == name and tok.kind == "issued" and not tok.expired(now):
                    tok.expires_at = now - 0.001
                    n += 1
        return n

    # faults -------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> int:
        with self.lock:
            n = len(self.faults)
            self.faults.clear()
            return n

    def take_fault(self, crm: str, account: str | None, path: str, *, exempt: bool = False) -> Fault | None:
        """The first fault that fires for this request (consuming one ``count``), if any."""
        with self.lock:
            for fault in self.faults:
                if not fault.matches(crm, account, path, exempt):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
                if fault.rate is None or self.random.random() < fault.rate:
                    return fault
        return None

    # whole state --------------------------------------------------------------

    def reset(self, *, keep_accounts: bool = False) -> None:
        """Forget everything; with ``keep_accounts`` only records, stats and faults."""
        with self.lock:
            self.faults.clear()
            if not keep_accounts:
                self.accounts.clear()
                self.tokens.clear()
                return
            for account in self.accounts.values():
                for table in account.tables.values():
                    table.clear()
                account.runtime.clear()
                account.stats = AccountStats()

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            return {
                "version": STATE_FORMAT_VERSION,
                "saved_at": now,
                "accounts": [a.to_json() for a in self.accounts.values()],
                "tokens": [t.__dict__.copy() for t in self.tokens.values() if not t.expired(now)],
            }

    def load_json(self, data: dict[str, Any]) -> None:
        if data.get("version") != STATE_FORMAT_VERSION:
            raise ValueError(f"unsupported state format {data.get('version')!r}")
        with self.lock:
            self.accounts = {}
            for raw in data.get("accounts") or []:
                account = Account.from_json(raw)
                self.accounts[(account.crm, account.name)] = account
            self.tokens = {}
            for raw in data.get("tokens") or []:
                tok = Token(**raw)
                self.tokens[(tok.crm, tok.value)] = tok
            self.faults = []

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the state as JSON (atomically); default path is ``state_file``."""
        target = Path(path) if path else self.state_file
        if target is None:
            raise ValueError("no state file configured")
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(self.to_json(), separators=(",", ":"))
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(payload, encoding="utf-8")
        os.replace(tmp, target)
        return target

    def load(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Load a saved state; return ``False`` when the file does not exist."""
        source = Path(path) if path else self.state_file
        if source is None or not source.exists():
            return False
        self.load_json(json.loads(source.read_text(encoding="utf-8")))
        return True

    @classmethod
    def from_file(cls, state_file: str | os.PathLike[str] | None) -> SandboxState:
        state = cls(state_file)
        state.load()
        return state
