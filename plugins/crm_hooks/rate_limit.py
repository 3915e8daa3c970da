"""Client-side rate limiting: each CRM's documented limit as a ceiling, adapted to what the account allows.

CRMs state their limits as "N requests per rolling window" (HubSpot: 190 per 10
seconds, search 5 per second). A rolling-window limiter keeps the time of the
last N calls and lets a call through only when fewer than N fell inside the
window: exactly the vendor's rule, so a sync can run at the full limit without
ever drawing a 429 (a token bucket of N would allow up to 2N in the first window).

**A call's slot is freed one window after its answer came back**, not after it was sent
(:meth:`RollingWindowLimiter.acquire` with ``in_flight=True``, then :meth:`~RollingWindowLimiter.release`).
The vendor counts a call at some moment between our send and its answer; the next call to take the slot
is sent a whole window after that answer, so the vendor sees the two at least a window apart whatever
the network or the scheduler did in between. A window stamped at the send needed a margin guessed for
that jitter (5% + 50 ms): it cost 5 to 10% of every limit and still drew 429s on a busy machine
(HubSpot's search limit, 5 / s, when a thread was descheduled between taking a slot and sending).

**A 429 is not a whole window.** A 429 is waited out by the hook (``Retry-After``, else exponential
backoff, :mod:`crm_hooks.base`); the limiter blocks a whole window only when the vendor says the window
is exhausted (:meth:`RollingWindowLimiter.drain`; see :func:`hubspot_window_exhausted`,
:func:`jobber_window_exhausted`, :func:`salesforce_usage`).

**Adaptive limit (AIMD).** Housecall Pro and FieldEdge publish no limit, and an account's real limit may be
lower than the default (a HubSpot Starter portal, a vendor's per-tenant setting). The limiter's rate is
therefore ``current`` requests per window, at most the ceiling (the documented default or the admin-set
``crmSettings`` value, never exceeded):

* a 429 that shows the account's limit is lower (:meth:`RollingWindowLimiter.rate_limited`: the vendor asks
  for a pause of at least a quarter window and 2 s, or 3 of the last 10 sends were refused; 4 for a
  published limit) lowers ``current``
  multiplicatively (x :attr:`~RollingWindowLimiter.DECREASE`; after a long wait, to the calls the vendor
  accepted in the last window when that is lower). Calls of an unpublished limit are spaced evenly (a burst of N calls
  would trip a vendor window shorter than ours); a published one keeps its bursts, so the time a 429
  cost is caught up within the window;
* an isolated 429 (a transient fault, 3% of answers in the benchmark's faults profile) lowers nothing;
* the rate refused (:attr:`~RollingWindowLimiter.refused_at`: after a long wait, what the vendor accepted
  in the last window, its limit; else the rate that drew the refusals) is the account's limit until shown
  otherwise: the limiter climbs back to 95% of it (:attr:`~RollingWindowLimiter.hold`) and above that only
  probes (ten times slower); a 429 while probing goes straight back to the hold without lowering it (a
  fault there must not ratchet the rate down). Climbing back at full speed and lowering only on a cluster
  drew a 429 every few seconds at a hidden limit (Housecall Pro at 60 / min: 5.78% of calls refused);
* every clean answer adds ``1 / current`` (one more call per window after a window's worth of clean
  answers) up to the ceiling; a probe that passes the refused rate without a refusal raises it.

The learned rate (the hold, not a probe above it) is kept per CRM account in ``crm_sync.learned_rate_limits``
(read at run start, written at run end: :mod:`crm_sync.rate_state`), so the next run starts from it and
holds it.

One limiter per (CRM account, limit name), shared by every hook instance in the
process that talks to the same account. Across workers, the per-CRM Airflow pool
bounds concurrency. Waiting for a slot is not a failure and is not retried: it is
counted in ``waited_seconds`` so summaries can show what limits cost.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crm_hooks.errors import BudgetExhaustedError


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``per_seconds``; ``None`` requests means unlimited."""

    requests: float | None
    per_seconds: float = 1.0

    @property
    def rate(self) -> float | None:
        return None if not self.requests else self.requests / self.per_seconds

    def scaled(self, share: float) -> RateLimit:
        """This limit times ``share`` (0 < share <= 1), for runs that must leave headroom."""
        if not self.requests:
            return self
        return RateLimit(max(self.requests * share, 1.0), self.per_seconds)


