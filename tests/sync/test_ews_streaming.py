"""Exchange on-premises in seconds: the `stream_ews` listener against the EWS simulator's streaming notifications.

The listener's threads hand changed calendars to `on_change`; here that is a queue this test thread drains into
`queue_syncs` (the default test database lives in this thread's connection), then runs the queued q2 jobs as the
cluster would, and looks at what MBN holds.
"""

import datetime as dt
import queue
import time
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test.utils import override_settings

from customers.models import ServiceUser
from devtools import demo
from sync.models import CalendarUser, SyncRun
from sync.rules import Event
from sync.services import queue_syncs
from sync.streaming import EwsListener
from tests.factories import make_customer

simulators = pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db
OSLO = ZoneInfo("Europe/Oslo")


@pytest.fixture
def sims():
    from exchangelib.protocol import close_connections

    with (
        simulators.Simulators.start() as running,
        override_settings(MBN_BASE_URL=running.mbn_url),
    ):
        running.ews.set_keepalive_seconds(0.2)
        yield running
        close_connections()


@pytest.fixture
def exchange(sims):
    customer = make_customer(name="Lokal Exchange AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@lokal.no", name=f"Ansatt {i}", msisdn=f"+4793{i:06d}"
        )
        for i in range(3)
    ]
    source = demo.wire_ews_customer(
        sims=sims, customer=customer, users=users, enterprise_id="lokal", mbn_rate_per_second=1000
    )
    ids = {cu.service_user_id: cu.pk for cu in CalendarUser.objects.filter(source=source)}
    return source, users, [ids[u.pk] for u in users]


@pytest.fixture
def changes() -> "queue.Queue[set[int]]":
    return queue.Queue()


@pytest.fixture
def listener(changes) -> Iterator[Callable[..., EwsListener]]:
    started: list[EwsListener] = []

    def start(**options: object) -> EwsListener:
        running = EwsListener(on_change=changes.put, **options)  # type: ignore[arg-type]
        running.refresh()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def _meeting(event_id: str, days: int = 2) -> Event:
    day = dt.datetime.now(OSLO).date() + dt.timedelta(days=days)
    start = dt.datetime.combine(day, dt.time(10), OSLO)
    return Event(event_id, start, start + dt.timedelta(hours=1), subject="Kundebesøk &Eks")


def _put(sims, user: ServiceUser, event: Event) -> None:  # type: ignore[no-untyped-def]
    demo.put_events(sims, "ews", user, [event])


def _changed(changes: "queue.Queue[set[int]]", timeout: float = 5.0) -> set[int]:
    """The calendars notified within `timeout` seconds (waiting for the first, then taking what else is queued)."""
    found = set(changes.get(timeout=timeout))
    while not changes.empty():
        found |= changes.get_nowait()
    return found


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_change_in_exchange_reaches_mbn_through_the_stream_without_a_sweep(
    sims, exchange, listener, changes, django_capture_on_commit_callbacks
):
    source, users, ids = exchange
    listener(connection_minutes=1)
    assert sims.ews.wait_for_streams(1)
    log = sims.ews.affinity_log()
    assert {anchor for _operation, anchor, _cookie in log} == {users[0].email}, "one group, anchored at its first"
    assert [operation for operation, _anchor, _cookie in log] == ["Subscribe"] * 3 + ["GetStreamingEvents"]
    assert [cookie for _operation, _anchor, cookie in log] == ["", "SIM-MBX01~1", "SIM-MBX01~1", "SIM-MBX01~1"]

    changed_at = time.monotonic()
    _put(sims, users[1], _meeting("kunde"))
    notified = _changed(changes)
    assert notified == {ids[1]}
    assert time.monotonic() - changed_at < 2, "a notification, not a sweep"
    with django_capture_on_commit_callbacks(execute=True):
        queue_syncs(calendar_user_ids=notified)
    demo.run_queued_jobs()

    assert [a["reason"] for a in sims.mbn.absences("lokal", users[1].msisdn)] == ["Eksternt Møte"]
    assert sims.mbn.absences("lokal", users[0].msisdn) == []
    assert not SyncRun.objects.filter(kind=SyncRun.Kind.CYCLE, source=source).exists(), "no sweep ran"
    assert sims.ews.operation_count("FindItem") == 1, "only the changed mailbox was read"


