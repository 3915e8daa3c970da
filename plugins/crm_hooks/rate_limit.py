"""Client-side rate limiting, sized to each CRM's documented limit.

CRMs state their limits as "N requests per rolling window" (HubSpot: 190 per 10
seconds, search 5 per second). A rolling-window limiter keeps the time of the
last N calls and lets a call through only when fewer than N fell inside the
window: exactly the vendor's rule, so a sync can run at the full limit without
ever drawing a 429 (a token bucket of N would allow up to 2N in the first window).

One limiter per (CRM account, limit name), shared by every hook instance in the
process that talks to the same account. Across workers, the per-CRM Airflow pool
bounds concurrency. Waiting for a slot is not a failure and is not retried: it is
counted in ``waited_seconds`` so summaries can show what limits cost.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

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
    """Thread-safe: at most ``limit.requests`` calls in any ``limit.per_seconds`` window."""

    #: The CRM counts a call when it arrives, we when it leaves: a window 5% (+50 ms) longer than
    #: the vendor's keeps network jitter from tipping a full window into a 429 (which costs a
    #: whole window of waiting).
    MARGIN = 1.05
    SLACK_SECONDS = 0.05

    def __init__(self, limit: RateLimit):
        self.limit = limit
        self.window = limit.per_seconds * self.MARGIN + self.SLACK_SECONDS
        self.capacity = max(1, int(limit.requests or 1))
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self, deadline: float | None = None) -> float:
        """Wait for a free slot and take it; return the seconds spent waiting.

        :param deadline: a ``time.monotonic()`` value: a wait that would end past it raises
            :class:`BudgetExhaustedError` at once instead of sleeping (and takes no slot).
        """
        if self.limit.rate is None:
            return 0.0
        window = self.window
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._calls and self._calls[0] <= now - window:
                    self._calls.popleft()
                if len(self._calls) < self.capacity:
                    self._calls.append(now)
                    self.waited_seconds += waited
                    return waited
                sleep_for = self._calls[0] + window - now
            if deadline is not None and now + sleep_for > deadline:
                raise BudgetExhaustedError(
                    f"time budget reached: the next slot of this rate limit ({self.capacity:g} per "
                    f"{self.limit.per_seconds:g} s) is {sleep_for:.0f} s away"
                )
            time.sleep(sleep_for)
            waited += sleep_for

    def drain(self) -> None:
        """After a 429: treat the window as full, so the next call waits a whole window."""
        with self._lock:
            now = time.monotonic()
            self._calls = deque([now] * self.capacity)


_LIMITERS: dict[tuple[str, str], RollingWindowLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(account_key: str, name: str, limit: RateLimit) -> RollingWindowLimiter:
    """The process-wide limiter for one CRM account and one named limit."""
    key = (account_key, name)
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None or limiter.limit != limit:
            limiter = _LIMITERS[key] = RollingWindowLimiter(limit)
        return limiter
