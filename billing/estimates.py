"""What the running quarter's invoice will be if nothing changes: for the portal and the staff dashboard.

Days already lived come from the daily usage snapshots; the days still to come are counted with
today's active, matched users. The numbers come from the same core as the billing run.
"""

import datetime as dt

from billing import usage
from billing.core.invoicing import Invoice, quarter_invoice
from billing.quarters import Quarter
from customers.models import Subscription

_DAY = dt.timedelta(days=1)


def users_by_day_with_forecast(
    *, customer_id: int, first: dt.date, last: dt.date, today: dt.date
) -> dict[dt.date, int]:
    """Active users per day in [first, last]: the snapshots, and for days not yet lived today's count."""
    yesterday = today - _DAY
    if first <= yesterday:
        usage.ensure_snapshots(first=first, last=min(last, yesterday), customer_ids=[customer_id], source="backfill")
    by_day = usage.users_by_day(customer_id=customer_id, first=first, last=last)
    if last > yesterday:
        current = usage.active_users_at_end_of(day=yesterday, customer_ids=[customer_id])[customer_id]
        day = max(first, today)
        while day <= last:
            by_day.setdefault(day, current)
            day += _DAY
    return by_day


def estimate_quarter_invoice(*, subscription: Subscription, today: dt.date) -> tuple[Quarter, Invoice] | None:
    """The invoice the running quarter will get (None when nothing of it is billed)."""
    from billing.services import contract_for, termination_for, users_on_from

    if subscription.go_live is None:
        return None
    contract = contract_for(subscription)
    quarter = Quarter.containing(today)
    first = max(quarter.start, contract.go_live)
    last = min(quarter.end, contract.effective_end or quarter.end)
    if first > last:
        return None
    by_day = users_by_day_with_forecast(customer_id=subscription.customer_id, first=first, last=last, today=today)
    effective_end = contract.effective_end
    result = termination_for(subscription) if effective_end and quarter.start <= effective_end <= quarter.end else None

    invoice = quarter_invoice(
        contract=contract, quarter_start=quarter.start, users_on=users_on_from(by_day), termination_result=result
    )
    return (quarter, invoice) if invoice is not None else None
