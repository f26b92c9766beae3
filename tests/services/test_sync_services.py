"""The sync fleet on real services: PostgreSQL, Redis, a real Celery worker, Graph notifications over HTTP.

The Graph simulator posts change notifications to this Django app (pytest-django's live server); the
webhook queues `sync_users` on Redis; a Celery worker syncs and pushes to the MBN simulator.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone

from customers.models import ServiceUser
from devtools import demo
from sync import jobs, pipeline
from sync.models import CalendarUser
from sync.rules import Event, compute_absences
from sync.services import catalogue_from_database, rule_settings_for
from tests.factories import make_customer

simulators = pytest.importorskip("devtools.simulators")
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
OSLO = ZoneInfo("Europe/Oslo")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sims(live_server):
    with (
        simulators.Simulators.start() as running,
        override_settings(
            MICROSOFT_LOGIN_BASE_URL=running.login_url,
            GRAPH_BASE_URL=running.graph_url,
            MBN_BASE_URL=running.mbn_url,
            MICROSOFT_LOGIN_CA_BUNDLE=running.ca_path,
            PUBLIC_BASE_URL=live_server.url,
            GOOGLE_TOKEN_URL=running.google.token_url,
            GOOGLE_CALENDAR_BASE_URL=running.google.calendar_url,
            GOOGLE_DIRECTORY_BASE_URL=running.google.directory_url,
        ),
    ):
        running.graph.allow_http_webhooks_on_loopback()  # the live server speaks plain http on 127.0.0.1
        yield running


def wire(sims, count: int, kind: str = "graph"):
    customer = make_customer(name="Fjord Elektro AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@fjord.no", name=f"Ansatt {i}", msisdn=f"+4792{i:06d}"
        )
        for i in range(count)
    ]
    if kind == "graph":
        source = demo.wire_customer(
            sims=sims, customer=customer, users=users, tenant_id="22222222-3333-4444", enterprise_id="fjord"
        )
    elif kind == "ews":
        source = demo.wire_ews_customer(sims=sims, customer=customer, users=users, enterprise_id="fjord")
    else:
        source = demo.wire_google_customer(sims=sims, customer=customer, users=users, enterprise_id="fjord")
    return customer, users, source


def mbn_matches_engine(sims, users, calendars, now) -> bool:
    start, end = pipeline.sync_window(now)
    catalogue = catalogue_from_database()
    for user in users:
        rules = rule_settings_for(customer_settings=user.customer.settings, service_user=user)
        want = sorted(
            (a.mbn_reason, a.start, a.end, "voicemail" if a.divert else "none")
            for a in compute_absences(
                settings=rules,
                window_start=start,
                window_end=end,
                events=calendars.get(user.pk, []),
                catalogue=catalogue,
            )
        )
        have = sorted(
            (a["reason"], dt.datetime.fromisoformat(a["start"]), dt.datetime.fromisoformat(a["end"]), a["diversion"])
            for a in sims.mbn.absences("fjord", user.msisdn)
        )
        if want != have:
            return False
    return True


def wait_for(condition, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not reached within {seconds} s")


def test_a_graph_change_reaches_mbn_within_five_seconds(sims, celery_worker):
    _customer, users, source = wire(sims, 3)
    jobs.ensure_subscriptions(source=source)
    assert len(sims.graph.subscriptions()) == 3  # the handshake with our live webhook succeeded
    start = (timezone.now() + dt.timedelta(days=1)).astimezone(OSLO).replace(hour=9, minute=0, second=0, microsecond=0)
    event = Event("kunde", start, start + dt.timedelta(hours=2), subject="Kundebesøk &Eks")
    before = sims.requests("mbn")
    sims.graph.put_event(demo.graph_user_id(users[0]), demo.to_sim_events([event])[0])
    elapsed = wait_for(
        lambda: any(a["reason"] == "Eksternt Møte" for a in sims.mbn.absences("fjord", users[0].msisdn)), 5
    )
    assert elapsed < 5
    assert sims.requests("mbn") > before


@pytest.mark.parametrize("kind", ["graph", "ews", "google"])
def test_faults_and_a_second_cycle(sims, celery_worker, kind):
    _customer, users, source = wire(sims, 12, kind)
    now = timezone.now()
    calendars = {}
    import random

    rng = random.Random(7)
    for user in users:
        calendars[user.pk] = demo.as_provider_can_hold(
            kind,
            demo.scripted_events(rng=rng, start=now + dt.timedelta(days=1), days=12, count=15, prefix=f"{user.pk}-"),
        )
        demo.put_events(sims, kind, user, calendars[user.pk])
    sims.ews.set_back_off_ms(500)
    for service in (kind, "mbn"):
        sims.set_faults(service, rate=0.1, kinds=("429", "503", "timeout"))
    sims.set_fault_timeout_seconds(1)
    ids = list(CalendarUser.objects.filter(source=source).values_list("pk", flat=True))
    from sync.tasks import sync_users

    for _round in range(6):  # the sweep, as the schedule would run it, until the faults are absorbed
        for chunk in jobs._chunks(ids):
            sync_users.delay(chunk)
        try:
            wait_for(lambda: mbn_matches_engine(sims, users, calendars, now), 15)
            break
        except AssertionError:
            continue
    sims.set_faults(kind, rate=0)
    sims.set_faults("mbn", rate=0)
    wait_for(lambda: mbn_matches_engine(sims, users, calendars, now), 30)
    for user in users:  # no duplicates: each reference once
        refs = [a["external_ref"] for a in sims.mbn.absences("fjord", user.msisdn)]
        assert len(refs) == len(set(refs))
    before = sims.requests("mbn")
    pipeline.sync_users(calendar_user_ids=ids, now=now)
    assert sims.requests("mbn") == before  # nothing changed: no MBN call


def test_a_worker_killed_mid_sync_converges_after_restart(sims, settings):
    _customer, users, source = wire(sims, 20)
    now = timezone.now()
    import random

    rng = random.Random(11)
    calendars = {}
    for user in users:
        calendars[user.pk] = demo.scripted_events(
            rng=rng, start=now + dt.timedelta(days=1), days=12, count=10, prefix=f"{user.pk}-"
        )
        for event in demo.to_sim_events(calendars[user.pk]):
            sims.graph.put_event(demo.graph_user_id(user), event)
    sims.set_latency("mbn", 150)  # slow enough to kill the worker in the middle
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "MICROSOFT_LOGIN_BASE_URL": sims.login_url,
        "GRAPH_BASE_URL": sims.graph_url,
        "MBN_BASE_URL": sims.mbn_url,
        "MICROSOFT_LOGIN_CA_BUNDLE": sims.ca_path,
        "CREDENTIALS_KEY": settings.CREDENTIALS_KEY,
    }

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kalenderpush",
                "worker",
                "-Q",
                "default,sync",
                "--concurrency",
                "2",
                "-l",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    worker = start_worker()
    try:
        jobs.sweep(source=source, now=now)
        wait_for(lambda: sum(len(sims.mbn.absences("fjord", u.msisdn)) for u in users) > 0, 30)
        os.killpg(worker.pid, signal.SIGKILL)  # in the middle of the sync
        worker.wait(10)
        CalendarUser.objects.update(locked_until=None)  # the dead worker's locks would expire by themselves
        sims.set_latency("mbn", 0)
        worker = start_worker()
        jobs.sweep(source=source, now=now)
        wait_for(lambda: mbn_matches_engine(sims, users, calendars, now), 60)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
    for user in users:
        refs = [a["external_ref"] for a in sims.mbn.absences("fjord", user.msisdn)]
        assert len(refs) == len(set(refs))
