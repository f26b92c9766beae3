"""The sync pipeline: read calendars, run the rules engine, reconcile MBN, record what happened.

Services with keyword-only arguments; Celery tasks (`sync.tasks`) and q2 jobs (`sync.jobs`) call them.
A user is claimed with a conditional UPDATE of `locked_until` so two syncs of one user never interleave.
Subjects pass through the engine in memory only; nothing but times, reasons and diversion is stored.
"""

import contextlib
import datetime as dt
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from customers.models import ServiceUser, StopReason
from customers.validators import parse_msisdn
from sync import reconcile
from sync.errors import NO_ERROR, SyncErrorCode, SyncFailure, failure_of
from sync.mbn import Diversion, MbnAbsence, MbnClient, MbnConflict, MbnError, MbnNotFound, MbnThrottled, MbnUnavailable
from sync.models import CalendarSource, CalendarUser, MbnConnection, PushedAbsence, SyncRun
from sync.providers.base import ProviderError, TemporaryError, Throttled
from sync.providers.ews import EwsProvider
from sync.providers.google import GoogleProvider
from sync.providers.graph import GraphProvider
from sync.rules import Event, compute_absences
from sync.services import catalogue_from_database, rule_settings_for, served_calendars, stopping_calendars

logger = logging.getLogger(__name__)


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


class _Pacer:
    """Keeps this process under a request rate per key (MBN allows 20 requests/s per enterprise)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def wait(self, key: str, rate: float) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + 1.0 / rate
        if slot > now:
            time.sleep(slot - now)


class _RedisPacer:
    """The same per-key spacing shared by every process through Redis (two Celery workers, q2 and a web
    process together stay under MBN's 20 requests/s per enterprise). Each call books the next free slot
    atomically and sleeps until it; if Redis is unreachable, the process falls back to its own pacer."""

    _BOOK = """
    local now = redis.call('TIME')
    local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
    local slot = math.max(t, tonumber(redis.call('GET', KEYS[1]) or '0'))
    redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[1])), 'PX', 60000)
    return tostring(slot - t)
    """

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._book = self._redis.register_script(self._BOOK)
        self._fallback = _Pacer()

    def wait(self, key: str, rate: float) -> None:
        import redis

        try:
            delay = float(self._book(keys=[f"kalenderpush:mbn-pace:{key}"], args=[1.0 / rate]))
        except redis.RedisError:
            logger.warning("MBN pacing through Redis failed; pacing this process alone", exc_info=True)
            self._fallback.wait(key, rate)
            return
        if delay > 0:
            time.sleep(delay)


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
_KEPT_PROVIDERS: dict[Callable[..., Any], Callable[..., Any]] = {
    build: functools.lru_cache(maxsize=256)(build) for build in (_graph_provider, _ews_provider, _google_provider)
}


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


def paced_mbn_client_for(connection: MbnConnection):  # type: ignore[no-untyped-def]
    """The connection's MBN client with every call spaced under the enterprise's request rate."""
    return _Paced(mbn_client_for(connection), connection.enterprise_id)


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


def release(*, calendar_user_id: int) -> None:
    CalendarUser.objects.filter(pk=calendar_user_id).update(locked_until=None)


# --- syncing -------------------------------------------------------------------------------------


def sync_window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[now, now + horizon), on whole minutes: MBN times have no fractions of a second."""
    start = now.replace(second=0, microsecond=0)
    return start, start + dt.timedelta(days=settings.SYNC_HORIZON_DAYS)


