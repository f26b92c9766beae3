"""Gapless number series: the next number of a counter row, taken while the row is locked.

The row is locked with SELECT … FOR UPDATE until the caller's transaction ends, so callers at the same
time queue behind one another and each gets the next number; a transaction that rolls back gives its
number back. Customer numbers (`CustomerNumberCounter`) and invoice and credit-note numbers
(`billing.DocumentCounter`) come from here.
"""

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import QuerySet


def take_next_number(counters: QuerySet[Any], *, not_below: Callable[[], int] = lambda: 0, **lookup: Any) -> int:
    """Lock the counter row `counters.get(**lookup)`, move its `last_number` on by one and return it.

    `not_below()` is read under the lock: a number given some other way (a bulk insert, an import) up to
    that value is never given again. Call inside the transaction that stores the number.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("take_next_number must run inside the transaction that stores the number")
    counter = counters.select_for_update().get(**lookup)
    counter.last_number = max(counter.last_number, not_below()) + 1
    counter.save(update_fields=["last_number"])
    return int(counter.last_number)
