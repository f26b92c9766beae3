"""The sweep and change notifications together (issue 19): a Graph or Google calendar with a live subscription,
read since that subscription began, is left to its notifications and read by the sweep once an hour at a minute
of its own (so a lost notification waits at most an hour); everything that must be read now still is (never
synced, a notified change, a failure, MBN unsure, no cursor, the daily full read, time alone changing the answer,
an expired subscription, a subscription newer than the last read). A change whose notification was lost reaches
MBN at that hourly read."""

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from sync import jobs, pipeline
from sync.models import CalendarSource, CalendarUser
from sync.rules import Event
from tests.sync.test_graph_subscriptions import webhook  # noqa: F401
from tests.sync.test_incremental import NOW, calendar, engine_state, local, mbn_state, put, sims, wire  # noqa: F401
from tests.sync.webhook_stub import WebhookStub

pytestmark = pytest.mark.django_db
SWEEP = dt.timedelta(minutes=5)


def subscribe(ids: list[int], *, since: dt.datetime, expires: dt.datetime) -> None:
    """What `jobs.ensure_subscriptions` stores for a live subscription made at `since`."""
    CalendarUser.objects.filter(pk__in=ids).update(
        subscription_id="sub", subscription_expires=expires, client_state="x", push_since=since
    )


def synced_at(ids: list[int], when: dt.datetime) -> None:
    CalendarUser.objects.filter(pk__in=ids).update(last_synced_at=when)


def quiet_moment(ids: list[int], after: dt.datetime) -> dt.datetime:
    """The first whole minute after `after` from which no user's hourly minute comes within one sweep interval."""
    moment = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while any(pipeline.pushed_read_due(calendar_user_id=pk, last_synced_at=moment, now=moment + SWEEP) for pk in ids):
        moment += dt.timedelta(minutes=1)
    return moment


def swept(source: CalendarSource, now: dt.datetime) -> set[int]:
    return set(pipeline.sweep_calendars(source=source, now=now))


@pytest.mark.parametrize("kind", ["graph", "google"])
def test_a_notified_calendar_is_read_by_the_sweep_once_an_hour_at_its_own_minute(sims, kind):  # noqa: F811
    _users, ids = wire(sims, kind)
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    source = CalendarUser.objects.get(pk=ids[0]).source
    start = timezone.now()
    subscribe(ids, since=start - dt.timedelta(hours=2), expires=start + dt.timedelta(days=2))
    synced_at(ids, start)

    reads: dict[int, list[int]] = {pk: [] for pk in ids}
    for sweep in range(1, 25):  # two hours of sweeps; a user read by one is synced then
        now = start + sweep * SWEEP
        for pk in swept(source, now):
            reads[pk].append(sweep)
            synced_at([pk], now)

    for pk, sweeps in reads.items():
        assert len(sweeps) == 2, (pk, sweeps)  # once in each hour
        assert sweeps[1] - sweeps[0] == 12  # an hour apart, at the same minute


def test_without_a_live_subscription_every_sweep_reads_the_calendar(sims):  # noqa: F811
    _users, ids = wire(sims, "graph")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    source = CalendarUser.objects.get(pk=ids[0]).source
    now = timezone.now() + SWEEP
    assert swept(source, now) == set(ids)  # never subscribed

    subscribe(ids, since=now - dt.timedelta(hours=2), expires=now - dt.timedelta(seconds=1))
    assert swept(source, now) == set(ids)  # expired

    subscribe(ids, since=timezone.now() + dt.timedelta(seconds=1), expires=now + dt.timedelta(days=2))
    assert swept(source, now) == set(ids)  # made after the last read: what changed before it is read once


def test_what_must_be_read_now_is_read_although_the_calendar_is_notified(sims):  # noqa: F811
    _users, ids = wire(sims, "graph")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    source = CalendarUser.objects.get(pk=ids[0]).source
    now = quiet_moment(ids, timezone.now())  # a sweep five minutes on finds no hourly read due
    subscribe(ids, since=now - dt.timedelta(hours=2), expires=now + dt.timedelta(days=2))
    synced_at(ids, now)
    assert swept(source, now + SWEEP) == set()

    for change in (
        {"changed_at": now},
        {"mbn_unsure": True},
        {"last_error_code": "MBN_UNAVAILABLE"},
        {"delta_cursor": ""},
        {"recompute_at": now},
        {"full_read_at": now - dt.timedelta(days=2)},
        {"last_synced_at": None},
    ):
        before = CalendarUser.objects.filter(pk=ids[0]).values(*change).get()
        CalendarUser.objects.filter(pk=ids[0]).update(**change)
        assert swept(source, now + SWEEP) == {ids[0]}, change
        CalendarUser.objects.filter(pk=ids[0]).update(**before)


def test_a_change_whose_notification_was_lost_reaches_mbn_at_the_hourly_read(sims):  # noqa: F811
    users, ids = wire(sims, "google")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    source = CalendarUser.objects.get(pk=ids[0]).source
    start = timezone.now()
    subscribe(ids, since=start - dt.timedelta(hours=2), expires=start + dt.timedelta(days=2))
    synced_at(ids, start)
    added = Event("nytt", local(10, 10), local(10, 11), subject="Kunde &Eks-")
    put(sims, "google", users[0], added)  # Google's notification of it never arrives

    read_at = next(start + sweep * SWEEP for sweep in range(1, 13) if ids[0] in swept(source, start + sweep * SWEEP))
    assert read_at - start <= dt.timedelta(hours=1)
    pipeline.sync_users(calendar_user_ids=sorted(swept(source, read_at)), now=NOW)

    assert mbn_state(sims, users[0]) == engine_state(users[0], [*calendar(), added], NOW)


def test_the_stored_answer_says_when_time_alone_changes_it(sims):  # noqa: F811
    users, ids = wire(sims, "graph")
    later = Event("seminar", local(22, 9), local(22, 12), subject="Seminar &Kurs")  # past the 14-day horizon
    put(sims, "graph", users[1], later)
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)

    stored = dict(CalendarUser.objects.filter(pk__in=ids).values_list("pk", "recompute_at"))
    assert stored[ids[0]] is None  # `calendar()` ends inside the horizon: time alone changes nothing
    assert stored[ids[1]] == local(22, 9) - dt.timedelta(days=14)  # the seminar enters the horizon then
    source = CalendarUser.objects.get(pk=ids[0]).source
    now = timezone.now()
    subscribe(ids, since=now - dt.timedelta(hours=2), expires=now + dt.timedelta(days=2))
    synced_at(ids, now)
    CalendarUser.objects.filter(pk=ids[1]).update(recompute_at=now + SWEEP / 2)
    assert ids[1] in swept(source, now + SWEEP)


def test_a_new_subscription_records_when_notifications_began(sims: Any, webhook: WebhookStub) -> None:  # noqa: F811
    _users, ids = wire(sims, "graph")
    source = CalendarUser.objects.get(pk=ids[0]).source
    before = timezone.now()

    assert jobs.ensure_subscriptions(source=source) == len(ids)

    for user in CalendarUser.objects.filter(pk__in=ids):
        assert user.subscription_id and user.push_since is not None
        assert before <= user.push_since <= timezone.now()
