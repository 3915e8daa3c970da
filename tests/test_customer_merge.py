"""Merging the sync's own duplicate customers (crm_merge_duplicates): the pure planner, then real parts.

The real-parts scenario makes duplicates the way older sync versions did (one person synced as two CRM
customers: one with an email, one without, phones typed differently), then merges them with the real engine,
the sandbox over HTTP and a real PostgreSQL: HubSpot merges in the CRM, Salesforce (no REST merge) lists them.
"""

from __future__ import annotations

import csv
import json
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from crm_cases import all_cases
from crm_sync.customer_merge import (
    JOURNAL_PREFIX,
    Candidate,
    MergeRefused,
    household_rule,
    id_order,
    merge_duplicates,
    one_person,
    plan_merges,
    repoint,
)
from crm_sync.integration_sync import IntegrationSync, SyncOptions
from crm_sync.integrations import load_integration
from crm_sync.tasks.customer_merge import merge_params
from e2e_helpers import ledger, recent, records, run_dag
from localdev.demo_data import create_company, insert_check_ins

CASES = {c.crm_type: c for c in all_cases()}


def person(crm_id, name=None, email=None, phone=None, sync=True, visits=0, mapped=None) -> Candidate:
    return Candidate(crm_id, name, email, phone, created_by_sync=sync, visits=visits, first_mapped=mapped)


# ============================================================================ pure planner
def test_customers_sharing_an_email_or_a_phone_are_one_person():
    people = [
        person("1", "Linda Kowalski", "Linda.K@Example.com", "(303) 555-0325", visits=2),
        person("2", "Linda Kowalski", None, "303.555.0325", visits=1),  # no email, phone typed otherwise
        person("3", "Jean-Luc Ng", "jl@example.com", None),
        person("4", "J. Ng", " JL@example.com ", "+1 512 555 0100"),  # same email, another spelling
        person("5", "Someone Else", "else@example.com", "5125550999"),
    ]
    groups = plan_merges(people)
    assert [(g.survivor, g.merged, g.action) for g in groups] == [("1", ["2"], "merge"), ("3", ["4"], "merge")]
    assert groups[0].shared == ("phone:+13035550325",)
    assert groups[1].shared == ("email:jl@example.com",)


@pytest.mark.parametrize(
    ("rule", "names", "merged"),
    [
        ("same_name", ("Ann Lee", "ann  LEE"), True),  # names compared normalised
        ("same_name", ("Ann Lee", "Bob Lee"), False),  # a household: two people, one phone
        ("same_name", ("Ann Lee", None), False),  # no name to compare: kept apart
        ("same_person", ("Ann Lee", "Bob Lee"), True),
        ("separate", ("Ann Lee", "Ann Lee"), False),
    ],
)
def test_household_rule_decides_two_emails_on_one_phone(rule, names, merged):
    a = person("10", names[0], "ann@example.com", "5125550142")
    b = person("11", names[1], "ann.work@example.com", "512-555-0142")
    assert one_person(a, b, rule) is merged
    groups = plan_merges([a, b], rule)
    assert [g.merged for g in groups] == ([["11"]] if merged else [])


def test_a_missing_email_never_stands_in_the_way_and_an_ambiguous_group_is_left_alone():
    linda = person("1", "Linda Lee", "linda@example.com", "5125550142")
    nameless = person("2", "Linda Lee", None, "5125550142")
    mark = person("3", "Mark Lee", "mark@example.com", "5125550142")
    # Linda and Mark are a household; the record without an email joins both: which one is it? Nobody can say.
    (group,) = plan_merges([linda, nameless, mark], "same_name")
    assert group.action == "skip" and group.survivor is None and group.merged == []
    assert "ambiguous" in group.reason and "1 and 3" in group.reason
    # Under same_person the three are one person.
    assert plan_merges([linda, nameless, mark], "same_person")[0].merged == ["2", "3"]


