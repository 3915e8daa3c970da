"""Client-side rate limiting, sized to each CRM's documented limit.

A token bucket per (CRM account, limit name): HubSpot's ten-secondly burst limit
and its separate search limit are two buckets for one portal. Buckets are shared
by every hook instance in the process that talks to the same account, so two
tasks on one worker never add up to more than the limit. Across workers the
per-CRM Airflow pool bounds concurrency.

Waiting for a token is not a failure and is not retried: it is counted in
``waited_seconds`` so the run summary can show how much time limits cost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


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
        return RateLimit(max(self.requests * share, 0.01), self.per_seconds)


class TokenBucket:
    """Thread-safe token bucket. ``acquire`` blocks until a token is free."""

    def __init__(self, limit: RateLimit):
        self.limit = limit
        self.capacity = max(1.0, float(limit.requests or 1))
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> float:
        """Take one token; return the seconds spent waiting for it."""
        rate = self.limit.rate
        if rate is None:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    self.waited_seconds += waited
                    return waited
                sleep_for = (1 - self._tokens) / rate
            time.sleep(sleep_for)
            waited += sleep_for

    def drain(self) -> None:
        """Empty the bucket, e.g. after a 429, so the next call waits a full refill."""
        with self._lock:
            self._tokens = 0.0
            self._updated = time.monotonic()


_BUCKETS: dict[tuple[str, str], TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def bucket_for(account_key: str, name: str, limit: RateLimit) -> TokenBucket:
    """The process-wide bucket for one CRM account and one named limit."""
    key = (account_key, name)
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None or bucket.limit != limit:
            bucket = _BUCKETS[key] = TokenBucket(limit)
        return bucket
