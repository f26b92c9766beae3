"""The sync app's background work by name, for `common.queue.enqueue` (no other imports, so the services, jobs,
tasks and views that queue it can all import it)."""

from typing import Any

from common.queue import Job

# a batch of one source's users (≤ 20): (calendar_user_ids, attempt=0, at=None, first_day=False) on either system
SYNC_USERS = Job(function="sync.jobs.sync_users_job", celery_task="sync.tasks.sync_users")


def sync_args(ids: list[int], attempt: int = 0, at: str | None = None, first_day: bool = False) -> tuple[Any, ...]:
    """SYNC_USERS's arguments; `first_day` only when set, so a full sync's are what older workers take."""
    return (ids, attempt, at, True) if first_day else (ids, attempt, at)


UNSUBSCRIBE = "sync.jobs.unsubscribe_job"  # (source_id, subscription_id)
RENEW_SUBSCRIPTIONS = "sync.jobs.renew_subscriptions_job"
FIRST_SYNC = "sync.jobs.first_sync_job"  # (source_id,): a newly connected source's group, subscriptions and sync