def test_a_phone_alone_does_not_merge_different_names_or_a_placeholder_number():
    linda = person("1", "Linda Kowalski", "linda@example.com", "5125550142", visits=1)
    reordered = person("2", "KOWALSKI, LINDA", None, "512.555.0142")
    assert plan_merges([linda, reordered])[0].merged == ["2"], "the same name written otherwise"
    mark = person("3", "Mark Kowalski", None, "(512) 555-0142")
    (group,) = plan_merges([linda, mark])
    assert group.action == "skip" and group.reason.startswith("names differ: 1 and 3 share a phone")
    assert plan_merges([linda, mark], "same_person")[0].merged == ["3"]
    # Sharing an email, names written differently are still one person.
    assert plan_merges([linda, person("4", "L. K.", "LINDA@example.com", None)])[0].merged == ["4"]
    switchboard = [person(str(i), "Front Desk", None, "5125550000") for i in range(1, 12)]
    (placeholder,) = plan_merges(switchboard, "same_person")
    assert placeholder.action == "skip" and "11 customers share phone:+15125550000" in placeholder.reason


def test_survivor_most_check_ins_then_mapped_first_then_lowest_id():
    day = datetime(2026, 1, 1)
    most = plan_merges([person("1", phone="5125550100", visits=1), person("2", phone="5125550100", visits=3)])[0]
    assert (most.survivor, most.merged) == ("2", ["1"]) and "most check-ins (3)" in most.reason
    first = plan_merges(
        [
            person("7", phone="5125550100", visits=2, mapped=day + timedelta(days=1)),
            person("8", phone="5125550100", visits=2, mapped=day),
        ]
    )[0]
    assert first.survivor == "8" and "mapped first" in first.reason
    lowest = plan_merges([person("10", phone="5125550100"), person("9", phone="5125550100")])[0]
    assert lowest.survivor == "9", "numeric ids compare as numbers (9 < 10)"
    text = plan_merges([person("003b", phone="5125550100"), person("003a", phone="5125550100")])[0]
    assert text.survivor == "003a"


def test_customers_the_company_made_are_never_merged_away():
    own = person("5", "Ann Lee", "ann@example.com", "5125550142", sync=False, visits=0)
    dup = person("6", "Ann Lee", None, "5125550142", sync=True, visits=9)
    (group,) = plan_merges([own, dup])
    assert (group.survivor, group.merged) == ("5", ["6"]) and "the company made it" in group.reason
    # Two of the company's own in one group: not the sync's to merge, listed instead.
    (listed,) = plan_merges([own, dup, person("7", "Ann Lee", None, "512 555 0142", sync=False)])
    assert listed.action == "skip" and listed.merged == [] and "made by the company" in listed.reason
    # No customer of the group made by the sync: not reported at all.
    assert plan_merges([own, person("8", "Ann Lee", None, "5125550142", sync=False)]) == []


def test_the_plan_does_not_depend_on_the_order_customers_are_read_in():
    people = [
        person(str(i), f"P{i % 3}", f"p{i % 4}@example.com" if i % 2 else None, f"51255501{i % 5:02d}", visits=i % 3)
        for i in range(1, 30)
    ]
    expected = [(g.survivor, g.merged, g.action, g.reason) for g in plan_merges(people)]
    assert expected
    for seed in range(5):
        shuffled = people[:]
        random.Random(seed).shuffle(shuffled)
        assert [(g.survivor, g.merged, g.action, g.reason) for g in plan_merges(shuffled)] == expected


def test_household_rule_is_read_defensively():
    assert household_rule(None) == ("same_name", None)
    assert household_rule("not a dict") == ("same_name", None)
    assert household_rule({"householdPhoneRule": "Same_Person"}) == ("same_person", None)
    assert household_rule({"householdPhoneRule": "separate"}) == ("separate", None)
    rule, warning = household_rule({"householdPhoneRule": ["x"]})
    assert rule == "same_name" and "must be one of same_name, same_person, separate" in warning
    with pytest.raises(ValueError, match="householdPhoneRule"):
        plan_merges([], "whatever")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"crm_type": "hubspot"}, "company_id is required"),
        ({"company_id": True, "crm_type": "hubspot"}, "company_id is required"),
        ({"company_id": "7; DROP TABLE", "crm_type": "hubspot"}, "company_id is required"),
        ({"company_id": 7}, "crm_type is required"),
        ({"company_id": 7, "crm_type": "../hubspot"}, "crm_type is required"),
        ({"company_id": 7, "crm_type": "hubspot", "dry_run": "no"}, "dry_run must be true or false"),
    ],
)
def test_hostile_params_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        merge_params(params)
    assert merge_params({"company_id": 7, "crm_type": "hubspot"}) == (7, "hubspot", True)