class RollingWindowLimiter:
    """Thread-safe: at most ``current`` calls in any ``limit.per_seconds`` window, ``current`` <= the ceiling."""

    #: Slots are stamped when the answer arrives (see the module docstring): the window needs no margin
    #: for jitter, only this much for a vendor whose clock ticks coarser than ours.
    SLACK_SECONDS = 0.01
    #: Multiplicative decrease on a 429 that shows a lower limit.
    DECREASE = 0.85
    #: ... or to this share of the calls the vendor accepted in the last window, when lower.
    ACCEPTED_SHARE = 0.95
    #: A 429 whose wait is at least this share of the window shows a lower limit (the vendor's window is full).
    LONG_WAIT_SHARE = 0.25
    #: ... as do :attr:`CLUSTER_REFUSED` refused sends among the last :attr:`CLUSTER_SENDS`. Random faults
    #: must not look like a limit: at 3% of answers 429, 3 of 10 happens about once in 350 sends (FieldEdge
    #: lost a third of its throughput to rates lowered that way), 5 of 20 about once in 4,000; a limit
    #: below ours refuses about every other send and is seen within 10.
    CLUSTER_SENDS = 20
    CLUSTER_REFUSED = 5
    #: A published limit is the account's limit unless shown otherwise: one more refusal to be convinced.
    CLUSTER_REFUSED_PUBLISHED = 6
    #: Additive increase per window's worth of clean answers: this share of the ceiling (at least 1 call).
    INCREASE_SHARE = 0.005
    #: The hold: this share of the rate the vendor last refused. Above it the increase is :attr:`PROBE_SLOWDOWN`
    #: times slower and a 429 goes back to the hold: climbing back at full speed to a limit just found drew
    #: its 429s again every few minutes (a hidden limit of half the default: 3.5% of calls refused).
    PROBE_SHARE = 0.95
    PROBE_SLOWDOWN = 10.0

    def __init__(self, limit: RateLimit, *, paced: bool = False):
        self.limit = limit
        self.window = limit.per_seconds + self.SLACK_SECONDS
        #: the ceiling (requests per window) and the adapted rate (never above it)
        self.ceiling = max(1.0, float(limit.requests or 1))
        self.current = self.ceiling
        self.paced = paced
        #: when the answers of the calls in the window came back (oldest first), and the calls still awaiting one
        self._calls: deque[float] = deque()
        self._in_flight = 0
        self._refused: deque[float] = deque()
        self._outcomes: deque[bool] = deque(maxlen=self.CLUSTER_SENDS)  # True: refused (429)
        self._next_start = 0.0
        self._started_at: float | None = None
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self.waited_seconds = 0.0
        #: 429s that lowered the rate (for tests and summaries)
        self.decreases = 0
        #: the rate (requests per window) the last decrease came from: the account's limit is about there
        self.refused_at: float | None = None

    @property
    def capacity(self) -> int:
        """Calls allowed in one window now."""
        return max(1, int(self.current))

    @property
    def learned_rate(self) -> float | None:
        """The adapted rate in requests per second when below the ceiling, else None (nothing learned)."""
        if self.limit.rate is None or self.current >= self.ceiling:
            return None
        hold = self.hold
        # The rate held, not a probe above it: a run that ended mid-probe must not start the next one there.
        return (self.current if hold is None else min(self.current, hold)) / self.limit.per_seconds

    @property
    def hold(self) -> float | None:
        """Requests per window held once a limit was found (:attr:`PROBE_SHARE` of it); above it, only probes."""
        return None if self.refused_at is None else self.PROBE_SHARE * self.refused_at

    def start_from(self, rate_per_second: float | None) -> None:
        """Start from a rate learned by an earlier run (capped by the ceiling: an admin limit wins)."""
        if rate_per_second is None or self.limit.rate is None or rate_per_second <= 0:
            return
        with self._lock:
            self.current = max(1.0, min(self.ceiling, rate_per_second * self.limit.per_seconds))
            self.refused_at = self.current / self.PROBE_SHARE  # the rate held last run: hold it again, probe above

    def acquire(self, deadline: float | None = None, *, in_flight: bool = False) -> float:
        """Wait for a free slot and take it; return the seconds spent waiting.

        :param deadline: a ``time.monotonic()`` value: a wait that would end past it raises
            :class:`BudgetExhaustedError` at once instead of sleeping (and takes no slot).
        :param in_flight: the slot is held until :meth:`release`, and its window runs from then (the time
            the answer came back). Without it the window runs from now (a call already answered).
        """
        if self.limit.rate is None:
            return 0.0
        window = self.window
        waited = 0.0
        with self._lock:
            while True:
                now = time.monotonic()
                while self._calls and self._calls[0] <= now - window:
                    self._calls.popleft()
                while self._refused and self._refused[0] <= now - window:
                    self._refused.popleft()
                # Free when fewer than ``capacity`` calls are in the window or awaiting their answer; else
                # the ``over``-th oldest answer must leave the window (or, if that many are in flight, come back).
                over = len(self._calls) + self._in_flight - self.capacity + 1
                sleep_for: float | None = 0.0
                if over > 0:
                    sleep_for = self._calls[over - 1] + window - now if over <= len(self._calls) else None
                if self.paced:
                    pace = self._next_start - now
                    sleep_for = max(sleep_for, pace) if sleep_for is not None else sleep_for
                if sleep_for is not None and sleep_for <= 0:
                    if in_flight:
                        self._in_flight += 1
                    else:
                        self._calls.append(now)
                    if self._started_at is None:
                        self._started_at = now
                    self._next_start = now + window / self.current
                    self.waited_seconds += waited
                    return waited
                if deadline is not None and now + (sleep_for or 0.0) > deadline:
                    raise BudgetExhaustedError(
                        f"time budget reached: the next slot of this rate limit ({self.capacity:g} per "
                        f"{self.limit.per_seconds:g} s) is {sleep_for or window:.0f} s away"
                    )
                if sleep_for is None:
                    # Every slot awaits an answer: wait for one to come back (not sleeping: no clock to read).
                    started = time.monotonic()
                    timeout = window if deadline is None else max(0.0, min(window, deadline - started))
                    self._released.wait(timeout)
                    waited += time.monotonic() - started
                    continue
                self._lock.release()
                try:
                    time.sleep(sleep_for)
                finally:
                    self._lock.acquire()
                waited += sleep_for

    def release(self) -> None:
        """The answer to a call taken with ``acquire(in_flight=True)`` came back (or it was never sent):
        its window runs from now."""
        if self.limit.rate is None:
            return
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._calls.append(time.monotonic())
            self._released.notify()

    def drain(self) -> None:
        """The vendor said the window is exhausted: treat it as full, so the next call waits a whole window."""
        with self._lock:
            now = time.monotonic()
            self._calls = deque([now] * self.capacity)

    def succeeded(self) -> None:
        """A clean answer: additive increase, one more call per window after a window's worth of them."""
        if self.limit.rate is None:
            return
        with self._lock:
            self._outcomes.append(False)
            if self.current < self.ceiling:
                step = max(1.0, self.INCREASE_SHARE * self.ceiling)
                hold = self.hold
                if hold is not None and self.current >= hold:
                    step /= self.PROBE_SLOWDOWN  # at the rate the account was found to allow: probe, do not climb
                self.current = min(self.ceiling, self.current + step / self.current)
                if self.refused_at is not None and self.current > self.refused_at:
                    self.refused_at = self.current  # probed past it without a refusal: it was too low

    def rate_limited(self, retry_after: float | None = None, *, exhausted: bool = False) -> bool:
        """A 429 the vendor did not call window-exhausted; return True when it lowered the rate.

        Lowered when it shows the account's limit is below ours (see the module docstring): to
        ``current`` x :attr:`DECREASE`, or to the calls the vendor accepted in the last window when that is
        lower (known once the limiter has run a whole window). An isolated 429 lowers nothing; one the vendor
        called window-exhausted (``exhausted``: our ceiling let through more than the account allows) always.
        """
        if self.limit.rate is None:
            return False
        with self._lock:
            now = time.monotonic()
            self._outcomes.append(True)
            self._refused.append(now)
            long_wait = retry_after is not None and retry_after >= max(
                2.0, self.LONG_WAIT_SHARE * self.limit.per_seconds
            )
            hold = self.hold
            if hold is not None and self.current > hold and not (long_wait or exhausted):
                # Probing above the rate the account was found to allow drew a refusal: back to it. Not a
                # new estimate of the limit (a random fault here must not ratchet the rate down).
                self.current = max(1.0, hold)
                self._outcomes.clear()
                self.decreases += 1
                return True
            cluster = self.CLUSTER_REFUSED if self.paced else self.CLUSTER_REFUSED_PUBLISHED
            if not (long_wait or exhausted) and sum(self._outcomes) < cluster:
                return False
            target = self.current * self.DECREASE
            refused_at = self.current
            if (long_wait or exhausted) and self._started_at is not None and now - self._started_at >= self.window:
                accepted = sum(1 for t in self._calls if t > now - self.window) - len(self._refused)
                if accepted >= 1:
                    target = min(target, accepted * self.ACCEPTED_SHARE)
                    # The vendor's window is full: what it accepted in the last window is its limit.
                    refused_at = min(refused_at, float(accepted))
            self.refused_at = refused_at
            self.current = max(1.0, target)
            self._outcomes.clear()
            self.decreases += 1
            return True


