"""Real workers on real services: a Celery worker consuming from Redis, and a django-q2 cluster
running a scheduled task, both against PostgreSQL."""

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule, Success

from customers.models import Subscription
from sync.tasks import worker_health
from tests.factories import make_customer, make_subscription, make_users

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.services


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_celery_task_runs_on_a_real_worker_through_redis(celery_worker, settings):
    assert not settings.CELERY_TASK_ALWAYS_EAGER
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    make_users(make_customer(), 7)
    result = worker_health.delay()
    assert result.get(timeout=20) == {
        "hostname": result.get()["hostname"],
        "database": "postgresql",
        "service_users": 7,
    }
    # routed to the sync queue, as every task of the sync fleet is
    assert worker_health.app.amqp.router.route({}, worker_health.name)["queue"].name == "sync"


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_q2_cluster_runs_a_scheduled_task():
    leaving = make_subscription(
        make_customer(),
        term_months=36,
        signed_on=dt.date(2025, 1, 1),
        go_live=dt.date(2025, 1, 1),
        notice_received=dt.date(2025, 6, 3),
    )
    schedule = Schedule.objects.get(func="customers.tasks.end_expired_subscriptions")
    schedule.next_run = timezone.now() - dt.timedelta(seconds=5)
    schedule.save()

    env = {**os.environ, "DATABASE_URL": _database_url(), "Q_WORKERS": "1"}
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Success.objects.filter(func=schedule.func).exists():
            time.sleep(0.5)
    finally:
        cluster.terminate()
        output, _ = cluster.communicate(timeout=30)
    assert Success.objects.filter(func=schedule.func).exists(), output[-3000:]
    leaving.refresh_from_db()
    assert leaving.status == Subscription.Status.ENDED