# ============================================================================ real parts
#: Per CRM: the stored fields that give a customer record the name and phone of another (admin edit).
SAME_PERSON = {
    "hubspot": lambda first, last, phone: {"firstname": first, "lastname": last, "phone": phone},
    "salesforce": lambda first, last, phone: {"FirstName": first, "LastName": last, "Phone": phone},
}


def register(sandbox, case) -> None:
    body = {"crm": case.crm_type, "account": case.account, "credentials": case.sandbox_credentials}
    if case.sandbox_options:
        body["options"] = case.sandbox_options
    requests.post(f"{sandbox.url}/_sandbox/accounts", json=body, timeout=10).raise_for_status()


def sync(db, crm_type: str, company_id: int, run_id: str):
    integration = load_integration(db, company_id, crm_type)
    return IntegrationSync(
        db, company_id=company_id, crm_type=crm_type, integration=integration, run_id=run_id, options=SyncOptions()
    ).run()


def visit(company_id, tech, name, email, phone, minutes) -> dict:
    return {
        "job_type": "AC repair",
        "notes": f"Visit {minutes}",
        "customer_name": name,
        "customer_email": email,
        "customer_phone": phone,
        "work_performed": "Diagnosed and repaired.",
        "materials_used": "Capacitor",
        "address": "12 Elm St",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "photos": "[]",
        "customer_feedback": None,
        "follow_up_required": False,
        "technician_id": tech,
        "company_id": company_id,
        "created_at": recent() + timedelta(minutes=minutes),
    }


def sync_state(db, company_id: int, crm_type: str) -> tuple[list, list]:
    key = {"c": company_id, "t": crm_type}
    with db.connect() as conn:
        cmap = conn.execute(
            sa.text(
                "SELECT match_key, crm_customer_id, crm_parent_id, created_by_sync FROM crm_sync.customer_map "
                "WHERE company_id = :c AND crm_type = :t ORDER BY match_key"
            ),
            key,
        ).all()
        led = conn.execute(
            sa.text(
                "SELECT check_in_id, crm_customer_id, crm_visit_id FROM crm_sync.ledger "
                "WHERE company_id = :c AND crm_type = :t ORDER BY check_in_id"
            ),
            key,
        ).all()
    return [tuple(r) for r in cmap], [tuple(r) for r in led]


def make_duplicates(db, sandbox, crm_type: str) -> tuple[int, int, str, str]:
    """Two CRM customers for Linda Kowalski made by the sync: A with her email (1 visit), B without (2 visits)
    and her phone typed otherwise. Returns (company id, technician id, A, B)."""
    case = CASES[crm_type]
    register(sandbox, case)
    company_id, tech = create_company(db, f"{crm_type} duplicates", {crm_type: case.integration(sandbox.url)})
    # B is synced first under another name and phone (so no version of the sync's matching joins it to A),
    # then given Linda's name and phone in the CRM: the state an older sync left behind.
    insert_check_ins(
        db,
        iter(
            [
                visit(company_id, tech, "Linda Kowalski", "linda.kowalski@example.com", "(303) 555-0325", 0),
                visit(company_id, tech, "Lyn Kowalsky", None, "(720) 555-0999", 10),
                visit(company_id, tech, "Lyn Kowalsky", None, "(720) 555-0999", 20),
                visit(company_id, tech, "Omar Haddad", "omar@example.com", "(512) 555-0142", 30),
            ]
        ),
    )
    first = sync(db, crm_type, company_id, "old-sync")
    assert first.synced == 4 and first.customers_created == 3, first
    by_check_in = sorted(ledger(db, company_id, crm_type).items())
    a, b = by_check_in[0][1]["crm_customer_id"], by_check_in[1][1]["crm_customer_id"]
    assert a != b and by_check_in[2][1]["crm_customer_id"] == b
    url = f"{sandbox.url}/_sandbox/records/{crm_type}/{case.account}/{case.customer_object}/{b}"
    requests.patch(url, json=SAME_PERSON[crm_type]("Linda", "Kowalski", "303.555.0325"), timeout=10).raise_for_status()
    return company_id, tech, a, b


