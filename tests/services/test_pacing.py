"""MBN pacing shared through Redis: several processes together stay under the enterprise's rate."""

import os
import threading
import time

import pytest

from sync.pipeline import _RedisPacer

pytestmark = pytest.mark.services


def test_two_processes_sharing_redis_stay_under_the_rate_together():
    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    key = f"test-{time.time_ns()}"
    pacers = [_RedisPacer(url), _RedisPacer(url)]  # each as one worker process would hold it
    stamps: list[float] = []
    lock = threading.Lock()

    def call(pacer: _RedisPacer) -> None:
        for _ in range(15):
            pacer.wait(key, 20.0)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=call, args=(pacer,)) for pacer in pacers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert len(stamps) == 60
    # 60 calls at 20/s take at least 2.95 s whichever process made them; no one-second window holds more than 21.
    assert stamps[-1] - stamps[0] >= 2.9
    assert max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps) <= 21


def test_an_unreachable_redis_falls_back_to_pacing_alone():
    pacer = _RedisPacer("redis://127.0.0.1:1/0")
    started = time.monotonic()
    for _ in range(5):
        pacer.wait("fallback", 100.0)
    assert time.monotonic() - started < 10


def test_a_near_term_pass_in_one_process_holds_the_enterprises_other_calls_in_another():
    from sync.pipeline import URGENT_HOLD_SECONDS

    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    key = f"test-urgent-{time.time_ns()}"
    first_day, full = _RedisPacer(url), _RedisPacer(url)  # two worker processes
    first_day.wait(key, 1000.0, urgent=True)
    started = time.monotonic()
    full.wait(f"{key}-elsewhere", 1000.0)  # another enterprise: at once
    assert time.monotonic() - started < 0.2
    full.wait(key, 1000.0)  # waits until no near-term call came for URGENT_HOLD_SECONDS
    assert time.monotonic() - started >= URGENT_HOLD_SECONDS * 0.9
    started = time.monotonic()
    first_day.hold_for_urgent(key)  # a first-day pass starts reading its calendars
    full.wait(key, 1000.0)
    assert time.monotonic() - started >= URGENT_HOLD_SECONDS * 0.9
