"""Identity: which check-ins of a batch are one person, decided before any claim or CRM call.

Pure (no database, no network). :func:`group_people` joins a batch's prepared rows into
:class:`Person` groups by their match keys (:mod:`crm_sync.match_key`), transitively and whatever
the rows' order:

* rows sharing an email are one person; so are rows sharing a name key (a name is a match key
  only where ``customerMatchStrategy`` makes it one, see :func:`keys_for_customer`);
* rows sharing a phone are one person, except that two groups with *different* emails on one
  phone are a real ambiguity (households share phones). ``syncSettings.householdPhoneRule``
  decides (:data:`HOUSEHOLD_RULES`): ``same_name`` (default) joins them only when their normalised
  names match, ``same_person`` always joins them, ``separate`` never does. Rows with the phone and
  no email join the group whose name matches, else the group of the oldest check-in.

Every join of different emails is a ``merge`` :class:`Decision`, every phone kept apart a
``split``; the engine reports both in the run summary (:func:`describe`, values masked).

Each group gets one customer key, deterministic from the group: the first match key of its oldest
check-in (lowest id), so a re-run of the same rows after a crash picks the same key. Its customer
payload for a create is the newest row's, with a missing email, phone, name or address taken from
the other rows, newest first (:func:`merged_customer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from crm_sync.match_key import MatchKey, MatchKind
from crm_sync.models import HOUSEHOLD_RULES, Customer, PreparedCheckIn

DEFAULT_HOUSEHOLD_RULE = HOUSEHOLD_RULES[0]

_KIND_ORDER = {MatchKind.EMAIL: 0, MatchKind.PHONE: 1, MatchKind.NAME: 2}


@dataclass
class Person:
    """One person of a batch: their rows (oldest first), one customer key, every key, a merged customer."""

    customer_key: str
    rows: list[PreparedCheckIn]
    #: every match key of every row: emails, then phones, then names (the order lookups use)
    keys: list[str]
    customer: Customer

    @property
    def emails(self) -> set[str]:
        return {MatchKey.parse(k).value for k in self.keys if MatchKey.parse(k).kind == MatchKind.EMAIL}

    @property
    def names(self) -> set[str]:
        return {n for r in self.rows if (n := normalised_name(r.customer))}

    @property
    def check_in_ids(self) -> list[int]:
        return [r.check_in_id for r in self.rows]

    def representative(self) -> PreparedCheckIn:
        """The newest row carrying the merged customer and every key: what a customer create sends."""
        newest = self.rows[-1]
        rep = dataclasses.replace(newest, customer=self.customer, match_keys=list(self.keys))
        rep.customer_key = self.customer_key
        rep.warnings = newest.warnings  # a destination's warning about the customer lands on a real row
        return rep


@dataclass(frozen=True)
class Decision:
    """A household decision: rows with different emails on one phone joined (``merge``) or kept apart."""

    kind: str  # "merge" | "split"
    phone: str  # the shared phone key, e.g. "phone:+13035550325"
    groups: tuple[tuple[int, ...], ...]  # check-in ids of each side
    rule: str
    reason: str = ""


@dataclass
class _Cluster:
    """What the household rule looks at of a group being built: its check-in ids, emails and names."""

    ids: list[int] = field(default_factory=list)
    emails: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    @property
    def oldest(self) -> int:
        return min(self.ids)


def normalised_name(customer: Customer) -> str | None:
    """A name compared for the household rule: whitespace collapsed, case-folded ("linda  KOWALSKI")."""
    return normalised_name_text(customer.full_name)


def normalised_name_text(name: str | None) -> str | None:
    """:func:`normalised_name` of a name as a CRM holds it."""
    return " ".join((name or "").split()).casefold() or None


def same_person(emails_a: set[str], names_a: set[str], emails_b: set[str], names_b: set[str], rule: str) -> bool:
    """Whether two sides sharing a phone are one person under ``rule``.

    A side without an email, or sides with an email in common, never conflict. Different emails:
    ``same_person`` yes, ``separate`` no, ``same_name`` only when a normalised name matches.
    """
    if not emails_a or not emails_b or emails_a & emails_b:
        return True
    if rule == "same_person":
        return True
    if rule == "separate":
        return False
    return bool(names_a & names_b)


class _Sets:
    """Union-find over row indexes; the root is always the lowest index (deterministic) and holds its
    group's :class:`_Cluster`, merged on each union (so the rule never rescans the batch)."""

    def __init__(self, rows: list[PreparedCheckIn]):
        self.parent = list(range(len(rows)))
        # Emails count only where they are match keys (customerMatchStrategy "phone": one phone, one person).
        self.cluster = [
            _Cluster(
                [r.check_in_id],
                {MatchKey.parse(k).value for k in r.match_keys if MatchKey.parse(k).kind == MatchKind.EMAIL},
                {n} if (n := normalised_name(r.customer)) else set(),
            )
            for r in rows
        ]

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        keep, gone = min(ra, rb), max(ra, rb)
        self.parent[gone] = keep
        kept, merged = self.cluster[keep], self.cluster[gone]
        kept.ids += merged.ids
        kept.emails |= merged.emails
        kept.names |= merged.names
        return True