def customers_with_phone(sandbox, crm_type: str, digits: str) -> list[dict]:
    case = CASES[crm_type]
    out = []
    for rec in records(sandbox.url, crm_type, case.account, case.customer_object):
        phone = (rec.get("properties") or rec).get("phone") or (rec.get("properties") or rec).get("Phone") or ""
        if "".join(ch for ch in phone if ch.isdigit()).endswith(digits):
            out.append(rec)
    return out


def read_csv(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("crm_type", ["hubspot", "salesforce"])
def test_merge_repoints_the_sync_and_merges_or_lists_in_the_crm(db, sandbox, crm_type, tmp_path):
    company_id, tech, a, b = make_duplicates(db, sandbox, crm_type)
    before = sync_state(db, company_id, crm_type)

    # Dry run: the plan and the list, nothing changed.
    dry = merge_duplicates(db, company_id=company_id, crm_type=crm_type, dry_run=True, output_dir=tmp_path / "dry")
    assert (dry.groups, dry.map_rows_moved, dry.ledger_rows_moved, dry.merged_in_crm) == (1, 0, 0, 0)
    assert dry.outcomes == [{"survivor": b, "merged": [a], "action": "planned"}]
    assert sync_state(db, company_id, crm_type) == before
    assert len(customers_with_phone(sandbox, crm_type, "3035550325")) == 2
    rows = read_csv(dry.csv_path)
    assert [(r["crm_id"], r["survivor"], r["visits"], r["action"]) for r in rows] == [
        (x, "yes" if x == b else "no", "2" if x == b else "1", "planned (dry run)")
        for x in sorted([a, b], key=id_order)
    ]
    notes = {r["crm_id"]: r["note"] for r in rows}
    assert notes[b] == f"{b} survives: it holds the most check-ins (2)"
    assert notes[a] == notes[b] if crm_type == "hubspot" else notes[a].startswith("1 visit record(s) stay on this")
    assert "linda" not in json.dumps(dry.as_dict()).lower(), "no customer data in the XCom"

    # The merge.
    done = merge_duplicates(db, company_id=company_id, crm_type=crm_type, dry_run=False, output_dir=tmp_path)
    cmap, led = sync_state(db, company_id, crm_type)
    live_map = {k: v for k, v, _, _ in cmap if not k.startswith(JOURNAL_PREFIX)}
    assert a not in live_map.values(), cmap
    assert live_map["email:linda.kowalski@example.com"] == b and live_map["phone:+13035550325"] == b
    assert (f"{JOURNAL_PREFIX}{a}", b) in [(k, v) for k, v, _, _ in cmap]
    assert [c for _, c, _ in led[:3]] == [b, b, b] and led[3][1] not in (a, b)
    assert [v for _, _, v in led] == [v for _, _, v in before[1]], "visit records are not touched"
    assert done.ledger_rows_moved == 1 and done.map_rows_moved == 2
    rows = {r["crm_id"]: r for r in read_csv(done.csv_path)}
    assert rows[b]["survivor"] == "yes" and rows[a]["survivor"] == "no"

    if crm_type == "hubspot":
        assert (done.merged_in_crm, done.listed_for_a_person) == (1, 0)
        (contact,) = customers_with_phone(sandbox, crm_type, "3035550325")
        assert contact["id"] == b and contact["properties"]["email"] == "linda.kowalski@example.com"
        assert contact["properties"]["hs_merged_object_ids"] == a
        notes = records(sandbox.url, "hubspot", "conf", "notes")
        linda_notes = [n for n in notes if any(x["to"]["id"] == b for x in n.get("associations", []))]
        assert len(linda_notes) == 3, "A's note moved to the survivor"
        assert not any(x["to"]["id"] == a for n in notes for x in n.get("associations", []))
        assert all(r["action"] == "merged in the CRM" for r in rows.values())
    else:
        assert (done.merged_in_crm, done.listed_for_a_person) == (0, 1)
        assert len(customers_with_phone(sandbox, crm_type, "3035550325")) == 2, "a person merges them in Salesforce"
        assert rows[a]["action"] == "merge by hand"
        assert rows[a]["note"] == f"1 visit record(s) stay on this Salesforce record until a person merges it into {b}"

    # A re-run changes nothing.
    settled = sync_state(db, company_id, crm_type)
    again = merge_duplicates(db, company_id=company_id, crm_type=crm_type, dry_run=False, output_dir=tmp_path / "2")
    assert (again.map_rows_moved, again.ledger_rows_moved, again.merged_in_crm) == (0, 0, 0)
    assert again.groups == (0 if crm_type == "hubspot" else 1)
    assert sync_state(db, company_id, crm_type) == settled
    if crm_type == "salesforce":
        (listed,) = [r for r in read_csv(again.csv_path) if r["crm_id"] == a]
        assert "re-pointed by an earlier merge run" in listed["note"]

    # The next incremental sync: Linda without an email, and with it, both land on the survivor.
    customers_before = len(records(sandbox.url, crm_type, CASES[crm_type].account, CASES[crm_type].customer_object))
    insert_check_ins(
        db,
        iter(
            [
                visit(company_id, tech, "Linda Kowalski", None, "303-555-0325", 40),
                visit(company_id, tech, "Linda Kowalski", "linda.kowalski@example.com", "+1 303 555 0325", 50),
            ]
        ),
    )
    nxt = sync(db, crm_type, company_id, "after-merge")
    assert nxt.synced == 2 and nxt.customers_created == 0, nxt
    assert [r["crm_customer_id"] for _, r in sorted(ledger(db, company_id, crm_type).items())][4:] == [b, b]
    after = records(sandbox.url, crm_type, CASES[crm_type].account, CASES[crm_type].customer_object)
    assert len(after) == customers_before, "no new duplicate"


def test_repoint_moves_what_an_unfinished_attempt_recorded_too(db):
    """A row whose visit create was in flight for the merged-away customer (``crm_intent``): the next run's
    look-up starts at the survivor. Other ids of the intent, other customers' rows and other accounts stay."""
    company_id, _ = create_company(db, "Intent Co", {})
    rows = [
        (1, "in_flight", None, {"customer_id": "A", "parent_id": "P", "visit_id": "V1"}, "acct"),
        (2, "synced", "A", {"customer_id": "A"}, "acct"),
        (3, "in_flight", None, {"customer_id": "C"}, "acct"),
        (4, "in_flight", None, {"customer_id": "A"}, "other-acct"),
    ]
    with db.begin() as conn:
        for check_in_id, status, customer, intent, account in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO crm_sync.ledger (company_id, crm_type, check_in_id, status, crm_customer_id, "
                    "crm_intent, crm_account) VALUES (:c, 'hubspot', :i, :s, :cust, CAST(:intent AS jsonb), :acct)"
                ),
                {
                    "c": company_id,
                    "i": check_in_id,
                    "s": status,
                    "cust": customer,
                    "intent": json.dumps(intent),
                    "acct": account,
                },
            )
    moved = repoint(
        db, company_id=company_id, crm_type="hubspot", account="acct", survivor="B", survivor_parent=None, merged=["A"]
    )
    assert moved == (0, 2)
    after = {
        check_in_id: (r["crm_customer_id"], r["crm_intent"])
        for check_in_id, r in ledger(db, company_id, "hubspot").items()
    }
    assert after == {
        1: (None, {"customer_id": "B", "parent_id": "P", "visit_id": "V1"}),
        2: ("B", {"customer_id": "B"}),
        3: (None, {"customer_id": "C"}),
        4: (None, {"customer_id": "A"}),
    }