def test_the_listener_opens_the_next_connection_when_exchange_closes_one_at_its_timeout(
    sims, exchange, listener, changes
):
    _source, users, ids = exchange
    sims.ews.set_stream_minute_seconds(0.3)  # a one-minute connection lasts 0.3 s here
    running = listener(connection_minutes=1)
    (group,) = running.groups()
    assert _until(lambda: group.connections >= 3), "a new connection after each Closed"
    assert sims.ews.operation_count("Subscribe") == 3, "the subscriptions outlive their connections"

    _put(sims, users[2], _meeting("etter-tidsavbrudd"))
    assert _changed(changes) == {ids[2]}


def test_a_subscription_exchange_dropped_is_made_again_and_its_calendar_synced_in_full(
    sims, exchange, listener, changes
):
    _source, users, ids = exchange
    listener(connection_minutes=1)
    assert sims.ews.wait_for_streams(1)
    (old,) = sims.ews.subscriptions(users[0].email)

    assert sims.ews.expire_subscriptions(users[0].email) == 1
    assert _changed(changes) == {ids[0]}, "changes may have been missed: a full sync of that calendar is queued"
    assert _until(lambda: len(sims.ews.subscriptions(users[0].email)) == 1)
    assert sims.ews.subscriptions(users[0].email) != [old]
    assert sims.ews.wait_for_streams(1)

    _put(sims, users[0], _meeting("etter-nytt-abonnement"))
    assert _changed(changes) == {ids[0]}


def test_a_user_who_leaves_is_unsubscribed_and_no_longer_notified(sims, exchange, listener, changes):
    _source, users, ids = exchange
    running = listener(connection_minutes=1)
    assert sims.ews.wait_for_streams(1)

    ServiceUser.objects.filter(pk=users[2].pk).update(active=False)
    running.refresh()
    assert _until(lambda: sims.ews.subscriptions(users[2].email) == [])
    assert sims.ews.operation_count("Unsubscribe") == 1
    assert sims.ews.wait_for_streams(1)
    assert len(sims.ews.subscriptions()) == 2

    _put(sims, users[2], _meeting("borte"))
    _put(sims, users[1], _meeting("her"))
    assert _changed(changes) == {ids[1]}


def test_a_mailbox_outside_the_impersonation_scope_fails_alone(sims, exchange, listener, changes, caplog):
    _source, users, ids = exchange
    sims.ews.set_impersonation_scope([users[0].email, users[2].email])
    listener(connection_minutes=1)
    assert sims.ews.wait_for_streams(1)
    assert sims.ews.subscriptions(users[1].email) == []
    assert "ApplicationImpersonation" in caplog.text and users[1].email in caplog.text

    _put(sims, users[1], _meeting("utenfor"))
    _put(sims, users[2], _meeting("innenfor"))
    assert _changed(changes) == {ids[2]}


def test_the_listener_stops_cleanly_closing_its_connections_and_ending_its_subscriptions(sims, exchange, listener):
    running = listener(connection_minutes=30)
    assert sims.ews.wait_for_streams(1)
    assert len(sims.ews.subscriptions()) == 3

    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 5
    assert not any(group.is_alive() for group in running.groups())
    assert _until(lambda: sims.ews.open_streams() == 0)
    assert sims.ews.subscriptions() == []
    assert running.groups() == []


def test_a_source_that_is_switched_off_stops_streaming(sims, exchange, listener):
    source, _users, _ids = exchange
    running = listener(connection_minutes=30)
    assert sims.ews.wait_for_streams(1)

    source.active = False
    source.save()
    running.refresh()
    assert running.groups() == []
    assert _until(lambda: sims.ews.open_streams() == 0)
    assert sims.ews.subscriptions() == []


def test_stream_ews_refuses_a_connection_timeout_exchange_does_not_allow():
    with pytest.raises(CommandError, match="between 1 and 30"):
        call_command("stream_ews", "--connection-minutes", "45")


def _get_streaming_events(sims, source, mailbox: str, ids: list[str], minutes: int, chunked: bool = True) -> list[str]:  # type: ignore[no-untyped-def]
    """A raw GetStreamingEvents as exchangelib sends it; the chunks of the answer as they arrived."""
    import requests

    listed = "".join(f"<t:SubscriptionId>{i}</t:SubscriptionId>" for i in ids)
    body = (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope '
        'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress>"
        "</t:ConnectingSID></t:ExchangeImpersonation></s:Header><s:Body><m:GetStreamingEvents>"
        f"<m:SubscriptionIds>{listed}</m:SubscriptionIds><m:ConnectionTimeout>{minutes}</m:ConnectionTimeout>"
        "</m:GetStreamingEvents></s:Body></s:Envelope>"
    )
    with requests.post(
        sims.ews_url, data=body.encode(), auth=(source.username, source.secret()), stream=True, timeout=10
    ) as answer:
        assert answer.status_code == 200
        assert (answer.headers.get("Transfer-Encoding") == "chunked") is chunked
        return [chunk.decode() for chunk in answer.iter_content(chunk_size=None)]


