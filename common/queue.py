"""The one place that queues background work: callers name the work, this module picks the task system.

Work for the sync fleet (a `Job` with a Celery task) runs on Celery when a broker is configured (Celery is
not eager) and otherwise as a django-q2 job; back-office work (a q2 function's dotted path) always runs on
django-q2. `enqueue` sends once the current transaction commits (at once outside one), so a worker never
looks for rows that are not there yet. No other module calls `async_task`, `.delay` or `.apply_async`, or
asks whether Celery is eager (a test greps for them).
"""

import datetime as dt
import functools
import uuid
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task


@dataclass(frozen=True)
class Job:
    """Work the sync fleet runs: `function` (a dotted path) on django-q2, or the Celery task `celery_task` when a
    broker is configured. Both take the same positional arguments."""

    function: str
    celery_task: str


def celery_takes_sync_work() -> bool:
    """True when a broker is configured: Celery workers run the sync fleet. Without one Celery runs eagerly
    (the embedded default) and the q2 cluster runs the sync jobs, so a web request answers at once."""
    return not current_app.conf.task_always_eager


def enqueue(job: Job | str, *args: Any, name: str = "", delay: float = 0) -> None:
    """Queue `job(*args)` after the current transaction commits (at once outside one).

    `job` is a `Job` (sync work) or the dotted path of a q2 function (back-office work). `name` labels the q2
    task in admin; `delay` (seconds) holds it back: a countdown on Celery, a one-off schedule on q2.
    """
    transaction.on_commit(functools.partial(enqueue_now, job, *args, name=name, delay=delay))


def enqueue_now(job: Job | str, *args: Any, name: str = "", delay: float = 0, group: str = "") -> str:
    """Queue `job(*args)` now, not waiting for a commit, and return the task's id: for tools outside any
    transaction that wait for the result (benchmarks). `group` files the q2 task under a result group."""
    if isinstance(job, Job) and celery_takes_sync_work():
        return str(current_app.send_task(job.celery_task, args=args, countdown=delay or None).id)
    function = job.function if isinstance(job, Job) else job
    if delay > 0:
        return _schedule_once(function, args, name=name, delay=delay)
    options: dict[str, Any] = {"task_name": name} if name else {}
    if group:
        options["group"] = group
    return str(async_task(function, *args, **options))


def _schedule_once(function: str, args: tuple[Any, ...], *, name: str, delay: float) -> str:
    """q2 has no delayed task: a one-off schedule that the cluster's scheduler runs once it is due."""
    label = f"{name or function.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:12]}"
    schedule = Schedule.objects.create(
        name=label[-100:],
        func=function,
        args=repr(tuple(args)),
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=timezone.now() + dt.timedelta(seconds=delay),
    )
    return str(schedule.pk)
