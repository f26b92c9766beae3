"""Daily usage snapshots: active users per customer at the end of each day, from service-user history.

A user counts on a day when, at the end of that day (Europe/Oslo), they were active and matched to an
MBN subscriber. The daily job and the back-fill both read the history, so a missed day is filled in
with what was true then, not with today's count. Snapshots are stored only by actions that change
things (the daily job, a billing run, a notice); reads (`users_by_day_as_of`) count the days not yet
stored from the same history, in memory.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from billing.models import UsageSnapshot
from customers.models import ServiceUser, Subscription

_DAY = dt.timedelta(days=1)


def _end_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + _DAY, dt.time(), tzinfo=ZoneInfo(settings.TIME_ZONE))


def _counting_records(customer_ids: Iterable[int]) -> QuerySet[Any]:
    """The history records in which a user of these customers counts, each annotated with `until`.

    A record holds from its `history_date` until the user's next record (`until`; None for the latest),
    so a user counts at an instant when the record holding then is one of these: active, matched to an
    MBN number, not a deletion.
    """
    history = ServiceUser.history.model  # type: ignore[attr-defined]
    following = (
        history.objects.filter(id=OuterRef("id"))
        .filter(
            Q(history_date__gt=OuterRef("history_date"))
            | Q(history_date=OuterRef("history_date"), history_id__gt=OuterRef("history_id"))
        )
        .order_by("history_date", "history_id")
        .values("history_date")[:1]
    )
    return (
        history.objects.filter(customer_id__in=list(customer_ids), active=True)
        .exclude(history_type="-")
        .exclude(msisdn="")
        .annotate(until=Subquery(following))
    )


def _holding_at(instant: dt.datetime) -> Q:
    return Q(history_date__lt=instant) & (Q(until__isnull=True) | Q(until__gte=instant))


def active_users_at_end_of(*, day: dt.date, customer_ids: Iterable[int]) -> dict[int, int]:
    """{customer id: active, matched users at the end of `day`}, from the service-user history."""
    ids = list(customer_ids)
    rows = (
        _counting_records(ids)
        .filter(_holding_at(_end_of_day(day)))
        .values("customer_id")
        .annotate(users=Count("id", distinct=True))
    )
    counts = {customer_id: 0 for customer_id in ids}
    counts.update({row["customer_id"]: row["users"] for row in rows})
    return counts


def active_users_on_days(*, customer_id: int, days: Iterable[dt.date]) -> dict[dt.date, int]:
    """{day: active, matched users at the end of it} for one customer: what `active_users_at_end_of`
    gives day by day, in one query, for reads that count days not yet stored without storing them."""
    ends = {day: _end_of_day(day) for day in days}
    if not ends:
        return {}
    first_end, last_end = min(ends.values()), max(ends.values())
    records = list(
        _counting_records([customer_id])
        .filter(Q(history_date__lt=last_end) & (Q(until__isnull=True) | Q(until__gte=first_end)))
        .values_list("id", "history_date", "until")
    )
    return {  # the test of `_holding_at`, per day
        day: len({user for user, since, until in records if since < end and (until is None or until >= end)})
        for day, end in ends.items()
    }


def _billable_customer_days(
    first: dt.date, last: dt.date, customer_ids: Iterable[int] | None = None
) -> dict[dt.date, set[int]]:
    """Days in [first, last] on which each customer's subscription was live (go-live to effective end)."""
    days: dict[dt.date, set[int]] = defaultdict(set)
    subscriptions = Subscription.objects.filter(go_live__isnull=False, go_live__lte=last).only(
        "customer_id", "go_live", "term_months", "notice_received"
    )
    if customer_ids is not None:
        subscriptions = subscriptions.filter(customer_id__in=list(customer_ids))
    for subscription in subscriptions:
        assert subscription.go_live is not None
        start = max(first, subscription.go_live)
        end = min(last, subscription.effective_end or last)
        day = start
        while day <= end:
            days[day].add(subscription.customer_id)
            day += _DAY
    return days


def ensure_snapshots(
    *,
    first: dt.date,
    last: dt.date,
    customer_ids: Iterable[int] | None = None,
    source: str = UsageSnapshot.Source.DAILY,
) -> int:
    """Store the missing snapshots of [first, last] for customers live on those days; returns how many.

    Only actions that change things call this: the daily job, a billing run, a notice. Reads use
    `users_by_day_as_of`, which counts missing days without storing them.
    """
    only = None if customer_ids is None else set(customer_ids)
    wanted = _billable_customer_days(first, last, only)
    stored = UsageSnapshot.objects.filter(day__gte=first, day__lte=last)
    if only is not None:
        stored = stored.filter(customer_id__in=only)
    existing = set(stored.values_list("day", "customer_id"))
    created = 0
    for day in sorted(wanted):
        missing = {customer_id for customer_id in wanted[day] if (day, customer_id) not in existing}
        if not missing:
            continue
        counts = active_users_at_end_of(day=day, customer_ids=missing)
        UsageSnapshot.objects.bulk_create(
            [UsageSnapshot(customer_id=cid, day=day, active_users=n, source=source) for cid, n in counts.items()],
            ignore_conflicts=True,
        )
        created += len(counts)
    return created


def users_by_day(*, customer_id: int, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    """The stored snapshots of one customer in [first, last]: what a billing run bills."""
    return dict(
        UsageSnapshot.objects.filter(customer_id=customer_id, day__gte=first, day__lte=last).values_list(
            "day", "active_users"
        )
    )


def users_by_day_as_of(*, customer_id: int, first: dt.date, last: dt.date, today: dt.date) -> dict[dt.date, int]:
    """Active users per day in [first, last] as known `today`, for estimates; stores nothing.

    Days lived (up to yesterday) come from the snapshots; a live day without one (the daily job has not
    run yet) is counted from the history exactly as the job will store it. Days from today on get the
    count at the end of yesterday: what the invoice will say if nothing changes.
    """
    yesterday = today - _DAY
    by_day = users_by_day(customer_id=customer_id, first=first, last=last)
    missing: set[dt.date] = set()
    if first <= yesterday:
        lived = _billable_customer_days(first, min(last, yesterday), [customer_id])
        missing = {day for day, ids in lived.items() if customer_id in ids and day not in by_day}
    forecast = last > yesterday
    counted = active_users_on_days(customer_id=customer_id, days=missing | ({yesterday} if forecast else set()))
    by_day.update({day: counted[day] for day in missing})
    if forecast:
        day = max(first, today)
        while day <= last:
            by_day.setdefault(day, counted[yesterday])
            day += _DAY
    return by_day