def test_the_simulator_streams_notifications_keep_alives_and_closed_as_exchange_does(sims, exchange):
    import threading

    from sync.providers.ews import Affinity, EwsProvider

    source, users, _ids = exchange
    provider = EwsProvider(sims.ews_url, source.username, source.secret())
    affinity = Affinity(users[0].email)
    subscription = provider.subscribe_streaming(users[0].email, affinity=affinity)
    assert affinity.cookie, "the answer sets the affinity cookie the group's next requests carry"
    sims.ews.set_keepalive_seconds(0.1)
    sims.ews.set_stream_minute_seconds(0.6)
    threading.Timer(0.25, _put, (sims, users[0], _meeting("nytt"))).start()

    started = time.monotonic()
    chunks = _get_streaming_events(sims, source, users[0].email, [subscription], minutes=1)

    assert 0.5 < time.monotonic() - started < 3, "open until the connection timeout"
    assert all(chunk.count("<s:Envelope") == 1 for chunk in chunks), "one SOAP envelope per message"
    assert "<m:ConnectionStatus>OK</m:ConnectionStatus>" in chunks[0], "a keep-alive while nothing happens"
    (notification,) = [chunk for chunk in chunks if "<m:Notification>" in chunk]
    for part in (f"<t:SubscriptionId>{subscription}</t:SubscriptionId>", "<t:CreatedEvent><t:Watermark>"):
        assert part in notification
    assert '<t:ItemId Id="nytt"' in notification and "<t:ParentFolderId" in notification
    assert "<m:ConnectionStatus>Closed</m:ConnectionStatus>" in chunks[-1]

    (unknown,) = _get_streaming_events(sims, source, users[0].email, ["finnes-ikke"], minutes=1)
    assert "<m:ResponseCode>ErrorSubscriptionNotFound</m:ResponseCode>" in unknown
    assert "<m:ErrorSubscriptionIds><m:SubscriptionId>finnes-ikke</m:SubscriptionId>" in unknown
    (too_long,) = _get_streaming_events(sims, source, users[0].email, [subscription], minutes=31, chunked=False)
    assert "ErrorInvalidArgument" in too_long


def test_a_refused_password_holds_back_the_source_until_its_credentials_change(
    sims, exchange, listener, changes, caplog
):
    source, users, ids = exchange
    sims.ews.add_service_account(source.username, "nytt-passord", [user.email for user in users])
    running = listener(connection_minutes=1)
    assert _until(lambda: "refused the service account" in caplog.text)
    tries = sims.ews.operation_count("Subscribe")
    time.sleep(0.5)
    assert sims.ews.operation_count("Subscribe") == tries == 1, "no retries against the account's lockout"
    assert sims.ews.subscriptions() == []

    source.set_secret("nytt-passord")
    source.save()
    running.refresh()
    assert sims.ews.wait_for_streams(1)
    _put(sims, users[0], _meeting("etter-nytt-passord"))
    assert _changed(changes) == {ids[0]}


def test_a_notified_change_is_queued_even_when_the_database_is_busy_for_a_moment(sims, exchange, changes):
    from django.db import OperationalError

    _source, users, ids = exchange
    tries: list[set[int]] = []

    def busy_once(calendar_user_ids: set[int]) -> None:
        tries.append(calendar_user_ids)
        if len(tries) == 1:
            raise OperationalError("database is locked")
        changes.put(calendar_user_ids)

    running = EwsListener(on_change=busy_once, connection_minutes=1)
    running.refresh()
    try:
        assert sims.ews.wait_for_streams(1)
        _put(sims, users[0], _meeting("mens-databasen-er-opptatt"))
        assert _changed(changes, timeout=8) == {ids[0]}
        assert tries == [{ids[0]}, {ids[0]}]
    finally:
        running.stop()


