"""The one back-off policy for work a throttled or unavailable service held up: the Celery task, the q2 job and
the benchmark fleet all wait what `backoff_seconds` says before they try again."""

import random

MAX_BACKOFF_SECONDS = 30.0
JITTER = 0.2  # ± 20 %, so a backlog held up together does not come back together


def backoff_seconds(attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (0 for the first).

    The service's Retry-After when it sent one, else 1, 2, 4 … s; at least 1 s; with ± 20 % jitter; never more
    than 30 s. `rng` draws the jitter (the module's generator unless given).
    """
    wait = retry_after or 2 ** min(attempt, 8)
    wait = min(max(wait, 1.0), MAX_BACKOFF_SECONDS)
    jitter = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return min(wait * jitter, MAX_BACKOFF_SECONDS)
