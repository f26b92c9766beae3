"""Workers killed with SIGKILL in the middle of their work, on PostgreSQL and Redis: a Celery worker and a
django-q2 cluster in the middle of a calendar sync, a q2 worker and a q2 cluster in the middle of a billing
run. After a restart everything converges by itself (nobody touches the database): MBN holds exactly what
the rules engine computes for every user, each quarter's invoice exists once per subscription, and no run
stays "running".

The subprocesses get small recovery knobs (`helpers.RECOVERY_ENV`): how long a user's sync lock, Redis's
visibility timeout and q2's retry last, and when a silent billing run counts as abandoned.
"""

import datetime as dt
import os
import random
import signal
import time
from collections import Counter

import pytest
from django.db.models import Count
from django.utils import timezone
from django_q.models import OrmQ
from django_q.tasks import async_task

from billing import services as billing
from billing.models import BillingRun, Invoice
from billing.quarters import Quarter
from devtools import demo
from kalenderpush.celery import app as celery_app
from sync import jobs
from sync.models import CalendarUser, PushedAbsence
from sync.services import queue_syncs
from tests.billing.factories import live_subscription
from tests.services.helpers import (
    RECOVERY_ENV,
    empty_celery_broker,
    kill_group,
    q2_worker_pids,
    start_celery_worker,
    start_qcluster,
    stop_group,
    worker_env,
)
from tests.services.test_sync_services import (
    mbn_matches_engine,
    sims,  # noqa: F401  (the simulators fixture)
    wait_for,
    wire,
)
from tests.services.test_workers import _database_url

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
D = dt.date
USERS = 50
CUSTOMERS = 100
QUARTER = Quarter.parse("2026-Q1")


# --- calendar sync -----------------------------------------------------------------------------------


def _calendars(simulators, users, now):  # type: ignore[no-untyped-def]
    rng = random.Random(23)
    calendars = {}
    for user in users:
        calendars[user.pk] = demo.scripted_events(
            rng=rng, start=now + dt.timedelta(days=1), days=12, count=2, prefix=f"{user.pk}-"
        )
        demo.put_events(simulators, "graph", user, calendars[user.pk])
    return calendars


def _sync_env(simulators, settings, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return worker_env(
        _database_url(),
        MICROSOFT_LOGIN_BASE_URL=simulators.login_url,
        GRAPH_BASE_URL=simulators.graph_url,
        MBN_BASE_URL=simulators.mbn_url,
        MICROSOFT_LOGIN_CA_BUNDLE=simulators.ca_path,
        CREDENTIALS_KEY=settings.CREDENTIALS_KEY,
        **extra,
    )


def _users_on_mbn(simulators, users) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for user in users if simulators.mbn.absences("fjord", user.msisdn))


def _assert_nothing_doubled_or_locked(simulators, users) -> None:  # type: ignore[no-untyped-def]
    for user in users:
        held = simulators.mbn.absences("fjord", user.msisdn)
        refs = [a["external_ref"] for a in held]
        intervals = [(a["start"], a["end"]) for a in held]
        assert len(refs) == len(set(refs)), f"{user.email}: an absence twice on MBN: {sorted(refs)}"
        assert len(intervals) == len(set(intervals)), f"{user.email}: two absences for one interval on MBN"
        pushed = sorted(PushedAbsence.objects.filter(service_user=user).values_list("external_ref", flat=True))
        assert pushed == sorted(refs), f"{user.email}: the record of what was pushed differs from MBN"
    # every lock of the dead worker was given back by the sync that took its users over
    assert not CalendarUser.objects.filter(locked_until__isnull=False).exists()
    assert not CalendarUser.objects.filter(last_synced_at__isnull=True).exists()