def test_a_user_who_joins_is_subscribed_at_the_next_refresh(sims, exchange, listener, changes):
    source, _users, _ids = exchange
    running = listener(connection_minutes=1)
    assert sims.ews.wait_for_streams(1)
    newcomer = ServiceUser.objects.create(
        customer=source.customer, email="ny@lokal.no", name="Ny Ansatt", msisdn="+4793999999"
    )
    sims.ews.add_mailbox(newcomer.email, newcomer.name)
    sims.ews.allow_impersonation(source.username, [newcomer.email])  # a new mailbox in the customer's organisation
    calendar = CalendarUser.objects.create(service_user=newcomer, source=source, provider_user_id=newcomer.email)

    running.refresh()
    assert _until(lambda: len(sims.ews.subscriptions(newcomer.email)) == 1)
    assert sims.ews.wait_for_streams(1)
    assert len(running.groups()) == 1, "the group had room: the newcomer joined it"
    _put(sims, newcomer, _meeting("første"))
    assert _changed(changes) == {calendar.pk}


def test_the_heartbeat_marks_live_subscriptions_renews_them_and_ends_with_them(sims, exchange, listener, changes):
    from django.utils import timezone

    _source, users, ids = exchange
    running = listener(connection_minutes=1, refresh_seconds=60)
    assert sims.ews.wait_for_streams(1)
    before = timezone.now()
    assert _until(lambda: running.heartbeat() == 3)
    rows = {row.pk: row for row in CalendarUser.objects.filter(pk__in=ids)}
    assert all(
        row.streamed_until is not None and row.streamed_until >= before + dt.timedelta(minutes=2)
        for row in rows.values()
    )
    since = {pk: row.streamed_since for pk, row in rows.items()}
    assert all(value is not None and value <= before for value in since.values())

    assert sims.ews.expire_subscriptions(users[0].email) == 1  # Exchange dropped one: it is synced and made again
    assert _changed(changes) == {ids[0]}
    assert _until(lambda: len(sims.ews.subscriptions(users[0].email)) == 1)
    assert sims.ews.wait_for_streams(1)
    assert _until(
        lambda: running.heartbeat() == 3 and CalendarUser.objects.get(pk=ids[0]).streamed_since != since[ids[0]]
    )
    renewed = CalendarUser.objects.get(pk=ids[0]).streamed_since
    assert renewed is not None and renewed > since[ids[0]]  # the sweep polls it once more, after the new subscription
    assert CalendarUser.objects.get(pk=ids[1]).streamed_since == since[ids[1]]

    running.stop()
    assert running.heartbeat() == 0
    assert not CalendarUser.objects.filter(pk__in=ids, streamed_until__isnull=False).exists()


def test_a_source_with_more_groups_than_the_listeners_sessions_streams_every_group(
    sims, exchange, listener, monkeypatch
):
    from sync import streaming

    monkeypatch.setattr(streaming, "GROUP_SIZE", 1)  # three groups, each on a connection of its own
    monkeypatch.setattr(streaming, "STREAM_SESSIONS", 1)  # a pool made for one connection
    monkeypatch.setattr(streaming, "STREAM_SPARE_SESSIONS", 0)
    _source, _users, _ids = exchange
    running = listener(connection_minutes=1)
    assert sims.ews.wait_for_streams(3), "the account's pool grew with its groups: no connection waits for a session"
    assert len(running.groups()) == 3 and len(sims.ews.subscriptions()) == 3


def test_stopping_the_listener_waits_for_the_slowest_connection_once_not_once_per_source(sims, listener):
    # a closed connection's thread sits in its read until the next message: at most one keep-alive period
    sims.ews.set_keepalive_seconds(2.0)
    accounts = set()
    for index in range(3):
        customer = make_customer(name=f"Kunde {index} AS")
        user = ServiceUser.objects.create(customer=customer, email=f"ansatt@kunde{index}.no", name="Ansatt")
        source = demo.wire_ews_customer(sims=sims, customer=customer, users=[user], enterprise_id=f"kunde{index}")
        accounts.add(source.username)
    running = listener(connection_minutes=1)
    assert sims.ews.wait_for_streams(3)
    assert len(accounts) == 3 and accounts <= set(sims.ews.service_accounts()), "each customer has its own account"
    time.sleep(1.0)  # half-way to the next keep-alive: one source after the other would wait 1 s, then 2 s, ...

    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 2.0, "the three sources stopped together, within one keep-alive period"
    assert sims.ews.subscriptions() == [] and running.groups() == []
