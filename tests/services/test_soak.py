"""A short soak on real services: PostgreSQL, Redis and a real Celery worker, while every simulator injects
10 % faults (429, 503, timeouts, malformed bodies) and MBN is down for 8 s in the middle.

Calendars change all the time; each change is queued as the webhooks queue it (`queue_syncs`), and the
Celery task's retries carry the syncs through the faults. Afterwards MBN must hold what the engine says for
every user, with no duplicates, soon after recovery, and the outage must have been visible in admin.
"""

import datetime as dt
import random

import pytest
from django.utils import timezone

from devtools.benchmarking.fleet import Fleet, build_fleet, simulator_settings, sync_all
from devtools.benchmarking.soak import run_soak
from sync.services import queue_syncs

simulators = pytest.importorskip("devtools.simulators")
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def sims():
    with simulators.Simulators.start() as running, simulator_settings(running, MBN_REQUESTS_PER_SECOND=900):
        running.set_fault_timeout_seconds(1)
        running.ews.set_back_off_ms(1000)  # Exchange's "server busy" asks for 30 s by default: too long here
        yield running


def synced_fleet(sims, users: int, rng: random.Random) -> Fleet:
    now = timezone.now()
    fleet = build_fleet(
        sims,
        users=users,
        users_per_customer=10,
        events_per_user=8,
        rng=rng,
        first_day=now + dt.timedelta(days=1),
        days=10,
        mbn_rate=1000,
    )
    sync_all(sims, fleet, 4)
    return fleet


def webhook_queue(ids) -> None:
    queue_syncs(calendar_user_ids=ids)


def test_mbn_converges_without_duplicates_after_faults_and_an_outage(sims, celery_worker):
    rng = random.Random(41)
    fleet = synced_fleet(sims, 30, rng)
    figures = run_soak(
        sims,
        fleet,
        queue=webhook_queue,
        seconds=20,
        outage_seconds=8,
        fault_rate=0.10,
        change_every=2,
        change_share=0.1,
        drain_timeout=30,
        rng=rng,
    )
    assert figures["changes"] >= 30
    # every simulator was in play (Microsoft login only at the initial sync: msal caches the app's token)
    assert all(figures["requests"][service] > 0 for service in ("graph", "ews", "google", "mbn")), figures
    assert figures["mismatches"] == 0, figures
    assert figures["duplicates"] == 0, figures
    assert figures["drain_s"] is not None and figures["drain_s"] <= 30, figures
    assert figures["outage_backlog_drained_s"] is not None and figures["outage_backlog_drained_s"] <= 30, figures
    assert figures["errors_after_drain"] == {"users_with_error": 0, "sources_with_error": 0}, figures


def test_an_mbn_outage_is_visible_in_admin_while_it_lasts_and_cleared_after(sims, celery_worker):
    rng = random.Random(43)
    fleet = synced_fleet(sims, 6, rng)
    figures = run_soak(
        sims,
        fleet,
        queue=webhook_queue,
        seconds=4,
        outage_seconds=3,
        fault_rate=0,
        change_every=0.5,
        change_share=0.34,
        drain_timeout=30,
        rng=rng,
    )
    assert figures["mismatches"] == 0, figures
    during = figures["errors_during_outage"]
    assert during["sync_runs_with_error"] > 0, figures
    assert during["users_with_error"] > 0, figures
    assert figures["errors_after_drain"] == {"users_with_error": 0, "sources_with_error": 0}, figures