def test_a_crm_that_cannot_list_customers_is_grouped_by_its_check_ins(db, sandbox, tmp_path):
    """FieldEdge has no customer listing: the check-ins the sync sent to each customer say who it is."""
    case = CASES["fieldedge"]
    register(sandbox, case)
    company_id, tech = create_company(db, "fieldedge duplicates", {"fieldedge": case.integration(sandbox.url)})
    insert_check_ins(
        db,
        iter(
            [
                visit(company_id, tech, "Linda Kowalski", "linda.kowalski@example.com", "(303) 555-0325", 0),
                visit(company_id, tech, "Lyn Kowalsky", None, "(720) 555-0999", 10),
                visit(company_id, tech, "Lyn Kowalsky", None, "(720) 555-0999", 20),
            ]
        ),
    )
    assert sync(db, "fieldedge", company_id, "old-sync").customers_created == 2
    by_check_in = sorted(ledger(db, company_id, "fieldedge").items())
    a, b = by_check_in[0][1]["crm_customer_id"], by_check_in[1][1]["crm_customer_id"]
    # What an older sync did: Linda's check-ins without an email went to a second customer.
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE check_ins SET customer_name = 'Linda Kowalski', customer_phone = '303.555.0325' "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": [by_check_in[1][0], by_check_in[2][0]]},
        )
    customers = len(records(sandbox.url, "fieldedge", case.account, case.customer_object))
    done = merge_duplicates(db, company_id=company_id, crm_type="fieldedge", dry_run=False, output_dir=tmp_path)
    assert (done.groups, done.listed_for_a_person, done.merged_in_crm, done.ledger_rows_moved) == (1, 1, 0, 1)
    assert any("cannot be listed" in w for w in done.warnings)
    assert done.outcomes == [{"survivor": b, "merged": [a], "action": "merge_by_hand"}]
    assert {r["crm_customer_id"] for r in ledger(db, company_id, "fieldedge").values()} == {b}
    rows = {r["crm_id"]: r for r in read_csv(done.csv_path)}
    assert rows[a]["note"] == f"1 visit record(s) stay on this FieldEdge record until a person merges it into {b}"
    again = merge_duplicates(db, company_id=company_id, crm_type="fieldedge", dry_run=False, output_dir=tmp_path)
    assert (again.groups, again.map_rows_moved, again.ledger_rows_moved) == (0, 0, 0)
    insert_check_ins(db, iter([visit(company_id, tech, "Linda Kowalski", None, "303-555-0325", 40)]))
    nxt = sync(db, "fieldedge", company_id, "after-merge")
    assert nxt.customers_created == 0 and nxt.failed == 0, nxt
    assert {r["crm_customer_id"] for r in ledger(db, company_id, "fieldedge").values()} == {b}
    assert len(records(sandbox.url, "fieldedge", case.account, case.customer_object)) == customers


