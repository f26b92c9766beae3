"""Exchange on-premises in seconds: the listener that holds EWS streaming subscriptions open (`manage.py stream_ews`).

One long-running process streams every active EWS source of a served customer. Each source's served calendars
are split into groups of at most 200 mailboxes (one GetStreamingEvents connection each, anchored at the group's
alphabetically first mailbox, as Microsoft's affinity guidance asks); each group runs in a thread that subscribes
its mailboxes' default calendars, keeps a connection open, opens the next one when Exchange closes it at the
connection timeout, and subscribes again when Exchange no longer holds a subscription. Every notification queues
a sync of its user (`sync.services.queue_syncs`: served users only, after commit). The periodic sweep stays the
safety net for anything missed while no connection was open.

Where the state lives: subscription ids only in this process's memory. A streaming subscription carries no
watermark to resume from and lives only while a connection serves it, so a restarted listener subscribes again
rather than reusing stored ids. The database holds a heartbeat per streamed calendar (`CalendarUser.streamed_until`,
written for every live subscription at each refresh in a few bulk UPDATEs, and `streamed_since`, when its
subscription began): while it is fresh the sweep does not poll that mailbox (`sync.pipeline.streamed`), as
Microsoft's guidance pairs streaming notifications with SyncFolderItems when notified rather than polling. A
subscription Exchange dropped clears its heartbeat at once; a listener that stops clears all of its own. Errors
stay where they belong: a mailbox that cannot be subscribed (outside the impersonation scope, missing) is logged and
tried again later while the others stream; a server or service-account error holds back that source's groups for the
back-off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import close_old_connections
from django.utils import timezone

from common.backoff import backoff_seconds
from customers.models import served_customer
from sync.models import CalendarSource, CalendarUser
from sync.providers.base import AuthError, ProviderError, Throttled
from sync.providers.ews import Affinity, EwsProvider, NotificationStream, SubscriptionsLost
from sync.services import queue_syncs, served_calendars

logger = logging.getLogger(__name__)

GROUP_SIZE = 200  # mailboxes on one connection (Microsoft: split any affinity group larger than 200)
DEFAULT_CONNECTION_MINUTES = 10  # GetStreamingEvents' ConnectionTimeout (Exchange allows 1–30)
DEFAULT_REFRESH_SECONDS = 60.0  # how often sources, users and credentials are read again
RESUBSCRIBE_SECONDS = 300.0  # a mailbox that could not be subscribed is tried again after this long
# A refused password is not tried again for this long (every try counts against the account's lockout); new
# credentials in the source start its streams again at the next refresh.
AUTH_RETRY_SECONDS = 900.0
QUEUE_ATTEMPTS = 5  # tries to queue a notified sync while the database is busy (1, 2, 4, 8 s apart)
HEARTBEAT_REFRESHES = 3  # a heartbeat holds for this many refreshes: one missed refresh does not make the sweep poll
HEARTBEAT_CHUNK = 500  # calendar ids per heartbeat UPDATE
# HTTP sessions per Exchange server and service account for the listener: one per open connection (a group's thread
# holds one session at a time, for its Subscribe, GetStreamingEvents and Unsubscribe calls) plus STREAM_SPARE_SESSIONS,
# at least STREAM_SESSIONS (`EwsListener._reserve_sessions`; sessions are made only when needed). Exchange charges the
# streaming connections of impersonating service accounts to the anchor mailboxes, not to the account, so the
# account's pool is the only cap on our side.
STREAM_SESSIONS = 64
STREAM_SPARE_SESSIONS = 8


@dataclass(frozen=True)
class StreamedUser:
    """A served calendar whose mailbox is streamed."""

    calendar_user_id: int
    mailbox: str


def _queue_changed(calendar_user_ids: Iterable[int]) -> None:
    """Queue the syncs of changed calendars from a listener thread (its own database connection)."""
    close_old_connections()
    queue_syncs(calendar_user_ids=set(calendar_user_ids))


def _lapsed(calendar_user_ids: Iterable[int]) -> None:
    """Subscriptions Exchange dropped: their heartbeats end now (the sweep polls those mailboxes again until their
    new subscriptions have a heartbeat and a read after them), and their syncs are queued."""
    close_old_connections()
    ids = set(calendar_user_ids)
    CalendarUser.objects.filter(pk__in=ids).update(streamed_until=None)
    queue_syncs(calendar_user_ids=ids)


def clear_heartbeats(calendar_user_ids: Iterable[int]) -> int:
    """End the heartbeats of these calendars (the listener stops): the sweep polls their mailboxes again."""
    ids = list(calendar_user_ids)
    return sum(
        CalendarUser.objects.filter(pk__in=ids[i : i + HEARTBEAT_CHUNK]).update(streamed_until=None)
        for i in range(0, len(ids), HEARTBEAT_CHUNK)
    )


class GroupStream:
    """Up to GROUP_SIZE mailboxes of one source on one GetStreamingEvents connection, run by its own thread."""

    def __init__(
        self,
        provider: EwsProvider,
        anchor: str,
        users: Iterable[StreamedUser],
        *,
        connection_minutes: int = DEFAULT_CONNECTION_MINUTES,
        on_change: Callable[[set[int]], None] = _queue_changed,
        on_lapse: Callable[[set[int]], None] | None = None,
        name: str = "",
    ) -> None:
        self.provider = provider
        # users whose subscription Exchange dropped; by default their heartbeats end and their syncs are queued
        self._on_lapse = on_lapse or (_lapsed if on_change is _queue_changed else on_change)
        self.affinity = Affinity(anchor)
        self.connection_minutes = connection_minutes
        self._on_change = on_change
        self._lock = threading.Lock()
        self._wanted = {user.mailbox.casefold(): user for user in users}
        self._generation = 0  # counts changes of `_wanted`: a connection opened for an older one is closed
        self._subscribed: dict[str, tuple[str, StreamedUser]] = {}  # mailbox → (subscription id, user)
        self._since: dict[str, dt.datetime] = {}  # mailbox → when its subscription was made (no change before it)
        self._retry_at: dict[str, float] = {}  # mailbox → when to try subscribing it again
        self._stream: NotificationStream | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self.connections = 0  # GetStreamingEvents connections opened (for tests and the log)
        self._thread = threading.Thread(target=self._run, name=name or f"ews-stream-{anchor}", daemon=True)

    @property
    def anchor(self) -> str:
        return self.affinity.anchor

    def users(self) -> dict[str, StreamedUser]:
        with self._lock:
            return dict(self._wanted)

    def start(self) -> None:
        self._thread.start()

    def live(self) -> list[tuple[int, dt.datetime]]:
        """(calendar id, subscribed since) of every mailbox with a subscription a connection serves right now."""
        with self._lock:
            if self._stream is None or self._stopping.is_set() or not self._thread.is_alive():
                return []
            return [
                (user.calendar_user_id, self._since[mailbox])
                for mailbox, (_id, user) in list(self._subscribed.items())
                if mailbox in self._since
            ]

    def set_users(self, users: Iterable[StreamedUser]) -> None:
        """The group's mailboxes from now on: leavers are unsubscribed and newcomers subscribed, on a new connection."""
        wanted = {user.mailbox.casefold(): user for user in users}
        with self._lock:
            if wanted == self._wanted:
                return
            self._wanted = wanted
            self._generation += 1
            stream = self._stream
        if stream is not None:
            stream.close()  # the thread subscribes and unsubscribes, then reconnects with the new set
        self._wake.set()

    def request_stop(self) -> None:
        """Close the connection; the thread then ends every subscription of the group and finishes."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def stop(self, timeout: float = 60.0) -> None:
        """`request_stop` and wait for the thread (at most `timeout` seconds)."""
        self.request_stop()
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # --- the thread ---

    def _run(self) -> None:
        attempt = 0
        try:
            while not self._stopping.is_set():
                try:
                    generation = self._subscribe_changes()
                    if not self._stream_once(generation):
                        self._pause(min(RESUBSCRIBE_SECONDS, DEFAULT_REFRESH_SECONDS))
                    attempt = 0
                except SubscriptionsLost as lost:
                    self._forget(lost.subscription_ids)
                except ProviderError as error:
                    if self._stopping.is_set():
                        break
                    retry_after = error.retry_after if isinstance(error, Throttled) else None
                    wait = backoff_seconds(attempt, retry_after=retry_after)
                    if isinstance(error, AuthError):
                        wait = AUTH_RETRY_SECONDS
                    logger.warning("EWS stream of %s's group: %s; trying again in %.0f s", self.anchor, error, wait)
                    attempt += 1
                    self._pause(wait)
                except Exception:  # a bug must not end the stream for good: log it and go on after a pause
                    logger.exception("EWS stream of %s's group failed", self.anchor)
                    self._pause(backoff_seconds(attempt))
                    attempt += 1
        finally:
            self._unsubscribe_all()
            close_old_connections()

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _subscribe_changes(self) -> int:
        """Unsubscribe who left the group, subscribe who joined (or lost a subscription); returns the generation of
        the group it brought about. One mailbox's error is logged and tried again later; an error about the server
        stops the round (raised)."""
        with self._lock:
            wanted = dict(self._wanted)
            generation = self._generation
        for mailbox in [m for m in self._subscribed if m not in wanted]:
            subscription_id, _user = self._subscribed.pop(mailbox)
            self._unsubscribe(mailbox, subscription_id)
        now = time.monotonic()
        made: list[str] = []
        for mailbox, user in sorted(wanted.items()):
            if self._stopping.is_set():
                return generation
            if mailbox in self._subscribed or self._retry_at.get(mailbox, 0) > now:
                continue
            try:
                subscription_id = self.provider.subscribe_streaming(user.mailbox, affinity=self.affinity)
            except ProviderError as error:
                if self.provider.fails_every_mailbox(error):
                    raise
                logger.warning("no streaming notifications for %s: %s", user.mailbox, error)
                self._retry_at[mailbox] = now + RESUBSCRIBE_SECONDS
                continue
            self._retry_at.pop(mailbox, None)
            self._subscribed[mailbox] = (subscription_id, user)
            made.append(mailbox)
        since = timezone.now()  # after every Subscribe of the round: each change from here on is notified
        with self._lock:
            for mailbox in made:
                self._since[mailbox] = since
            for mailbox in [m for m in self._since if m not in self._subscribed]:
                del self._since[mailbox]
        return generation

    def _stream_once(self, generation: int) -> bool:
        """One connection until Exchange closes it (or the group changes); False when nothing is subscribed."""
        by_id = {subscription_id: user for subscription_id, user in self._subscribed.values()}
        if not by_id:
            return False
        stream = self.provider.open_stream(list(by_id), affinity=self.affinity, minutes=self.connection_minutes)
        with self._lock:
            self._stream = stream
            changed = generation != self._generation
        if changed or self._stopping.is_set():
            stream.close()  # the group changed while subscribing: start over with the new set
        try:
            self.connections += 1
            for subscription_id in stream:
                user = by_id.get(subscription_id)
                if user is not None:
                    self._hand_over({user.calendar_user_id})
        finally:
            with self._lock:
                self._stream = None
        return True

    def _hand_over(self, calendar_user_ids: set[int], to: Callable[[set[int]], None] | None = None) -> None:
        """Queue the syncs; the database being busy or away for a moment is retried with the back-off (the
        connection waits meanwhile), and a change that still cannot be queued is left to the sweep."""
        for attempt in range(QUEUE_ATTEMPTS):
            try:
                (to or self._on_change)(calendar_user_ids)
                return
            except Exception:
                if attempt + 1 == QUEUE_ATTEMPTS or self._stopping.is_set():
                    logger.exception(
                        "the sync of calendar(s) %s could not be queued; the sweep will", calendar_user_ids
                    )
                    return
                self._stopping.wait(backoff_seconds(attempt))

    def _forget(self, subscription_ids: Iterable[str]) -> None:
        """Subscriptions Exchange dropped: subscribe those mailboxes again, and sync them in full now (changes while
        the subscription was gone were not notified)."""
        lost = set(subscription_ids)
        users = [user for subscription_id, user in self._subscribed.values() if subscription_id in lost]
        with self._lock:  # no heartbeat for them from here on (`live`)
            self._subscribed = {m: entry for m, entry in self._subscribed.items() if entry[0] not in lost}
            self._since = {m: since for m, since in self._since.items() if m in self._subscribed}
        logger.info("Exchange dropped %d subscription(s) of %s's group; subscribing again", len(users), self.anchor)
        if users:
            self._hand_over({user.calendar_user_id for user in users}, self._on_lapse)

    def _unsubscribe(self, mailbox: str, subscription_id: str) -> None:
        try:
            self.provider.unsubscribe_streaming(mailbox, subscription_id, affinity=self.affinity)
        except ProviderError as error:  # it expires by itself once no connection serves it
            logger.info("the streaming subscription of %s could not be ended: %s", mailbox, error)

    def _unsubscribe_all(self) -> None:
        with self._lock:
            self._since.clear()
        for mailbox, (subscription_id, _user) in list(self._subscribed.items()):
            self._unsubscribe(mailbox, subscription_id)
        self._subscribed.clear()


@dataclass
class _SourceStreams:
    key: tuple[str, str, str, str]  # endpoint, service account, encrypted secret, time zone: a change restarts
    provider: EwsProvider
    groups: list[GroupStream]


def _groups_of(users: list[StreamedUser]) -> list[list[StreamedUser]]:
    ordered = sorted(users, key=lambda user: user.mailbox.casefold())
    return [ordered[index : index + GROUP_SIZE] for index in range(0, len(ordered), GROUP_SIZE)]


class EwsListener:
    """Every active EWS source's groups, kept in line with the database by `refresh()` (sources and served users
    added, removed or changed); `run()` refreshes every `refresh_seconds` until `stopping` is set."""

    def __init__(
        self,
        *,
        connection_minutes: int = DEFAULT_CONNECTION_MINUTES,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        on_change: Callable[[set[int]], None] = _queue_changed,
        on_lapse: Callable[[set[int]], None] | None = None,
    ) -> None:
        if not 1 <= connection_minutes <= 30:
            raise ValueError("the connection timeout must be 1 to 30 minutes (Exchange's GetStreamingEvents range)")
        self.connection_minutes = connection_minutes
        self.refresh_seconds = refresh_seconds
        self._on_change = on_change
        self._on_lapse = on_lapse
        self._sources: dict[int, _SourceStreams] = {}
        self._beating: dict[int, dt.datetime] = {}  # calendar id → the `streamed_since` last written for it

    def groups(self) -> list[GroupStream]:
        return [group for streams in self._sources.values() for group in streams.groups]

    def run(self, stopping: threading.Event) -> None:
        try:
            while not stopping.is_set():
                try:
                    self.refresh()
                except Exception:  # the database is away for a moment: keep the streams, read again later
                    logger.exception("the EWS listener could not read the sources")
                    close_old_connections()
                stopping.wait(self.refresh_seconds)
        finally:
            self.stop()
            with contextlib.suppress(Exception):  # the database away: the heartbeats lapse by themselves
                clear_heartbeats(self._beating)
                self._beating = {}

    def refresh(self) -> None:
        """Start, change or stop streams to match the active EWS sources and their served calendars."""
        sources = {
            source.pk: source
            for source in CalendarSource.objects.filter(
                served_customer("customer__"), active=True, kind=CalendarSource.Kind.EWS
            ).select_related("customer__settings")
        }
        for source_id in [pk for pk in self._sources if pk not in sources]:
            self._stop_source(source_id)
        for source in sources.values():
            self._refresh_source(source)
        self.heartbeat()

    def heartbeat(self) -> int:
        """Write the heartbeat of every live subscription (`CalendarUser.streamed_until`, valid for
        HEARTBEAT_REFRESHES refreshes) in bulk, and `streamed_since` where a subscription is new; the heartbeats of
        calendars no longer streamed end. Returns how many calendars are streamed."""
        now = timezone.now()
        until = now + dt.timedelta(seconds=HEARTBEAT_REFRESHES * max(self.refresh_seconds, 1.0))
        live = dict(pair for group in self.groups() for pair in group.live())
        new_since: dict[dt.datetime, list[int]] = {}
        for pk, since in live.items():
            if self._beating.get(pk) != since:
                new_since.setdefault(since, []).append(pk)
        for since, ids in new_since.items():  # with the heartbeat in the same UPDATE: never a new since, old beat
            for i in range(0, len(ids), HEARTBEAT_CHUNK):
                CalendarUser.objects.filter(pk__in=ids[i : i + HEARTBEAT_CHUNK]).update(
                    streamed_since=since, streamed_until=until
                )
        renewed = [pk for pk in live if self._beating.get(pk) == live[pk]]
        for i in range(0, len(renewed), HEARTBEAT_CHUNK):
            CalendarUser.objects.filter(pk__in=renewed[i : i + HEARTBEAT_CHUNK]).update(streamed_until=until)
        clear_heartbeats(pk for pk in self._beating if pk not in live)
        self._beating = live
        return len(live)

    def _refresh_source(self, source: CalendarSource) -> None:
        settings = getattr(source.customer, "settings", None)
        zone = settings.timezone if settings else "Europe/Oslo"
        key = (source.endpoint, source.username, source.secret_encrypted, zone)
        current = self._sources.get(source.pk)
        if current is not None and current.key != key:  # new credentials or address: start again with them
            self._stop_source(source.pk)
            current = None
        users = {
            mailbox.casefold(): StreamedUser(pk, mailbox)
            for pk, mailbox in served_calendars().filter(source=source).values_list("pk", "provider_user_id")
        }
        if current is None:
            current = self._sources[source.pk] = _SourceStreams(key, self._provider(key, source), [])
        placed: set[str] = set()
        for group in list(current.groups):
            if group.anchor.casefold() not in users:  # the anchor left: its group starts again around a new one
                group.stop()
                current.groups.remove(group)
                continue
            kept = [users[m] for m in group.users() if m in users]
            group.set_users(kept)
            placed.update(m for m in group.users())
        newcomers = [user for mailbox, user in users.items() if mailbox not in placed]
        for group in current.groups:  # fill groups with room first
            room = GROUP_SIZE - len(group.users())
            if room > 0 and newcomers:
                group.set_users([*group.users().values(), *newcomers[:room]])
                newcomers = newcomers[room:]
        fresh = _groups_of(newcomers)
        if fresh:
            self._reserve_sessions(current, len(fresh))
        for members in fresh:
            group = GroupStream(
                current.provider,
                members[0].mailbox,
                members,
                connection_minutes=self.connection_minutes,
                on_change=self._on_change,
                on_lapse=self._on_lapse,
                name=f"ews-stream-{source.pk}-{members[0].mailbox}",
            )
            current.groups.append(group)
            group.start()
        if not users and not current.groups:
            self._stop_source(source.pk)

    def _reserve_sessions(self, streams: _SourceStreams, more: int) -> None:
        """Before `more` groups start: let the service account's session pool hold all of its open connections and a
        few more. exchangelib's pool is one per server and account (whatever the zone), and a request that finds
        none free waits for one without end (raising the cap later does not wake it), so a source of more than
        STREAM_SESSIONS groups, or sources sharing an account, would leave mailboxes unstreamed, silently."""
        account = streams.key[:2]
        connections = sum(len(other.groups) for other in self._sources.values() if other.key[:2] == account)
        streams.provider.reserve_sessions(connections + more + STREAM_SPARE_SESSIONS)

    def _provider(self, key: tuple[str, str, str, str], source: CalendarSource) -> EwsProvider:
        """One provider per Exchange server, account and zone, shared by the sources that have the same (exchangelib
        keeps one session pool per server and account in any case)."""
        for streams in self._sources.values():
            if streams.key == key:
                return streams.provider
        return EwsProvider(
            source.endpoint, source.username, source.secret(), timezone=key[3], max_connections=STREAM_SESSIONS
        )

    def _stop_source(self, source_id: int) -> None:
        streams = self._sources.pop(source_id, None)
        if streams is None:
            return
        for group in streams.groups:  # all at once, then wait for each
            group.request_stop()
        for group in streams.groups:
            group.stop()
        if not any(other.provider is streams.provider for other in self._sources.values()):
            streams.provider.close()

    def stop(self) -> None:
        """Stop every group: connections closed, subscriptions ended. Every group is asked at once, then each is
        waited for: a closed connection's thread may sit in its read until the next message or keep-alive comes,
        so stopping the sources one after the other took that wait once per source (16 minutes for 33 sources at
        the simulator's 30 s keep-alive) instead of once."""
        for streams in self._sources.values():
            for group in streams.groups:
                group.request_stop()
        for source_id in list(self._sources):
            self._stop_source(source_id)
