"""Salesforce Bulk API 2.0 ingest: the hook's request shapes (``responses``), then the bulk path end to end
(crm_backfill over ``airflow dags test``, the sandbox over HTTP): one invalid row quarantined, the rest landed."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter

import pytest
import requests
import responses
import sqlalchemy as sa

from crm_hooks.errors import BadRecordError
from crm_hooks.salesforce import SalesforceHook
from crm_hooks.salesforce_bulk import records_to_csv
from e2e_helpers import SF_CREDS, check_in_ids, ledger, records, run_dag, seed, stats

pytestmark = pytest.mark.usefixtures("instant_rate_limits")

INSTANCE = "https://acme.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v62.0"
JOB_ID = "7505g00000ABCDEAAA"
JOB = f"{DATA}/jobs/ingest/{JOB_ID}"


def hook() -> SalesforceHook:
    return SalesforceHook(
        credentials={"clientId": "cid", "clientSecret": "cs-bulk-secret", "myDomainUrl": INSTANCE},
        account_key=f"sf-{uuid.uuid4()}",
    )


@pytest.fixture
def sf(rsps):
    rsps.add(
        responses.POST,
        f"{INSTANCE}/services/oauth2/token",
        json={"access_token": "00D!bulk", "instance_url": INSTANCE, "token_type": "Bearer"},
    )
    return rsps


def job_info(state: str, **extra) -> dict:
    return {
        "id": JOB_ID,
        "operation": "upsert",
        "object": "Case",
        "state": state,
        "contentType": "CSV",
        "externalIdFieldName": "RankItPro_CheckIn_Key__c",
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
        "contentUrl": f"services/data/v62.0/jobs/ingest/{JOB_ID}/batches",
        **extra,
    }


def test_create_job_body(sf):
    sf.add(responses.POST, f"{DATA}/jobs/ingest", json=job_info("Open"))
    info = hook().create_ingest_job("Case", "upsert", "RankItPro_CheckIn_Key__c")
    assert info["state"] == "Open"
    request = sf.calls[-1].request
    assert request.headers["Authorization"] == "Bearer 00D!bulk"
    assert json.loads(request.body) == {
        "object": "Case",
        "operation": "upsert",
        "contentType": "CSV",
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
        "externalIdFieldName": "RankItPro_CheckIn_Key__c",
    }
    with pytest.raises(ValueError, match="external_id_field"):
        hook().create_ingest_job("Case", "upsert")
    with pytest.raises(ValueError, match="invalid Salesforce sObject name"):
        hook().create_ingest_job("Case; DROP", "insert")


def test_upload_is_a_csv_put_and_close_patches_the_state(sf):
    sf.add(responses.PUT, f"{JOB}/batches", status=201)
    sf.add(responses.PATCH, JOB, json=job_info("UploadComplete"))
    h = hook()
    h.upload_job_data(JOB_ID, "Subject,RankItPro_CheckIn_Key__c\nA,k1\n")
    put = sf.calls[-1].request
    assert put.headers["Content-Type"] == "text/csv" and put.body == b"Subject,RankItPro_CheckIn_Key__c\nA,k1\n"
    assert h.set_job_state(JOB_ID, "UploadComplete")["state"] == "UploadComplete"
    assert json.loads(sf.calls[-1].request.body) == {"state": "UploadComplete"}
    with pytest.raises(ValueError, match="UploadComplete or Aborted"):
        h.set_job_state(JOB_ID, "JobComplete")
    with pytest.raises(ValueError, match="invalid Bulk API job id"):
        h.ingest_job_info("../limits")


def test_wait_polls_until_a_final_state_with_growing_pauses(sf):
    for state in ("UploadComplete", "InProgress", "InProgress", "JobComplete"):
        sf.add(responses.GET, JOB, json=job_info(state, numberRecordsProcessed=3, numberRecordsFailed=1))
    pauses: list[float] = []
    info = hook().wait_for_ingest_job(JOB_ID, sleep=pauses.append)
    assert info["state"] == "JobComplete" and pauses == [1.0, 2.0, 4.0]


def test_records_to_csv_quotes_and_leaves_out_attributes():
    text = records_to_csv(
        [
            {
                "attributes": {"type": "Case"},
                "Subject": 'He said "hi", twice',
                "Description": "a\nb",
                "Origin": None,
                "IsEscalated": True,
            },
            {"Subject": "x", "Priority": "High"},
        ]
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "Subject,Description,Origin,IsEscalated,Priority"
    assert rows[0] == {
        "Subject": 'He said "hi", twice',
        "Description": "a\nb",
        "Origin": "",
        "IsEscalated": "true",
        "Priority": "",
    }
    assert rows[1]["Subject"] == "x" and rows[1]["Description"] == ""


def test_bulk_upsert_reads_the_three_result_sets(sf):
    sf.add(responses.POST, f"{DATA}/jobs/ingest", json=job_info("Open"))
    sf.add(responses.PUT, f"{JOB}/batches", status=201)
    sf.add(responses.PATCH, JOB, json=job_info("UploadComplete"))
    sf.add(responses.GET, JOB, json=job_info("JobComplete", numberRecordsProcessed=3, numberRecordsFailed=1))
    sf.add(
        responses.GET,
        f"{JOB}/successfulResults",
        content_type="text/csv",
        body='"sf__Id","sf__Created",Subject,RankItPro_CheckIn_Key__c\n"500xx0000001AAAAA0","true",B,k2\n',
    )
    sf.add(
        responses.GET,
        f"{JOB}/failedResults",
        content_type="text/csv",
        body='"sf__Id","sf__Error",Subject,RankItPro_CheckIn_Key__c\n'
        '"","FIELD_CUSTOM_VALIDATION_EXCEPTION:Subject: rejected:Subject --",A,k1\n',
    )
    sf.add(
        responses.GET,
        f"{JOB}/unprocessedrecords",
        content_type="text/csv",
        body="Subject,RankItPro_CheckIn_Key__c\nC,k3\n",
    )
    out = hook().bulk_upsert(
        "Case",
        "RankItPro_CheckIn_Key__c",
        [
            {"Subject": "A", "RankItPro_CheckIn_Key__c": "k1"},
            {"Subject": "B", "RankItPro_CheckIn_Key__c": "k2"},
            {"Subject": "C", "RankItPro_CheckIn_Key__c": "k3"},
        ],
    )
    assert out.successful == [
        {"sf__Id": "500xx0000001AAAAA0", "sf__Created": "true", "Subject": "B", "RankItPro_CheckIn_Key__c": "k2"}
    ]
    assert out.failed[0]["sf__Error"].startswith("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert out.unprocessed == [{"Subject": "C", "RankItPro_CheckIn_Key__c": "k3"}]
    assert [c.request.method for c in sf.calls[1:]] == ["POST", "PUT", "PATCH", "GET", "GET", "GET", "GET"]
    with pytest.raises(ValueError, match="record 0 has no value for external ID field"):
        hook().bulk_upsert("Case", "RankItPro_CheckIn_Key__c", [{"Subject": "no key"}])


def test_bulk_upsert_aborts_a_job_whose_upload_is_refused(sf):
    sf.add(responses.POST, f"{DATA}/jobs/ingest", json=job_info("Open"))
    sf.add(
        responses.PUT,
        f"{JOB}/batches",
        status=400,
        json=[{"errorCode": "INVALIDREQUEST", "message": "Content-Type must be text/csv"}],
    )
    sf.add(responses.PATCH, JOB, json=job_info("Aborted"))
    with pytest.raises(BadRecordError, match="INVALIDREQUEST"):
        hook().bulk_upsert("Case", "RankItPro_CheckIn_Key__c", [{"RankItPro_CheckIn_Key__c": "k1"}])
    assert json.loads(sf.calls[-1].request.body) == {"state": "Aborted"}


# ---------------------------------------------------------------------- end to end through crm_backfill
def case_keys(sandbox_url: str) -> Counter:
    return Counter(c.get("RankItPro_CheckIn_Key__c") for c in records(sandbox_url, "salesforce", "sf", "Case"))


def test_bulk_path_lands_every_row_and_quarantines_the_invalid_one(db, db_url, sandbox, airflow_home, tmp_path):
    ids = seed(db, sandbox.url, hubspot=0, salesforce=40, broken=False)
    company = ids["salesforce"]
    with db.begin() as conn:
        raw = conn.execute(sa.text("SELECT crm_integrations FROM companies WHERE id = :c"), {"c": company}).scalar()
        integrations = json.loads(raw)
        integrations["salesforce"]["crmSettings"] = {"bulkThreshold": 10}  # 40 rows: one bulk job per batch
        conn.execute(
            sa.text("UPDATE companies SET crm_integrations = :j WHERE id = :c"),
            {"j": json.dumps(integrations), "c": company},
        )
        bad = conn.execute(
            sa.text(
                "SELECT id FROM check_ins WHERE company_id = :c AND customer_email LIKE '%@example.com' ORDER BY id "
                "LIMIT 1"
            ),
            {"c": company},
        ).scalar()
        conn.execute(
            sa.text("UPDATE check_ins SET notes = 'SANDBOX-INVALID: a validation rule refuses this' WHERE id = :i"),
            {"i": bad},
        )
    conf = {"crm_type": "salesforce", "company_ids": [company], "chunk_days": 30, "dry_run": False}
    code, out = run_dag(airflow_home, db_url, tmp_path, dag_id="crm_backfill", conf=conf)
    assert code == 0, out[-3000:]
    endpoints = stats(sandbox.url)["salesforce"]["sf"]["by_endpoint"]
    # One job each for Accounts, Contacts and Cases; no sObject Collections write at all.
    assert endpoints.get("POST /salesforce/services/data/{version}/jobs/ingest") == 3, endpoints
    assert not any("composite/sobjects" in e for e in endpoints), endpoints
    contacts = records(sandbox.url, "salesforce", "sf", "Contact")
    accounts = {a["Id"] for a in records(sandbox.url, "salesforce", "sf", "Account")}
    assert contacts and all(c["AccountId"] in accounts for c in contacts)
    assert len({c["RankItPro_Customer_Key__c"] for c in contacts}) == len(contacts) == len(accounts)

    rows = ledger(db, company, "salesforce")
    assert set(rows) == check_in_ids(db, company)
    assert rows[bad]["status"] == "quarantined" and rows[bad]["error_kind"] == "crm_rejected"
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in rows[bad]["last_error"], rows[bad]
    keys = case_keys(sandbox.url)
    assert all(n == 1 for n in keys.values())
    synced = [cid for cid, r in rows.items() if r["status"] == "synced"]
    assert len(synced) >= 30
    contact_ids = {c["Id"] for c in contacts}
    for cid in synced:
        assert keys[f"rankitpro-{company}-{cid}"] == 1 and rows[cid]["crm_visit_id"].startswith("500")
        assert rows[cid]["crm_customer_id"] in contact_ids
    assert keys[f"rankitpro-{company}-{bad}"] == 0
    assert all(r["status"] in ("synced", "quarantined") for r in rows.values())
    assert SF_CREDS["client_secret"] not in out

    # Re-running the same backfill sends nothing: every chunk is done.
    before = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["salesforce"]["sf"]["objects"]
    assert run_dag(airflow_home, db_url, tmp_path, dag_id="crm_backfill", conf=conf)[0] == 0
    assert stats(sandbox.url)["salesforce"]["sf"]["objects"] == before and case_keys(sandbox.url) == keys
