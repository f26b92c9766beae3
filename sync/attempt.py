"""One attempt at syncing a batch of users, and what to do next.

The Celery task (`sync.tasks.sync_users`), the q2 job (`sync.jobs.sync_users_job`) and the benchmark fleet
all run `run_sync_attempt`, so they share one back-off (`common.backoff`) and one rule for giving up.
"""

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from common.backoff import backoff_seconds
from sync import pipeline

MAX_RETRIES = 10  # after the first attempt; then the users wait for the next sweep
BUSY_RETRY_SECONDS = 2  # another sync holds the user: look again once it is done


@dataclass(frozen=True)
class SyncAttempt:
    """What one attempt did: the users synced, those another sync holds (`busy`: look again after
    BUSY_RETRY_SECONDS), and those a throttled or unavailable service held up (`held_up`: try again after
    `retry_in` seconds, or never when the attempts are used up)."""

    results: list[pipeline.UserResult] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    held_up: list[int] = field(default_factory=list)
    retry_in: float | None = None
    error: pipeline.RetryLater | None = None

    @property
    def gave_up(self) -> bool:
        return bool(self.held_up) and self.retry_in is None


def run_sync_attempt(
    *,
    calendar_user_ids: Sequence[int],
    attempt: int,
    now: dt.datetime | None = None,
    rng: random.Random | None = None,
    first_day: bool = False,
) -> SyncAttempt:
    """Claim, sync and release the users (attempt number `attempt`, 0 for the first) and decide the retry.
    `first_day`: the near-term pass only (`pipeline.sync_users`)."""
    try:
        results, busy = pipeline.sync_claimed(calendar_user_ids=calendar_user_ids, now=now, first_day=first_day)
    except pipeline.RetryLater as error:
        held_up = error.user_ids or list(calendar_user_ids)
        retry_in = None if attempt >= MAX_RETRIES else backoff_seconds(attempt, retry_after=error.retry_after, rng=rng)
        return SyncAttempt(held_up=held_up, retry_in=retry_in, error=error)
    return SyncAttempt(results=results, busy=busy)
