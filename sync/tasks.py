"""Celery tasks of the calendar-sync fleet (queue `sync`): thin wrappers around `sync.pipeline`."""

import datetime as dt
import socket

from celery import shared_task
from django.db import connection

from customers.models import ServiceUser
from sync import mbn, pipeline
from sync.models import CalendarUser
from sync.providers import ews, google, graph

# Imported here, once, before a thread-pool worker runs tasks side by side: a first import racing in
# several threads can see a half-initialised module (requests, exchangelib, googleapiclient).
PRELOADED = (mbn, ews, google, graph)

MAX_BACKOFF_SECONDS = 300


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
    claimed = [pk for pk in calendar_user_ids if pipeline.claim(calendar_user_id=pk)]
    # not claimed: another sync holds the user (look again later), or the user is gone (nothing to do)
    busy = list(
        CalendarUser.objects.filter(pk__in=[pk for pk in calendar_user_ids if pk not in claimed]).values_list(
            "pk", flat=True
        )
    )
    try:
        results = pipeline.sync_users(calendar_user_ids=claimed, now=now) if claimed else []
    except pipeline.RetryLater as error:
        backoff = error.retry_after or min(2**self.request.retries, MAX_BACKOFF_SECONDS)
        raise self.retry(
            args=[error.user_ids or claimed, at], countdown=min(max(backoff, 1), MAX_BACKOFF_SECONDS), exc=error
        ) from error
    finally:
        for pk in claimed:
            pipeline.release(calendar_user_id=pk)
    if busy and not sync_users.app.conf.task_always_eager:
        # another worker is syncing them right now: look again once it is done (eager mode has no
        # delay to wait with; there the next sweep catches up)
        sync_users.apply_async(args=[busy, at], countdown=2)
    return {
        "users": len(results),
        "mbn_requests": sum(r.mbn_requests for r in results),
        "errors": sum(1 for r in results if r.error),
    }