def test_a_crm_that_keeps_failing_the_merge_leaves_the_sync_pointed_at_the_survivor(db, sandbox, tmp_path):
    company_id, _, a, b = make_duplicates(db, sandbox, "hubspot")
    fault = {"crm": "hubspot", "status": 500, "rate": 1.0, "path_contains": "/contacts/merge"}
    requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=10).raise_for_status()
    failed = merge_duplicates(db, company_id=company_id, crm_type="hubspot", dry_run=False, output_dir=tmp_path)
    assert failed.merged_in_crm == 0 and len(failed.errors) == 1 and f"into {b}" in failed.errors[0]
    assert failed.outcomes[0]["action"] == "crm_merge_failed"
    # Future check-ins go to the survivor already: map and ledger were re-pointed before the CRM was asked.
    assert [r["crm_customer_id"] for _, r in sorted(ledger(db, company_id, "hubspot").items())][:3] == [b, b, b]
    assert a not in {v for k, v, _, _ in sync_state(db, company_id, "hubspot")[0] if not k.startswith("merged:")}
    assert len(customers_with_phone(sandbox, "hubspot", "3035550325")) == 2
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=10).raise_for_status()
    # The re-run finds A through the journal (no map row points to it any more) and merges it in the CRM.
    again = merge_duplicates(db, company_id=company_id, crm_type="hubspot", dry_run=False, output_dir=tmp_path)
    assert (again.merged_in_crm, again.map_rows_moved, again.ledger_rows_moved, again.errors) == (1, 0, 0, [])
    assert [c["id"] for c in customers_with_phone(sandbox, "hubspot", "3035550325")] == [b]


def test_a_crm_answering_for_another_account_is_refused(db, sandbox):
    company_id, _, _, _ = make_duplicates(db, sandbox, "hubspot")
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE crm_sync.crm_accounts SET crm_account = 'old-portal' WHERE company_id = :c"),
            {"c": company_id},
        )
    before = sync_state(db, company_id, "hubspot")
    with pytest.raises(MergeRefused, match="belong to account old-portal: nothing was merged"):
        merge_duplicates(db, company_id=company_id, crm_type="hubspot", dry_run=False)
    assert sync_state(db, company_id, "hubspot") == before