def test_a_celery_worker_killed_mid_sync_converges_after_restart(sims, settings, tmp_path):  # noqa: F811
    _customer, users, source = wire(sims, USERS)
    now = timezone.now()
    calendars = _calendars(sims, users, now)
    env = _sync_env(sims, settings)
    log = tmp_path / "celery.log"
    empty_celery_broker(celery_app)

    worker = start_celery_worker(env, log)
    try:
        jobs.sweep(source=source, now=now)
        wait_for(lambda: _users_on_mbn(sims, users) >= USERS // 5, 60)
        kill_group(worker)  # the whole worker, mid-sync: nothing is acknowledged, locks stay taken
        assert _users_on_mbn(sims, users) < USERS, "the sync finished before the kill: sync more users"

        # restarted once Redis's visibility timeout has passed, as a worker coming back after a crash
        # finds it, so the tasks the dead worker held are handed out again as it starts
        time.sleep(int(RECOVERY_ENV["CELERY_VISIBILITY_TIMEOUT"]) + 1)
        worker = start_celery_worker(env, log)  # no new sweep, no hand-made clean-up
        wait_for(lambda: mbn_matches_engine(sims, users, calendars, now), 60)
        wait_for(lambda: not CalendarUser.objects.filter(locked_until__isnull=False).exists(), 20)
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- worker log ---\n{log.read_text()[-3000:]}") from error
    finally:
        stop_group(worker)
    _assert_nothing_doubled_or_locked(sims, users)


@pytest.fixture
def eager_celery():  # type: ignore[no-untyped-def]
    """The embedded default in this process: no Celery workers, so syncs are queued as q2 jobs."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def test_a_q2_cluster_killed_mid_sync_converges_after_restart(sims, settings, tmp_path, eager_celery):  # noqa: F811
    _customer, users, source = wire(sims, USERS)
    now = timezone.now()
    calendars = _calendars(sims, users, now)
    env = _sync_env(sims, settings, CELERY_TASK_ALWAYS_EAGER="true", Q_WORKERS="2")
    log = tmp_path / "qcluster.log"

    queue_syncs(calendar_user_ids=CalendarUser.objects.filter(source=source).values_list("pk", flat=True))
    # a customer's onboarding, as the group refresh queues it: 3 first-day batches of ≤ 20, then 3 full ones
    assert OrmQ.objects.count() == 6
    cluster = start_qcluster(env, log)
    try:
        wait_for(lambda: _users_on_mbn(sims, users) >= USERS // 5, 60)
        kill_group(cluster)  # sentinel, workers, pusher, monitor: jobs in hand are neither done nor acked
        assert _users_on_mbn(sims, users) < USERS, "the sync finished before the kill: sync more users"

        cluster = start_qcluster(env, log)
        wait_for(lambda: mbn_matches_engine(sims, users, calendars, now), 60)
        wait_for(lambda: not OrmQ.objects.exists(), 20)  # every job done and acknowledged
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- cluster log ---\n{log.read_text()[-3000:]}") from error
    finally:
        stop_group(cluster)
    _assert_nothing_doubled_or_locked(sims, users)


# --- billing run -------------------------------------------------------------------------------------


def _customers_to_bill(count: int = CUSTOMERS) -> list[int]:
    return [
        live_subscription(
            term=12,
            go_live=D(2025, 10, 1),
            steps=[(D(2025, 12, 1), 5 + index % 40)],
            last=D(2026, 3, 31),
            name=f"Kunde {index} AS",
        ).pk
        for index in range(count)
    ]


def _assert_billed_once(subscription_ids: list[int]) -> None:
    invoices = Invoice.objects.filter(quarter=QUARTER.label)
    per_subscription = Counter(invoices.values_list("subscription_id", flat=True))
    assert sorted(per_subscription) == sorted(subscription_ids), "a subscription is missing or unknown"
    assert set(per_subscription.values()) == {1}, "a subscription was invoiced twice"
    assert not invoices.annotate(line_count=Count("lines")).filter(line_count=0).exists(), "an invoice without lines"
    run = BillingRun.objects.get(quarter=QUARTER.label)  # the killed run was continued, not duplicated
    assert run.status == BillingRun.Status.FINISHED, run.errors
    assert (run.subscriptions_done, run.invoices_created) == (CUSTOMERS, CUSTOMERS)
    assert set(invoices.values_list("billing_run", flat=True)) == {run.pk}
    # issuing after the run: gapless numbers, each once
    drafts = list(invoices.order_by("pk").values_list("pk", flat=True)[:5])
    assert len(billing.issue_drafts(invoice_ids=drafts, today=D(2026, 4, 2)).issued) == 5
    numbers = [number for number in Invoice.objects.values_list("number", flat=True) if number is not None]
    assert sorted(numbers) == [1, 2, 3, 4, 5]


def _kill_mid_billing_run(tmp_path, kill) -> None:  # type: ignore[no-untyped-def]
    """Queue the quarter's run as admin does, kill the cluster (or its worker) mid-run with `kill`."""
    subscription_ids = _customers_to_bill()
    env = worker_env(_database_url(), Q_WORKERS="1")
    log = tmp_path / "qcluster.log"
    async_task("billing.tasks.run_quarterly_billing", QUARTER.label, task_name=f"billing-run-{QUARTER.label}")
    cluster = start_qcluster(env, log)
    try:
        wait_for(lambda: Invoice.objects.count() >= CUSTOMERS // 5, 60)
        cluster = kill(cluster, env, log)
        assert Invoice.objects.count() < CUSTOMERS, "the run finished before the kill: bill more customers"
        assert BillingRun.objects.get().status == BillingRun.Status.RUNNING
        wait_for(lambda: BillingRun.objects.exclude(status=BillingRun.Status.RUNNING).exists(), 60)
        wait_for(lambda: not OrmQ.objects.exists(), 20)  # the job is done and acknowledged
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- cluster log ---\n{log.read_text()[-3000:]}") from error
    finally:
        stop_group(cluster)
    _assert_billed_once(subscription_ids)


def test_a_q2_worker_killed_mid_billing_run_is_replaced_and_the_run_finishes(tmp_path):
    def kill_worker(cluster, env, log):  # type: ignore[no-untyped-def]
        os.kill(q2_worker_pids(cluster, 1)[0], signal.SIGKILL)  # the cluster lives on and starts a new worker
        return cluster

    _kill_mid_billing_run(tmp_path, kill_worker)
    assert "after death" in (tmp_path / "qcluster.log").read_text()  # the cluster replaced its worker


def test_a_q2_cluster_killed_mid_billing_run_finishes_the_run_after_restart(tmp_path):
    def kill_cluster(cluster, env, log):  # type: ignore[no-untyped-def]
        kill_group(cluster)
        return start_qcluster(env, log)

    _kill_mid_billing_run(tmp_path, kill_cluster)


def test_a_billing_run_silent_too_long_is_continued_by_the_next_run(settings):
    settings.BILLING_RUN_STALE_SECONDS = 60
    subscription_ids = _customers_to_bill(3)
    first = billing.run_billing(quarter=QUARTER, today=D(2026, 4, 1))
    # its worker died after the first invoice: still "running", no progress for five minutes
    Invoice.objects.exclude(subscription_id=subscription_ids[0]).delete()
    now = timezone.now()
    BillingRun.objects.filter(pk=first.pk).update(
        status=BillingRun.Status.RUNNING, finished_at=None, heartbeat_at=now - dt.timedelta(minutes=5)
    )
    older = BillingRun.objects.create(quarter=QUARTER.label, heartbeat_at=now - dt.timedelta(hours=2))
    other_quarter = BillingRun.objects.create(quarter="2025-Q4", heartbeat_at=now - dt.timedelta(hours=2))

    run = billing.run_billing(quarter=QUARTER, today=D(2026, 4, 1))

    assert run.pk == first.pk
    assert (run.status, run.subscriptions_done, run.invoices_created) == (BillingRun.Status.FINISHED, 3, 3)
    assert sorted(Invoice.objects.filter(billing_run=run).values_list("subscription_id", flat=True)) == sorted(
        subscription_ids
    )
    older.refresh_from_db()
    assert older.status == BillingRun.Status.FAILED
    assert older.finished_at is not None
    other_quarter.refresh_from_db()
    assert other_quarter.status == BillingRun.Status.RUNNING  # taken over by its own quarter's next run


def test_a_billing_run_still_making_progress_is_not_taken_over(settings):
    settings.BILLING_RUN_STALE_SECONDS = 60
    _customers_to_bill(2)
    busy = BillingRun.objects.create(quarter=QUARTER.label, heartbeat_at=timezone.now() - dt.timedelta(seconds=10))

    run = billing.run_billing(quarter=QUARTER, today=D(2026, 4, 1))

    assert run.pk != busy.pk
    assert run.invoices_created == 2
    busy.refresh_from_db()
    assert busy.status == BillingRun.Status.RUNNING
