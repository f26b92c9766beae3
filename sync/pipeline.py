"""The sync pipeline: read calendars, run the rules engine, reconcile MBN, record what happened.

Services with keyword-only arguments; Celery tasks (`sync.tasks`) and q2 jobs (`sync.jobs`) call them.
A user is claimed with a conditional UPDATE of `locked_until` so two syncs of one user never interleave.
Subjects pass through the engine in memory only; nothing but times, reasons and diversion is stored.
"""

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.utils import timezone

from common import metrics
from customers.models import ServiceUser, StopReason
from customers.validators import parse_msisdn
from sync import event_state, reconcile
from sync.errors import NO_ERROR, SyncErrorCode, SyncFailure, failure_of
from sync.mbn import Diversion, MbnAbsence, MbnClient, MbnConflict, MbnError, MbnNotFound, MbnThrottled, MbnUnavailable
from sync.models import CalendarSource, CalendarUser, MbnConnection, PushedAbsence, SyncRun
from sync.providers.base import CalendarChanges, ChangeReads, ProviderError, TemporaryError, Throttled
from sync.providers.ews import EwsProvider
from sync.providers.google import GoogleProvider
from sync.providers.graph import GraphProvider
from sync.rules import Event, compute_absences
from sync.services import catalogue_from_database, rule_settings_for, served_calendars, stopping_calendars

logger = logging.getLogger(__name__)
FIRST_DAY = dt.timedelta(hours=24)  # what a near-term pass pushes: absences starting within it


class RetryLater(Exception):
    """A throttled or unavailable service: the task retries `user_ids` after `retry_after` seconds.

    `error_code` and `error_params` say which service and why (`sync.errors`), as the error it stands for."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        user_ids: Sequence[int] = (),
        *,
        code: SyncErrorCode = SyncErrorCode.SERVICE_UNAVAILABLE,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.user_ids = list(user_ids)
        self.error_code = code
        self.error_params = dict(params or {})

    @classmethod
    def because_of(cls, error: Exception, user_ids: Sequence[int] = ()) -> "RetryLater":
        """Stands for a throttled or unavailable service's error, with its message, wait and code."""
        failure = failure_of(error)
        wait = getattr(error, "retry_after", None)
        return cls(failure.text, wait, user_ids, code=failure.code, params=failure.params)


URGENT_HOLD_SECONDS = 1.0  # a near-term call keeps the enterprise's other calls waiting this long after it
_HOLD_POLL_SECONDS = 0.25


class _Pacer:
    """Keeps this process under a request rate per key (MBN allows 20 requests/s per enterprise).

    Near-term first: an `urgent` call (a first-day pass, `sync_users(first_day=True)`) holds the key's other
    calls back until no urgent call came for URGENT_HOLD_SECONDS, so the rate goes to what starts soonest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._urgent_until: dict[str, float] = {}

    def wait(self, key: str, rate: float, *, urgent: bool = False) -> None:
        while (hold := self._book(key, rate, urgent)) < 0:  # a near-term pass has the rate: look again soon
            time.sleep(min(-hold, _HOLD_POLL_SECONDS))
        if hold > 0:
            time.sleep(hold)

    def hold_for_urgent(self, key: str) -> None:
        """A near-term pass starts (before its calendar read): the key's other calls wait from now on."""
        with self._lock:
            self._urgent_until[key] = max(self._urgent_until.get(key, 0.0), time.monotonic() + URGENT_HOLD_SECONDS)

    def _book(self, key: str, rate: float, urgent: bool) -> float:
        """Seconds until the booked slot (≥ 0), or minus the seconds an urgent pass still holds the key."""
        with self._lock:
            now = time.monotonic()
            if urgent:
                self._urgent_until[key] = now + URGENT_HOLD_SECONDS
            elif (held := self._urgent_until.get(key, 0.0) - now) > 0:
                return -held
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + 1.0 / rate
            return slot - now


class _RedisPacer:
    """The same per-key spacing shared by every process through Redis (two Celery workers, q2 and a web
    process together stay under MBN's 20 requests/s per enterprise). Each call books the next free slot
    atomically and sleeps until it; if Redis is unreachable, the process falls back to its own pacer."""

    _BOOK = """
    local now = redis.call('TIME')
    local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
    if ARGV[2] == '1' then
        redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
    else
        local held = redis.call('PTTL', KEYS[2])
        if held > 0 then return 'hold:' .. tostring(held / 1000) end
    end
    local slot = math.max(t, tonumber(redis.call('GET', KEYS[1]) or '0'))
    redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[1])), 'PX', 60000)
    return tostring(slot - t)
    """

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._book = self._redis.register_script(self._BOOK)
        self._fallback = _Pacer()

    def wait(self, key: str, rate: float, *, urgent: bool = False) -> None:
        import redis

        keys = [f"kalenderpush:mbn-pace:{key}", f"kalenderpush:mbn-urgent:{key}"]
        args = [1.0 / rate, "1" if urgent else "0", int(URGENT_HOLD_SECONDS * 1000)]
        try:
            while (answer := self._book(keys=keys, args=args).decode()).startswith("hold:"):
                time.sleep(min(float(answer[5:]), _HOLD_POLL_SECONDS))  # a near-term pass has the rate
            delay = float(answer)
        except redis.RedisError:
            logger.warning("MBN pacing through Redis failed; pacing this process alone", exc_info=True)
            self._fallback.wait(key, rate, urgent=urgent)
            return
        if delay > 0:
            time.sleep(delay)

    def hold_for_urgent(self, key: str) -> None:
        import redis

        try:
            self._redis.set(f"kalenderpush:mbn-urgent:{key}", "1", px=int(URGENT_HOLD_SECONDS * 1000))
        except redis.RedisError:
            self._fallback.hold_for_urgent(key)


@functools.lru_cache(maxsize=1)
def _pacer_for(url: str) -> "_Pacer | _RedisPacer":
    return _RedisPacer(url) if url.startswith(("redis://", "rediss://")) else _Pacer()


def _mbn_pacer() -> "_Pacer | _RedisPacer":
    return _pacer_for(settings.MBN_PACER_URL)


# Why a user's absences were not pushed although nothing failed: no retry can change it, a person must act.
NOT_MATCHED = "not_matched"  # no MBN subscriber (ServiceUser.msisdn is empty): someone sets the mobile number
NO_MBN_CONNECTION = "no_mbn_connection"  # the customer's MBN access is not set up yet


@dataclass(frozen=True)
class UserResult:
    calendar_user_id: int
    events_read: int
    created: int = 0
    updated: int = 0
    deleted: int = 0
    mbn_requests: int = 0
    error: str = ""
    error_code: str = ""  # a SyncErrorCode when `error` is set
    error_params: dict[str, Any] = field(default_factory=dict)
    not_pushed: str = ""  # NOT_MATCHED or NO_MBN_CONNECTION: not an error, and no sync record