def test_merge_and_sync_share_one_lock(db, sandbox):
    company_id, _, _, _ = make_duplicates(db, sandbox, "hubspot")
    with db.connect() as holder:
        # The lock a running sync holds (IntegrationSync._try_lock) stops the merge before it reads anything.
        assert holder.execute(
            sa.text("SELECT pg_try_advisory_lock(hashtext('hubspot'), :c)"), {"c": company_id}
        ).scalar()
        with pytest.raises(MergeRefused, match="is running: nothing was merged"):
            merge_duplicates(db, company_id=company_id, crm_type="hubspot", dry_run=False)
        holder.execute(sa.text("SELECT pg_advisory_unlock(hashtext('hubspot'), :c)"), {"c": company_id})
        # And the merge's lock (its SQL file) makes a sync skip.
        from crm_sync.db import sql

        assert holder.execute(sql("customer_merge_lock"), {"crm_type": "hubspot", "company_id": company_id}).scalar()
        skipped = sync(db, "hubspot", company_id, "during-merge")
        assert skipped.status == "skipped"
        holder.execute(sql("customer_merge_unlock"), {"crm_type": "hubspot", "company_id": company_id})
    assert len(customers_with_phone(sandbox, "hubspot", "3035550325")) == 2, "nothing merged while locked"


@pytest.mark.e2e
def test_the_dag_merges_for_real_and_refuses_bad_params(db, db_url, sandbox, airflow_home, tmp_path):
    company_id, _, a, b = make_duplicates(db, sandbox, "hubspot")
    env = {"CRM_SYNC_REPORT_DIR": str(tmp_path / "reports")}
    code, out = run_dag(
        airflow_home, db_url, tmp_path, dag_id="crm_merge_duplicates", conf={"company_id": company_id}, extra_env=env
    )
    assert code != 0 and "crm_type is required" in out
    assert len(customers_with_phone(sandbox, "hubspot", "3035550325")) == 2

    conf = {"company_id": company_id, "crm_type": "hubspot", "dry_run": False}
    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id="crm_merge_duplicates", conf=conf, extra_env=env)
    assert code == 0, out[-3000:]
    (contact,) = customers_with_phone(sandbox, "hubspot", "3035550325")
    assert contact["id"] == b
    with sqlite3.connect(airflow_home / "airflow.db") as meta:
        value = meta.execute(
            "SELECT value FROM xcom WHERE dag_id = 'crm_merge_duplicates' AND task_id = 'merge_hubspot' "
            "ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        states = dict(
            meta.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = 'crm_merge_duplicates' AND run_id = ("
                "SELECT run_id FROM dag_run WHERE dag_id = 'crm_merge_duplicates' ORDER BY id DESC LIMIT 1)"
            ).fetchall()
        )
    summary = json.loads(value[0])
    assert summary["merged_in_crm"] == 1 and summary["outcomes"][0]["merged"] == [a]
    assert states["merge_hubspot"] == "success" and states["merge_salesforce"] == "skipped"
    assert states["check_failures"] == "success"
    assert Path(summary["csv_path"]).is_relative_to(tmp_path / "reports")


# ============================================================================ HubSpot merge: request and sandbox
def test_hubspot_hook_sends_the_documented_merge_body(rsps):
    import responses

    from crm_hooks.errors import CrmError
    from crm_hooks.hubspot import HubSpotHook

    api = "https://api.hubapi.com"
    rsps.add(responses.POST, f"{api}/crm/v3/objects/contacts/merge", json={"id": "512", "properties": {}})
    hook = HubSpotHook(credentials={"accessToken": "pat-na1-merge-test"}, account_key="hs-merge-unit")
    assert hook.merge_objects("contacts", "501", 502)["id"] == "512"
    (call,) = rsps.calls
    assert json.loads(call.request.body) == {"primaryObjectId": "501", "objectIdToMerge": "502"}
    # A 5xx may come after HubSpot merged: never re-sent blindly (the next run lists what is still there).
    rsps.replace(responses.POST, f"{api}/crm/v3/objects/contacts/merge", status=502, body="bad gateway")
    with pytest.raises(CrmError):
        hook.merge_objects("contacts", "501", "503")
    assert len(rsps.calls) == 2


