"""Scheduled sync work on the q2 cluster: group refresh, sweeps, subscription renewal, clean-up.

Each job is a service with keyword-only arguments plus a thin q2 entry point (no arguments).
"""

import datetime as dt
import logging
import secrets
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from common.queue import enqueue
from customers.models import ServiceUser, served_customer
from customers.services import update_service_states
from sync import pipeline
from sync.attempt import BUSY_RETRY_SECONDS, run_sync_attempt
from sync.errors import failure_of
from sync.mbn import match_subscribers
from sync.models import CalendarSource, CalendarUser, ConsentRequest, PushedAbsence, SyncRun
from sync.providers.base import (
    AuthError,
    CalendarProvider,
    DirectoryUser,
    NotFound,
    PermissionMissing,
    ProviderError,
    Throttled,
)
from sync.purge import purge_ended_customers
from sync.services import queue_stops, queue_syncs, served_calendars, stopping_calendars, sync_passes
from sync.work import SYNC_USERS, sync_args

logger = logging.getLogger(__name__)
BATCH = 20  # Graph $batch holds 20 requests
RETENTION_DAYS = 30
SUBSCRIPTION_MINUTES = 4200  # Graph allows 4230 for events; renewed well before


def _chunks(ids: list[int], size: int = BATCH) -> Iterator[list[int]]:
    for index in range(0, len(ids), size):
        yield ids[index : index + size]


def _real_name(member: DirectoryUser) -> str:
    """The member's name, or "" where the directory gave none or only the address: a known name is never
    replaced by an e-mail address."""
    name = (member.name or "").strip()
    return "" if name.casefold() == (member.email or "").strip().casefold() else name


def refresh_group(*, source: CalendarSource) -> dict[str, int]:
    """Activate the activation group's members, deactivate who left, match MBN subscribers."""
    members = pipeline.provider_for(source).list_users(source.activation_group)
    customer = source.customer
    seen: set[int] = set()
    with transaction.atomic():
        for member in members:
            email = (member.email or "").strip().lower()
            if not email:
                continue
            name = _real_name(member)
            user, _created = ServiceUser.objects.get_or_create(customer=customer, email=email, defaults={"name": name})
            if not user.active or (name and user.name != name):
                user.active, user.name = True, name or user.name
                user.save(update_fields=["active", "name"])
            CalendarUser.objects.update_or_create(
                service_user=user, defaults={"source": source, "provider_user_id": member.id}
            )
            seen.add(user.pk)
        leavers = ServiceUser.objects.filter(customer=customer, active=True, calendar__source=source).exclude(
            pk__in=seen
        )
        for user in leavers:  # one by one, so the history that billing reads records each change
            user.active = False
            user.save(update_fields=["active"])
    matched = 0
    unmatched: list[int] = []
    renumbered: list[int] = []  # users whose absences moved off an old number: pushed again to the new one
    connection = getattr(customer, "mbn_connection", None)
    if connection is not None and connection.removed_at is None and settings.MBN_BASE_URL:
        users = list(ServiceUser.objects.filter(customer=customer, active=True))
        manual = {str(u.pk): u.msisdn for u in users if u.msisdn_set_by_hand and u.msisdn}
        found = match_subscribers(
            [DirectoryUser(str(u.pk), u.email, u.name) for u in users],
            pipeline.mbn_client_for(connection).subscribers(),
            manual=manual,
        )
        for user in users:
            msisdn = found.get(str(user.pk)) or ""
            if not user.msisdn_set_by_hand and user.msisdn != msisdn:
                pushed = PushedAbsence.objects.filter(service_user=user).exists()
                if not msisdn and pushed:
                    unmatched.append(user.pk)  # keeps the number until our absences on it are deleted
                    continue
                if (
                    user.msisdn
                    and pushed
                    and not pipeline.withdraw_before_renumbering(service_user=user, connection=connection)
                ):
                    continue  # the old number keeps the user until our absences are off it (next refresh)
                user.msisdn = msisdn
                user.save(update_fields=["msisdn"])
                if pushed:
                    renumbered.append(user.pk)
            matched += bool(msisdn)
    if renumbered:
        queue_syncs(
            calendar_user_ids=CalendarUser.objects.filter(service_user_id__in=renumbered).values_list("pk", flat=True)
        )
    # leavers, the disabled and the unmatched are stopped; who came back is synced in full
    update_service_states(customer=customer, unmatched=unmatched)
    end_subscriptions(source=source)
    return {"members": len(members), "matched": matched}


