"""Merge the sync's own duplicate CRM customers (the ``crm_merge_duplicates`` DAG).

Earlier versions of the sync sometimes made two CRM customers for one person (a check-in with an email,
another without; phones typed differently). The reconciliation report lists them as ``duplicate``; this
module repairs them, per company x CRM:

1. **Plan** (pure, :func:`plan_merges`): the CRM's customers (:meth:`Destination.iter_customers`; for a CRM
   that cannot list them, FieldEdge, each customer the sync sent check-ins to, with the newest name, email and
   phone of those check-ins) are grouped into people: two customers are one person when they share a
   normalised email, or share a normalised phone and their emails do not disagree. Two *different* emails on
   one phone are a household question, answered by the integration's ``syncSettings.householdPhoneRule``
   (:func:`household_rule`): ``same_name`` (default: one person only when the names match too),
   ``same_person`` (always one person), ``separate`` (never). A group with two customers the rule keeps apart
   (e.g. A and C with different emails, joined through B that has none) is ambiguous and left alone; so is,
   unless the rule is ``same_person``, a group where two customers share only a phone and their names differ
   (a merge cannot be undone), and a group of more than :data:`MAX_GROUP` (a shared or placeholder number). Only
   groups the sync made are touched: at least one member created by the sync, and every member but the
   survivor created by the sync (a customer the company made itself is never merged away; two of them in one
   group: the group is listed, not merged).
2. **Survivor**: the company's own customer when the group has one; otherwise the one holding the most
   check-ins in the ledger, then the one the sync mapped first, then the lowest CRM id. Each group says why.
3. **Apply** (not with ``dry_run``), one database transaction per group: every ``customer_map`` row and every
   ledger row of a merged-away customer is re-pointed to the survivor, so future check-ins go to it; a
   journal row ``merged:<crm id> -> survivor`` (``created_by_sync``) remembers that the merged-away customer
   was the sync's (so a re-run after a crash still knows). Then, where the CRM's API can merge
   (:meth:`Destination.merge_customers`: HubSpot), the CRM merges them; elsewhere the group is listed for a
   person to merge in the CRM, and the visit records already on the merged-away customer stay there until then.

Every group goes to a CSV file (:data:`CSV_COLUMNS`) in ``<CRM_SYNC_REPORT_DIR>/<run id>/``. The task log and
XCom carry counts and CRM ids only (no names, emails or phones). A re-run finds nothing left to merge in the
CRMs that merge, and lists the same groups again (changing nothing) in the others until a person merged them.

Concurrency: the whole run holds the same advisory lock as the sync of that company x CRM
(``include/sql/customer_merge_lock.sql`` = ``IntegrationSync._try_lock``), so no sync runs meanwhile.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from crm_hooks.errors import CrmError
from crm_sync.contacts import normalize_email, normalize_phone
from crm_sync.csv_escape import csv_safe
from crm_sync.db import sql
from crm_sync.destinations.base import CrmCustomerRecord, ReadNotSupported
from crm_sync.match_key import MatchKey

log = logging.getLogger(__name__)

#: ``syncSettings.householdPhoneRule``: are two customers with different emails and one phone one person?
HOUSEHOLD_RULES = ("same_name", "same_person", "separate")
DEFAULT_HOUSEHOLD_RULE = "same_name"
#: The customer_map key that journals a merge: ``merged:<crm id of the merged-away customer>`` -> the survivor.
JOURNAL_PREFIX = "merged:"

#: A bigger group is a switchboard or placeholder number (or a shared mailbox), not one person: listed, not merged.
MAX_GROUP = 10

CSV_COLUMNS = (
    "group",
    "crm_type",
    "action",
    "crm_id",
    "survivor",
    "name",
    "visits",
    "created_by_sync",
    "shared",
    "note",
)


def household_rule(sync_settings: Any) -> tuple[str, str | None]:
    """``householdPhoneRule`` of an integration's ``syncSettings`` (read defensively: any shape), and a warning
    when the value is not one of :data:`HOUSEHOLD_RULES` (then the default applies)."""
    raw = sync_settings.get("householdPhoneRule") if isinstance(sync_settings, Mapping) else None
    if raw is None or raw == "":
        return DEFAULT_HOUSEHOLD_RULE, None
    value = str(raw).strip().lower() if isinstance(raw, str) else None
    if value in HOUSEHOLD_RULES:
        return value, None
    return DEFAULT_HOUSEHOLD_RULE, (
        f"syncSettings.householdPhoneRule must be one of {', '.join(HOUSEHOLD_RULES)}; "
        f"got {str(raw)[:40]!r}, using {DEFAULT_HOUSEHOLD_RULE}"
    )


# ============================================================================ pure planning
@dataclass(frozen=True)
class Candidate:
    """One CRM customer as the planner sees it: raw contact data from the CRM, facts from the sync's state."""

    crm_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    parent_id: str | None = None
    created_by_sync: bool = False
    visits: int = 0  # ledger rows (with a visit record) that point to this customer
    first_mapped: datetime | None = None  # when the sync first mapped it (customer_map.created_at)
    repointed: bool = False  # an earlier merge run already moved its map and ledger rows away

    # cached: phone parsing is the planner's costliest step, and each customer is compared many times
    @cached_property
    def normal_email(self) -> str | None:
        return normalize_email(self.email)[0] if self.email else None

    @cached_property
    def normal_phone(self) -> str | None:
        return normalize_phone(self.phone)[0] if self.phone else None

    @cached_property
    def normal_name(self) -> str | None:
        """Lower-cased words in sorted order, punctuation dropped: "KOWALSKI, LINDA" = "Linda  Kowalski"."""
        words = sorted(re.findall(r"\w+", MatchKey.name(self.name).value)) if self.name else []
        return " ".join(words) or None


