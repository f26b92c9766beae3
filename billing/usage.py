"""Daily usage snapshots: active users per customer at the end of each day, from service-user history.

A user counts on a day when, at the end of that day (Europe/Oslo), they were active and matched to an
MBN subscriber. The daily job and the back-fill both read the history, so a missed day is filled in
with what was true then, not with today's count.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, F, OuterRef, Subquery

from billing.models import UsageSnapshot
from customers.models import ServiceUser, Subscription

_DAY = dt.timedelta(days=1)


def _end_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + _DAY, dt.time(), tzinfo=ZoneInfo(settings.TIME_ZONE))


def active_users_at_end_of(*, day: dt.date, customer_ids: Iterable[int]) -> dict[int, int]:
    """{customer id: active, matched users at the end of `day`}, from the service-user history."""
    ids = list(customer_ids)
    history = ServiceUser.history.model  # type: ignore[attr-defined]
    end = _end_of_day(day)
    latest = (
        history.objects.filter(id=OuterRef("id"), history_date__lt=end)
        .order_by("-history_date", "-history_id")
        .values("history_id")[:1]
    )
    rows = (
        history.objects.filter(customer_id__in=ids, history_date__lt=end)
        .annotate(latest=Subquery(latest))
        .filter(history_id=F("latest"), active=True)
        .exclude(history_type="-")
        .exclude(msisdn="")
        .values("customer_id")
        .annotate(users=Count("id", distinct=True))
    )
    counts = {customer_id: 0 for customer_id in ids}
    counts.update({row["customer_id"]: row["users"] for row in rows})
    return counts


def _billable_customer_days(first: dt.date, last: dt.date) -> dict[dt.date, set[int]]:
    """Days in [first, last] on which each customer's subscription was live (go-live to effective end)."""
    days: dict[dt.date, set[int]] = defaultdict(set)
    subscriptions = Subscription.objects.filter(go_live__isnull=False, go_live__lte=last).only(
        "customer_id", "go_live", "term_months", "notice_received"
    )
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
    """Store the missing snapshots of [first, last] for customers live on those days; returns how many."""
    wanted = _billable_customer_days(first, last)
    if customer_ids is not None:
        only = set(customer_ids)
        wanted = {day: ids & only for day, ids in wanted.items()}
    existing = set(UsageSnapshot.objects.filter(day__gte=first, day__lte=last).values_list("day", "customer_id"))
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
    return dict(
        UsageSnapshot.objects.filter(customer_id=customer_id, day__gte=first, day__lte=last).values_list(
            "day", "active_users"
        )
    )
