"""Celery tasks of the calendar-sync fleet (queue `sync`): thin wrappers around `sync.attempt` and `sync.pipeline`."""

import datetime as dt
import socket

from celery import shared_task
from django.db import connection

from common.queue import enqueue
from customers.models import ServiceUser
from sync import mbn
from sync.attempt import BUSY_RETRY_SECONDS, run_sync_attempt
from sync.providers import ews, google, graph
from sync.work import SYNC_USERS, sync_args

# Imported here, once, before a thread-pool worker runs tasks side by side: a first import racing in
# several threads can see a half-initialised module (requests, exchangelib, googleapiclient).
PRELOADED = (mbn, ews, google, graph)


@shared_task(name="sync.tasks.worker_health")
def worker_health() -> dict[str, object]:
    """Proves a sync worker is up and reaches the database: host, database vendor, service users."""
    return {
        "hostname": socket.gethostname(),
        "database": connection.vendor,
        "service_users": ServiceUser.objects.count(),
    }


# max_retries=None: `run_sync_attempt` decides when to give up, for the q2 job and the benchmarks alike
@shared_task(bind=True, name="sync.tasks.sync_users", acks_late=True, max_retries=None)
def sync_users(  # type: ignore[no-untyped-def]
    self, calendar_user_ids: list[int], attempt: int = 0, at: str | None = None, first_day: bool = False
) -> dict[str, int]:
    """Sync a batch of one source's users (≤ 20: one Graph $batch). Idempotent; safe to run twice.

    `attempt` counts the attempts made before this task (a batch handed over from a q2 job); `at` (an ISO
    instant) fixes the sync window's start, for benchmarks that compare with the engine; `first_day` makes it
    the near-term pass of a big sync (`sync.services.sync_passes`). A throttled or
    unavailable service retries only the users it held up, after the back-off of `common.backoff`.
    """
    if not isinstance(attempt, int):  # queued by the older `sync_users(ids, at)` before an upgrade
        attempt, at = 0, attempt if isinstance(attempt, str) else at
    now = dt.datetime.fromisoformat(at) if at else None
    outcome = run_sync_attempt(
        calendar_user_ids=calendar_user_ids, attempt=attempt + self.request.retries, now=now, first_day=first_day
    )
    if outcome.busy:  # another worker is syncing them right now: look again once it is done
        enqueue(SYNC_USERS, *sync_args(outcome.busy, attempt, at, first_day), delay=BUSY_RETRY_SECONDS)
    if outcome.error is not None:
        if outcome.gave_up:
            raise outcome.error  # the task fails, visibly; the next sweep tries again
        args = list(sync_args(outcome.held_up, attempt, at, first_day))
        raise self.retry(args=args, countdown=outcome.retry_in, exc=outcome.error)
    return {
        "users": len(outcome.results),
        "mbn_requests": sum(r.mbn_requests for r in outcome.results),
        "errors": sum(1 for r in outcome.results if r.error),
        "not_pushed": sum(1 for r in outcome.results if r.not_pushed),
    }
