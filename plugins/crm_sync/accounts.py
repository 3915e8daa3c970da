"""Which CRM account a company x CRM's sync state belongs to, and what happens when it changes.

The customer map and the ledger hold CRM record ids (contact 101, job 7). Those ids only mean
something in the account that issued them: a company that reconnects its integration to another
HubSpot portal (Salesforce org, ServiceTitan tenant, Jobber account, Housecall Pro company,
FieldEdge tenant) has a contact 101 too, a different person. Every such row therefore names its
account (``crm_account``: the identity the CRM reports, :meth:`CrmHook.account_identity`), and
:func:`bind_account` is the one place that decides which account's rows are live:

* **First binding** (the first run after migration 0007, or the first run ever): rows without an
  account (written before 0007) are adopted by the account the integration reports now. That is
  the only safe guess, and it is true unless the account changed between their last write and that
  run; nothing stored could tell the difference.
* **Same account**: nothing to do.
* **Another account**: the old account's ledger and customer-map rows move to
  ``crm_sync.ledger_archive`` / ``crm_sync.customer_map_archive`` (history; nothing of a sync of
  another account reads them), rows this company had in the new account before (a reconnect back)
  are restored, and the integration's id horizon restarts at 0. The new account is then synced as
  a first sync is: its customers are indexed first, and every check-in of the company without a
  ledger row *of that account* is sent (the whole history, as for any first sync; already synced
  ones are not re-sent when the company returns to an account it used before).

All three run in one transaction under a per company x CRM advisory lock, so the sync, a customer
import and a reconciliation that meet a change at the same time switch once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from crm_sync.db import sql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountBinding:
    """The account a company x CRM is bound to after :func:`bind_account`.

    ``previous`` is the account it was bound to before the last change, while no sync run has
    reported that change yet (``change_reported``); a sync run reports it once.
    """

    account: str
    previous: str | None = None
    change_reported: bool = True
    adopted_rows: int = 0

    @property
    def changed(self) -> bool:
        """An account change no sync run has reported yet."""
        return self.previous is not None and not self.change_reported

    def change_message(self) -> str:
        return (
            f"CRM account changed from {self.previous} to {self.account}: the old account's mappings and "
            "ledger are kept as its history, the new account's customers are indexed and it is synced as "
            "a first sync"
        )


def bound_account(engine: Engine, company_id: int, crm_type: str) -> str | None:
    """The account the live rows belong to (no CRM call), or None before the first binding."""
    with engine.connect() as conn:
        row = conn.execute(sql("account_binding_get"), {"company_id": company_id, "crm_type": crm_type}).first()
    return row.crm_account if row else None


def bind_account(engine: Engine, company_id: int, crm_type: str, account: str) -> AccountBinding:
    """Make ``account`` the one whose rows are live for this company x CRM (see the module docstring)."""
    if not account:
        raise ValueError("an empty CRM account identity cannot be bound")
    keys = {"company_id": company_id, "crm_type": crm_type}
    with engine.begin() as conn:
        conn.execute(sql("account_lock"), keys)
        row = conn.execute(sql("account_binding_get"), keys).first()
        if row is None:
            counts = conn.execute(sql("account_adopt"), {**keys, "crm_account": account}).first()
            adopted = int(counts.ledger_rows) + int(counts.map_rows)
            if adopted:
                log.info(
                    "company %s -> %s: %d rows written before accounts were recorded adopted by account %s",
                    company_id,
                    crm_type,
                    adopted,
                    account,
                )
            return AccountBinding(account, adopted_rows=adopted)
        if row.crm_account == account:
            return AccountBinding(account, row.previous_account, bool(row.change_reported))
        params = {**keys, "crm_account": account, "previous_account": row.crm_account}
        for name in (
            "account_archive_ledger",
            "account_archive_customer_map",
            "account_restore_ledger",
            "account_restore_customer_map",
            "account_switch",
        ):
            conn.execute(sql(name), params)
    log.warning(
        "company %s -> %s: CRM account changed from %s to %s; old rows archived",
        company_id,
        crm_type,
        row.crm_account,
        account,
    )
    return AccountBinding(account, row.crm_account, change_reported=False)


def mark_change_reported(engine: Engine, company_id: int, crm_type: str, account: str) -> None:
    """A sync run has told the change (its warning and run row): later runs do not repeat it."""
    with engine.begin() as conn:
        conn.execute(
            sql("account_change_reported"), {"company_id": company_id, "crm_type": crm_type, "crm_account": account}
        )
