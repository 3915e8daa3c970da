"""What the tasks of every sync DAG share: the database of a connection, discovery, param errors, failures.

The one place where a task turns an Airflow connection into a SQLAlchemy engine (:func:`sync_db`), finds the
companies to work on (:func:`discover`) and fails without a retry on a bad param (:func:`param_errors`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy.engine import URL, Engine

from crm_hooks.registry import HOOKS
from crm_sync.db import RANKITPRO_CONN_ID, make_engine, migrate
from crm_sync.integrations import ConfigProblem
from crm_sync.integrations import discover as discover_integrations

log = logging.getLogger(__name__)

#: libpq settings read from a connection's top-level extras. ``PostgresHook.sqlalchemy_url`` takes only the
#: ``sqlalchemy_query`` extra, so these are added to its query (unless ``sqlalchemy_query`` already sets them).
LIBPQ_EXTRAS = ("sslmode", "options", "application_name")

#: The param errors: raised by the domain modules for a param that cannot work (a date range upside down, a
#: path out of its folder, a missing CRM type), and by ``int()`` / ``float()`` on a param that is no number.
ParamErrors = (ValueError, TypeError)


def connection_url(conn_id: str = RANKITPRO_CONN_ID) -> URL:
    """The psycopg 3 SQLAlchemy URL of an Airflow Postgres connection.

    Built by the Postgres provider (``PostgresHook.sqlalchemy_url``): the ``postgresql+psycopg`` driver, the
    connection's fields, and its ``sqlalchemy_query`` extra as the URL's query, e.g.
    ``{"sqlalchemy_query": {"host": "/var/run/postgresql"}}`` for a Unix socket directory. A socket directory
    as the connection's ``host`` works too (libpq reads a host starting with ``/`` as one). The top-level extras
    :data:`LIBPQ_EXTRAS` are kept as before; an empty ``schema`` is the ``postgres`` database.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id)
    url = hook.sqlalchemy_url
    if url.drivername == "postgresql":  # the provider's psycopg2 default: this project runs on psycopg 3
        url = url.set(drivername="postgresql+psycopg")
    if not url.database:
        url = url.set(database="postgres")
    extras = hook.connection.extra_dejson or {}
    query = {k: str(extras[k]) for k in LIBPQ_EXTRAS if k in extras and k not in url.query}
    return url.update_query_dict(query) if query else url


@contextlib.contextmanager
def sync_db(conn_id: str = RANKITPRO_CONN_ID, *, migrated: bool = False, **engine_kwargs: Any) -> Iterator[Engine]:
    """An engine for the connection ``conn_id``, disposed of when the block ends.

    ``migrated``: apply the sync schema's pending migrations first (tasks that may run before any sync).
    ``engine_kwargs`` go to :func:`crm_sync.db.make_engine` (e.g. ``hide_parameters=True``).
    """
    engine = make_engine(connection_url(conn_id), **engine_kwargs)
    try:
        if migrated:
            migrate(engine)
        yield engine
    finally:
        engine.dispose()


def params_of(context: Mapping[str, Any]) -> dict[str, Any]:
    """The run's params (a copy; ``{}`` when the task is called without any)."""
    return dict(context.get("params") or {})


@contextlib.contextmanager
def param_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Inside the block, a param error fails the task at once: no retry, a bad param is just as bad on the next
    try. The errors are ``kinds``, by default :data:`ParamErrors`: then wrap the reading of params only, never
    database or CRM work (whose ``ValueError`` may be worth a retry)."""
    caught: tuple[type[Exception], ...] = kinds or ParamErrors
    try:
        yield
    except caught as exc:
        raise AirflowFailException(str(exc)) from None


def wants(crm_type: str, context: Mapping[str, Any]) -> bool:
    """Whether the run's ``crm_types`` param (empty: every CRM) includes ``crm_type``."""
    wanted = params_of(context).get("crm_types") or None
    return not wanted or crm_type in wanted


