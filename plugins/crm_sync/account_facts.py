"""Account facts that rarely change, kept per CRM account between runs (``crm_sync.account_facts``).

A run used to ask the CRM at every start what an account holds: the sync's HubSpot properties, the
Salesforce External ID fields, the ServiceTitan job defaults, the Housecall Pro job types, and which
account the credentials reach. With thousands of companies and a few check-ins each per cycle, that was
most of the calls. They are now checked once (:meth:`Destination.check_facts`), kept here with
``checked_at`` and ``expires_at`` (:data:`TTL_ENV`, 24 h by default), and re-checked when:

* the row expired, or is missing (delete it to force a re-check at the next run);
* the integration's credentials, ``crmSettings`` or ``syncSettings`` changed (:func:`fingerprint`):
  a reconnect to another account always changes the credentials, so the cached account identity is only
  trusted for the credentials it was read with;
* the CRM refused a write because a fact is wrong (:meth:`Destination.stale_fact`): the row goes, the
  facts are checked again in that run and the refused rows are sent once more.

No secret is stored: the facts are what the destination reads about the account, and the fingerprint is
a salted PBKDF2 hash that only tells configurations apart. Read and written without any CRM call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from crm_sync.clean import dumps_strict
from crm_sync.db import sql

log = logging.getLogger(__name__)

#: Hours a checked fact is trusted (a number; default :data:`DEFAULT_TTL_HOURS`; 0 re-checks every run).
TTL_ENV = "CRM_SYNC_ACCOUNT_FACTS_TTL_HOURS"
DEFAULT_TTL_HOURS = 24.0
#: PBKDF2 rounds of the fingerprint: cheap once per run, slow for anyone guessing a password from it.
FINGERPRINT_ROUNDS = 20_000


def ttl_seconds() -> float:
    """The expiry from :data:`TTL_ENV` (a bad value falls back to the default, with a log line)."""
    raw = os.environ.get(TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_TTL_HOURS * 3600
    try:
        hours = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of hours; using %s", TTL_ENV, raw, DEFAULT_TTL_HOURS)
        return DEFAULT_TTL_HOURS * 3600
    return max(hours, 0.0) * 3600


def fingerprint(company_id: int, crm_type: str, integration: Mapping[str, Any]) -> str:
    """What the facts depend on besides the account (credentials, ``crmSettings``, ``syncSettings``),
    as a salted PBKDF2 hash: equal for equal configurations, and no secret can be read back from it."""
    material = json.dumps(
        {k: integration.get(k) for k in ("credentials", "crmSettings", "syncSettings")}, sort_keys=True, default=str
    ).encode()
    salt = f"rankitpro-account-facts:{company_id}:{crm_type}".encode()
    return hashlib.pbkdf2_hmac("sha256", material, salt, FINGERPRINT_ROUNDS).hex()


@dataclass(frozen=True)
class AccountFacts:
    """One company x CRM account's facts store."""

    engine: sa.Engine
    company_id: int
    crm_type: str

    def _key(self, crm_account: str) -> dict[str, Any]:
        return {"company_id": self.company_id, "crm_type": self.crm_type, "crm_account": crm_account}

    def load(self, crm_account: str, config_fingerprint: str) -> dict[str, Any] | None:
        """The account's facts if checked with this configuration and not expired; else None."""
        with self.engine.connect() as conn:
            row = conn.execute(sql("account_facts_get"), self._key(crm_account)).first()
        if row is None or row.config_fingerprint != config_fingerprint or not isinstance(row.facts, dict):
            return None
        return row.facts

    def save(self, crm_account: str, config_fingerprint: str, facts: Mapping[str, Any]) -> None:
        """Keep ``facts`` as just checked (``checked_at`` now, expiring after :func:`ttl_seconds`)."""
        with self.engine.begin() as conn:
            conn.execute(
                sql("account_facts_upsert"),
                {
                    **self._key(crm_account),
                    "config_fingerprint": config_fingerprint,
                    "facts": dumps_strict(dict(facts)),
                    "ttl_seconds": ttl_seconds(),
                },
            )

    def invalidate(self, crm_account: str) -> None:
        """Forget the account's facts: the next check asks the CRM."""
        with self.engine.begin() as conn:
            conn.execute(sql("account_facts_delete"), self._key(crm_account))


__all__ = ["DEFAULT_TTL_HOURS", "TTL_ENV", "AccountFacts", "fingerprint", "ttl_seconds"]
