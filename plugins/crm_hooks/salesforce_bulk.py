"""Salesforce Bulk API 2.0 ingest: create a job, upload CSV, close it, poll it, read the three result sets.

Vendor facts (https://developer.salesforce.com/docs/platform/api-asynch/guide/walkthrough-upsert.html):
``POST /jobs/ingest`` (JSON job), ``PUT .../batches`` (CSV), ``PATCH`` ``{"state": "UploadComplete"}``, poll
``GET`` until ``JobComplete`` / ``Failed`` / ``Aborted``, then ``successfulResults`` / ``failedResults`` /
``unprocessedrecords`` as CSV in no particular order. 150 MB base64-encoded per upload
(https://developer.salesforce.com/docs/platform/api-asynch/guide/upload-job-data.html); Salesforce advises
Bulk API above 2,000 records
(https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_bulkapi.htm).

:class:`SalesforceBulkIngest` holds the calls; :class:`crm_hooks.salesforce.SalesforceHook` mixes it in, so
the calls share the hook's session, token, retries and time budget.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from crm_hooks.errors import BadRecordError
from crm_hooks.soql import api_name

#: Salesforce record ids (a Bulk API job id starts with 750).
_JOB_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
#: Bulk API 2.0: 150 MB base64-encoded per upload, i.e. about 100 MB of CSV.
BULK_UPLOAD_MAX_BYTES = 100_000_000


@dataclass(frozen=True)
class BulkOutcome:
    """A Bulk API 2.0 ingest job's final info and its three result sets (rows as dicts)."""

    job: dict[str, Any]
    successful: list[dict[str, str]]
    failed: list[dict[str, str]]
    unprocessed: list[dict[str, str]]


def records_to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """Records as Bulk API 2.0 CSV (comma, LF, UTF-8): one column per field seen, ``attributes`` left out.

    ``None`` is an empty cell, which an upsert leaves unchanged on an existing record
    (``#N/A`` would set null); booleans are ``true``/``false``; quotes and line breaks are
    quoted as CSV requires.
    https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/datafiles_prepare_csv.htm
    """
    columns = list(dict.fromkeys(k for r in records for k in r if k != "attributes"))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow(
            ["" if (v := record.get(c)) is None else (str(v).lower() if isinstance(v, bool) else v) for c in columns]
        )
    return out.getvalue()