@dataclass(frozen=True)
class Discovery:
    """The companies to work on for one CRM type, and the configuration problems found on the way."""

    company_ids: list[int]
    problems: list[ConfigProblem]


def discover(
    engine: Engine,
    crm_type: str | None,
    *,
    purpose: str,
    company_ids: Sequence[int] | None = None,
    on_problem: Callable[[ConfigProblem], Any] | None = None,
) -> Discovery:
    """Migrate the sync schema if needed, then find the companies with an active, usable ``crm_type``
    integration (:func:`crm_sync.integrations.discover`), among ``company_ids`` when given.

    Only this CRM's problems are kept. ``crm_type`` None: every CRM type, and only the problems no CRM's task
    owns (malformed JSON, unknown or unsupported CRM types: ``check_configurations``' to report). Each kept
    problem is logged and handed to ``on_problem`` (e.g. recorded as a ``config_error`` run); ``purpose``
    (``"sync into"``, ``"reconcile against"``...) says what the companies are found for, in the log.
    """
    migrate(engine)
    items, problems = discover_integrations(
        engine,
        crm_types=None if crm_type is None else [crm_type],
        company_ids=list(company_ids) if company_ids else None,
    )
    problems = (
        [p for p in problems if p.crm_type == crm_type]
        if crm_type is not None
        else [p for p in problems if p.crm_type is None or p.crm_type not in HOOKS]
    )
    for p in problems:
        log.warning("company %s (%s) %s: %s", p.company_id, p.company_name, p.crm_type or "-", p.error)
        if on_problem is not None:
            on_problem(p)
    found = Discovery([item.company_id for item in items], problems)
    if crm_type is not None:
        log.info(
            "%d companies to %s %s; %d with configuration problems",
            len(found.company_ids),
            purpose,
            crm_type,
            len(problems),
        )
    return found


def config_error_recorder(engine: Engine, context: Mapping[str, Any]) -> Callable[[ConfigProblem], None]:
    """An ``on_problem`` for :func:`discover`: each problem becomes a ``config_error`` run of this DAG run (and an
    entry in the app's sync history), once per run (:func:`crm_sync.summary.record_config_problem`)."""
    from crm_sync.summary import record_config_problem

    def record(p: ConfigProblem) -> None:
        record_config_problem(engine, context["run_id"], context["dag"].dag_id, p.company_id, p.crm_type, p.error)

    return record


def failed_upstream(context: Mapping[str, Any], task_ids: list[str] | None = None) -> int:
    """Failed (or upstream_failed) task instances of this DAG run among ``task_ids``.

    Default: every task upstream of the current one, at any depth. Uses the Task SDK's
    ``ti.get_ti_count``, so it counts mapped task instances one by one (one per company).
    """
    dag = context["dag"]
    ids = sorted(task_ids if task_ids is not None else context["task"].get_flat_relative_ids(upstream=True))
    if not ids:
        return 0
    return int(
        context["ti"].get_ti_count(
            dag_id=dag.dag_id, task_ids=ids, run_ids=[context["run_id"]], states=["failed", "upstream_failed"]
        )
        or 0
    )


def check_failures(**context: Any) -> str:
    """The leaf task of a DAG whose summary task runs ``all_done``: fail when any task of the run failed.

    A summary that runs after failures is a leaf that succeeds, and Airflow sets a DAG run's state
    from its leaves: without this task a run whose sync tasks failed would end ``success`` and no
    failure notification would fire. The other companies' tasks have run to the end by then.
    """
    failed = failed_upstream(context)
    if failed:
        raise AirflowFailException(
            f"{failed} task instance(s) of this run failed: see their logs (the other "
            "companies were processed; the summary task lists the outcome)"
        )
    return "no task of this run failed"


def check_failures_task() -> Any:
    """Add :func:`check_failures` to the DAG being defined, as every DAG needs it: after all the
    other tasks whatever happened to them (``all_done``), and never retried (a retry cannot change
    what already failed)."""
    from airflow.sdk import task

    return task(task_id="check_failures", trigger_rule="all_done", retries=0)(check_failures)()