# --- clients, built from the encrypted settings and kept per process (token caches, connections) ---


def _graph_provider(
    tenant_id: str,
    client_id: str,
    credential: tuple[str, str, str],
    login_url: str,
    graph_url: str,
    ca_path: str | None,
    zone: str,
):  # type: ignore[no-untyped-def]
    """`credential` is ("secret", encrypted secret, "") for a customer's own app registration, or Nettsoft's app
    from the settings: ("certificate", key file path, thumbprint) or ("secret", "", secret)."""
    kind, first, second = credential
    client_credential: str | dict[str, str]
    if kind == "certificate":
        with open(first, encoding="utf-8") as key_file:
            client_credential = {"private_key": key_file.read(), "thumbprint": second}
    elif first:
        client_credential = CalendarSource(secret_encrypted=first).secret()
    else:
        client_credential = second
    return GraphProvider(
        tenant_id,
        client_id,
        client_credential,
        login_base_url=login_url,
        graph_base_url=graph_url,
        ca_path=ca_path,
        timezone=zone,
    )


def graph_credentials(source: CalendarSource) -> tuple[str, tuple[str, str, str]]:
    """(client id, credential key of `_graph_provider`) a Graph source signs in with: Nettsoft's multi-tenant app
    (certificate preferred over secret) when it `uses_nettsoft_app`, else its own app registration."""
    if not source.uses_nettsoft_app:
        return source.client_id, ("secret", source.secret_encrypted, "")
    if settings.NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE and settings.NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT:
        credential = (
            "certificate",
            settings.NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE,
            settings.NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT.replace(":", "").strip(),
        )
        return settings.NETTSOFT_GRAPH_CLIENT_ID, credential
    return settings.NETTSOFT_GRAPH_CLIENT_ID, ("secret", "", settings.NETTSOFT_GRAPH_CLIENT_SECRET)


def _provider_recipe(source: CalendarSource) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """How the source's provider is built: the builder and its (hashable) arguments — credentials and URLs."""
    customer_settings = getattr(source.customer, "settings", None)
    zone = customer_settings.timezone if customer_settings else "Europe/Oslo"
    if source.kind == CalendarSource.Kind.GRAPH:
        client_id, credential = graph_credentials(source)
        return _graph_provider, (
            source.tenant_id,
            client_id,
            credential,
            settings.MICROSOFT_LOGIN_BASE_URL,
            settings.GRAPH_BASE_URL,
            settings.MICROSOFT_LOGIN_CA_BUNDLE,
            zone,
        )
    if source.kind == CalendarSource.Kind.EWS:
        return _ews_provider, (source.endpoint, source.username, source.secret_encrypted, zone)
    if source.uses_nettsoft_app:  # Nettsoft's service account: the key file named in the settings
        key = ("file", settings.NETTSOFT_GOOGLE_SERVICE_ACCOUNT_FILE)
    else:
        key = ("encrypted", source.secret_encrypted)
    return _google_provider, (
        key,
        source.admin_subject,
        settings.GOOGLE_TOKEN_URL,
        settings.GOOGLE_CALENDAR_BASE_URL,
        settings.GOOGLE_DIRECTORY_BASE_URL,
        zone,
    )


def new_provider(source: CalendarSource):  # type: ignore[no-untyped-def]
    """A provider for the source built now, with no token cache and no kept connections: a connection test must
    really sign in (a revoked consent or a certificate rotated at the same path shows at once)."""
    build, arguments = _provider_recipe(source)
    return build(*arguments)


def provider_for(source: CalendarSource):  # type: ignore[no-untyped-def]
    """The source's provider, kept per process (token caches, HTTP connections) per credentials and URL."""
    build, arguments = _provider_recipe(source)
    return _KEPT_PROVIDERS[build](*arguments)


def _ews_provider(endpoint: str, username: str, secret_token: str, zone: str):  # type: ignore[no-untyped-def]

    password = CalendarSource(secret_encrypted=secret_token).secret()
    return EwsProvider(endpoint, username, password, timezone=zone, max_connections=settings.EWS_MAX_CONNECTIONS)


def _google_provider(
    key: tuple[str, str], admin_subject: str, token_url: str, calendar_url: str, directory_url: str, zone: str
):  # type: ignore[no-untyped-def]
    """`key`: ("encrypted", the source's encrypted key JSON) or ("file", the path of Nettsoft's key file)."""
    kind, value = key
    if kind == "file":
        with open(value, encoding="utf-8") as key_file:
            info = json.load(key_file)
    else:
        info = json.loads(CalendarSource(secret_encrypted=value).secret())
    return GoogleProvider(
        info,
        admin_subject,
        token_url=token_url,
        calendar_base_url=calendar_url,
        directory_base_url=directory_url,
        timezone=zone,
    )


# The sync's providers, kept per process and per recipe (`provider_for`); connection tests build their own.
_KEPT_PROVIDERS: dict[Callable[..., Any], Any] = {
    build: functools.lru_cache(maxsize=256)(build) for build in (_graph_provider, _ews_provider, _google_provider)
}


def forget_providers() -> None:
    """Drop the providers this process keeps: the next sync builds them afresh (token caches, connections)."""
    for kept in _KEPT_PROVIDERS.values():
        kept.cache_clear()


@functools.lru_cache(maxsize=256)
def _mbn_client(
    base_url: str,
    enterprise_id: str,
    client_id: str,
    secret: str,
    username: str,
    password_token: str,
    secret_encrypted: bool,
):  # type: ignore[no-untyped-def]
    """`secret` is the connection's encrypted client secret (`secret_encrypted`) or the partner secret."""
    connection = MbnConnection(
        client_secret_encrypted=secret if secret_encrypted else "", password_encrypted=password_token
    )
    client_secret = connection.client_secret() if secret_encrypted else secret
    return MbnClient(base_url, enterprise_id, client_id, client_secret, username, connection.password())


def mbn_client_for(connection: MbnConnection):  # type: ignore[no-untyped-def]
    if not settings.MBN_BASE_URL:
        raise RetryLater(
            "MBN_BASE_URL is not set: the MBN API address is needed to push absences",
            code=SyncErrorCode.MBN_NOT_CONFIGURED,
        )
    client_id, _secret = mbn_credentials(connection)
    return _mbn_client(
        settings.MBN_BASE_URL,
        connection.enterprise_id,
        client_id,
        connection.client_secret_encrypted if connection.client_id else settings.MBN_PARTNER_CLIENT_SECRET,
        connection.username,
        connection.password_encrypted,
        bool(connection.client_id),
    )