def group_people(
    rows: Sequence[PreparedCheckIn], rule: str = DEFAULT_HOUSEHOLD_RULE
) -> tuple[list[Person], list[Decision]]:
    """The batch's people (oldest first) and the household decisions taken on the way.

    Rows without match keys are ignored (they are quarantined before this). Same input rows in any
    order give the same people, keys and decisions.
    """
    ordered = sorted((r for r in rows if r.match_keys), key=lambda r: r.check_in_id)
    sets = _Sets(ordered)
    by_key: dict[str, list[int]] = {}
    for i, row in enumerate(ordered):
        for key in row.match_keys:
            by_key.setdefault(key, []).append(i)
    # 1. Email and name keys join unconditionally.
    for key, members in by_key.items():
        if MatchKey.parse(key).kind != MatchKind.PHONE:
            for j in members[1:]:
                sets.union(members[0], j)
    # 2. Phones, until nothing changes (a join by one phone can allow or forbid one by another).
    phones = sorted(k for k in by_key if MatchKey.parse(k).kind == MatchKind.PHONE)
    decided: dict[tuple[str, frozenset[int]], Decision] = {}
    changed = True
    while changed:
        changed = False
        for phone in phones:
            changed |= _join_phone(phone, by_key[phone], sets, rule, decided)
    groups: dict[int, list[PreparedCheckIn]] = {}
    for i, row in enumerate(ordered):
        groups.setdefault(sets.find(i), []).append(row)
    people = [_person(group) for _, group in sorted(groups.items())]
    return people, _final_decisions(decided.values(), people)


def _join_phone(
    phone: str,
    members: list[int],
    sets: _Sets,
    rule: str,
    decided: dict[tuple[str, frozenset[int]], Decision],
) -> bool:
    roots = sorted({sets.find(i) for i in members})
    if len(roots) < 2:
        return False
    emailed = [r for r in roots if sets.cluster[r].emails]
    bare = [r for r in roots if not sets.cluster[r].emails]
    changed = False
    # Groups with emails: pairwise by the rule, oldest first (a join makes the older group the survivor).
    for a_index, a in enumerate(emailed):
        for b in emailed[a_index + 1 :]:
            ra, rb = sets.find(a), sets.find(b)
            if ra == rb:
                continue
            ca, cb = sets.cluster[ra], sets.cluster[rb]
            key = (phone, frozenset((ca.oldest, cb.oldest)))
            sides = (tuple(sorted(ca.ids)), tuple(sorted(cb.ids)))
            if same_person(ca.emails, ca.names, cb.emails, cb.names, rule):
                decided[key] = Decision("merge", phone, sides, rule, _merge_reason(ca, cb, rule))
                changed |= sets.union(ra, rb)
            else:
                reason = "householdPhoneRule is separate" if rule == "separate" else "different names"
                decided.setdefault(key, Decision("split", phone, sides, rule, reason))
    # Rows with the phone and no email: the emailed group with their name, else the oldest group.
    targets = sorted({sets.find(r) for r in emailed})
    for b in bare:
        if targets:
            names = sets.cluster[sets.find(b)].names
            target = next((t for t in targets if names & sets.cluster[t].names), targets[0])
        else:
            target = min(bare)
        changed |= sets.union(target, b)
    return changed