_LIMITERS: dict[tuple[str, str], RollingWindowLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(account_key: str, name: str, limit: RateLimit, *, paced: bool = False) -> RollingWindowLimiter:
    """The process-wide limiter for one CRM account and one named limit (``paced``: for a new limiter)."""
    key = (account_key, name)
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None or limiter.limit != limit:
            limiter = _LIMITERS[key] = RollingWindowLimiter(limit, paced=paced)
        return limiter


# ---------------------------------------------------------------------------- what vendors say about windows
def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def hubspot_window_exhausted(headers: Mapping[str, str]) -> float | None:
    """HubSpot: seconds until the exhausted window frees, or None when the headers do not say it is exhausted.

    ``X-HubSpot-RateLimit-Remaining: 0`` means the burst window is used up: wait
    ``X-HubSpot-RateLimit-Interval-Milliseconds`` (10 s when absent). ``-Daily-Remaining: 0`` is the daily
    quota, which the hook reports as a quota error (429 ``policyName: DAILY``), not a window.
    Source: https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines.md (headers
    ``X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds/-Daily/-Daily-Remaining``; search answers
    carry none). Whether a 429 itself carries them is UNCONFIRMED: without them a 429 is not a whole window.
    """
    if _int_header(headers, "X-HubSpot-RateLimit-Remaining") != 0:
        return None
    interval = _int_header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
    return (interval if interval and interval > 0 else 10_000) / 1000.0


def jobber_window_exhausted(body: Any) -> float | None:
    """Jobber: seconds until the query-cost bucket holds the refused request's cost, or None.

    Every GraphQL answer carries ``extensions.cost {requestedQueryCost, throttleStatus {maximumAvailable,
    currentlyAvailable, restoreRate}}``; when ``currentlyAvailable`` is below the requested cost the bucket
    is exhausted for that request: ``(requested - available) / restoreRate`` seconds
    (https://developer.getjobber.com/docs/using_jobbers_api/api_rate_limits; the figures 10,000 points and
    500 / s are UNCONFIRMED and read at run time). A 429 from Jobber's DDoS guard (2,500 requests / 5 min)
    without this says nothing about the window (UNCONFIRMED whether it carries ``Retry-After``).
    """
    extensions = body.get("extensions") if isinstance(body, Mapping) else None
    cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
    status = cost.get("throttleStatus") if isinstance(cost, Mapping) else None
    if not isinstance(status, Mapping):
        return None
    available, restore = status.get("currentlyAvailable"), status.get("restoreRate")
    requested = cost.get("requestedQueryCost")
    numbers = (available, restore, requested)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) or restore <= 0:
        return None
    if available >= requested:
        return None
    return (requested - available) / restore


_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def salesforce_usage(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """Salesforce ``Sforce-Limit-Info: api-usage=USED/MAX`` as ``(used, max)``, or None.

    The allocation is per rolling 24 h: ``used >= max`` means exhausted for the day (Salesforce then answers
    403 ``REQUEST_LIMIT_EXCEEDED``, a quota error, not a window to wait out). Source:
    https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm
    (``; api-bursts=`` in newer answers: UNCONFIRMED, ignored).
    """
    match = _API_USAGE.search(headers.get("Sforce-Limit-Info", "") or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


__all__ = [
    "RateLimit",
    "RollingWindowLimiter",
    "hubspot_window_exhausted",
    "jobber_window_exhausted",
    "limiter_for",
    "salesforce_usage",
]
