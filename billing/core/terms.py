"""Subscription terms as billing.md defines them: notice periods, binding end and effective end."""

import calendar
import datetime as dt

TERMS_MONTHS: tuple[int, ...] = (0, 12, 24, 36)

# k in billing.md: whole months between the month of the notice and the month the service ends.
NOTICE_MONTHS: dict[int, int] = {0: 4, 12: 3, 24: 1, 36: 0}


class DateOutOfRange(ValueError):
    """A date the terms lead to lies beyond the calendar (after 31 December 9999)."""


def _check_term(term_months: int) -> None:
    if term_months not in NOTICE_MONTHS:
        raise ValueError(f"term_months must be one of 0, 12, 24, 36, not {term_months!r}")


def _shift_month(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    shifted = index // 12, index % 12 + 1
    if not dt.MINYEAR <= shifted[0] <= dt.MAXYEAR:
        raise DateOutOfRange(f"{months} months after {year}-{month:02d} is beyond the calendar (year {dt.MAXYEAR})")
    return shifted


def last_day_of_month(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def binding_end(*, go_live: dt.date, term_months: int) -> dt.date | None:
    """The last day of the term: go-live + term months − 1 day; None for term 0.

    When the go-live's day does not exist in the end month (29 February into a common year), the
    term ends on the last day of that month.
    """
    _check_term(term_months)
    if term_months == 0:
        return None
    year, month = _shift_month(go_live.year, go_live.month, term_months)
    month_end = last_day_of_month(year, month)
    if go_live.day > month_end.day:
        return month_end
    return dt.date(year, month, go_live.day) - dt.timedelta(days=1)


def effective_end(*, notice_received: dt.date, term_months: int) -> dt.date:
    """The last day of the month k whole months after the month of the notice (k from the term)."""
    _check_term(term_months)
    year, month = _shift_month(notice_received.year, notice_received.month, NOTICE_MONTHS[term_months])
    return last_day_of_month(year, month)
