"""Typed errors every CRM hook raises, so callers can decide without parsing text.

The sync engine treats them differently:

* :class:`RetryableError` (429, 5xx, timeouts, dropped connections): retried by the
  hook with backoff; if retries run out the rows stay ``failed`` and are retried
  next run.
* :class:`BadRecordError`: the CRM rejected one record (validation, duplicate
  rule, ...). Only that row is quarantined, with the reason.
* :class:`BadCredentialsError` / :class:`ConfigurationError`: nothing for this
  company x CRM can sync until someone fixes the settings. The run stops for that
  integration only.
* :class:`BudgetExhaustedError`: the task's time budget is used up; the request was
  not sent. The run stops cleanly and the unsent rows wait for the next run.
* :class:`QuotaExhaustedError`: the CRM's daily allocation is used up
  (Salesforce ``REQUEST_LIMIT_EXCEEDED``, HubSpot ``DAILY`` policy). Stop cleanly,
  never retry in a loop; the rows wait for the next run.

Messages are built from redacted text only (see :func:`crm_hooks.redaction.redact`).
"""

from __future__ import annotations


class CrmError(Exception):
    """Base class. ``code`` is the CRM's own error code when it gave one."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        return self.message


class RetryableError(CrmError):
    """A transient failure: the same request may succeed later."""


class RateLimitedError(RetryableError):
    """HTTP 429 (or the CRM's equivalent). ``retry_after`` is in seconds when the CRM said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class BadRecordError(CrmError):
    """The CRM refused the record itself; re-sending the same data will fail again."""


class BadCredentialsError(CrmError):
    """Authentication failed after a token refresh: the company must reconnect."""


class ConfigurationError(CrmError):
    """The integration's settings are incomplete or not allowed (missing key, foreign host)."""


class BudgetExhaustedError(CrmError):
    """The caller's time budget would be crossed by the next wait or request: stop cleanly, nothing was sent.

    Raised *before* a request (a rate-limiter wait, a backoff sleep or the request itself would
    end past the deadline), so the request it stands for never reached the CRM. Never retried.
    """


class QuotaExhaustedError(CrmError):
    """The CRM's daily/org-wide request allocation is exhausted; stop, do not retry."""
