"""Background work in the embedded default: Celery runs tasks eagerly, django-q2 runs its schedules."""

import datetime as dt

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule, Success
from django_q.scheduler import scheduler

from customers.models import Subscription
from sync.tasks import worker_health
from tests.factories import make_customer, make_subscription, make_users

pytestmark = pytest.mark.django_db


def test_a_celery_task_runs_eagerly_without_a_broker(settings):
    assert settings.CELERY_TASK_ALWAYS_EAGER
    make_users(make_customer(), 4)
    result = worker_health.delay().get(timeout=5)
    assert result["database"] == "sqlite"
    assert result["service_users"] == 4


def test_the_q2_schedule_ends_subscriptions_past_their_effective_end(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)  # run the scheduled task in this process, as a worker would
    leaving = make_subscription(
        make_customer(),
        term_months=0,
        signed_on=dt.date(2024, 1, 1),
        go_live=dt.date(2024, 1, 1),
        notice_received=dt.date(2025, 1, 15),
    )
    schedule = Schedule.objects.get(func="customers.tasks.end_expired_subscriptions")
    assert schedule.schedule_type == Schedule.DAILY
    schedule.next_run = timezone.now() - dt.timedelta(minutes=1)
    schedule.save()

    scheduler(broker=get_broker())

    leaving.refresh_from_db()
    assert leaving.status == Subscription.Status.ENDED
    success = Success.objects.get(func="customers.tasks.end_expired_subscriptions")
    assert success.result == "1 subscription(s) ended"
    schedule.refresh_from_db()
    assert schedule.next_run > timezone.now()