def test_sandbox_merge_moves_notes_redirects_the_old_id_and_refuses_bad_input(sandbox):
    token = "pat-na1-merge-sandbox"
    requests.post(
        f"{sandbox.url}/_sandbox/accounts",
        json={"crm": "hubspot", "account": "m", "credentials": {"accessToken": token}},
        timeout=10,
    ).raise_for_status()
    seed = f"{sandbox.url}/_sandbox/records/hubspot/m"
    keep = requests.post(f"{seed}/contacts", json={"properties": {"firstname": "Ann"}}, timeout=10).json()["id"]
    gone = requests.post(
        f"{seed}/contacts", json={"properties": {"firstname": "Ann", "email": "ann@example.com"}}, timeout=10
    ).json()["id"]
    note = {"properties": {"hs_timestamp": "2026-01-01T00:00:00Z"}, "associations": [{"to": {"id": gone}}]}
    requests.post(f"{seed}/notes", json=note, timeout=10).raise_for_status()
    api = f"{sandbox.url}/hubspot/crm/v3/objects/contacts"
    auth = {"Authorization": f"Bearer {token}"}

    def merge(body):
        return requests.post(f"{api}/merge", json=body, headers=auth, timeout=10)

    assert merge({"primaryObjectId": keep}).status_code == 400
    assert merge({"primaryObjectId": keep, "objectIdToMerge": keep}).status_code == 400
    assert merge({"primaryObjectId": keep, "objectIdToMerge": "999999"}).status_code == 404
    done = merge({"primaryObjectId": keep, "objectIdToMerge": gone})
    assert done.status_code == 200 and done.json()["id"] == keep
    assert done.json()["properties"]["email"] == "ann@example.com", "an empty value is filled from the other"
    assert [c["id"] for c in records(sandbox.url, "hubspot", "m", "contacts")] == [keep]
    (moved,) = records(sandbox.url, "hubspot", "m", "notes")
    assert [a["to"]["id"] for a in moved["associations"]] == [keep]
    assert requests.get(f"{api}/{gone}", headers=auth, timeout=10).json()["id"] == keep, "the old id redirects"
    assert merge({"primaryObjectId": keep, "objectIdToMerge": gone}).status_code == 404, "merged once only"


def test_dag_shape_and_params_are_what_the_readme_documents():
    """README.md's params table (the format tests/test_distributed.py checks) equals the trigger form."""
    import re
    import runpy

    from conftest import ROOT
    from crm_hooks.registry import HOOKS

    dag = runpy.run_path(str(ROOT / "dags" / "crm_merge_duplicates.py"))["dag"]
    assert dag.schedule is None and dag.max_active_runs == 1 and dag.default_args["retries"] == 0
    assert sorted(dag.task_dict["check_params"].downstream_task_ids) == sorted(f"merge_{c}" for c in HOOKS)
    for crm in HOOKS:
        merge = dag.task_dict[f"merge_{crm}"]
        assert merge.pool == f"crm_{crm}" and merge.downstream_task_ids == {"check_failures"}
    leaf = dag.task_dict["check_failures"]
    assert leaf.trigger_rule == "all_done" and leaf.retries == 0
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^### `crm_merge_duplicates`\n(.*?)(?=^#{1,3} )", text, re.DOTALL | re.MULTILINE).group(1)
    table = re.search(
        r"^\| param \| type \| default \| meaning \|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", section, re.MULTILINE
    ).group(1)
    rows = {}
    for line in table.splitlines():
        name, type_, default, meaning = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[name.strip("`")] = (type_, default, meaning)
    assert list(rows) == list(dag.params)
    for name, (type_, default, meaning) in rows.items():
        param = dag.params.get_param(name)
        assert param.description == meaning and param.schema.get("title"), name
        assert param.value == (json.loads(default.strip("`")) if default.startswith("`") else None), name
        if type_.endswith("or empty"):
            assert param.schema["type"] == ["null", type_.split()[0]], name
        else:
            assert param.schema["type"] == type_, name
