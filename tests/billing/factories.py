"""Billing test data: subscriptions with daily usage snapshots."""

import datetime as dt

from billing.models import UsageSnapshot
from customers.models import Customer, Subscription
from tests.factories import make_customer, make_subscription

DAY = dt.timedelta(days=1)


def snapshots(customer: Customer, steps: list[tuple[dt.date, int]], last: dt.date) -> None:
    """Daily snapshots from the first step to `last`: each count holds from its date on."""
    rows, day, steps = [], steps[0][0], sorted(steps)
    while day <= last:
        count = [n for start, n in steps if start <= day][-1]
        rows.append(UsageSnapshot(customer=customer, day=day, active_users=count))
        day += DAY
    UsageSnapshot.objects.bulk_create(rows)


def live_subscription(
    *,
    term: int,
    go_live: dt.date,
    steps: list[tuple[dt.date, int]],
    last: dt.date,
    notice: dt.date | None = None,
    **customer_fields: object,
) -> Subscription:
    customer = make_customer(**customer_fields)
    subscription = make_subscription(
        customer,
        term_months=term,
        signed_on=go_live - 20 * DAY,
        go_live=go_live,
        status=Subscription.Status.LIVE,
        notice_received=notice,
    )
    snapshots(customer, steps, last)
    return subscription
