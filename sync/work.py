"""The sync app's background work by name, for `common.queue.enqueue` (no other imports, so the services, jobs,
tasks and views that queue it can all import it)."""

from common.queue import Job

# a batch of one source's users (≤ 20): (calendar_user_ids, attempt=0, at=None) on either system
SYNC_USERS = Job(function="sync.jobs.sync_users_job", celery_task="sync.tasks.sync_users")
UNSUBSCRIBE = "sync.jobs.unsubscribe_job"  # (source_id, subscription_id)
RENEW_SUBSCRIPTIONS = "sync.jobs.renew_subscriptions_job"
FIRST_SYNC = "sync.jobs.first_sync_job"  # (source_id,): a newly connected source's group, subscriptions and sync
