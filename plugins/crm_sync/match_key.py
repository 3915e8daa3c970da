"""Match keys: how the sync recognises a customer in a CRM (``email:ann@example.com``, ``phone:+15125550100``).

A match key is a kind and a normalised value. Its text form ``<kind>:<value>`` is what the customer map
(``crm_sync.customer_map.match_key``), :attr:`PreparedCheckIn.match_keys` and the destinations' lookups
use, so :meth:`MatchKey.parse` and :meth:`MatchKey.__str__` are the one place that text is read and
written. Values are normalised before they get here (:mod:`crm_sync.contacts`): an email lower-cased, a
phone in E.164, a name with its whitespace collapsed and lower-cased (:meth:`MatchKey.name`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from crm_sync.models import Customer


class MatchKind(StrEnum):
    """What a match key matches on."""

    EMAIL = "email"
    PHONE = "phone"
    NAME = "name"


#: The kinds that identify a person: two customers sharing one are duplicates (two "John Smith" are not).
IDENTITY_KINDS: frozenset[str] = frozenset({MatchKind.EMAIL, MatchKind.PHONE})


class MatchKey(NamedTuple):
    """One match key: ``kind`` (a :class:`MatchKind` value) and its normalised ``value``."""

    kind: str
    value: str

    @classmethod
    def parse(cls, text: str) -> MatchKey:
        """``"email:ann@example.com"`` -> ``MatchKey("email", "ann@example.com")`` (text without ":": value "")."""
        kind, _, value = text.partition(":")
        return cls(kind, value)

    @classmethod
    def email(cls, address: str) -> MatchKey:
        return cls(MatchKind.EMAIL, address)

    @classmethod
    def phone(cls, e164: str) -> MatchKey:
        return cls(MatchKind.PHONE, e164)

    @classmethod
    def name(cls, full_name: str) -> MatchKey:
        """A name key: whitespace collapsed, lower-cased."""
        return cls(MatchKind.NAME, " ".join(full_name.split()).lower())

    def format(self) -> str:
        """The text form, ``<kind>:<value>``."""
        return f"{self.kind}:{self.value}"

    __str__ = format

    @property
    def identifies_a_person(self) -> bool:
        return self.kind in IDENTITY_KINDS


def keys_for_customer(customer: Customer, strategy: str) -> list[str]:
    """The match keys (text form) of a normalised customer for a ``customerMatchStrategy``.

    ``all``: email, then phone. A name alone identifies nobody well ("John Smith"), so it is a key
    only for a customer that has neither; name searches are also the CRMs' costliest lookups.
    """
    keys = {
        MatchKind.EMAIL: str(MatchKey.email(customer.email)) if customer.email else None,
        MatchKind.PHONE: str(MatchKey.phone(customer.phone)) if customer.phone else None,
        MatchKind.NAME: str(MatchKey.name(customer.full_name)) if customer.full_name else None,
    }
    if strategy != "all":
        key = keys[MatchKind(strategy)]
        return [key] if key else []
    contact = [k for k in (keys[MatchKind.EMAIL], keys[MatchKind.PHONE]) if k]
    return contact or ([keys[MatchKind.NAME]] if keys[MatchKind.NAME] else [])


__all__ = ["IDENTITY_KINDS", "MatchKey", "MatchKind", "keys_for_customer"]
