"""Airflow Assets shared by the CRM DAGs (one place, so producer and consumer name them alike).

``CRM_SYNC_LEDGER``: ``crm_incremental_sync`` updates it (the ``summarize`` task, once per run, declares it
as an outlet); ``crm_reconciliation_report`` can be scheduled on it as well as daily.
"""

from __future__ import annotations

from airflow.sdk import Asset

CRM_SYNC_LEDGER = Asset(name="crm_sync_ledger", uri="x-rankitpro://crm_sync/ledger", group="crm_sync")


def reconcile_on_ledger_update() -> bool:
    """Airflow config ``[crm_sync] reconcile_on_ledger_update`` (environment variable
    ``AIRFLOW__CRM_SYNC__RECONCILE_ON_LEDGER_UPDATE``), read when the DAG file is parsed: also run the
    reconciliation after every incremental sync run. Off by default, because that is every 15 minutes."""
    from airflow.configuration import conf

    return conf.getboolean("crm_sync", "reconcile_on_ledger_update", fallback=False)
