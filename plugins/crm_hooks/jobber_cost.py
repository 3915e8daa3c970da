"""Jobber's query-cost budget: a client-side mirror of the account's leaky bucket.

Every GraphQL answer reports ``extensions.cost {requestedQueryCost, actualQueryCost, throttleStatus
{maximumAvailable, currentlyAvailable, restoreRate}}``; a request costing more than ``currentlyAvailable`` is
answered HTTP 200 with ``errors[].extensions.code = "THROTTLED"``
(https://developer.getjobber.com/docs/using_jobbers_api/api_rate_limits). The hook waits here for points
before sending, so the throttle answer stays rare.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

#: Query-cost budget from the rate-limit page's example, until a response reports the real one.
DEFAULT_COST_MAXIMUM = 10_000.0
DEFAULT_RESTORE_RATE = 500.0
#: Highest requested cost of one document: a quarter of the bucket, so one request never
#: waits long for points and other apps on the account keep some.
MAX_REQUEST_COST = 2_500
#: Longest wait for query-cost points inside one call (a full bucket refills in 20 s).
MAX_COST_WAIT_SECONDS = 30.0


class CostBudget:
    """Mirror of Jobber's leaky bucket for one account, fed by every ``throttleStatus``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.maximum = DEFAULT_COST_MAXIMUM
        self.available: float | None = None
        self.restore = DEFAULT_RESTORE_RATE
        self.at = 0.0

    def observe(self, status: Mapping[str, Any], now: float) -> None:
        try:
            maximum = float(status["maximumAvailable"])
            available = float(status["currentlyAvailable"])
            restore = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        with self.lock:
            self.maximum, self.available, self.at = maximum, available, now
            self.restore = restore if restore > 0 else DEFAULT_RESTORE_RATE

    def wait_for(self, cost: float, now: float, share: float = 1.0) -> float:
        """Seconds until ``cost`` points are available, keeping ``1 - share`` of the bucket for others."""
        with self.lock:
            if self.available is None:
                return 0.0
            current = min(self.maximum, self.available + self.restore * max(0.0, now - self.at))
            reserve = (1.0 - min(max(share, 0.0), 1.0)) * self.maximum
            needed = min(cost + reserve, self.maximum) - current
            return max(0.0, needed / self.restore)

    def spend(self, cost: float, now: float) -> None:
        """Account for a request we are about to send (the next answer corrects the figure)."""
        with self.lock:
            if self.available is not None:
                current = min(self.maximum, self.available + self.restore * max(0.0, now - self.at))
                self.available, self.at = max(0.0, current - cost), now


_BUDGETS: dict[str, CostBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def cost_budget(account_key: str) -> CostBudget:
    """The process-wide query-cost budget of one Jobber account (shared by its hook instances)."""
    with _BUDGETS_LOCK:
        return _BUDGETS.setdefault(account_key, CostBudget())


def throttle_wait(cost: Mapping[str, Any]) -> float | None:
    """``(requestedQueryCost - currentlyAvailable) / restoreRate`` seconds, at least 0.5."""
    status = cost.get("throttleStatus") if isinstance(cost, Mapping) else None
    try:
        requested = float(cost["requestedQueryCost"])
        available = float(status["currentlyAvailable"])  # type: ignore[index]
        rate = float(status["restoreRate"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
    if rate <= 0:
        return None
    return max(0.5, (requested - available) / rate + 0.1)


__all__ = [
    "DEFAULT_COST_MAXIMUM",
    "DEFAULT_RESTORE_RATE",
    "MAX_COST_WAIT_SECONDS",
    "MAX_REQUEST_COST",
    "CostBudget",
    "cost_budget",
    "throttle_wait",
]