class SalesforceBulkIngest:
    """The Bulk API 2.0 ingest calls of :class:`crm_hooks.salesforce.SalesforceHook` (a mixin: it relies on
    the hook's ``data_path``, ``request``, ``request_json`` and ``check_budget``)."""

    #: Job states after which nothing more happens to the job.
    BULK_FINAL_STATES: ClassVar[tuple[str, ...]] = ("JobComplete", "Failed", "Aborted")
    #: Seconds :meth:`bulk_upsert` waits for a job before leaving its rows to the next run.
    bulk_timeout_seconds: ClassVar[float] = 900.0

    def _job_path(self, job_id: str, suffix: str = "") -> str:
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
            raise ValueError(f"invalid Bulk API job id {job_id!r}")
        return self.data_path(f"jobs/ingest/{job_id}{suffix}")

    def create_ingest_job(
        self, sobject: str, operation: str = "upsert", external_id_field: str | None = None
    ) -> dict[str, Any]:
        """Create a Bulk API 2.0 ingest job: ``POST /services/data/vXX.X/jobs/ingest``.

        Body ``{object, operation, externalIdFieldName (upsert), contentType: "CSV", lineEnding: "LF",
        columnDelimiter: "COMMA"}``; the answer is the job info (``id``, ``state: "Open"``,
        ``contentUrl``, ...).
        https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/create_job.htm
        """
        body: dict[str, Any] = {
            "object": api_name(sobject, "sObject name"),
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if operation == "upsert":
            if not external_id_field:
                raise ValueError("an upsert job needs external_id_field")
            body["externalIdFieldName"] = api_name(external_id_field, "external ID field")
        return self.request_json("POST", self.data_path("jobs/ingest"), json=body, endpoint="POST jobs/ingest") or {}

    def upload_job_data(self, job_id: str, csv_text: str) -> None:
        """Upload the job's CSV: ``PUT /services/data/vXX.X/jobs/ingest/{jobId}/batches``,
        ``Content-Type: text/csv``; Salesforce answers 201 without a body. At most 150 MB
        base64-encoded (about 100 MB of CSV) per upload.
        https://developer.salesforce.com/docs/platform/api-asynch/guide/upload-job-data.html
        """
        data = csv_text.encode("utf-8")
        if len(data) > BULK_UPLOAD_MAX_BYTES:
            raise ValueError(f"Bulk API 2.0 uploads take at most {BULK_UPLOAD_MAX_BYTES} bytes, got {len(data)}")
        self.request(
            "PUT",
            self._job_path(job_id, "/batches"),
            data=data,
            headers={"Content-Type": "text/csv"},
            endpoint="PUT jobs/ingest/batches",
        )

    def set_job_state(self, job_id: str, state: str) -> dict[str, Any]:
        """Close (``UploadComplete``: Salesforce starts processing) or abort (``Aborted``) a job:
        ``PATCH /services/data/vXX.X/jobs/ingest/{jobId}`` with ``{"state": ...}``; returns the job info.
        https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/close_job.htm
        """
        if state not in ("UploadComplete", "Aborted"):
            raise ValueError(f"a job can only be set to UploadComplete or Aborted, not {state!r}")
        return (
            self.request_json("PATCH", self._job_path(job_id), json={"state": state}, endpoint="PATCH jobs/ingest")
            or {}
        )

    def ingest_job_info(self, job_id: str) -> dict[str, Any]:
        """``GET /services/data/vXX.X/jobs/ingest/{jobId}``: ``state`` (Open, UploadComplete, InProgress,
        JobComplete, Failed, Aborted), ``numberRecordsProcessed``, ``numberRecordsFailed``, ``errorMessage``.
        https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/get_job_info.htm
        """
        return self.request_json("GET", self._job_path(job_id), endpoint="GET jobs/ingest") or {}

    def wait_for_ingest_job(
        self, job_id: str, *, timeout: float | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> dict[str, Any]:
        """Poll :meth:`ingest_job_info` (1 s, doubling to 30 s) until a final state or ``timeout``.

        Returns the last job info; its ``state`` is not final when the wait timed out.
        """
        deadline = time.monotonic() + (self.bulk_timeout_seconds if timeout is None else timeout)
        pause = 1.0
        while True:
            info = self.ingest_job_info(job_id)
            if info.get("state") in self.BULK_FINAL_STATES or time.monotonic() + pause > deadline:
                return info
            self.check_budget(pause)  # the run's time budget, not only this wait's own timeout
            sleep(pause)
            pause = min(30.0, pause * 2)

    def ingest_job_results(self, job_id: str, kind: str) -> list[dict[str, str]]:
        """One result CSV of a finished job, as dicts:

        * ``successfulResults``: ``sf__Id``, ``sf__Created`` (``true``/``false``) + the uploaded fields;
        * ``failedResults``: ``sf__Id``, ``sf__Error`` (``CODE:message:fields --``) + the uploaded fields;
        * ``unprocessedrecords``: the uploaded fields of rows the job never reached (failed/aborted job).

        The order is not the upload's: match rows by a key column.
        https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/get_job_successful_results.htm ,
        .../get_job_failed_results.htm , .../get_job_unprocessed_results.htm
        """
        if kind not in ("successfulResults", "failedResults", "unprocessedrecords"):
            raise ValueError(f"unknown Bulk API result kind {kind!r}")
        response = self.request(
            "GET",
            self._job_path(job_id, f"/{kind}"),
            headers={"Accept": "text/csv"},
            endpoint=f"GET jobs/ingest/{kind}",
        )
        response.encoding = "utf-8"
        return list(csv.DictReader(io.StringIO(response.text)))

    def bulk_upsert(self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]]) -> BulkOutcome:
        """Upsert ``records`` by an external id with one Bulk API 2.0 ingest job (idempotent by the key):
        create, upload, close, wait, then read the three result sets. About 7 API calls whatever the
        number of records (up to the upload limit), against 1 per 200 with sObject Collections.
        https://developer.salesforce.com/docs/platform/api-asynch/guide/walkthrough-upsert.html
        """
        if not records:
            return BulkOutcome({}, [], [], [])
        for i, record in enumerate(records):
            if record.get(external_id_field) in (None, ""):
                raise ValueError(f"record {i} has no value for external ID field {external_id_field}")
        job = self.create_ingest_job(sobject, "upsert", external_id_field)
        job_id = str(job.get("id"))
        try:
            self.upload_job_data(job_id, records_to_csv(records))
            self.set_job_state(job_id, "UploadComplete")
        except BadRecordError:
            # Refused before processing (e.g. a column the object lacks): nothing was written.
            self.set_job_state(job_id, "Aborted")
            raise
        info = self.wait_for_ingest_job(job_id)
        if info.get("state") not in self.BULK_FINAL_STATES:
            return BulkOutcome(info, [], [], [])
        return BulkOutcome(
            info,
            self.ingest_job_results(job_id, "successfulResults"),
            self.ingest_job_results(job_id, "failedResults"),
            self.ingest_job_results(job_id, "unprocessedrecords"),
        )


__all__ = ["BULK_UPLOAD_MAX_BYTES", "BulkOutcome", "SalesforceBulkIngest", "records_to_csv"]
