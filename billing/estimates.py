"""What the running quarter's invoice will be if nothing changes: for the portal and the staff dashboard.

Days already lived come from the daily usage snapshots (counted from the users' history, without
storing, where the daily job has not stored them yet); the days still to come are counted with today's
active, matched users. The numbers come from the same core as the billing run. Nothing here writes.
"""

import datetime as dt

from billing import usage
from billing.core.invoicing import Invoice, quarter_invoice
from billing.quarters import Quarter
from billing.services import contract_for, termination_for, users_on_from
from customers.models import Subscription


def estimate_quarter_invoice(*, subscription: Subscription, today: dt.date) -> tuple[Quarter, Invoice] | None:
    """The invoice the running quarter will get (None when nothing of it is billed); stores nothing."""
    if subscription.go_live is None:
        return None
    contract = contract_for(subscription)
    quarter = Quarter.containing(today)
    first = max(quarter.start, contract.go_live)
    last = min(quarter.end, contract.effective_end or quarter.end)
    if first > last:
        return None
    by_day = usage.users_by_day_as_of(customer_id=subscription.customer_id, first=first, last=last, today=today)
    effective_end = contract.effective_end
    result = termination_for(subscription) if effective_end and quarter.start <= effective_end <= quarter.end else None

    invoice = quarter_invoice(
        contract=contract, quarter_start=quarter.start, users_on=users_on_from(by_day), termination_result=result
    )
    return (quarter, invoice) if invoice is not None else None
