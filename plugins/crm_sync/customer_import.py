"""Index the customers that already exist in a company's CRM, so the sync finds them instead of creating twins.

The sync resolves a check-in's customer through ``crm_sync.customer_map`` first, then
the CRM's own lookup. A CRM's lookup can be exact on the text it stores (Salesforce keeps
phones as typed: a customer typed as ``(512) 555-0142`` can be missed by a search for
``+15125550142`` in a format nobody guessed), free-text or fuzzy (Housecall Pro, Jobber),
or lag behind writes (HubSpot's search index); a miss creates a duplicate. The import reads every CRM customer
(:meth:`Destination.iter_customers`, the CRM's list endpoint), normalises its email
and phone with the very functions the sync applies to check-ins, builds the match
keys the sync will look up (``email:...``, ``phone:+1...``, ``name:...`` per the
integration's ``customerMatchStrategy``) and adds them to the customer map.

Rules worth knowing:

* A mapping that already exists is never overwritten (the sync's own mappings and
  earlier imports win; ``INSERT ... ON CONFLICT DO NOTHING``). Imported rows have
  ``created_by_sync = false``.
* Several CRM customers sharing a normalised email or phone are already duplicates
  of each other: the first one listed (the CRMs list oldest first) gets the key, and
  the report counts the groups with masked examples and their CRM ids.
* Keys are written page by page, so a crash keeps what was indexed and a re-run
  completes it.
* A CRM whose API cannot list customers (FieldEdge) is recorded as ``unsupported``, once.
* :func:`ensure_customer_index` runs the import once per company x CRM before its
  first sync (no successful import recorded yet) and is one indexed query afterwards.
  It never raises: a failed import is recorded in ``crm_sync.customer_imports`` and
  logged, and the sync goes on as it would have without it.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from crm_hooks.errors import CrmError
from crm_sync.accounts import bind_account
from crm_sync.clean import dumps_strict, storable_text
from crm_sync.contacts import normalize_email, normalize_phone, split_name
from crm_sync.db import sql
from crm_sync.destinations.base import CrmCustomerRecord, Destination, ReadNotSupported
from crm_sync.integrations import company_destination
from crm_sync.match_key import MatchKey, MatchKind, keys_for_customer
from crm_sync.models import Customer
from crm_sync.settings import parse_sync_settings
from crm_sync.text_table import Column, render

if TYPE_CHECKING:
    from crm_sync.integration_sync import IntegrationResult, SyncOptions

log = logging.getLogger(__name__)

#: Keys written per statement (one round trip per chunk, committed as it goes).
WRITE_CHUNK = 1000
#: Duplicate groups quoted in a report.
MAX_EXAMPLES = 10


# --------------------------------------------------------------------------- pure part
def customer_match_keys(record: CrmCustomerRecord, strategy: str) -> list[str]:
    """The match keys the sync would build for this CRM customer, plus its sync key when it carries one.

    Uses the sync's own normalisers and key builder (:mod:`crm_sync.contacts`, :mod:`crm_sync.match_key`), so a key
    written here is byte for byte the key a check-in of the same person looks up.
    """
    email, _ = normalize_email(record.email)
    phone, _, _ = normalize_phone(record.phone)
    first, last, _ = split_name(record.name)
    keys = keys_for_customer(Customer(email=email, phone=phone, first_name=first, last_name=last), strategy)
    if record.sync_key and record.sync_key not in keys:
        keys.append(record.sync_key)
    return keys


def identity_keys(keys: Iterable[str]) -> list[str]:
    """The keys that identify a person (email, phone): two customers sharing one are duplicates.

    Names are left out: two "John Smith" are usually two people.
    """
    return [k for k in keys if MatchKey.parse(k).identifies_a_person]


def mask_key(key: str) -> str:
    """A match key for a report: enough to recognise it, not the whole address or number."""
    kind, value = MatchKey.parse(key)
    if kind == MatchKind.EMAIL and "@" in value:
        local, _, domain = value.partition("@")
        return str(MatchKey(kind, f"{local[:1]}***@{domain}"))
    if kind == MatchKind.PHONE:
        return str(MatchKey(kind, f"{value[:2]}***{value[-4:]}"))
    return str(MatchKey(kind, f"{value[:1]}***"))


@dataclass
class DuplicateTracker:
    """CRM ids per identity key, to find customers that already share an email or phone."""

    ids_by_key: dict[str, list[str]] = field(default_factory=dict)

    def add(self, crm_id: str, keys: Iterable[str]) -> None:
        for key in identity_keys(keys):
            ids = self.ids_by_key.setdefault(key, [])
            if crm_id not in ids:
                ids.append(crm_id)

    def report(self, max_examples: int = MAX_EXAMPLES) -> tuple[int, int, list[dict[str, Any]]]:
        """(groups, customers in any group, examples): a group is a key shared by 2+ CRM customers."""
        groups = {k: ids for k, ids in self.ids_by_key.items() if len(ids) > 1}
        customers = {i for ids in groups.values() for i in ids}
        examples = [
            {"key": mask_key(k), "crm_ids": ids[:5], "customers": len(ids)}
            for k, ids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:max_examples]
        ]
        return len(groups), len(customers), examples


# --------------------------------------------------------------------------- result
@dataclass
class ImportResult:
    """One company x CRM import; one row of ``crm_sync.customer_imports``."""

    company_id: int
    crm_type: str
    trigger: str = "dag"
    run_id: str | None = None
    dag_id: str | None = None
    status: str = "running"
    customers_indexed: int = 0
    customers_without_keys: int = 0
    keys_added: int = 0
    keys_already_mapped: int = 0
    duplicate_groups: int = 0
    duplicate_customers: int = 0
    duplicate_examples: list[dict[str, Any]] = field(default_factory=list)
    api_calls: int = 0
    seconds: float = 0.0
    error: str | None = None
    #: the CRM account read (as the CRM reports it); its keys are bound to it (crm_sync.accounts)
    crm_account: str | None = None

    def summary(self) -> dict[str, Any]:
        """XCom- and log-safe: counts, masked examples, the redacted error."""
        return asdict(self)


# --------------------------------------------------------------------------- the import
def import_customers(
    engine: Engine,
    company_id: int,
    crm_type: str,
    integration: dict[str, Any],
    *,
    destination: Destination | None = None,
    trigger: str = "dag",
    run_id: str | None = None,
    dag_id: str | None = None,
    rate_share: float = 1.0,
    page_size: int | None = None,
    deadline: float | None = None,
) -> ImportResult:
    """Read every customer of the company's CRM into ``crm_sync.customer_map``; record and return the outcome.

    CRM errors (bad credentials, CRM down after retries, quota) end the import with
    ``status = 'failed'`` and the reason; keys written before the error stay. Any other
    exception is recorded the same way and re-raised (a bug must not look like success).
    """
    result = ImportResult(company_id=company_id, crm_type=crm_type, trigger=trigger, run_id=run_id, dag_id=dag_id)
    import_id = _start(engine, result)
    clock = time.monotonic()
    settings, _ = parse_sync_settings(integration.get("syncSettings"))
    built = destination is None
    unexpected: BaseException | None = None
    try:
        if destination is None:
            # Rotating refresh tokens (Jobber) are written back before use, as in the sync.
            destination = company_destination(engine, company_id, crm_type, integration, rate_share=rate_share)
        destination.hook.deadline = deadline  # the caller's time budget (a sync task's), if any
        _index(engine, destination, result, settings.customer_match_strategy, page_size)
        result.status = "success"
    except ReadNotSupported as exc:
        from crm_sync.accounts import bound_account

        # Final for the account the company x CRM is bound to (no CRM call was needed to learn this).
        result.status, result.error = "unsupported", str(exc)
        result.crm_account = bound_account(engine, company_id, crm_type)
    except CrmError as exc:
        result.status, result.error = "failed", _redact(destination, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        result.status, result.error = "failed", _redact(destination, f"{type(exc).__name__}: {exc}")
        unexpected = exc
    finally:
        if destination is not None:
            result.api_calls = destination.hook.stats.api_calls
            if built:
                destination.close()
        result.seconds = round(time.monotonic() - clock, 3)
        _finish(engine, import_id, result)
    level = logging.INFO if result.status == "success" else logging.WARNING
    log.log(
        level,
        "customer import company %s -> %s: %s, %d CRM customers, %d keys added, %d already mapped, "
        "%d duplicate groups (%d customers)%s",
        company_id,
        crm_type,
        result.status,
        result.customers_indexed,
        result.keys_added,
        result.keys_already_mapped,
        result.duplicate_groups,
        result.duplicate_customers,
        f": {result.error}" if result.error else "",
    )
    if unexpected is not None:
        raise unexpected
    return result


def ensure_customer_index(
    engine: Engine, company_id: int, crm_type: str, integration: dict[str, Any], **kwargs: Any
) -> ImportResult | None:
    """Import the CRM's customers once, before the first sync of this company x CRM; never raises.

    Returns None (one indexed query, no CRM call) once a successful import is recorded (or one that
    found the CRM cannot list customers: ``unsupported`` is final);
    otherwise the import's result, failed or not. A failure is logged and recorded, and
    the caller's sync goes on: the import is an improvement, never a precondition.

    A caller that syncs next passes its ``destination`` (see :func:`sync_with_index`): the import and the
    sync then share one hook, and a token the import fetched or rotated (Jobber kills the old refresh token
    at once) is the one the sync uses. Without one, the import builds its own; rotated tokens reach a later
    sync through the company's credentials store (:mod:`crm_sync.token_store`), never through ``integration``,
    which is not changed.
    """
    try:
        with engine.connect() as conn:
            done = conn.execute(sql("customer_import_done"), {"company_id": company_id, "crm_type": crm_type}).scalar()
        if done:
            return None
        return import_customers(
            engine, company_id, crm_type, integration, trigger=kwargs.pop("trigger", "auto"), **kwargs
        )
    except Exception as exc:  # the sync must run whatever happened here
        log.warning(
            "customer import before the first sync of company %s -> %s failed (%s); syncing anyway",
            company_id,
            crm_type,
            type(exc).__name__,
            exc_info=True,
        )
        return None


def sync_with_index(
    engine: Engine,
    company_id: int,
    crm_type: str,
    integration: dict[str, Any],
    *,
    run_id: str,
    dag_id: str | None,
    options: SyncOptions,
) -> IntegrationResult:
    """Sync one company x CRM through one destination: the CRM's customers indexed first (first sync only,
    :func:`ensure_customer_index`), then the sync (:class:`crm_sync.integration_sync.IntegrationSync`).

    The destination is built once and closed here; the index and the sync share its hook (and its token).
    The sync's run row counts its own CRM calls, as it would with a destination of its own: the index's calls
    are in its ``customer_imports`` row.
    """
    from crm_hooks.base import CallStats
    from crm_sync.integration_sync import IntegrationSync

    try:
        destination = company_destination(
            engine, company_id, crm_type, integration, rate_share=options.rate_share, max_attempts=options.max_attempts
        )
    except CrmError:
        # Settings the hook refuses: the index and the sync each try and record why (a failed import, a
        # config_error run), as they do with destinations of their own.
        destination = None
    try:
        ensure_customer_index(
            engine,
            company_id,
            crm_type,
            integration,
            destination=destination,
            run_id=run_id,
            dag_id=dag_id,
            rate_share=options.rate_share,
            deadline=options.deadline,
        )
        if destination is not None:
            destination.hook.stats = CallStats()
        return IntegrationSync(
            engine,
            company_id=company_id,
            crm_type=crm_type,
            integration=integration,
            run_id=run_id,
            dag_id=dag_id,
            options=options,
            destination=destination,
        ).run()
    finally:
        if destination is not None:
            destination.close()


def record_failure(
    engine: Engine,
    company_id: int,
    crm_type: str,
    error: str,
    *,
    trigger: str = "dag",
    run_id: str | None = None,
    dag_id: str | None = None,
) -> ImportResult:
    """An import that could not start (e.g. the integration's settings changed since discovery)."""
    result = ImportResult(
        company_id=company_id,
        crm_type=crm_type,
        trigger=trigger,
        run_id=run_id,
        dag_id=dag_id,
        status="failed",
        error=error,
    )
    import_id = _start(engine, result)
    _finish(engine, import_id, result)
    log.warning("customer import company %s -> %s not started: %s", company_id, crm_type, error)
    return result


def _start(engine: Engine, result: ImportResult) -> int:
    """The import's ``crm_sync.customer_imports`` row (its account is bound once the CRM listed customers)."""
    with engine.begin() as conn:
        return conn.execute(
            sql("customer_import_start"),
            {
                "run_id": result.run_id,
                "dag_id": result.dag_id,
                "trigger": result.trigger,
                "company_id": result.company_id,
                "crm_type": result.crm_type,
                "crm_account": None,
            },
        ).first()[0]


def imports_for(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The import rows of one DAG run (for the summary task)."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sql("customer_imports_for_run"), {"run_id": run_id}).mappings()]


def _company(row: dict[str, Any]) -> str:
    return f"{row['company_id']} {row.get('company_name') or ''}".strip()[:28]


#: The columns of :func:`format_imports`: one line per company x CRM import.
IMPORT_COLUMNS = (
    Column("company", 28, "<", _company),
    Column("crm", 13, "<", "crm_type"),
    Column("status", 8, "<"),
    Column("customers", 9, value="customers_indexed"),
    Column("keys added", 10, value="keys_added"),
    Column("already", 7, value="keys_already_mapped"),
    Column("no keys", 7, value="customers_without_keys"),
    Column("dup groups", 10, value="duplicate_groups"),
    Column("dup cust.", 9, value="duplicate_customers"),
    Column("calls", 6, value="api_calls"),
)


def format_imports(rows: Iterable[dict[str, Any]]) -> str:
    """A fixed-width table of import rows, then the duplicate examples and errors."""
    rows = list(rows)
    lines = render(IMPORT_COLUMNS, rows)
    notes: list[str] = []
    for r in rows:
        name = _company(r)
        if r.get("error"):
            notes.append(f"  {name} {r['crm_type']}: {r['error']}")
        examples = r.get("duplicate_examples") or []
        if isinstance(examples, str):
            examples = json.loads(examples)
        for ex in examples:
            notes.append(
                f"  {name} {r['crm_type']}: {ex['customers']} CRM customers share {ex['key']} "
                f"(ids {', '.join(ex['crm_ids'])})"
            )
    return "\n".join(lines + (["", "Notes:"] + notes if notes else []))


# --------------------------------------------------------------------------- internals
def _index(
    engine: Engine, destination: Destination, result: ImportResult, strategy: str, page_size: int | None
) -> None:
    duplicates = DuplicateTracker()
    seen: set[str] = set()
    pending: dict[str, tuple[str, str | None]] = {}
    records = iter(destination.iter_customers(page_size=page_size))
    # A CRM that cannot list customers says so on the first read, before any other call is made.
    first = next(records, None)
    # The keys are the account's: bind first (an account change archives the old account's map).
    result.crm_account = bind_account(
        engine, result.company_id, result.crm_type, destination.account_identity()
    ).account
    try:
        for record in itertools.chain([first] if first is not None else [], records):
            result.customers_indexed += 1
            keys = customer_match_keys(record, strategy)
            # Duplicates are judged on email and phone whatever the strategy: they are what a person is.
            duplicates.add(record.crm_id, customer_match_keys(record, "all"))
            if not keys:
                result.customers_without_keys += 1
                continue
            for key in keys:
                if key not in seen:  # the first customer listed with a key gets it
                    seen.add(key)
                    pending[key] = (record.crm_id, record.parent_id)
            if len(pending) >= WRITE_CHUNK:
                _write(engine, result, pending)
    finally:
        _write(engine, result, pending)
        result.duplicate_groups, result.duplicate_customers, result.duplicate_examples = duplicates.report()


def _write(engine: Engine, result: ImportResult, pending: dict[str, tuple[str, str | None]]) -> None:
    if not pending:
        return
    keys = list(pending)
    with engine.begin() as conn:
        added = (
            conn.execute(
                sql("customer_import_map_insert"),
                {
                    # CRM-sent names may hold NUL / lone surrogates: stored cleaned, as the sync looks them up.
                    "company_id": result.company_id,
                    "crm_type": result.crm_type,
                    "match_keys": [storable_text(k) for k in keys],
                    "crm_account": result.crm_account,
                    "crm_customer_ids": [pending[k][0] for k in keys],
                    "crm_parent_ids": [pending[k][1] for k in keys],
                },
            )
            .scalars()
            .all()
        )
    result.keys_added += len(added)
    result.keys_already_mapped += len(keys) - len(added)
    pending.clear()


def _finish(engine: Engine, import_id: int, result: ImportResult) -> None:
    row = {
        k: v for k, v in result.summary().items() if k not in ("company_id", "crm_type", "trigger", "run_id", "dag_id")
    }
    row.update(id=import_id, finished_at=datetime.now(UTC), duplicate_examples=dumps_strict(result.duplicate_examples))
    with engine.begin() as conn:
        conn.execute(sql("customer_import_finish"), row)


def _redact(destination: Destination | None, text: str) -> str:
    text = text[:1000]
    return destination.hook.redact(text) if destination is not None else text


__all__ = [
    "DuplicateTracker",
    "ImportResult",
    "customer_match_keys",
    "ensure_customer_index",
    "format_imports",
    "import_customers",
    "imports_for",
    "mask_key",
    "record_failure",
    "sync_with_index",
]