def _merge_reason(a: _Cluster, b: _Cluster, rule: str) -> str:
    return "same name" if a.names & b.names else f"householdPhoneRule is {rule}"


def _final_decisions(decisions: Iterable[Decision], people: list[Person]) -> list[Decision]:
    """Decisions as the people ended up: a split whose sides were joined later (by another key) is dropped."""
    person_of = {cid: i for i, p in enumerate(people) for cid in p.check_in_ids}
    out = []
    for d in decisions:
        sides = {person_of.get(side[0]) for side in d.groups}
        if d.kind == "split" and len(sides) == 1:
            continue
        out.append(d)
    return sorted(out, key=lambda d: (d.phone, d.groups))


def _person(rows: list[PreparedCheckIn]) -> Person:
    rows = sorted(rows, key=lambda r: r.check_in_id)
    keys = list(dict.fromkeys(k for r in rows for k in r.match_keys))
    keys.sort(key=lambda k: _KIND_ORDER.get(MatchKey.parse(k).kind, 9))  # stable: row order within a kind
    return Person(customer_key=rows[0].match_keys[0], rows=rows, keys=keys, customer=merged_customer(rows))


def merged_customer(rows: Sequence[PreparedCheckIn]) -> Customer:
    """The newest row's customer; a missing email, phone, name or address taken from older rows (newest first).

    A name and an address are taken whole (first + last name, street + city + state + zip + country),
    never assembled from pieces of different check-ins.
    """
    newest_first = sorted(rows, key=lambda r: r.check_in_id, reverse=True)
    merged = newest_first[0].customer
    for row in newest_first[1:]:
        c = row.customer
        changes: dict[str, str | None] = {}
        if not merged.email and c.email:
            changes["email"] = c.email
        if not merged.phone and c.phone:
            changes.update(phone=c.phone, phone_extension=c.phone_extension)
        if not merged.full_name and c.full_name:
            changes.update(first_name=c.first_name, last_name=c.last_name)
        if not merged.street and c.street:
            changes.update(street=c.street, city=c.city, state=c.state, zip=c.zip, country=c.country)
        if changes:
            merged = dataclasses.replace(merged, **changes)
    return merged


def mask_key(key: str) -> str:
    """A match key safe for a report: ``phone:+1•••••••0325``, ``email:l•••@example.com``."""
    kind, value = MatchKey.parse(key)
    if kind == MatchKind.PHONE:
        return f"phone:{value[:2]}{'•' * max(len(value) - 6, 0)}{value[-4:]}"
    if kind == MatchKind.EMAIL:
        local, _, domain = value.partition("@")
        return f"email:{local[:1]}•••@{domain}"
    return f"{kind}:•••"


def describe(decision: Decision) -> str:
    """One summary line for a decision: check-in ids and the masked phone, never a raw email or phone."""
    sides = "check-ins " + " and ".join(", ".join(f"#{i}" for i in side[:5]) for side in decision.groups)
    if decision.kind == "merge":
        return (
            f"identity: merged {sides} into one customer (different emails, shared {mask_key(decision.phone)}; "
            f"{decision.reason})"
        )
    return (
        f"identity: kept {sides} as different customers (different emails, shared {mask_key(decision.phone)}; "
        f"{decision.reason})"
    )


__all__ = [
    "DEFAULT_HOUSEHOLD_RULE",
    "HOUSEHOLD_RULES",
    "Decision",
    "Person",
    "describe",
    "group_people",
    "mask_key",
    "merged_customer",
    "normalised_name",
    "normalised_name_text",
    "same_person",
]