def mbn_credentials(connection: MbnConnection) -> tuple[str, str]:
    """(client id, client secret) the connection signs in to MBN with: its own when it has a client id, else
    Nettsoft's partner client from the settings (MBN_PARTNER_CLIENT_ID/SECRET)."""
    if connection.client_id:
        return connection.client_id, connection.client_secret()
    return settings.MBN_PARTNER_CLIENT_ID, settings.MBN_PARTNER_CLIENT_SECRET


def paced_mbn_client_for(connection: MbnConnection, *, urgent: bool = False):  # type: ignore[no-untyped-def]
    """The connection's MBN client with every call spaced under the enterprise's request rate; `urgent` calls
    (a near-term pass) go before the enterprise's others (`_Pacer`)."""
    return _Paced(mbn_client_for(connection), connection.enterprise_id, urgent=urgent)


# --- a number set by hand -------------------------------------------------------------------------


def is_mbn_subscriber(*, connection: MbnConnection, msisdn: str) -> bool:
    """Whether `msisdn` is a subscriber of the connection's MBN enterprise (its subscriber list, compared in
    the one normalised form). Raises MbnError or RetryLater when MBN cannot be asked."""
    wanted = parse_msisdn(msisdn)
    return any(parse_msisdn(s.msisdn) == wanted for s in paced_mbn_client_for(connection).subscribers())


def withdraw_pushed(*, service_user: ServiceUser, connection: MbnConnection) -> int:
    """Delete from MBN the absences we pushed to the user's current number, and forget them; the number of
    absences deleted. Before the number changes: the old subscriber must not keep the user's absences.
    Hold the user's sync claim around it. Raises MbnError or RetryLater (nothing forgotten) when MBN fails."""
    rows = list(PushedAbsence.objects.filter(service_user=service_user))
    if not rows or not service_user.msisdn:
        return 0
    client = paced_mbn_client_for(connection)
    for row in rows:
        with contextlib.suppress(MbnNotFound):  # already gone: fine
            client.delete(service_user.msisdn, row.mbn_id)
    PushedAbsence.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return len(rows)


def withdraw_before_renumbering(*, service_user: ServiceUser, connection: MbnConnection) -> bool:
    """Before the group refresh gives a user another MBN number: delete our absences from the old one, and mark
    the user's calendars so that the next push reads the new number's MBN state first. False (nothing changed)
    when one of the user's calendars is being synced or MBN cannot be asked: the next refresh tries again."""
    calendar_ids = list(CalendarUser.objects.filter(service_user=service_user).values_list("pk", flat=True))
    claimed = [pk for pk in calendar_ids if claim(calendar_user_id=pk)]
    try:
        if len(claimed) < len(calendar_ids):
            return False
        try:
            withdraw_pushed(service_user=service_user, connection=connection)
        except (MbnError, RetryLater) as error:
            logger.warning("absences of %s not withdrawn from %s: %s", service_user, service_user.msisdn, error)
            return False
        CalendarUser.objects.filter(pk__in=calendar_ids).update(mbn_unsure=True)
        return True
    finally:
        for pk in claimed:
            release(calendar_user_id=pk)


# --- claiming ------------------------------------------------------------------------------------


def claim(*, calendar_user_id: int, now: dt.datetime | None = None) -> bool:
    """Take the user's sync lock; False when another sync holds it."""
    now = now or timezone.now()
    return bool(
        CalendarUser.objects.filter(pk=calendar_user_id)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=now + dt.timedelta(seconds=settings.SYNC_LOCK_SECONDS))
    )


def claim_all(*, calendar_user_ids: Sequence[int], now: dt.datetime | None = None) -> list[int]:
    """Take the sync lock of every user no other sync holds, in one statement; the ids taken.

    `claim` for a batch: one conditional UPDATE … RETURNING (PostgreSQL, and SQLite since 3.35) instead of one
    UPDATE per user, which was most of a quiet sweep's database work. The statement is atomic, so two syncs
    never both take a user."""
    ids = list(dict.fromkeys(calendar_user_ids))
    if not ids:
        return []
    now = now or timezone.now()
    until = now + dt.timedelta(seconds=settings.SYNC_LOCK_SECONDS)
    quote = connection.ops.quote_name
    table, pk, locked = (
        quote(CalendarUser._meta.db_table),
        quote("id"),
        quote(str(CalendarUser._meta.get_field("locked_until").column)),
    )
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {locked} = %s WHERE {pk} IN ({', '.join(['%s'] * len(ids))}) "
            f"AND ({locked} IS NULL OR {locked} < %s) RETURNING {pk}",
            [adapt(until), *ids, adapt(now)],
        )
        taken = {row[0] for row in cursor.fetchall()}
    return [pk for pk in ids if pk in taken]


def release(*, calendar_user_id: int) -> None:
    CalendarUser.objects.filter(pk=calendar_user_id).update(locked_until=None)


# --- syncing -------------------------------------------------------------------------------------


