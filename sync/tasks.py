"""Celery tasks of the calendar-sync fleet (queue `sync`): thin wrappers around `sync.pipeline`."""

import datetime as dt
import random
import socket

from celery import shared_task
from django.db import connection

from customers.models import ServiceUser
from sync import mbn, pipeline
from sync.providers import ews, google, graph

# Imported here, once, before a thread-pool worker runs tasks side by side: a first import racing in
# several threads can see a half-initialised module (requests, exchangelib, googleapiclient).
PRELOADED = (mbn, ews, google, graph)

MAX_BACKOFF_SECONDS = 30


def backoff_seconds(error: pipeline.RetryLater, retries: int) -> float:
    """The service's Retry-After, else 1, 2, 4 … s, at most 30 s, with ±20 % jitter so a backlog spreads out."""
    wait = error.retry_after or min(2**retries, MAX_BACKOFF_SECONDS)
    return min(max(wait, 1), MAX_BACKOFF_SECONDS) * random.uniform(0.8, 1.2)


@shared_task(name="sync.tasks.worker_health")
def worker_health() -> dict[str, object]:
    """Proves a sync worker is up and reaches the database: host, database vendor, service users."""
    return {
        "hostname": socket.gethostname(),
        "database": connection.vendor,
        "service_users": ServiceUser.objects.count(),
    }


@shared_task(bind=True, name="sync.tasks.sync_users", acks_late=True, max_retries=10)
def sync_users(self, calendar_user_ids: list[int], at: str | None = None) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Sync a batch of one source's users (≤ 20: one Graph $batch). Idempotent; safe to run twice.

    `at` (an ISO instant) fixes the sync window's start, for benchmarks that compare with the engine.
    A throttled or unavailable service retries only the users it held up, after the back-off.
    """
    now = dt.datetime.fromisoformat(at) if at else None
    try:
        results, busy = pipeline.sync_claimed(calendar_user_ids=calendar_user_ids, now=now)
    except pipeline.RetryLater as error:
        raise self.retry(
            args=[error.user_ids or calendar_user_ids, at],
            countdown=backoff_seconds(error, self.request.retries),
            exc=error,
        ) from error
    if busy and not sync_users.app.conf.task_always_eager:
        # another worker is syncing them right now: look again once it is done (eager mode has no
        # delay to wait with; there the next sweep catches up)
        sync_users.apply_async(args=[busy, at], countdown=2)
    return {
        "users": len(results),
        "mbn_requests": sum(r.mbn_requests for r in results),
        "errors": sum(1 for r in results if r.error),
        "not_pushed": sum(1 for r in results if r.not_pushed),
    }