@dataclass(frozen=True)
class MergeGroup:
    """One person with several CRM customers: what to do and why.

    ``action``: ``merge`` (the survivor keeps everything) or ``skip`` (``reason`` says why nothing is merged).
    """

    members: tuple[Candidate, ...]
    shared: tuple[str, ...]  # the identity keys that tie the members together
    action: str
    survivor: str | None
    reason: str

    @property
    def merged(self) -> list[str]:
        return [m.crm_id for m in self.members if m.crm_id != self.survivor] if self.action == "merge" else []


def id_order(crm_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, before other ids in text order ("lowest id" for any CRM)."""
    return (0, int(crm_id), "") if crm_id.isdigit() else (1, 0, crm_id)


def one_person(a: Candidate, b: Candidate, rule: str) -> bool:
    """Whether two customers sharing a phone (or an email) may be one person under the household ``rule``.

    Emails that agree (or are missing on one side) never stand in the way; two different emails are one
    person with ``same_person``, with ``same_name`` only when both names are there and equal, never with
    ``separate``.
    """
    ea, eb = a.normal_email, b.normal_email
    if not ea or not eb or ea == eb:
        return True
    if rule == "same_person":
        return True
    if rule == "same_name":
        return a.normal_name is not None and a.normal_name == b.normal_name
    return False


def plan_merges(candidates: Iterable[Candidate], rule: str = DEFAULT_HOUSEHOLD_RULE) -> list[MergeGroup]:
    """The groups of CRM customers that are one person and that the sync made (see the module docstring).

    Deterministic: the same customers give the same groups, survivors and order (by survivor / first id).
    """
    if rule not in HOUSEHOLD_RULES:
        raise ValueError(f"householdPhoneRule must be one of {', '.join(HOUSEHOLD_RULES)}, not {rule!r}")
    people = {c.crm_id: c for c in candidates}
    parent = {i: i for i in people}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[str, list[str]] = {}
    for c in people.values():
        email, phone = c.normal_email, c.normal_phone
        for key in (MatchKey.email(email) if email else None, MatchKey.phone(phone) if phone else None):
            if key is not None:
                buckets.setdefault(str(key), []).append(c.crm_id)
    shared_by_root: dict[str, set[str]] = {}
    for key, ids in sorted(buckets.items()):
        ids = sorted(set(ids), key=id_order)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if key.startswith("email:") or one_person(people[a], people[b], rule):
                    parent[find(b)] = find(a)
    components: dict[str, list[str]] = {}
    for i in people:
        components.setdefault(find(i), []).append(i)
    for key, ids in buckets.items():
        if len(set(ids)) > 1:
            shared_by_root.setdefault(find(ids[0]), set()).add(key)
    groups = []
    for root, ids in components.items():
        if len(ids) < 2:
            continue
        members = tuple(people[i] for i in sorted(ids, key=id_order))
        if not any(m.created_by_sync for m in members):
            continue  # the company's own duplicates: not the sync's to merge
        groups.append(_decide(members, tuple(sorted(shared_by_root.get(root, ()))), rule))
    return sorted(groups, key=lambda g: id_order(g.survivor or g.members[0].crm_id))


def _decide(members: tuple[Candidate, ...], shared: tuple[str, ...], rule: str) -> MergeGroup:
    if len(members) > MAX_GROUP:
        return MergeGroup(
            members,
            shared,
            "skip",
            None,
            f"{len(members)} customers share {', '.join(shared)}: more likely a shared or placeholder phone or "
            "email than one person; merge by hand",
        )
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if not one_person(a, b, rule):
                return MergeGroup(
                    members,
                    shared,
                    "skip",
                    None,
                    f"ambiguous: {a.crm_id} and {b.crm_id} have different emails and householdPhoneRule "
                    f"{rule} keeps them apart; merge by hand if they are one person",
                )
            if (
                rule != "same_person"
                and a.normal_name
                and b.normal_name
                and a.normal_name != b.normal_name
                and not (a.normal_email and a.normal_email == b.normal_email)
            ):
                # A merge cannot be undone: a phone alone does not make "Linda" and "Mark" one person.
                return MergeGroup(
                    members,
                    shared,
                    "skip",
                    None,
                    f"names differ: {a.crm_id} and {b.crm_id} share a phone but not an email or a name; "
                    "merge by hand if they are one person",
                )
    own = [m for m in members if not m.created_by_sync]
    if len(own) > 1:
        return MergeGroup(
            members,
            shared,
            "skip",
            None,
            f"{len(own)} of these customers were made by the company itself ({', '.join(m.crm_id for m in own)}); "
            "the sync never merges those: merge by hand",
        )
    if own:
        survivor = own[0]
        reason = f"{survivor.crm_id} survives: the company made it (the sync never merges such a customer away)"
    else:
        survivor = min(
            members,
            key=lambda m: (-m.visits, m.first_mapped is None, m.first_mapped or datetime.min, id_order(m.crm_id)),
        )
        ties = [m for m in members if m.visits == survivor.visits]
        if len(ties) == 1:
            reason = f"{survivor.crm_id} survives: it holds the most check-ins ({survivor.visits})"
        else:
            reason = (
                f"{survivor.crm_id} survives: {len(ties)} customers hold {survivor.visits} check-ins each, "
                "it was mapped first (then: lowest id)"
            )
    return MergeGroup(members, shared, "merge", survivor.crm_id, reason)


# ============================================================================ applying
class MergeRefused(RuntimeError):
    """Nothing was done: a sync (or another merge) of this company x CRM holds the lock, or the CRM answers for
    another account than the sync's map and ledger."""


@dataclass
class MergeResult:
    """What one company x CRM merge run found and did (XCom-safe: counts and CRM ids, no customer data)."""

    company_id: int
    crm_type: str
    dry_run: bool
    household_rule: str
    crm_merges: bool  # the CRM's API merges customers
    groups: int = 0
    merged_in_crm: int = 0
    listed_for_a_person: int = 0
    skipped: int = 0
    map_rows_moved: int = 0
    ledger_rows_moved: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    csv_path: str | None = None
    #: per group: survivor, merged-away ids, action (ids only)
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _ledger_counts(engine: Engine, company_id: int, crm_type: str, account: str | None) -> dict[str, int]:
    key = {"company_id": company_id, "crm_type": crm_type, "crm_account": account}
    with engine.connect() as conn:
        return {str(r[0]): int(r[1]) for r in conn.execute(sql("customer_merge_visits"), key)}


def _map_facts(
    engine: Engine, company_id: int, crm_type: str, account: str | None
) -> tuple[set[str], dict[str, datetime], set[str]]:
    """(ids the sync created, when each id was first mapped, ids an earlier merge re-pointed) from customer_map."""
    made: set[str] = set()
    first: dict[str, datetime] = {}
    repointed: set[str] = set()
    key = {"company_id": company_id, "crm_type": crm_type, "crm_account": account}
    with engine.connect() as conn:
        for row in conn.execute(sql("customer_merge_map"), key).mappings():
            crm_id = str(row["crm_customer_id"])
            if row["match_key"].startswith(JOURNAL_PREFIX):
                gone = row["match_key"][len(JOURNAL_PREFIX) :]
                made.add(gone)  # only the sync's own customers are ever journaled
                repointed.add(gone)
                continue
            if row["created_by_sync"]:
                made.add(crm_id)
            if crm_id not in first or row["created_at"] < first[crm_id]:
                first[crm_id] = row["created_at"]
    return made, first, repointed


def candidates_from(
    records: Iterable[Any],
    made: set[str],
    first: Mapping[str, datetime],
    visits: Mapping[str, int],
    repointed: set[str],
) -> list[Candidate]:
    """Planner input from the CRM's customers (:class:`CrmCustomerRecord`) and the sync's state."""
    return [
        Candidate(
            crm_id=str(r.crm_id),
            name=r.name,
            email=r.email,
            phone=r.phone,
            parent_id=r.parent_id,
            created_by_sync=str(r.crm_id) in made,
            visits=int(visits.get(str(r.crm_id), 0)),
            first_mapped=first.get(str(r.crm_id)),
            repointed=str(r.crm_id) in repointed,
        )
        for r in records
    ]


def repoint(
    engine: Engine,
    *,
    company_id: int,
    crm_type: str,
    account: str | None,
    survivor: str,
    survivor_parent: str | None,
    merged: Sequence[str],
) -> tuple[int, int]:
    """Re-point customer_map and ledger rows of ``merged`` to ``survivor`` and journal the merge, in one
    transaction; returns (map rows, ledger rows) moved (0, 0 when an earlier run already did it)."""
    params = {
        "company_id": company_id,
        "crm_type": crm_type,
        "crm_account": account,
        "survivor": survivor,
        "survivor_parent": survivor_parent,
        "merged": list(merged),
    }
    with engine.begin() as conn:
        moved_map = conn.execute(sql("customer_merge_repoint_map"), params).rowcount
        moved_ledger = conn.execute(sql("customer_merge_repoint_ledger"), params).rowcount
        conn.execute(
            sql("customer_merge_journal"),
            [{**params, "match_key": f"{JOURNAL_PREFIX}{m}"} for m in merged],
        )
    return int(moved_map or 0), int(moved_ledger or 0)


class CustomerMerger:
    """One company x CRM: plan, then (unless ``dry_run``) apply, under the sync's advisory lock."""

    def __init__(
        self,
        engine: Engine,
        *,
        company_id: int,
        crm_type: str,
        integration: Mapping[str, Any],
        destination: Any,
        dry_run: bool = True,
        output_dir: Path | None = None,
        crm_name: str | None = None,
    ):
        from crm_hooks.registry import display_name

        self.engine = engine
        self.company_id = int(company_id)
        self.crm_type = crm_type
        self.destination = destination
        self.dry_run = bool(dry_run)
        self.output_dir = output_dir
        self.crm_name = crm_name or display_name(crm_type) or crm_type
        self.rule, warning = household_rule(integration.get("syncSettings"))
        self.result = MergeResult(
            self.company_id,
            crm_type,
            self.dry_run,
            self.rule,
            crm_merges=bool(getattr(destination, "can_merge_customers", False)),
        )
        if warning:
            self.result.warnings.append(warning)

    def run(self) -> MergeResult:
        lock = self.engine.connect()
        try:
            key = {"crm_type": self.crm_type, "company_id": self.company_id}
            got = lock.execute(sql("customer_merge_lock"), key).scalar()
            lock.commit()
            if not got:
                raise MergeRefused(
                    f"a sync (or merge) of company {self.company_id} x {self.crm_type} is running: nothing was "
                    "merged; trigger the merge again when it has finished"
                )
            try:
                self._run()
            finally:
                lock.execute(sql("customer_merge_unlock"), key)
                lock.commit()
        finally:
            lock.close()
        return self.result

    def _run(self) -> None:
        from crm_sync.accounts import bound_account

        result = self.result
        account = bound_account(self.engine, self.company_id, self.crm_type)
        if account is not None:
            current = self.destination.account_identity()
            if current != account:
                raise MergeRefused(
                    f"the CRM answers for account {current} but the sync's map and ledger belong to account "
                    f"{account}: nothing was merged (run crm_incremental_sync first, it switches accounts)"
                )
        made, first, repointed = _map_facts(self.engine, self.company_id, self.crm_type, account)
        visits = _ledger_counts(self.engine, self.company_id, self.crm_type, account)
        try:
            records = list(self.destination.iter_customers())
        except (NotImplementedError, ReadNotSupported) as exc:
            # FieldEdge cannot list customers: the check-ins the sync sent to each one say who it is.
            records = self._customers_from_check_ins(account)
            result.warnings.append(
                f"{self.crm_name} customers cannot be listed ({exc}): grouped by the newest name, email and "
                "phone of the check-ins the sync sent to each"
            )
        groups = plan_merges(candidates_from(records, made, first, visits, repointed), self.rule)
        result.groups = len(groups)
        rows: list[dict[str, Any]] = []
        for number, group in enumerate(groups, 1):
            action = self._apply(group, account) if group.action == "merge" else "skipped"
            rows.extend(self._csv_rows(number, group, action))
        self._write_csv(rows)

    def _customers_from_check_ins(self, account: str | None) -> list[CrmCustomerRecord]:
        key = {"company_id": self.company_id, "crm_type": self.crm_type, "crm_account": account}
        with self.engine.connect() as conn:
            rows = conn.execute(sql("customer_merge_check_in_customers"), key).mappings().all()
        return [CrmCustomerRecord(str(r["crm_id"]), None, r["name"], r["email"], r["phone"]) for r in rows]

    def _apply(self, group: MergeGroup, account: str | None) -> str:
        """Re-point the sync's state, then merge in the CRM where it can; returns the group's CSV action."""
        result = self.result
        survivor = group.survivor
        assert survivor is not None
        outcome: dict[str, Any] = {"survivor": survivor, "merged": group.merged}
        result.outcomes.append(outcome)
        if self.dry_run:
            outcome["action"] = "planned"
            log.info("dry run: would merge %s into %s (%s)", group.merged, survivor, group.reason)
            return "planned (dry run)"
        parent = next((m.parent_id for m in group.members if m.crm_id == survivor), None)
        keys = {"company_id": self.company_id, "crm_type": self.crm_type, "account": account}
        moved = repoint(self.engine, **keys, survivor=survivor, survivor_parent=parent, merged=group.merged)
        result.map_rows_moved += moved[0]
        result.ledger_rows_moved += moved[1]
        if not result.crm_merges:
            result.listed_for_a_person += 1
            outcome["action"] = "merge_by_hand"
            log.info("re-pointed %s to %s; listed for a person to merge in %s", group.merged, survivor, self.crm_name)
            return "merge by hand"
        try:
            for other in group.merged:
                final = str(self.destination.merge_customers(survivor, other) or survivor)
                if final != survivor:
                    # The CRM gave the merged record a new id: everything (and the journal) follows it.
                    more = repoint(self.engine, **keys, survivor=final, survivor_parent=parent, merged=[survivor])
                    result.map_rows_moved += more[0]
                    result.ledger_rows_moved += more[1]
                    survivor = final
        except CrmError as exc:
            # The map and ledger already point to the survivor (future check-ins go there); a re-run merges.
            result.errors.append(f"{self.crm_name} did not merge {group.merged} into {survivor}: {exc}")
            outcome["action"] = "crm_merge_failed"
            return "CRM merge failed (re-run the merge)"
        result.merged_in_crm += 1
        outcome.update(action="merged_in_crm", survivor=survivor)
        log.info("merged %s into %s in %s (%s)", group.merged, survivor, self.crm_name, group.reason)
        return "merged in the CRM"

    def _csv_rows(self, number: int, group: MergeGroup, action: str) -> list[dict[str, Any]]:
        if group.action != "merge":
            self.result.skipped += 1
            log.info("not merged: %s (%s)", [m.crm_id for m in group.members], group.reason)
        rows = []
        for m in group.members:
            note = group.reason
            if group.action == "merge" and m.crm_id != group.survivor and not self.result.crm_merges:
                stays = (
                    "re-pointed by an earlier merge run; its visit records"
                    if m.repointed
                    else f"{m.visits} visit record(s)"
                )
                note = f"{stays} stay on this {self.crm_name} record until a person merges it into {group.survivor}"
            rows.append(
                {
                    "group": number,
                    "crm_type": self.crm_type,
                    "action": action,
                    "crm_id": m.crm_id,
                    "survivor": "yes" if m.crm_id == group.survivor else "no",
                    "name": m.name or "",
                    "visits": m.visits,
                    "created_by_sync": "yes" if m.created_by_sync else "no",
                    "shared": " ".join(group.shared),
                    "note": note,
                }
            )
        return rows

    def _write_csv(self, rows: list[dict[str, Any]]) -> None:
        if self.output_dir is None:
            return
        from crm_sync import paths

        paths.make_private_dir(self.output_dir)
        target = self.output_dir / f"customer_merge_{self.company_id}_{paths.safe_component(self.crm_type)}.csv"
        with paths.open_private(target, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: csv_safe(v) for k, v in row.items()})
        self.result.csv_path = str(target)


def merge_duplicates(
    engine: Engine,
    *,
    company_id: int,
    crm_type: str,
    dry_run: bool = True,
    output_dir: Path | None = None,
    rate_share: float = 1.0,
    destination: Any = None,
) -> MergeResult:
    """Merge one company x CRM's duplicates (its integration and credentials are read from the database)."""
    from crm_sync.integrations import company_destination, load_integration

    integration = load_integration(engine, company_id, crm_type)
    if destination is None:
        destination = company_destination(engine, company_id, crm_type, integration, rate_share=rate_share)
    try:
        return CustomerMerger(
            engine,
            company_id=company_id,
            crm_type=crm_type,
            integration=integration,
            destination=destination,
            dry_run=dry_run,
            output_dir=output_dir,
        ).run()
    finally:
        destination.close()


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_HOUSEHOLD_RULE",
    "HOUSEHOLD_RULES",
    "Candidate",
    "CustomerMerger",
    "MergeGroup",
    "MergeRefused",
    "MergeResult",
    "household_rule",
    "merge_duplicates",
    "one_person",
    "plan_merges",
]