def sync_window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[now, now + horizon), on whole minutes: MBN times have no fractions of a second."""
    start = now.replace(second=0, microsecond=0)
    return start, start + dt.timedelta(days=settings.SYNC_HORIZON_DAYS)


def sync_users(
    *, calendar_user_ids: Sequence[int], now: dt.datetime | None = None, first_day: bool = False
) -> list[UserResult]:
    """Sync users of one source together: one batched calendar read, then one reconcile per user.

    `first_day`: the near-term pass of a sync bigger than MBN's rate allows (`sync.services.sync_passes`):
    only the absences starting within FIRST_DAY are created or changed (and every delete made); the rest
    waits for the full pass queued after it, which finds it missing from what we stored.

    Who is served is decided now, when the sync runs (`sync.services.served_calendars`): a sync queued before
    a user stopped being served does nothing for them, and a user being stopped is stopped (`stop_user`)."""
    now = now or timezone.now()
    related = (
        "source",
        "service_user__customer__settings__default_profile",
        "service_user__customer__settings__out_of_office_profile",
        "service_user__default_profile",
        "service_user__customer__mbn_connection",
    )
    users = list(served_calendars().filter(pk__in=calendar_user_ids).select_related(*related))
    stopping = list(stopping_calendars().filter(pk__in=calendar_user_ids).select_related(*related))
    results: list[UserResult] = []
    retry: list[RetryLater] = []
    for user in stopping:
        try:
            results.append(stop_user(calendar_user=user, now=now))
        except RetryLater as error:  # MBN or the calendar service is down: retried like any sync
            error.user_ids = [user.pk]
            retry.append(error)
            _record_retry([user], now, failure_of(error))
    if users:
        try:
            results += _sync_served(users, now, push_before=now + FIRST_DAY if first_day else None)
        except RetryLater as error:
            retry.append(error)
    if retry:
        wait = max((e.retry_after or 0 for e in retry), default=0) or None
        raise RetryLater(
            str(retry[0]),
            wait,
            [pk for e in retry for pk in e.user_ids],
            code=retry[0].error_code,
            params=retry[0].error_params,
        )
    return results


def stop_user(*, calendar_user: CalendarUser, now: dt.datetime) -> UserResult:
    """Stop serving a user: delete from MBN every absence of ours (`kp:` reference, read from MBN's own list,
    not only what we stored) that has not ended yet, never a manual one; end their change subscription or
    watch channel; forget the stored absences; mark the user stopped. Raises RetryLater when MBN or the
    calendar service is throttled or down (the user stays "stopping"); MBN refusing the request is recorded
    on the user, who stays "stopping" until the next sweep tries again."""
    user = calendar_user
    service_user = user.service_user
    if user.subscription_id:
        try:
            provider_for(user.source).unsubscribe(user.subscription_id)
        except (Throttled, TemporaryError) as error:
            raise RetryLater.because_of(error, [user.pk]) from error
        except ProviderError as error:  # refused (login, permission): it expires by itself within days
            logger.warning("the subscription of %s could not be deleted: %s", user, error)
        CalendarUser.objects.filter(pk=user.pk, subscription_id=user.subscription_id).update(
            subscription_id="", subscription_expires=None, client_state=""
        )
    deleted = requests = 0
    connection = getattr(service_user.customer, "mbn_connection", None)
    if service_user.msisdn and connection is not None and settings.MBN_BASE_URL:
        client = paced_mbn_client_for(connection)
        try:
            held = client.absences(service_user.msisdn)
            requests += 1
            for absence in held:
                if absence.is_ours and absence.end > now and absence.id:
                    with contextlib.suppress(MbnNotFound):  # already gone: fine
                        client.delete(service_user.msisdn, absence.id)
                    requests += 1
                    deleted += 1
        except (MbnThrottled, MbnUnavailable) as error:
            raise RetryLater.because_of(error, [user.pk]) from error
        except MbnNotFound:
            pass  # the number is no longer an MBN subscriber: nothing of ours is left on it
        except MbnError as error:
            refused = failure_of(error)
            _record_failure(user, now, refused, events_read=0)
            return _failed(user.pk, 0, refused)
    with transaction.atomic():
        PushedAbsence.objects.filter(service_user=service_user).delete()
        CalendarUser.objects.filter(pk=user.pk).update(
            mbn_unsure=False,
            changed_at=None,
            last_error_at=None,
            last_synced_at=timezone.now(),
            delta_cursor="",  # served again one day, the calendar is read in full
            event_state=None,
            full_read_at=None,
            recompute_at=None,
            **NO_ERROR,
        )
        stopped: dict[str, Any] = {"stopped_at": timezone.now()}
        if service_user.stop_reason == StopReason.UNMATCHED and not service_user.msisdn_set_by_hand:
            stopped["msisdn"] = ""  # the number kept for the deletes is no longer the user's
        ServiceUser.objects.filter(pk=service_user.pk, stop_reason=service_user.stop_reason).update(**stopped)
    return UserResult(user.pk, 0, deleted=deleted, mbn_requests=requests)


# Incremental reads: the window a full read covers reaches this far past the horizon, so that the cursor made
# by one daily full read still covers the horizon until the next (12 to 36 hours later, see full_read_due).
READ_MARGIN = dt.timedelta(days=2)
FULL_READ_GAP = dt.timedelta(hours=12)  # the least time between two scheduled full reads of a user
_DAY_SECONDS = 24 * 3600


READ_GROUP = 20  # neighbouring calendars by id that share their read times: one batch (`sync_passes`)


def read_slot(calendar_user_id: int) -> int:
    """The hash that places a calendar's scheduled reads (`full_read_due`, `pushed_read_due`) in time. Calendars
    numbered together (a customer's users are mostly added together) share it in groups of READ_GROUP, so a sweep
    reads them in whole batches rather than one or two of each source at a time; the groups spread evenly."""
    return zlib.crc32(str(calendar_user_id // READ_GROUP).encode())


def full_read_due(*, calendar_user_id: int, full_read_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether the user's daily full read is due: at the user's own second of the UTC day (`read_slot`, so the reads
    spread over the whole day), the first such moment at least FULL_READ_GAP after the last full
    read. A full read catches whatever the increments missed and moves the read window with the horizon."""
    if full_read_at is None:
        return True
    offset = read_slot(calendar_user_id) % _DAY_SECONDS
    earliest = full_read_at + FULL_READ_GAP
    day = dt.datetime.combine(earliest.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
    slot = day + dt.timedelta(seconds=offset)
    if slot < earliest:
        slot += dt.timedelta(days=1)
    return now >= slot


def streamed(*, user: CalendarUser, now: dt.datetime) -> bool:
    """Whether the sweep may leave this calendar unread: the EWS listener (`sync.streaming`) holds a live streaming
    subscription for the mailbox (its heartbeat `streamed_until` is fresh), the calendar was synced after that
    subscription began (so every change since the stored cursor is either read or notified), and no notified change
    waits (`changed_at`). Microsoft's guidance for EWS: streaming notifications paired with SyncFolderItems when
    notified and after a reconnect, not polling every mailbox. The cursor stays where it is: the next read (a
    notification, a lapsed heartbeat, the daily full read) gets everything since."""
    return (
        user.source.kind == CalendarSource.Kind.EWS
        and user.changed_at is None
        and _live_since_read(user.streamed_since, user.streamed_until, user.last_synced_at, now)
    )


def _live_since_read(
    since: dt.datetime | None, until: dt.datetime | None, last_synced_at: dt.datetime | None, now: dt.datetime
) -> bool:
    """A push (an EWS stream, a subscription) live now, which began before the calendar's last read."""
    return (
        until is not None
        and until > now
        and since is not None
        and last_synced_at is not None
        and last_synced_at >= since
    )


def pushed_read_due(*, calendar_user_id: int, last_synced_at: dt.datetime, now: dt.datetime) -> bool:
    """Whether a calendar with live change notifications is due its safety read: once every
    SYNC_PUSHED_READ_MINUTES, at the user's own second of that period (`read_slot`, so the reads spread evenly
    over the sweeps), the first such moment after the last sync. Catches a notification that was lost:
    Google's are best effort, Graph gives up on an unreachable endpoint after its retries."""
    period = settings.SYNC_PUSHED_READ_MINUTES * 60
    offset = read_slot(calendar_user_id) % period
    return (now.timestamp() - offset) // period > (last_synced_at.timestamp() - offset) // period


@dataclass(frozen=True)
class SweepRow:
    """What the sweep decides on, read for every served user of a source in one query (`sweep_calendars`)."""

    pk: int
    kind: str
    last_synced_at: dt.datetime | None
    changed_at: dt.datetime | None
    mbn_unsure: bool
    failing: bool
    no_cursor: bool
    full_read_at: dt.datetime | None
    recompute_at: dt.datetime | None
    subscribed: bool
    subscription_expires: dt.datetime | None
    push_since: dt.datetime | None
    streamed_since: dt.datetime | None
    streamed_until: dt.datetime | None


def sweep_reads(row: SweepRow, now: dt.datetime) -> bool:
    """Whether the periodic sweep syncs this calendar now. Always when it was never synced, a change was notified
    and waits, the last sync failed, MBN's state is unsure, there is no change cursor, its daily full read is due
    (`full_read_due`) or time alone changes its result (`recompute_at`). Otherwise a calendar whose changes are
    pushed to us is left to its notifications: an Exchange mailbox the listener streams (`streamed`) until its next
    daily read, a Graph or Google calendar with a live subscription once an hour (`pushed_read_due`); both only if
    the calendar was read after the push began, so nothing from before it is missed. The rest is read every sweep."""
    if (
        row.last_synced_at is None
        or row.changed_at is not None
        or row.mbn_unsure
        or row.failing
        or row.no_cursor
        or (row.recompute_at is not None and row.recompute_at <= now)
        or full_read_due(calendar_user_id=row.pk, full_read_at=row.full_read_at, now=now)
    ):
        return True
    if row.kind == CalendarSource.Kind.EWS:  # `streamed`, on the row
        return not _live_since_read(row.streamed_since, row.streamed_until, row.last_synced_at, now)
    if _live_since_read(row.push_since, row.subscription_expires, row.last_synced_at, now) and row.subscribed:
        return pushed_read_due(calendar_user_id=row.pk, last_synced_at=row.last_synced_at, now=now)
    return True


def sweep_calendars(*, source: CalendarSource, now: dt.datetime) -> list[int]:
    """The served calendars of the source that the sweep syncs now (`sweep_reads`), in one query."""
    rows = (
        served_calendars()
        .filter(source=source)
        .annotate(
            failing=ExpressionWrapper(~Q(last_error_code=""), output_field=BooleanField()),
            no_cursor=ExpressionWrapper(Q(delta_cursor=""), output_field=BooleanField()),
            subscribed=ExpressionWrapper(~Q(subscription_id=""), output_field=BooleanField()),
        )
        .values_list(
            "pk",
            "last_synced_at",
            "changed_at",
            "mbn_unsure",
            "failing",
            "no_cursor",
            "full_read_at",
            "recompute_at",
            "subscribed",
            "subscription_expires",
            "push_since",
            "streamed_since",
            "streamed_until",
        )
    )
    kind = source.kind
    return [row[0] for row in rows if sweep_reads(SweepRow(row[0], kind, *row[1:]), now)]


@dataclass
class _Calendar:
    """One user's calendar after the read: the events for the engine, what to store, and whether to run it."""

    events: list[Event]
    state: event_state.CalendarState | None  # None: nothing changed, the stored state stays as it is
    cursor: str
    full: bool
    run_engine: bool
    rules: Any = None
    settled: str = ""


def _cursor_for(
    user: CalendarUser, now: dt.datetime, end: dt.datetime, catalogue_key: str
) -> tuple[str | None, event_state.StoredHeader | None]:
    """The user's delta cursor and stored state's header, or (None, None) when the calendar is to be read in full:
    no cursor or state yet, a state that cannot be used, a read window the horizon has outgrown, or the daily
    full read is due."""
    if not user.delta_cursor or user.event_state is None:
        return None, None
    if full_read_due(calendar_user_id=user.pk, full_read_at=user.full_read_at, now=now):
        return None, None
    try:
        head = event_state.header(user.event_state, catalogue_key)
    except event_state.StateUnusable:
        return None, None
    if head.window_end < end:
        return None, None
    return user.delta_cursor, head


def _sync_served(
    users: list[CalendarUser], now: dt.datetime, *, push_before: dt.datetime | None = None
) -> list[UserResult]:
    """Sync served users of one source: one batched incremental read, then one reconcile per user that changed.

    Each user's calendar is read from their delta cursor (`read_changes`): what changed since the last read is
    applied to the stored events (`sync.event_state`) and the engine runs on them. A user with no change, whose
    last result is on MBN under the same settings, number and catalogue, and whose result time alone does not
    change yet, costs the delta request and nothing else: no engine, no MBN, no stored events or absences
    decoded. A user without a usable cursor, or whose daily full read is due, is read in full (a new cursor) over
    the horizon plus READ_MARGIN. `push_before`: a near-term pass, pushing only what starts before it."""
    source = users[0].source
    start, end = sync_window(now)
    connection = getattr(users[0].service_user.customer, "mbn_connection", None)
    if push_before is not None and connection is not None:  # near-term first, from the calendar read on
        _mbn_pacer().hold_for_urgent(connection.enterprise_id)
    catalogue = catalogue_from_database()
    key = event_state.catalogue_key(catalogue)
    cursors: dict[str, str | None] = {}
    heads: dict[int, event_state.StoredHeader | None] = {}
    unpolled: dict[str, CalendarChanges] = {}  # streamed mailboxes: no read, "nothing changed" at the same cursor
    for user in users:
        cursor, heads[user.pk] = _cursor_for(user, now, end, key)
        if cursor is not None and streamed(user=user, now=now):
            unpolled[user.provider_user_id] = CalendarChanges((), frozenset(), cursor, False)
        else:
            cursors[user.provider_user_id] = cursor

    try:
        reads = provider_for(source).read_changes(cursors, start, end + READ_MARGIN) if cursors else ChangeReads()
        reads.update(unpolled)
    except (Throttled, TemporaryError) as error:
        _record_retry(users, now, failure_of(error), source=source)
        raise RetryLater.because_of(error, [u.pk for u in users]) from error
    except ProviderError as error:
        refused = failure_of(error)
        CalendarUser.objects.filter(pk__in=[u.pk for u in users]).update(**refused.on_calendar(), last_error_at=now)
        CalendarSource.objects.filter(pk=source.pk).update(**refused.on_calendar())
        return [_failed(u.pk, 0, refused) for u in users]
    horizon = end - start
    calendars: dict[int, _Calendar] = {}
    for user in users:
        changes = reads.get(user.provider_user_id)
        if changes is None:
            continue
        head = heads[user.pk]
        service_user: ServiceUser = user.service_user
        rules = rule_settings_for(customer_settings=service_user.customer.settings, service_user=service_user)
        settled = event_state.settled_key(
            rules=rules,
            catalogue=key,
            msisdn=service_user.msisdn,
            mbn=_mbn_target(service_user),
        )
        full = changes.full or head is None
        if (
            head is not None
            and not full
            and not changes.events
            and not changes.removed
            and head.settled == settled
            and (head.due is None or now < head.due)
            and not user.mbn_unsure
        ):  # nothing changed and nothing is due: the cursor is all there is to keep
            calendars[user.pk] = _Calendar([], None, changes.cursor, False, False)
            continue
        cursor = changes.cursor
        if full:
            stored = event_state.apply({}, changed=changes.events, removed=(), catalogue=catalogue)
            window_end = end + READ_MARGIN
        else:
            try:
                known = event_state.decode(user.event_state, catalogue).events
            except event_state.StateUnusable:  # its header was fine, its events are not: never run the engine
                calendars[user.pk] = _Calendar([], None, "", False, False)  # on a guess; read in full next time
                continue
            stored = event_state.apply(known, changed=changes.events, removed=changes.removed, catalogue=catalogue)
            window_end = head.window_end if head is not None else end + READ_MARGIN
        stored = event_state.current(stored, now)
        calendars[user.pk] = _Calendar(
            events=list(stored.values()),
            state=event_state.CalendarState(
                key,
                window_end,
                stored,
                "",
                event_state.due_after(stored.values(), end, horizon, ZoneInfo(rules.timezone)),
            ),
            cursor=cursor,
            full=full,
            run_engine=True,
            rules=rules,
            settled=settled,
        )
    engine_users = [user.service_user_id for user in users if user.pk in calendars and calendars[user.pk].run_engine]
    stored_absences: dict[int, list[PushedAbsence]] = {pk: [] for pk in engine_users}
    for row in PushedAbsence.objects.filter(service_user_id__in=engine_users, end__gt=start):
        stored_absences[row.service_user_id].append(row)
    results: list[UserResult] = []
    unchanged: list[int] = []
    quiet: list[CalendarUser] = []
    streamed_quiet: list[int] = []
    retry: list[RetryLater] = []
    read_retry: list[RetryLater] = []
    # Near-term first within the batch too: users never synced get what starts within FIRST_DAY pushed first, all
    # of them, then the rest (a full sync can run before their first-day pass when workers outnumber batches).
    split = push_before is None and any(user.last_synced_at is None for user in users)
    work = [(user, now + FIRST_DAY if split and user.last_synced_at is None else push_before, False) for user in users]
    first_parts: dict[int, int | None] = {}  # a split user → the index of its first part's result, if it had one
    for user, limit, rest in work:
        calendar = calendars.get(user.pk)
        if calendar is None:  # never treat an unread calendar as an empty one
            failure = reads.failures.get(user.provider_user_id)
            if isinstance(failure, Throttled | TemporaryError):  # only this user waits for the back-off
                read_retry.append(RetryLater.because_of(failure, [user.pk]))
                _record_retry([user], now, failure_of(failure))
                continue
            missing = _unread_calendar(failure)
            CalendarUser.objects.filter(pk=user.pk).update(**missing.on_calendar(), last_error_at=now)
            results.append(_failed(user.pk, 0, missing))
            continue
        user_events = calendar.events
        if not calendar.run_engine:
            if user.provider_user_id in unpolled:  # not read: the cursor and a notified change stay as they are
                streamed_quiet.append(user.pk)
            else:
                user.delta_cursor = calendar.cursor
                quiet.append(user)
            results.append(UserResult(user.pk, 0))
            continue
        if rest:  # what MBN holds after the first part
            stored_absences[user.service_user_id] = list(
                PushedAbsence.objects.filter(service_user_id=user.service_user_id, end__gt=start)
            )
        first_part = limit is not None and push_before is None
        earlier = first_parts.get(user.pk) if rest else None
        try:
            result = _reconcile_user(
                user,
                user_events,
                calendar.rules,
                catalogue,
                start,
                end,
                now,
                stored_absences[user.service_user_id],
                limit,
                first_part=first_part,
                rest=earlier is not None,
            )
        except RetryLater as error:  # the others go on; this one is retried after the back-off
            _store_read(user, calendar, now, settled=False)  # read but not pushed: the engine runs again next time
            error.user_ids = [user.pk]
            retry.append(error)
            _record_retry([user], now, failure_of(error), events_read=len(user_events))
            continue
        except MbnError as error:  # refused for this user (login, number, request): no retry fixes it
            refused = failure_of(error)
            _record_failure(user, now, refused, events_read=len(user_events))
            result = _failed(user.pk, len(user_events), refused)
        if first_part and not (result and (result.not_pushed or result.error_code in _NOT_RETRIED)):
            first_parts[user.pk] = None if result is None else len(results)
            work.append((user, None, True))  # the rest, once every user's first day is on MBN
            if result is not None:
                results.append(result)
            continue
        # Stored after the push: a crash before it leaves the old cursor, whose changes come again next time. A
        # near-term pass (`limit`) left the rest unpushed: not settled, so the engine runs again for the full pass
        # (unless nothing could be pushed at all: then a number or a connection arriving changes the settled key).
        whole = limit is None or (result is not None and bool(result.not_pushed))
        _store_read(user, calendar, now, settled=whole and (not result or not result.error))
        if earlier is not None:  # one result for the user: both parts
            results[earlier] = results[earlier] if result is None else _both(results[earlier], result)
            continue
        if result is None:
            unchanged.append(user.pk)
            result = UserResult(user.pk, len(user_events))
        results.append(result)
    if quiet:  # nothing changed: the new cursors, in one statement per few hundred users
        CalendarUser.objects.bulk_update(quiet, ["delta_cursor"], batch_size=500)
        unchanged += [user.pk for user in quiet]
    if unchanged:  # nothing to push: no sync record, one UPDATE for all of them
        CalendarUser.objects.filter(pk__in=unchanged).update(
            last_synced_at=timezone.now(), changed_at=None, last_error_at=None, **NO_ERROR
        )
    if streamed_quiet:  # `changed_at` left alone: a notification that came meanwhile still has its sync read
        CalendarUser.objects.filter(pk__in=streamed_quiet).update(
            last_synced_at=timezone.now(), last_error_at=None, **NO_ERROR
        )
    went_through = any(  # a calendar went all the way to MBN (a manual absence in the way aside)
        not result.error or result.error_code == SyncErrorCode.MBN_CONFLICT_MANUAL_ABSENCE for result in results
    )
    if went_through:  # the source works
        CalendarSource.objects.filter(pk=source.pk).update(last_success_at=timezone.now(), **NO_ERROR)
    elif not retry and not read_retry:
        pass  # every user failed for a reason of their own, recorded on each: not a success, nor the source's fault
    else:
        held_up = failure_of(retry[0] if retry else read_retry[0])
        if retry:  # the calendars were read: MBN held them up
            held_up = SyncFailure(held_up.code, f"MBN: {held_up.text}", held_up.params)
        CalendarSource.objects.filter(pk=source.pk).update(**held_up.on_calendar())
    retry += read_retry
    if retry:
        wait = max((e.retry_after or 0 for e in retry), default=0) or None
        first = retry[0]
        raise RetryLater(
            str(first),
            wait,
            [pk for e in retry for pk in e.user_ids],
            code=first.error_code,
            params=first.error_params,
        )
    return results


def _store_read(user: CalendarUser, calendar: _Calendar, now: dt.datetime, *, settled: bool) -> None:
    """Keep the read: the cursor, the events without subjects, and whether their result is on MBN."""
    state = calendar.state
    assert state is not None  # only calendars the engine ran for are stored whole
    if settled:
        state = event_state.CalendarState(state.catalogue, state.window_end, state.events, calendar.settled, state.due)
    fields: dict[str, Any] = {
        "delta_cursor": calendar.cursor,
        "event_state": event_state.encode(state),
        "recompute_at": state.due,
    }
    if calendar.full:
        fields["full_read_at"] = now
    CalendarUser.objects.filter(pk=user.pk).update(**fields)


# refusals no second part can get past (the MBN login, the number): the user's sync ends with the first part
_NOT_RETRIED = (SyncErrorCode.MBN_AUTH_FAILED, SyncErrorCode.MBN_SUBSCRIBER_NOT_FOUND)


def _both(first: UserResult, rest: UserResult) -> UserResult:
    """A user's sync pushed in two parts (near-term first) as one result: the counts added, the last error."""
    return dataclasses.replace(
        rest,
        created=first.created + rest.created,
        updated=first.updated + rest.updated,
        deleted=first.deleted + rest.deleted,
        mbn_requests=first.mbn_requests + rest.mbn_requests,
    )


def _failed(calendar_user_id: int, events_read: int, failure: SyncFailure) -> UserResult:
    return UserResult(
        calendar_user_id, events_read, error=failure.text, error_code=failure.code, error_params=failure.params
    )


def _unread_calendar(failure: Exception | None) -> SyncFailure:
    """Why one user's calendar was left out of the answer: its own error, else its mailbox is not there. A
    calendar that is "not found" on its own is that user's mailbox (not the group or the tenant)."""
    if failure is None:
        return SyncFailure(
            SyncErrorCode.MAILBOX_NOT_FOUND, "the calendar could not be read (no mailbox for this user in the tenant)"
        )
    stored = failure_of(failure)
    if stored.code == SyncErrorCode.NOT_FOUND:
        return SyncFailure(SyncErrorCode.MAILBOX_NOT_FOUND, stored.text, stored.params)
    return stored


def _record_retry(
    users: Sequence[CalendarUser],
    now: dt.datetime,
    failure: SyncFailure,
    *,
    source: CalendarSource | None = None,
    events_read: int = 0,
) -> None:
    """A sync held up by a throttled or unavailable service, visible in admin until a sync succeeds."""
    waiting = failure.retrying()
    CalendarUser.objects.filter(pk__in=[u.pk for u in users]).update(**waiting.on_calendar(), last_error_at=now)
    SyncRun.objects.bulk_create(
        SyncRun(
            source_id=u.source_id,
            service_user_id=u.service_user_id,
            started_at=now,
            finished_at=timezone.now(),
            events_read=events_read,
            **waiting.on_run(),
        )
        for u in users
    )
    for u in users:
        metrics.count_sync_run(provider=u.source.kind, error_code=failure.code, retrying=True)
    if source is not None:
        CalendarSource.objects.filter(pk=source.pk).update(**failure.on_calendar())


def _record_failure(user: CalendarUser, now: dt.datetime, failure: SyncFailure, *, events_read: int) -> None:
    """A push MBN refused for this user: on the user and as an error sync record; the change stays noticed
    (`changed_at`), and a push cut short stays `mbn_unsure`, so the next sync reads MBN first."""
    CalendarUser.objects.filter(pk=user.pk).update(**failure.on_calendar(), last_error_at=now)
    SyncRun.objects.create(
        source_id=user.source_id,
        service_user_id=user.service_user_id,
        started_at=now,
        finished_at=timezone.now(),
        events_read=events_read,
        **failure.on_run(),
    )
    metrics.count_sync_run(provider=user.source.kind, error_code=failure.code)


def sync_claimed(
    *, calendar_user_ids: Sequence[int], now: dt.datetime | None = None, first_day: bool = False
) -> tuple[list[UserResult], list[int]]:
    """Claim the users, sync those claimed, release them: (results, users another sync holds right now).

    Users that no longer exist are dropped. Raises RetryLater (with the held-up users) as sync_users does.
    """
    claimed = claim_all(calendar_user_ids=calendar_user_ids)
    others = [pk for pk in calendar_user_ids if pk not in claimed]
    busy = list(CalendarUser.objects.filter(pk__in=others).values_list("pk", flat=True)) if others else []
    try:
        results = sync_users(calendar_user_ids=claimed, now=now, first_day=first_day) if claimed else []
    finally:
        if claimed:
            CalendarUser.objects.filter(pk__in=claimed).update(locked_until=None)
    return results, busy


def _reconcile_user(  # type: ignore[no-untyped-def]
    user: CalendarUser,
    events: Sequence[Event],
    rules,
    catalogue,
    start,
    end,
    now,
    stored: list[PushedAbsence],
    push_before: dt.datetime | None = None,
    *,
    first_part: bool = False,
    rest: bool = False,
) -> UserResult | None:
    """Push what changed and record the sync; None when MBN already holds what the engine wants.

    `first_part`: the near-term part of a sync pushed in two (`_sync_served`): None, with nothing recorded,
    when it needs no MBN request. `rest`: the other part, recorded on the same sync record as the first."""
    service_user: ServiceUser = user.service_user
    absences = compute_absences(settings=rules, window_start=start, window_end=end, events=events, catalogue=catalogue)
    wanted = reconcile.wanted_absences(user_key=service_user.pk, absences=absences)
    if reconcile.unchanged(wanted, stored):
        return None
    connection = getattr(service_user.customer, "mbn_connection", None)
    if not service_user.msisdn or connection is None or connection.removed_at is not None:
        # Nothing to push to, and nothing failed: no sync record, no error; the portal and admin show the
        # user as not connected to MBN (from the number and the connection themselves).
        CalendarUser.objects.filter(pk=user.pk).update(changed_at=None, last_error_at=None, **NO_ERROR)
        reason = NOT_MATCHED if not service_user.msisdn else NO_MBN_CONNECTION
        return UserResult(user.pk, len(events), not_pushed=reason)
    run = SyncRun(source=user.source, service_user=service_user, started_at=now, events_read=len(events))
    if rest:  # the rest after this sync's first part: one sync record for both
        run = SyncRun.objects.filter(service_user=service_user, started_at=now).order_by("-pk").first() or run
    result, final = _push(user, wanted, stored, run, push_before)
    if first_part and not result.mbn_requests:
        return None  # nothing starts within the first day: all of it goes with the rest
    if run.pk is not None and run.error and not result.error:  # the first part's problem stays on record
        result = dataclasses.replace(
            result, error=run.error, error_code=run.error_code, error_params=dict(run.error_params)
        )
    with transaction.atomic():  # what MBN holds now and the sync record: one write transaction
        CalendarUser.objects.filter(pk=user.pk).update(mbn_unsure=False)
        PushedAbsence.objects.filter(service_user=service_user).delete()
        PushedAbsence.objects.bulk_create(
            PushedAbsence(
                service_user=service_user,
                mbn_id=a.id or "",
                external_ref=a.external_ref,
                start=a.start,
                end=a.end,
                reason=a.reason,
                diversion=a.diversion,
            )
            for a in final
        )
        return _finish(user, run, result)


def _push(
    user: CalendarUser,
    wanted: list[reconcile.Wanted],
    stored: list[PushedAbsence],
    run: SyncRun,
    push_before: dt.datetime | None = None,
) -> tuple[UserResult, list[Any]]:
    """Apply the difference to MBN; returns the result and what MBN holds now (the caller stores it).

    What we stored is MBN's state unless a push was cut short (`mbn_unsure`): then MBN is read first, and
    our earlier creates are adopted by their references. With `push_before`, only the near-term part of the
    difference is pushed (`reconcile.first`): the absences left as they are stay in what MBN holds."""
    service_user = user.service_user
    connection = service_user.customer.mbn_connection
    client = paced_mbn_client_for(connection, urgent=push_before is not None)
    msisdn = service_user.msisdn
    requests = 0
    conflicts: list[tuple[dt.datetime, Exception]] = []
    unsure = CalendarUser.objects.filter(pk=user.pk).values_list("mbn_unsure", flat=True).first()
    try:
        if unsure:
            current: list[MbnAbsence] = client.absences(msisdn)
            requests += 1
        else:
            current = [
                MbnAbsence(row.mbn_id, row.reason, row.start, row.end, cast(Diversion, row.diversion), row.external_ref)
                for row in stored
            ]
        todo = reconcile.plan(wanted=wanted, current=current)
        deferred: tuple[reconcile.Existing, ...] = ()
        if push_before is not None:
            todo, deferred = reconcile.first(todo, before=push_before)
        if todo.calls:
            CalendarUser.objects.filter(pk=user.pk).update(mbn_unsure=True)
        final: list[MbnAbsence] = [*todo.kept, *deferred]  # type: ignore[list-item]
        for item in todo.deletes:
            with contextlib.suppress(MbnNotFound):  # already gone: fine
                client.delete(msisdn, item.id)  # type: ignore[attr-defined]
            requests += 1
        for existing, item in todo.updates:
            absence = MbnAbsence(
                existing.id,  # type: ignore[attr-defined]
                item.reason,
                item.start,
                item.end,
                cast(Diversion, item.diversion),
                item.external_ref,
            )
            try:
                final.append(client.update(msisdn, existing.id, absence))  # type: ignore[attr-defined]
            except MbnNotFound:  # removed on MBN meanwhile (by hand): put it back
                requests += 1
                final.append(client.create(msisdn, MbnAbsence(None, *_fields(item))))
            requests += 1
        for item in todo.creates:
            try:
                final.append(client.create(msisdn, MbnAbsence(None, *_fields(item))))
            except MbnConflict as conflict:
                conflicts.append((item.start, conflict))
            requests += 1
    except (MbnThrottled, MbnUnavailable) as error:
        raise RetryLater.because_of(error) from error
    problem = _manual_absences(conflicts)
    result = UserResult(
        user.pk,
        run.events_read,
        created=len(todo.creates) - len(conflicts),
        updated=len(todo.updates),
        deleted=len(todo.deletes),
        mbn_requests=requests,
        error=problem.text if problem else "",
        error_code=problem.code if problem else "",
        error_params=problem.params if problem else {},
    )
    return result, final


def _manual_absences(conflicts: Sequence[tuple[dt.datetime, Exception]]) -> SyncFailure | None:
    """The absences MBN refused because one set by hand overlaps them (409): their starts, as parameters."""
    if not conflicts:
        return None
    overlaps = "; ".join(f"{start:%d.%m %H:%M}: {error}" for start, error in conflicts)
    text = f"A manual absence in MBN overlaps: {overlaps}"
    starts = [start.isoformat() for start, _error in conflicts]
    return SyncFailure(SyncErrorCode.MBN_CONFLICT_MANUAL_ABSENCE, text, {"starts": starts})


def _fields(item: reconcile.Wanted) -> tuple[str, dt.datetime, dt.datetime, Any, str]:
    """reason, start, end, diversion, external_ref: an MbnAbsence's fields after its id."""
    return item.reason, item.start, item.end, item.diversion, item.external_ref


class _Paced:
    """The MBN client, each call spaced to stay under the enterprise's rate."""

    def __init__(self, client, enterprise_id: str, *, urgent: bool = False) -> None:  # type: ignore[no-untyped-def]
        self._client, self._key, self._urgent = client, enterprise_id, urgent

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        method = getattr(self._client, name)

        def paced(*args, **kwargs):  # type: ignore[no-untyped-def]
            _mbn_pacer().wait(self._key, settings.MBN_REQUESTS_PER_SECOND, urgent=self._urgent)
            return method(*args, **kwargs)

        return paced


def _mbn_target(service_user: ServiceUser) -> str:
    """The MBN enterprise the user's absences go to, "" when none (no connection, or it was disconnected)."""
    connection = getattr(service_user.customer, "mbn_connection", None)
    return connection.enterprise_id if connection is not None and connection.removed_at is None else ""


def _finish(user: CalendarUser, run: SyncRun, result: UserResult) -> UserResult:
    finished = timezone.now()
    run.finished_at = finished
    first_record = run.pk is None  # one count per sync record, as the records are counted
    if run.pk is None:
        run.created, run.updated, run.deleted = result.created, result.updated, result.deleted
        run.mbn_requests = result.mbn_requests
    else:  # the rest of a sync pushed near-term first (`_sync_served`): the record of both parts
        run.created, run.updated = run.created + result.created, run.updated + result.updated
        run.deleted, run.mbn_requests = run.deleted + result.deleted, run.mbn_requests + result.mbn_requests
    run.error, run.error_code, run.error_params = result.error, result.error_code, result.error_params
    changed_at = CalendarUser.objects.filter(pk=user.pk).values_list("changed_at", flat=True).first()
    if changed_at is not None and result.mbn_requests:
        run.latency_ms = int((finished - changed_at).total_seconds() * 1000)
        metrics.CHANGE_TO_MBN_SECONDS.labels(provider=user.source.kind).observe(run.latency_ms / 1000)
    run.save()
    if first_record:
        metrics.count_sync_run(provider=user.source.kind, error_code=result.error_code)
    CalendarUser.objects.filter(pk=user.pk).update(
        last_synced_at=finished,
        changed_at=None,
        last_error=result.error,
        last_error_code=result.error_code,
        last_error_params=result.error_params,
        last_error_at=finished if result.error else None,
    )
    return result
