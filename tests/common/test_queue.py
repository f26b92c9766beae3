"""`common.queue`: the one module that queues background work, after commit, on Celery or django-q2."""

import ast
import datetime as dt
import re
from pathlib import Path

import pytest
from celery import current_app
from celery.signals import before_task_publish
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from common.queue import celery_takes_sync_work, enqueue
from sync.work import SYNC_USERS

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("kalenderpush", "customers", "billing", "sync", "portal", "common")
# what only the queue module may write: queueing on either system, or asking which system is in use
QUEUEING = re.compile(
    r"async_task\(|task_always_eager|\.CELERY_TASK_ALWAYS_EAGER|\.delay\(|\.delay_on_commit\(|\.apply_async\(|send_task\("
)


@pytest.fixture(params=["q2", "celery"])
def system(request):
    """No broker (Celery eager: the embedded default) or a broker (here Celery's in-memory one)."""
    conf = current_app.conf
    eager = conf.task_always_eager
    conf.task_always_eager = request.param == "q2"
    yield request.param
    conf.task_always_eager = eager


@pytest.fixture
def published():
    """The Celery messages sent while the test runs: (task name, routing key, headers)."""
    sent: list[tuple[str, str, dict]] = []

    def record(sender=None, routing_key=None, headers=None, **kwargs):  # type: ignore[no-untyped-def]
        sent.append((str(sender), str(routing_key), dict(headers or {})))

    before_task_publish.connect(record)
    yield sent
    before_task_publish.disconnect(record)


def test_no_product_module_but_the_queue_module_queues_work_or_asks_which_system_runs_it():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in PRODUCT_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "common" / "queue.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if QUEUEING.search(line)
    ]
    assert offenders == []


def test_work_is_queued_only_once_the_transaction_commits(system, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enqueue(SYNC_USERS, [41], name="sync-user-41")
        enqueue("billing.tasks.email_invoice", 7, name="email-invoice-7")
    assert (OrmQ.objects.count(), published) == (0, [])  # nothing is sent before the commit
    for callback in callbacks:
        callback()
    q2 = sorted((task.func(), task.name(), task.args()) for task in OrmQ.objects.all())
    if system == "q2":
        assert q2 == [
            ("billing.tasks.email_invoice", "email-invoice-7", (7,)),
            ("sync.jobs.sync_users_job", "sync-user-41", ([41],)),
        ]
        assert published == []
    else:  # sync work goes to the fleet's queue on the broker; back-office work stays on q2
        assert q2 == [("billing.tasks.email_invoice", "email-invoice-7", (7,))]
        assert [(name, queue) for name, queue, _headers in published] == [("sync.tasks.sync_users", "sync")]


def test_a_broker_makes_celery_take_the_sync_work(system):
    assert celery_takes_sync_work() == (system == "celery")


def test_delayed_work_waits_on_either_system(system, published, django_capture_on_commit_callbacks):
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(SYNC_USERS, [5, 6], 2, None, name="sync-retry-5", delay=12.5)
    if system == "q2":  # q2 has no delayed task: a one-off schedule
        (schedule,) = Schedule.objects.filter(func="sync.jobs.sync_users_job")
        assert schedule.schedule_type == Schedule.ONCE and schedule.name.startswith("sync-retry-5-")
        assert ast.literal_eval(schedule.args) == ([5, 6], 2, None)
        assert before + dt.timedelta(seconds=12.5) <= schedule.next_run <= timezone.now() + dt.timedelta(seconds=12.5)
        assert published == []
    else:
        ((name, _queue, headers),) = published
        assert name == "sync.tasks.sync_users" and headers["argsrepr"] == "([5, 6], 2, None)"
        eta = dt.datetime.fromisoformat(headers["eta"])
        assert before + dt.timedelta(seconds=12.5) <= eta <= timezone.now() + dt.timedelta(seconds=12.5)
        assert not Schedule.objects.filter(func="sync.jobs.sync_users_job").exists()
