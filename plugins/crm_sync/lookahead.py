"""Customer look-ups read a few batches ahead: the next batches' CRM reads run while this batch writes.

Where a CRM's reads have a limit of their own beside the writes' (HubSpot: the search endpoint's 5 / s, see
:mod:`crm_hooks.hubspot`), a batch that writes leaves the reads idle, and a 429 or a 5xx on one of its calls
stalls the whole sync for the retry's wait (every lane of a step waits for the slowest). Reading the next
batches' customers meanwhile keeps both limits busy. Reads only: nothing is created or changed ahead, and the
engine still decides every customer itself, in batch order (:meth:`IntegrationSync._resolve_customers`).

A key is read ahead only when no write of this sync can change its answer before the engine uses it: the
keys of the batches queued before it (written first) are not asked for; the engine resolves them from the
customer map, which those batches fill, or asks the CRM itself. So is every key of a read that failed: a
read ahead costs nothing but its calls, it never decides a customer.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from crm_sync.destinations.base import CustomerRef
from crm_sync.models import PreparedCheckIn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadAhead:
    """What was prepared and read for one batch before the engine reached it."""

    #: the batch's rows prepared (``prepare_check_in`` + field rules), one per row, in order
    items: list[PreparedCheckIn]
    #: the rows the batch will send (neither unchanged nor without an identity)
    sending: list[PreparedCheckIn] = field(default_factory=list)
    #: match key -> the customer the CRM answered, or None: asked, and the CRM has none
    answers: Mapping[str, CustomerRef | None] = field(default_factory=dict)

    @property
    def keys(self) -> frozenset[str]:
        """Every match key of the rows the batch sends: what its writes may change in the CRM."""
        return frozenset(k for row in self.sending for k in row.match_keys)


Rows = list[dict[str, Any]]
Answers = dict[str, CustomerRef | None]


class LookAhead:
    """Read customers for up to ``depth`` batches ahead of the one the engine is at, in threads (:attr:`READERS`).

    ``prepare(batch)`` runs in the caller's thread when a batch is taken from the source (the engine would
    prepare it anyway; Python work in a thread beside the engine's database writes would slow them: the
    GIL). ``read(prepared, skip, cancelled)`` runs in a thread: the CRM's answers for the keys of the rows
    the batch sends, except ``skip`` (the keys of the batches before it, still to be written: their answer
    could change before this batch is sent). It must not write anything, and may stop early when
    ``cancelled`` is set (the run is ending). Use as a context manager: leaving it cancels reads not started
    and waits for the ones running (their calls end within the hook's retries and time budget).
    """

    #: Reads running at once, nearest batches first. Every read beside the next batch's shares its limit and
    #: delays it (eight at once left the engine waiting on the search limit: HubSpot clean 31.6 s against
    #: 27.3 s with one); one alone stalls on each 429 (faults 36.5 s; two: 30.4 and 31.7 s; 20,000 rows).
    READERS = 2

    def __init__(
        self,
        prepare: Callable[[Rows], ReadAhead],
        read: Callable[[ReadAhead, frozenset[str], threading.Event], Answers],
        depth: int,
    ):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self._prepare, self._read = prepare, read
        self.cancelled = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=min(depth, self.READERS), thread_name_prefix="crm-lookahead")

    def __enter__(self) -> LookAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancelled.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def batches(self, batches: Iterable[Rows]) -> Iterator[tuple[Rows, ReadAhead]]:
        """Each batch of ``batches`` with what was read ahead for it. A read that failed answers nothing
        (the engine asks the CRM itself)."""
        source = iter(batches)
        # A batch, what was prepared of it, and its read. Its writes come before any batch after it.
        queue: deque[tuple[Rows, ReadAhead, Future[Answers]]] = deque()
        while True:
            # The batch handed out next, and ``depth`` more being read. Every batch handed out before is done.
            while len(queue) <= self.depth:
                batch = next(source, None)
                if batch is None:
                    break
                prepared = self._prepare(batch)
                skip = frozenset().union(*(queued.keys for _, queued, _ in queue))
                queue.append((batch, prepared, self._pool.submit(self._read, prepared, skip, self.cancelled)))
            if not queue:
                return
            batch, prepared, future = queue.popleft()
            try:
                answers = future.result()
            except Exception as exc:  # a bug in the read: the engine asks for every key itself
                log.warning("reading customers ahead failed (%s); the batch asks as it is sent", type(exc).__name__)
                answers = {}
            yield batch, dataclasses.replace(prepared, answers=answers)
