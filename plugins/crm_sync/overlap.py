"""Batches in order, a batch's visit creates in flight while the next batch decides its customers.

A batch of the sync is a generator of steps (:meth:`IntegrationSync._batch_steps`). It pauses (``yield``) at
most twice: once its customers are decided (its visits are not written yet), and, where the destination
sends its visit creates in a thread, while they are in flight. :func:`run_overlapped` runs the next batch up
to its first pause during the second, then completes the oldest batch in flight (once ``in_flight`` are),
and only then lets the next one write its visits. So the CRM's limit keeps working while a create waits out
a 429 or the engine prepares, claims and resolves the next batch, and still:

* batches are completed (their outcomes written to the ledger) in order, at most ``in_flight`` of them with
  visit creates in flight;
* a batch writes its visits only after the batches before it are complete, but up to ``in_flight`` - 1
  still sending: what an earlier batch re-sends or learns is in place first, and a stale account fact met
  by two batches is checked again once and serves both (:meth:`IntegrationSync._recheck_facts`);
* whatever error ends the run, the batches in flight are completed (their outcomes recorded, nothing left
  claimed without one), and the next one, paused before its visits, is abandoned: its rows are finished as
  not sent. A worker killed (``SystemExit``, ``KeyboardInterrupt``) completes nothing more: its claimed rows
  stay ``in_flight``, with the intent of each create, and the next run looks them up before sending.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator

Steps = Iterator[None]


def advance(steps: Steps) -> bool:
    """Run ``steps`` to their next pause: True when paused, False when they ended."""
    return next(steps, StopIteration) is not StopIteration


def complete(steps: Steps) -> None:
    """Run ``steps`` to their end (a pause goes straight on)."""
    for _ in steps:
        pass


def run_overlapped(
    batches: Iterable[Steps], abandon: Callable[[Steps], None], stopped: type[Exception], in_flight: int = 1
) -> None:
    """Run every batch of ``batches`` (each a generator of steps, taken when needed), in order, with up to
    ``in_flight`` batches' visit creates in flight at once.

    ``abandon(steps)`` finishes a batch paused before its visits when the run ends there. ``stopped`` is the
    exception a batch raises to end the run once it has recorded why: where the run is ending already, a
    batch in flight may raise it too while it is completed, and the first one is what is raised.
    """
    held: deque[Steps] = deque()  # batches paused with their visit creates in flight, oldest first
    try:
        for steps in batches:
            ready = advance(steps)  # customers decided: paused before its visits (or done)
            while len(held) >= in_flight:
                try:
                    complete(held.popleft())
                except Exception:
                    if ready:
                        with contextlib.suppress(stopped):
                            abandon(steps)
                    raise
            if ready and advance(steps):
                held.append(steps)
        while held:
            complete(held.popleft())
    except Exception:
        while held:
            with contextlib.suppress(stopped):
                complete(held.popleft())
        raise
