"""Glue between the database and the rules engine (the catalogue, a calendar's settings), and queueing syncs."""

import datetime as dt
import itertools
from collections.abc import Iterable

from django.db import DatabaseError
from django.db.models import QuerySet
from django.utils import timezone

from common.queue import enqueue
from customers.models import WEEKDAYS, CustomerSettings, ServiceUser, served_user
from sync.models import AbsenceProfile, CalendarUser
from sync.rules import DEFAULT_CATALOGUE, Catalogue, Profile, RuleSettings
from sync.work import FIRST_SYNC, SYNC_USERS, sync_args


def catalogue_from_database() -> Catalogue:
    """The absence-profile catalogue as staff keep it in admin."""
    return Catalogue.of(
        Profile(short_code=row.short_code, full_name=row.full_name, profile=row.profile, mbn_reason=row.mbn_reason)
        for row in AbsenceProfile.objects.order_by("position", "full_name")
    )


def catalogue_or_default() -> Catalogue:
    """The database catalogue, or the seeded defaults where there is no migrated database (standalone CLI)."""
    try:
        catalogue = catalogue_from_database()
    except DatabaseError:
        return DEFAULT_CATALOGUE
    return catalogue if catalogue.profiles else DEFAULT_CATALOGUE


def _minutes(value: dt.time) -> int:
    return value.hour * 60 + value.minute


def rule_settings_for(*, customer_settings: CustomerSettings, service_user: ServiceUser | None = None) -> RuleSettings:
    """The engine's settings for one calendar: the customer's, with the service user's overrides."""
    office_hours = tuple(
        (_minutes(hours[0]), _minutes(hours[1])) if hours else None
        for hours in (customer_settings.office_hours()[day] for day, _label in WEEKDAYS)
    )
    default_profile = customer_settings.default_profile
    divert_by_default = customer_settings.divert_by_default
    if service_user is not None:
        if service_user.default_profile is not None:
            default_profile = service_user.default_profile
        if service_user.divert_by_default is not None:
            divert_by_default = service_user.divert_by_default
    return RuleSettings(
        timezone=customer_settings.timezone,
        office_hours=office_hours,
        office_hours_only=customer_settings.office_hours_only,
        holidays="NO" if customer_settings.public_holidays else None,
        default_profile=default_profile.full_name,
        out_of_office_profile=customer_settings.out_of_office_profile.full_name,
        divert_by_default=divert_by_default,
        include_tentative=customer_settings.include_tentative,
    )


def served_calendars() -> "QuerySet[CalendarUser]":
    """The calendars that are synced: their users are served (`customers.models.served_user`; an unmatched
    user's calendar is read, nothing is pushed). Every entry point that queues or runs a sync goes through it."""
    return CalendarUser.objects.filter(served_user("service_user__", matched=False))


def stopping_calendars() -> "QuerySet[CalendarUser]":
    """The calendars of users being stopped (their absences, subscription or channel still to be removed)."""
    return CalendarUser.objects.filter(service_user__stop_reason__gt="", service_user__stopped_at__isnull=True)


# A customer with more never-synced users than this in one queueing has more to push than MBN's rate (20
# requests/s per enterprise) gets through at once: about 17 absences each, 20 users are ~19 s of creates.
FIRST_DAY_PASS_USERS = 20
ONBOARDING_BATCH = 20  # users per sync of an onboarding queued by `queue_syncs` (one Graph $batch)


def sync_passes(
    *, calendar_user_ids: Iterable[int], batch: int = 1, onboarding_batch: int | None = None
) -> list[tuple[list[int], bool]]:
    """The syncs to queue for these calendars, in the order to queue them: (calendar ids of one source, at most
    `batch`, first_day). Near-term first: when a customer has more never-synced users here than
    FIRST_DAY_PASS_USERS (its onboarding), every one of them is first synced with `first_day` (only what
    starts within 24 h is pushed), and only then is everyone synced in full, so today's and tomorrow's absences
    of all the customer's users reach MBN before next week's of any. Batches alternate between sources; the
    onboarding users' batches hold up to `onboarding_batch` users (default `batch`), the others' `batch`."""
    rows = list(
        CalendarUser.objects.filter(pk__in=set(calendar_user_ids))
        .order_by("pk")
        .values_list("pk", "source_id", "source__customer_id", "last_synced_at")
    )
    never = [(pk, customer) for pk, _source, customer, synced in rows if synced is None]
    counts: dict[int, int] = {}
    for _pk, customer in never:
        counts[customer] = counts.get(customer, 0) + 1
    onboarding = {pk for pk, customer in never if counts[customer] > FIRST_DAY_PASS_USERS}

    def batches(ids: Iterable[tuple[int, int]]) -> list[list[int]]:
        by_group: dict[tuple[int, bool], list[int]] = {}
        for pk, source in ids:
            by_group.setdefault((source, pk in onboarding), []).append(pk)
        per_source = []
        for (_source, new), pks in by_group.items():
            size = (onboarding_batch or batch) if new else batch
            per_source.append([pks[i : i + size] for i in range(0, len(pks), size)])
        return [chunk for group in itertools.zip_longest(*per_source) for chunk in group if chunk]

    near = batches((pk, source) for pk, source, _customer, _synced in rows if pk in onboarding)
    full = batches((pk, source) for pk, source, _customer, _synced in rows)
    return [(chunk, True) for chunk in near] + [(chunk, False) for chunk in full]


def queue_syncs(*, calendar_user_ids: Iterable[int]) -> None:
    """Mark calendars of served users as changed and queue their syncs after commit; the others are left alone
    (a webhook for a stopped user queues nothing).

    On Celery when a broker is configured; with the embedded default (eager Celery) on the q2 cluster,
    so the caller (a webhook, a portal page) answers at once (`common.queue` decides).
    """
    user_ids = set(served_calendars().filter(pk__in=set(calendar_user_ids)).values_list("pk", flat=True))
    if not user_ids:
        return
    CalendarUser.objects.filter(pk__in=user_ids, changed_at__isnull=True).update(changed_at=timezone.now())
    # one user per sync (a webhook's change), but a customer's onboarding in batches of one source, as the sweep
    for ids, first_day in sync_passes(calendar_user_ids=user_ids, onboarding_batch=ONBOARDING_BATCH):
        if first_day:  # the near-term pass of a customer's onboarding (`sync_passes`)
            enqueue(SYNC_USERS, *sync_args(ids, first_day=True), name=f"sync-first-day-{ids[0]}")
        else:
            enqueue(SYNC_USERS, ids, name=f"sync-user-{ids[0]}")


def queue_stops(*, service_user_ids: Iterable[int]) -> None:
    """Queue the sync that stops these users (they are `stopping`): it removes our absences from MBN and ends
    their subscription or channel, retried after the back-off like any sync when a service is down."""
    ids = sorted(stopping_calendars().filter(service_user_id__in=set(service_user_ids)).values_list("pk", flat=True))
    for user_id in ids:
        enqueue(SYNC_USERS, [user_id], name=f"stop-user-{user_id}")


def queue_first_sync(*, source_id: int) -> None:
    """Queue a newly connected (or reconnected) source's first sync after commit: its group's members become
    users and are matched to MBN, their subscriptions are made and their calendars synced (`sync.jobs`)."""
    enqueue(FIRST_SYNC, source_id, name=f"first-sync-{source_id}")
