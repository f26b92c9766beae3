"""A sync fleet in threads that runs what the Celery task and the q2 job run: `sync.attempt.run_sync_attempt`
for each batch, then its decision: users held up come back after the back-off it chose (`common.backoff`) until
it gives up, users another sync holds come back after `BUSY_RETRY_SECONDS`. For benchmarks on the embedded
default (no broker).
"""

import datetime as dt
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Iterable

from django.db import close_old_connections, connections

from sync.attempt import BUSY_RETRY_SECONDS, run_sync_attempt

logger = logging.getLogger(__name__)


class ThreadedFleet:
    """`queue(ids)` as the webhooks and the sweep do; `threads` workers take due batches in order. `now` fixes
    every sync's window start (as the task's `at` does), for benchmarks that compare with the engine."""

    def __init__(self, threads: int, *, now: dt.datetime | None = None) -> None:
        self._now = now
        self._heap: list[tuple[float, int, list[int], int, bool]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._stopping = False
        self._running = 0
        self._threads = [threading.Thread(target=self._work, name=f"sync-{i}", daemon=True) for i in range(threads)]
        self.syncs = 0
        self.retries = 0
        self.gave_up = 0
        self.crashed = 0

    def __enter__(self) -> "ThreadedFleet":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(30)

    def queue(
        self, calendar_user_ids: Iterable[int], delay: float = 0, retries: int = 0, first_day: bool = False
    ) -> None:
        """Sync these users (of one source) after `delay` s; `first_day`: the near-term pass only."""
        ids = sorted(set(calendar_user_ids))
        if not ids:
            return
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), ids, retries, first_day))
            self._condition.notify()

    def idle(self) -> bool:
        """Nothing queued (not even a retry waiting for its back-off) and nothing running."""
        with self._condition:
            return not self._heap and not self._running

    def _take(self) -> tuple[list[int], int, bool] | None:
        with self._condition:
            while not self._stopping:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    _due, _order, ids, retries, first_day = heapq.heappop(self._heap)
                    self._running += 1
                    return ids, retries, first_day
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                self._condition.wait(wait)
            return None

    def _work(self) -> None:
        try:
            while (taken := self._take()) is not None:
                ids, retries, first_day = taken
                try:
                    self._sync(ids, retries, first_day)
                finally:
                    close_old_connections()
                    with self._condition:
                        self._running -= 1
        finally:
            connections.close_all()  # this thread's connections end with it

    def _count(self, name: str) -> None:
        with self._condition:
            setattr(self, name, getattr(self, name) + 1)

    def figures(self) -> dict[str, int]:
        with self._condition:
            return {"syncs": self.syncs, "retries": self.retries, "gave_up": self.gave_up, "crashed": self.crashed}

    def _sync(self, ids: list[int], retries: int, first_day: bool = False) -> None:
        try:
            outcome = run_sync_attempt(calendar_user_ids=ids, attempt=retries, now=self._now, first_day=first_day)
        except Exception:  # as a Celery task would fail: logged, not retried (the next sweep catches up)
            self._count("crashed")
            logger.exception("sync of users %s failed", ids)
            return
        self.queue(outcome.busy, delay=BUSY_RETRY_SECONDS, first_day=first_day)
        if outcome.results:
            self._count("syncs")
        if outcome.gave_up:
            self._count("gave_up")
            logger.warning("users %s: gave up after %d retries: %s", outcome.held_up, retries, outcome.error)
        elif outcome.retry_in is not None:
            self._count("retries")
            self.queue(outcome.held_up, delay=outcome.retry_in, retries=retries + 1, first_day=first_day)
