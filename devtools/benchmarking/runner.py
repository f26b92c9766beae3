"""A sync fleet in threads, with the Celery task's rules: claim, sync, release; RetryLater → retry after its
back-off (`retry_after`, else 2^retries s, at most `sync.tasks.MAX_BACKOFF_SECONDS`, at most `max_retries`);
a user another sync holds → look again in 2 s. For benchmarks on the embedded default (no broker).
"""

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Iterable

from django.db import close_old_connections, connections

from sync import pipeline
from sync.tasks import MAX_BACKOFF_SECONDS
from sync.tasks import sync_users as sync_users_task

logger = logging.getLogger(__name__)
BUSY_RETRY_SECONDS = 2


class ThreadedFleet:
    """`queue(ids)` as the webhooks and the sweep do; `threads` workers take due batches in order."""

    def __init__(self, threads: int) -> None:
        self._heap: list[tuple[float, int, list[int], int]] = []
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

    def queue(self, calendar_user_ids: Iterable[int], delay: float = 0, retries: int = 0) -> None:
        ids = sorted(set(calendar_user_ids))
        if not ids:
            return
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), ids, retries))
            self._condition.notify()

    def idle(self) -> bool:
        """Nothing queued (not even a retry waiting for its back-off) and nothing running."""
        with self._condition:
            return not self._heap and not self._running

    def _take(self) -> tuple[list[int], int] | None:
        with self._condition:
            while not self._stopping:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    _due, _order, ids, retries = heapq.heappop(self._heap)
                    self._running += 1
                    return ids, retries
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                self._condition.wait(wait)
            return None

    def _work(self) -> None:
        try:
            while (taken := self._take()) is not None:
                ids, retries = taken
                try:
                    self._sync(ids, retries)
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

    def _sync(self, ids: list[int], retries: int) -> None:
        claimed = [pk for pk in ids if pipeline.claim(calendar_user_id=pk)]
        self.queue([pk for pk in ids if pk not in claimed], delay=BUSY_RETRY_SECONDS)
        try:
            if claimed:
                pipeline.sync_users(calendar_user_ids=claimed)
                self._count("syncs")
        except pipeline.RetryLater as error:
            if retries >= sync_users_task.max_retries:
                self._count("gave_up")
                logger.warning("users %s: gave up after %d retries: %s", claimed, retries, error)
                return
            backoff = error.retry_after or min(2**retries, MAX_BACKOFF_SECONDS)
            self._count("retries")
            self.queue(error.user_ids or claimed, delay=min(max(backoff, 1), MAX_BACKOFF_SECONDS), retries=retries + 1)
        except Exception:  # as a Celery task would fail: logged, not retried (the next sweep catches up)
            self._count("crashed")
            logger.exception("sync of users %s failed", claimed)
        finally:
            for pk in claimed:
                pipeline.release(calendar_user_id=pk)
