"""The sweep and EWS streaming together: a mailbox the `stream_ews` listener holds a live subscription for (its
heartbeat `streamed_until` fresh, and read since that subscription began) is not polled by the sweep; a mailbox whose
heartbeat lapsed, whose subscription is newer than its last read, or whose notified change waits, is. A change made
meanwhile is never lost: the cursor stays where it was, so the next read gets it."""

import datetime as dt

import pytest
from django.utils import timezone

from sync import pipeline
from sync.models import CalendarUser
from sync.rules import Event
from tests.sync.test_incremental import NOW, calendar, engine_state, local, mbn_state, put, sims, wire  # noqa: F401

pytestmark = pytest.mark.django_db
LATER = NOW + dt.timedelta(minutes=5)


def stream(pk: int, *, until: dt.datetime, since: dt.datetime | None = None) -> None:
    """What the listener's heartbeat writes for a live subscription."""
    synced = CalendarUser.objects.get(pk=pk).last_synced_at
    assert synced is not None
    CalendarUser.objects.filter(pk=pk).update(
        streamed_since=since or synced - dt.timedelta(seconds=1), streamed_until=until
    )


def polled(sims) -> int:  # noqa: F811
    return sims.ews.operation_count("SyncFolderItems") + sims.ews.operation_count("FindItem")


def test_a_streamed_mailbox_is_not_polled_by_the_sweep(sims):  # noqa: F811
    users, ids = wire(sims, "ews")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    stream(ids[0], until=LATER + dt.timedelta(minutes=3))
    cursor = CalendarUser.objects.get(pk=ids[0]).delta_cursor
    sims.ews.reset_counters()
    mbn_before = sims.requests("mbn")

    results = pipeline.sync_users(calendar_user_ids=ids, now=LATER)

    assert not [r.error for r in results if r.error]
    assert sims.ews.operation_count("SyncFolderItems") == 1  # the other mailbox only
    assert sims.requests("mbn") == mbn_before
    streamed = CalendarUser.objects.get(pk=ids[0])
    assert streamed.delta_cursor == cursor  # kept: the next read starts from the last one
    assert streamed.last_synced_at is not None and streamed.last_synced_at >= streamed.streamed_since
    for user in users:
        assert mbn_state(sims, user) == engine_state(user, calendar(), NOW)


def test_a_mailbox_whose_stream_lapsed_is_polled_and_a_change_meanwhile_reaches_mbn(sims):  # noqa: F811
    users, ids = wire(sims, "ews")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    stream(ids[0], until=LATER + dt.timedelta(minutes=3))
    added = Event("nytt", local(10, 10), local(10, 11), subject="Kunde &Eks-")
    put(sims, "ews", users[0], added)  # a notification the listener never handed over

    pipeline.sync_users(calendar_user_ids=ids, now=LATER)
    assert mbn_state(sims, users[0]) == engine_state(users[0], calendar(), NOW)  # not polled yet

    sims.ews.reset_counters()
    lapsed = LATER + dt.timedelta(minutes=5)  # the heartbeat is not renewed: the listener is gone
    pipeline.sync_users(calendar_user_ids=ids, now=lapsed)
    assert sims.ews.operation_count("SyncFolderItems") == 2
    assert mbn_state(sims, users[0]) == engine_state(users[0], [*calendar(), added], lapsed)


def test_a_notified_change_is_read_although_the_mailbox_is_streamed(sims):  # noqa: F811
    users, ids = wire(sims, "ews")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    stream(ids[0], until=LATER + dt.timedelta(minutes=3))
    added = Event("nytt", local(10, 10), local(10, 11), subject="Kunde &Eks-")
    put(sims, "ews", users[0], added)
    CalendarUser.objects.filter(pk=ids[0]).update(changed_at=timezone.now())  # what `queue_syncs` marks

    pipeline.sync_users(calendar_user_ids=[ids[0]], now=LATER)

    assert mbn_state(sims, users[0]) == engine_state(users[0], [*calendar(), added], LATER)
    assert CalendarUser.objects.get(pk=ids[0]).changed_at is None


def test_a_subscription_newer_than_the_last_read_is_polled_once_then_not(sims):  # noqa: F811
    _users, ids = wire(sims, "ews")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    until = LATER + dt.timedelta(minutes=30)
    stream(ids[0], until=until, since=timezone.now() + dt.timedelta(seconds=1))  # subscribed after the read
    sims.ews.reset_counters()

    pipeline.sync_users(calendar_user_ids=[ids[0]], now=LATER)  # changes before the subscription: read them
    assert sims.ews.operation_count("SyncFolderItems") == 1

    CalendarUser.objects.filter(pk=ids[0]).update(last_synced_at=timezone.now() + dt.timedelta(seconds=2))
    sims.ews.reset_counters()
    pipeline.sync_users(calendar_user_ids=[ids[0]], now=LATER + dt.timedelta(minutes=5))
    assert polled(sims) == 0


def test_graph_and_google_mailboxes_are_never_left_unread_by_a_heartbeat(sims):  # noqa: F811
    _users, ids = wire(sims, "google")
    pipeline.sync_users(calendar_user_ids=ids, now=NOW)
    for pk in ids:
        stream(pk, until=LATER + dt.timedelta(minutes=3))
    sims.google.reset_calendar_reads()
    pipeline.sync_users(calendar_user_ids=ids, now=LATER)
    assert sum(sims.google.calendar_reads().values()) == len(ids)