def ensure_subscriptions(*, source: CalendarSource, now: dt.datetime | None = None) -> int:
    """Subscribe to change notifications where missing, renew those expiring within a day, and end those of users
    who are no longer active. Returns how many subscriptions were made or renewed.

    A subscription the provider no longer has (404 on renewal: Graph removed it, or it expired) is forgotten and
    made again, and the user synced in full, as Graph's lifecycle guidance says. One user's failure is recorded
    on that user (and summed up on the source) and the others go on; a failure of the whole connection (login,
    permission, throttling) stops the source.
    """
    now = now or timezone.now()
    provider = pipeline.provider_for(source)
    if not getattr(provider, "supports_push", True):
        return 0  # Exchange on-premises: the periodic sweep is the change detection
    end_subscriptions(source=source, provider=provider)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if source.kind == CalendarSource.Kind.GOOGLE:
        url, lifecycle = base + reverse("sync:google_webhook"), None
    else:
        url, lifecycle = base + reverse("sync:graph_webhook"), base + reverse("sync:graph_lifecycle")
    changed, lost = 0, []
    failures: list[ProviderError] = []
    for user in served_calendars().filter(source=source):
        expires = now + dt.timedelta(minutes=SUBSCRIPTION_MINUTES)
        if (
            user.subscription_id
            and user.subscription_expires
            and user.subscription_expires > now + dt.timedelta(days=1)
        ):
            continue
        try:
            if user.subscription_id:
                try:
                    user.subscription_expires = provider.renew(user.subscription_id, expires)
                except NotFound:
                    logger.info("subscription of %s is gone at the provider; subscribing again", user)
                    _forget_subscription(user)
                    lost.append(user.pk)
            if not user.subscription_id:
                user.client_state = secrets.token_urlsafe(24)
                user.push_since = timezone.now()  # changes from now on are notified; the last read came before
                user.subscription_id, user.subscription_expires = provider.subscribe(
                    user.provider_user_id, url, user.client_state, expires, lifecycle
                )
        except (AuthError, PermissionMissing, Throttled):
            raise  # the same for every user: the source's guard records it once
        except ProviderError as error:
            logger.warning("change notifications for %s could not be set up: %s", user, error)
            # in English for staff, like the pipeline's; the code words it for the customer
            failure = failure_of(error, text=f"Change notifications could not be set up: {error}")
            CalendarUser.objects.filter(pk=user.pk).update(**failure.on_calendar(), last_error_at=now)
            failures.append(error)
            continue
        user.save(update_fields=["subscription_id", "subscription_expires", "client_state", "push_since"])
        changed += 1
    if lost:  # notifications may have been missed while the subscription was gone: read the calendars in full
        queue_syncs(calendar_user_ids=lost)
    if failures:
        summary = (
            f"Change notifications could not be set up for {len(failures)} user(s); the first error: {failures[0]}"
        )
        CalendarSource.objects.filter(pk=source.pk).update(**failure_of(failures[0], text=summary).on_calendar())
    return changed


def end_subscriptions(*, source: CalendarSource, provider: CalendarProvider | None = None) -> int:
    """Delete the change subscriptions of the source's users who are no longer active (they left the activation
    group or were deactivated), so no live subscription is left at the provider. Returns how many ended."""
    leavers = list(CalendarUser.objects.filter(source=source, service_user__active=False).exclude(subscription_id=""))
    if not leavers:
        return 0
    provider = provider or pipeline.provider_for(source)
    ended = 0
    for user in leavers:
        try:
            provider.unsubscribe(user.subscription_id)
        except ProviderError as error:  # tried again on the next round; the subscription expires in any case
            logger.warning("the subscription of %s could not be deleted: %s", user, error)
            continue
        _forget_subscription(user)
        ended += 1
    return ended