def sync_users(*, calendar_user_ids: Sequence[int], now: dt.datetime | None = None) -> list[UserResult]:
    """Sync users of one source together: one batched calendar read, then one reconcile per user.

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
            results += _sync_served(users, now)
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
            mbn_unsure=False, changed_at=None, last_error_at=None, last_synced_at=timezone.now(), **NO_ERROR
        )
        stopped: dict[str, Any] = {"stopped_at": timezone.now()}
        if service_user.stop_reason == StopReason.UNMATCHED and not service_user.msisdn_set_by_hand:
            stopped["msisdn"] = ""  # the number kept for the deletes is no longer the user's
        ServiceUser.objects.filter(pk=service_user.pk, stop_reason=service_user.stop_reason).update(**stopped)
    return UserResult(user.pk, 0, deleted=deleted, mbn_requests=requests)


def _sync_served(users: list[CalendarUser], now: dt.datetime) -> list[UserResult]:
    """Sync served users of one source: one batched calendar read, then one reconcile per user."""
    source = users[0].source
    start, end = sync_window(now)

    try:
        events = provider_for(source).read_events([u.provider_user_id for u in users], start, end)
    except (Throttled, TemporaryError) as error:
        _record_retry(users, now, failure_of(error), source=source)
        raise RetryLater.because_of(error, [u.pk for u in users]) from error
    except ProviderError as error:
        refused = failure_of(error)
        CalendarUser.objects.filter(pk__in=[u.pk for u in users]).update(**refused.on_calendar(), last_error_at=now)
        CalendarSource.objects.filter(pk=source.pk).update(**refused.on_calendar())
        return [_failed(u.pk, 0, refused) for u in users]
    catalogue = catalogue_from_database()
    stored: dict[int, list[PushedAbsence]] = {user.service_user_id: [] for user in users}
    for row in PushedAbsence.objects.filter(service_user_id__in=list(stored), end__gt=start):
        stored[row.service_user_id].append(row)
    results = []
    unchanged: list[int] = []
    retry: list[RetryLater] = []
    read_retry: list[RetryLater] = []
    failures: dict[str, ProviderError] = getattr(events, "failures", {})  # why a user could not be read
    for user in users:
        if user.provider_user_id not in events:  # never treat an unread calendar as an empty one
            failure = failures.get(user.provider_user_id)
            if isinstance(failure, Throttled | TemporaryError):  # only this user waits for the back-off
                read_retry.append(RetryLater.because_of(failure, [user.pk]))
                _record_retry([user], now, failure_of(failure))
                continue
            missing = _unread_calendar(failure)
            CalendarUser.objects.filter(pk=user.pk).update(**missing.on_calendar(), last_error_at=now)
            results.append(_failed(user.pk, 0, missing))
            continue
        user_events = events[user.provider_user_id]
        try:
            result = _reconcile_user(user, user_events, catalogue, start, end, now, stored[user.service_user_id])
        except RetryLater as error:  # the others go on; this one is retried after the back-off
            error.user_ids = [user.pk]
            retry.append(error)
            _record_retry([user], now, failure_of(error), events_read=len(user_events))
            continue
        except MbnError as error:  # refused for this user (login, number, request): no retry fixes it
            refused = failure_of(error)
            _record_failure(user, now, refused, events_read=len(user_events))
            results.append(_failed(user.pk, len(user_events), refused))
            continue
        if result is None:
            unchanged.append(user.pk)
            result = UserResult(user.pk, len(user_events))
        results.append(result)
    if unchanged:  # nothing to push: no sync record, one UPDATE for all of them
        CalendarUser.objects.filter(pk__in=unchanged).update(
            last_synced_at=timezone.now(), changed_at=None, last_error_at=None, **NO_ERROR
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


def sync_claimed(
    *, calendar_user_ids: Sequence[int], now: dt.datetime | None = None
) -> tuple[list[UserResult], list[int]]:
    """Claim the users, sync those claimed, release them: (results, users another sync holds right now).

    Users that no longer exist are dropped. Raises RetryLater (with the held-up users) as sync_users does.
    """
    claimed = [pk for pk in calendar_user_ids if claim(calendar_user_id=pk)]
    others = [pk for pk in calendar_user_ids if pk not in claimed]
    busy = list(CalendarUser.objects.filter(pk__in=others).values_list("pk", flat=True)) if others else []
    try:
        results = sync_users(calendar_user_ids=claimed, now=now) if claimed else []
    finally:
        for pk in claimed:
            release(calendar_user_id=pk)
    return results, busy


def _reconcile_user(  # type: ignore[no-untyped-def]
    user: CalendarUser, events: Sequence[Event], catalogue, start, end, now, stored: list[PushedAbsence]
) -> UserResult | None:
    """Push what changed and record the sync; None when MBN already holds what the engine wants."""
    service_user: ServiceUser = user.service_user
    rules = rule_settings_for(customer_settings=service_user.customer.settings, service_user=service_user)
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
    result, final = _push(user, wanted, stored, run)
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
    user: CalendarUser, wanted: list[reconcile.Wanted], stored: list[PushedAbsence], run: SyncRun
) -> tuple[UserResult, list[Any]]:
    """Apply the difference to MBN; returns the result and what MBN holds now (the caller stores it).

    What we stored is MBN's state unless a push was cut short (`mbn_unsure`): then MBN is read first, and
    our earlier creates are adopted by their references."""
    service_user = user.service_user
    connection = service_user.customer.mbn_connection
    client = paced_mbn_client_for(connection)
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
        if todo.calls:
            CalendarUser.objects.filter(pk=user.pk).update(mbn_unsure=True)
        final: list[MbnAbsence] = list(todo.kept)  # type: ignore[arg-type]
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

    def __init__(self, client, enterprise_id: str) -> None:  # type: ignore[no-untyped-def]
        self._client, self._key = client, enterprise_id

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        method = getattr(self._client, name)

        def paced(*args, **kwargs):  # type: ignore[no-untyped-def]
            _mbn_pacer().wait(self._key, settings.MBN_REQUESTS_PER_SECOND)
            return method(*args, **kwargs)

        return paced


def _finish(user: CalendarUser, run: SyncRun, result: UserResult) -> UserResult:
    finished = timezone.now()
    run.finished_at = finished
    run.created, run.updated, run.deleted = result.created, result.updated, result.deleted
    run.mbn_requests = result.mbn_requests
    run.error, run.error_code, run.error_params = result.error, result.error_code, result.error_params
    changed_at = CalendarUser.objects.filter(pk=user.pk).values_list("changed_at", flat=True).first()
    if changed_at is not None and result.mbn_requests:
        run.latency_ms = int((finished - changed_at).total_seconds() * 1000)
    run.save()
    CalendarUser.objects.filter(pk=user.pk).update(
        last_synced_at=finished,
        changed_at=None,
        last_error=result.error,
        last_error_code=result.error_code,
        last_error_params=result.error_params,
        last_error_at=finished if result.error else None,
    )
    return result
