"""Quarterly invoices and the early-termination fee, exactly as billing.md defines them.

Pure: a contract, the daily active-user counts (a function of the day) and dates in; invoices and the
termination result out. The billing run, `billing_quote` and the portal's calculator all call this.
"""

import calendar
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from billing.core.money import exact, round2
from billing.core.terms import binding_end, effective_end

UsersOn = Callable[[dt.date], int]
LineKind = Literal["setup", "subscription", "minimum", "termination_fee"]

MINIMUM_PER_MONTH = Decimal("200")
VAT_RATE = Fraction(25, 100)
FEE_SHARE = Fraction(60, 100)
ONE = Decimal("1.00")
_DAY = dt.timedelta(days=1)

# Prices of 1 January 2019 (billing.md), for when no price list is at hand (the quote command without a
# database). The app's price lists are the source everywhere else.
PRICES_2019: dict[int, tuple[Decimal, Decimal]] = {
    0: (Decimal("15.00"), Decimal("7500.00")),
    12: (Decimal("12.00"), Decimal("5000.00")),
    24: (Decimal("11.00"), Decimal("4000.00")),
    36: (Decimal("10.00"), Decimal("3000.00")),
}


@dataclass(frozen=True)
class Contract:
    term_months: int
    go_live: dt.date
    monthly_price: Decimal
    setup_fee: Decimal
    notice_received: dt.date | None = None

    @property
    def binding_end(self) -> dt.date | None:
        return binding_end(go_live=self.go_live, term_months=self.term_months)

    @property
    def effective_end(self) -> dt.date | None:
        if self.notice_received is None:
            return None
        return effective_end(notice_received=self.notice_received, term_months=self.term_months)


@dataclass(frozen=True)
class Line:
    kind: LineKind
    month: dt.date | None  # first day of the month for subscription and minimum lines
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Invoice:
    period_start: dt.date
    period_end: dt.date
    lines: tuple[Line, ...]
    net: Decimal
    vat: Decimal
    total: Decimal


@dataclass(frozen=True)
class Termination:
    notice_received: dt.date
    effective_end: dt.date
    average_users: Fraction
    remaining_months: Fraction
    fee: Decimal


def days_in_month(day: dt.date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def quarter_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    first_month = 3 * ((day.month - 1) // 3) + 1
    start = dt.date(day.year, first_month, 1)
    last_month = first_month + 2
    return start, dt.date(day.year, last_month, calendar.monthrange(day.year, last_month)[1])


def _days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    for offset in range((last - first).days + 1):  # never steps past `last`, even on 9999-12-31
        yield first + dt.timedelta(days=offset)


def _months(first: dt.date, last: dt.date) -> Iterator[tuple[dt.date, dt.date]]:
    """(first billed day, last billed day) of each calendar month touching [first, last]."""
    start = first
    while start <= last:
        month_end = start.replace(day=days_in_month(start))
        yield start, min(month_end, last)
        if month_end >= last:
            return
        start = month_end + _DAY


def termination(*, contract: Contract, users_on: UsersOn) -> Termination | None:
    """The effective end, average users, remaining months and fee of a notice (None without one)."""
    notice, end, binding = contract.notice_received, contract.effective_end, contract.binding_end
    if notice is None or end is None:
        return None
    if notice <= contract.go_live:
        average = Fraction(users_on(contract.go_live))
    else:
        days = list(_days(contract.go_live, notice - _DAY))
        average = Fraction(sum(users_on(day) for day in days), len(days))
    applies = (
        contract.term_months > 0
        and binding is not None
        and notice <= binding
        and end < binding
        and end >= contract.go_live  # ending before go-live: no invoice and no fee
    )
    if not applies or binding is None:
        return Termination(notice, end, average, Fraction(0), Decimal("0.00"))
    remaining = sum((Fraction(1, days_in_month(day)) for day in _days(end + _DAY, binding)), Fraction(0))
    monthly = max(average * exact(contract.monthly_price), exact(MINIMUM_PER_MONTH))
    return Termination(notice, end, average, remaining, round2(FEE_SHARE * monthly * remaining))


def billed_period(
    *, contract: Contract, quarter_start: dt.date, until: dt.date | None = None
) -> tuple[dt.date, dt.date] | None:
    """The days of a quarter that are billed: from go-live to the effective end (and `until`)."""
    start, quarter_end = quarter_bounds(quarter_start)
    first = max(start, contract.go_live)
    last = quarter_end
    if contract.effective_end is not None:
        last = min(last, contract.effective_end)
    if until is not None:
        last = min(last, until)
    return (first, last) if first <= last else None


def quarter_invoice(
    *,
    contract: Contract,
    quarter_start: dt.date,
    users_on: UsersOn,
    termination_result: Termination | None = None,
    until: dt.date | None = None,
) -> Invoice | None:
    """The invoice for one quarter, in arrears; None when no day of the quarter is billed."""
    period = billed_period(contract=contract, quarter_start=quarter_start, until=until)
    if period is None:
        return None
    first, last = period
    lines: list[Line] = []
    if first <= contract.go_live <= last:
        lines.append(Line("setup", None, ONE, contract.setup_fee, round2(contract.setup_fee)))
    for month_first, month_last in _months(first, last):
        month = month_first.replace(day=1)
        month_days = days_in_month(month_first)
        billed_days = (month_last - month_first).days + 1
        user_days = sum(users_on(day) for day in _days(month_first, month_last))
        quantity = round2(Fraction(user_days, month_days))
        amount = round2(quantity * contract.monthly_price)
        lines.append(Line("subscription", month, quantity, contract.monthly_price, amount))
        floor = round2(exact(MINIMUM_PER_MONTH) * billed_days / month_days)
        if amount < floor:
            top_up = floor - amount
            lines.append(Line("minimum", month, ONE, top_up, top_up))
    if termination_result is not None and termination_result.fee > 0 and last == termination_result.effective_end:
        fee = termination_result.fee
        lines.append(Line("termination_fee", None, ONE, fee, fee))
    net = sum((line.amount for line in lines), Decimal("0.00"))
    vat = round2(exact(net) * VAT_RATE)
    return Invoice(first, last, tuple(lines), net, vat, net + vat)


@dataclass(frozen=True)
class Quote:
    binding_end: dt.date | None
    termination: Termination | None
    invoices: tuple[Invoice, ...]


def quote(*, contract: Contract, users_on: UsersOn, until: dt.date | None = None) -> Quote:
    """Every quarter invoice from go-live to the last billed day: min(until, effective end)."""
    result = termination(contract=contract, users_on=users_on)
    last_day = until
    if result is not None:
        last_day = result.effective_end if until is None else min(until, result.effective_end)
    if last_day is None:
        raise ValueError("until is required without a notice")
    invoices = []
    quarter_start, quarter_end = quarter_bounds(contract.go_live)
    while quarter_start <= last_day:
        invoice = quarter_invoice(
            contract=contract, quarter_start=quarter_start, users_on=users_on, termination_result=result, until=until
        )
        if invoice is not None:
            invoices.append(invoice)
        if quarter_end >= last_day:
            break
        quarter_start, quarter_end = quarter_bounds(quarter_end + _DAY)
    return Quote(contract.binding_end, result, tuple(invoices))