def _forget_subscription(user: CalendarUser) -> None:
    """Clear a subscription that no longer exists (only if it is still the one stored)."""
    CalendarUser.objects.filter(pk=user.pk, subscription_id=user.subscription_id).update(
        subscription_id="", subscription_expires=None, client_state=""
    )
    user.subscription_id, user.subscription_expires, user.client_state = "", None, ""


def unsubscribe(*, source: CalendarSource, subscription_id: str) -> None:
    """Delete one subscription at the source's provider (a user that was deleted); one already gone is fine."""
    pipeline.provider_for(source).unsubscribe(subscription_id)


def sweep(*, source: CalendarSource, now: dt.datetime | None = None) -> int:
    """Queue a sync of the source's served users that are due one (`pipeline.sweep_calendars`: every user without
    live change notifications, the notified ones at their hourly or daily read, catching what a notification
    missed), and of every user still being stopped (a stop that gave up after its retries is tried again)."""
    now = now or timezone.now()
    served = pipeline.sweep_calendars(source=source, now=now)
    ids = sorted({*served, *stopping_calendars().filter(source=source).values_list("pk", flat=True)})
    run = SyncRun.objects.create(kind=SyncRun.Kind.CYCLE, source=source, started_at=now)
    for chunk, first_day in sync_passes(calendar_user_ids=ids, batch=BATCH):
        if first_day:  # the near-term pass of the source's onboarding (`sync_passes`): before any full sync
            enqueue(SYNC_USERS, *sync_args(chunk, first_day=True), name=f"sync-{source.pk}-first-day-{chunk[0]}")
        else:
            enqueue(SYNC_USERS, chunk, name=f"sync-{source.pk}-{chunk[0]}")
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
    return len(ids)


def delete_old_runs(*, now: dt.datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - dt.timedelta(days=RETENTION_DAYS)
    deleted, _by_model = SyncRun.objects.filter(started_at__lt=cutoff).delete()
    return deleted


# --- q2 entry points (Schedules in admin) -------------------------------------------------------


def _active_sources() -> list[CalendarSource]:
    """The sources the schedules work on: active, of a served customer (`customers.models.served_customer`)."""
    return list(CalendarSource.objects.filter(served_customer("customer__"), active=True).select_related("customer"))


def retry_stops() -> int:
    """Queue the stop of every user still stopping whose source the schedules no longer visit (an ended or
    paused customer's): the sweep of a served source retries its own. Returns how many were queued."""
    visited = [source.pk for source in _active_sources()]
    ids = sorted(stopping_calendars().exclude(source_id__in=visited).values_list("service_user_id", flat=True))
    queue_stops(service_user_ids=ids)
    return len(ids)


def refresh_groups_job() -> str:
    done = 0
    for source in _active_sources():
        try:
            refresh_group(source=source)
            ensure_subscriptions(source=source)
            done += 1
        except Exception as error:  # one broken source must not stop the others
            logger.exception("group refresh failed for %s", source)
            CalendarSource.objects.filter(pk=source.pk).update(**failure_of(error).on_calendar())
    return f"{done} source(s) refreshed"


def sweep_job() -> str:
    now = timezone.now()
    users = 0
    for source in _active_sources():
        last = source.runs.filter(kind=SyncRun.Kind.CYCLE).values_list("started_at", flat=True).first()
        if last is None or now - last >= dt.timedelta(minutes=source.sweep_minutes):
            users += sweep(source=source, now=now)
    users += retry_stops()
    return f"{users} user(s) queued"


def renew_subscriptions_job() -> str:
    done = 0
    for source in _active_sources():
        try:
            done += ensure_subscriptions(source=source)
        except Exception as error:  # one broken source must not stop the others
            logger.exception("subscription renewal failed for %s", source)
            CalendarSource.objects.filter(pk=source.pk).update(**failure_of(error).on_calendar())
    return f"{done} subscription(s) made or renewed"


def unsubscribe_job(source_id: int, subscription_id: str) -> str:
    """Queued when a calendar user with a subscription is deleted: end that subscription at the provider."""
    source = CalendarSource.objects.filter(pk=source_id).select_related("customer").first()
    if source is None:
        return "the calendar source is gone; the subscription runs out by itself"
    unsubscribe(source=source, subscription_id=subscription_id)
    return f"subscription {subscription_id} deleted"


def first_sync_job(source_id: int) -> str:
    """Queued when a source is connected from the portal or admin (`sync.services.queue_first_sync`): read its
    group (users appear and are matched to MBN), subscribe to their calendars and sync them, without waiting
    for the schedules."""
    source = CalendarSource.objects.filter(served_customer("customer__"), pk=source_id, active=True).first()
    if source is None or not source.activation_group:
        return "the calendar source is gone, inactive or its customer not served: nothing to sync"
    try:
        counts = refresh_group(source=source)
        ensure_subscriptions(source=source)
    except Exception as error:  # recorded on the source like the schedules do; the next group refresh retries
        logger.exception("first sync failed for %s", source)
        CalendarSource.objects.filter(pk=source.pk).update(**failure_of(error).on_calendar())
        return f"first sync of {source} failed: {error}"
    queued = sweep(source=source)
    return f"{counts['members']} member(s), {counts['matched']} matched to MBN, {queued} user(s) queued"


def delete_old_consent_requests(*, now: dt.datetime | None = None) -> int:
    """Forget admin-consent states older than a day: long expired, used or not (their outcome is audited)."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=1)
    deleted, _by_model = ConsentRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def delete_old_runs_job() -> str:
    runs, consents = delete_old_runs(), delete_old_consent_requests()
    return f"{runs} sync record(s) older than {RETENTION_DAYS} days and {consents} old consent state(s) deleted"


def sync_users_job(
    calendar_user_ids: list[int], attempt: int = 0, at: str | None = None, first_day: bool = False
) -> str:
    """The q2 side of `sync.tasks.sync_users` (the embedded default has no Celery worker): the same attempt,
    and the users a throttled or unavailable service held up queued again after the back-off (q2 has no
    delayed retry of its own: `enqueue` makes it a one-off schedule). Users another sync holds are looked at
    again. `at` (an ISO instant) fixes the sync window's start, for benchmarks that compare with the engine;
    `first_day` makes it the near-term pass of a big sync (`sync.services.sync_passes`)."""
    now = dt.datetime.fromisoformat(at) if at else None
    outcome = run_sync_attempt(calendar_user_ids=calendar_user_ids, attempt=attempt, now=now, first_day=first_day)
    if outcome.busy:
        busy = outcome.busy
        args = sync_args(busy, attempt, at, first_day)
        enqueue(SYNC_USERS, *args, name=f"sync-busy-{busy[0]}", delay=BUSY_RETRY_SECONDS)
    if outcome.gave_up:
        return f"gave up after {attempt + 1} attempts: {outcome.error} (the next sweep tries again)"
    if outcome.retry_in is not None:
        held_up = outcome.held_up
        enqueue(
            SYNC_USERS,
            *sync_args(held_up, attempt + 1, at, first_day),
            name=f"sync-retry-{held_up[0]}",
            delay=outcome.retry_in,
        )
        return f"{len(held_up)} users held up ({outcome.error}); retrying"
    return f"{len(outcome.results)} users synced"


def purge_ended_customers_job() -> str:
    """Daily: the data of customers whose service ended PURGE_AFTER_DAYS ago is deleted (`sync.purge`)."""
    return f"{len(purge_ended_customers())} ended customer(s) purged"
