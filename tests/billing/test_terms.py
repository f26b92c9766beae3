"""Binding end and effective end exactly as billing.md defines them."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.core.invoicing import Contract, quote
from billing.core.terms import DateOutOfRange, binding_end, effective_end

D = dt.date


@pytest.mark.parametrize(
    ("go_live", "term", "expected"),
    [
        # billing.md's own examples
        (D(2024, 2, 29), 36, D(2027, 2, 28)),
        (D(2023, 3, 1), 12, D(2024, 2, 29)),
        (D(2026, 1, 15), 24, D(2028, 1, 14)),
        # each term from an ordinary day
        (D(2026, 3, 1), 12, D(2027, 2, 28)),
        (D(2026, 3, 1), 24, D(2028, 2, 29)),
        (D(2026, 3, 1), 36, D(2029, 2, 28)),
        # go-live on the 31st: the day exists in the end month, so end = that day − 1
        (D(2025, 1, 31), 12, D(2026, 1, 30)),
        (D(2025, 3, 31), 24, D(2027, 3, 30)),
        (D(2025, 12, 31), 36, D(2028, 12, 30)),
        # go-live on 29 February
        (D(2024, 2, 29), 12, D(2025, 2, 28)),
        (D(2024, 2, 29), 24, D(2026, 2, 28)),
        (D(2028, 2, 29), 12, D(2029, 2, 28)),
        # go-live on the 1st of January: end is New Year's Eve
        (D(2026, 1, 1), 12, D(2026, 12, 31)),
    ],
)
def test_binding_end_follows_billing_md(go_live, term, expected):
    assert binding_end(go_live=go_live, term_months=term) == expected


def test_term_none_has_no_binding_end():
    assert binding_end(go_live=D(2026, 2, 1), term_months=0) is None


@pytest.mark.parametrize(
    ("notice", "term", "expected"),
    [
        (D(2025, 3, 10), 0, D(2025, 7, 31)),  # billing.md
        (D(2025, 3, 10), 36, D(2025, 3, 31)),  # billing.md
        (D(2025, 8, 20), 12, D(2025, 11, 30)),  # example C
        (D(2026, 10, 12), 36, D(2026, 10, 31)),  # example B
        (D(2026, 5, 5), 0, D(2026, 9, 30)),  # example D
        (D(2026, 1, 31), 24, D(2026, 2, 28)),
        (D(2027, 12, 1), 24, D(2028, 1, 31)),
        (D(2025, 10, 31), 12, D(2026, 1, 31)),
        (D(2023, 10, 29), 0, D(2024, 2, 29)),
        (D(2026, 12, 31), 36, D(2026, 12, 31)),
    ],
)
def test_effective_end_is_last_day_of_month_k_months_after_notice(notice, term, expected):
    assert effective_end(notice_received=notice, term_months=term) == expected


def test_unknown_term_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="term_months must be one of 0, 12, 24, 36"):
        binding_end(go_live=D(2026, 1, 1), term_months=6)


@given(go_live=st.dates(min_value=D(2000, 1, 1), max_value=D(2090, 12, 31)), term=st.sampled_from([12, 24, 36]))
def test_binding_end_is_one_day_before_the_same_day_term_months_later(go_live, term):
    end = binding_end(go_live=go_live, term_months=term)
    next_day = end + dt.timedelta(days=1)
    months_between = (next_day.year - go_live.year) * 12 + next_day.month - go_live.month
    if go_live.month == 2 and go_live.day == 29 and next_day.month == 3:
        assert next_day.day == 1 and months_between == term + 1
    else:
        assert next_day.day == go_live.day
        assert months_between == term


@given(notice=st.dates(min_value=D(2000, 1, 1), max_value=D(2090, 12, 31)), term=st.sampled_from([0, 12, 24, 36]))
def test_effective_end_is_a_month_end_on_or_after_the_notice(notice, term):
    end = effective_end(notice_received=notice, term_months=term)
    assert (end + dt.timedelta(days=1)).day == 1
    assert end >= notice
    assert (end.year - notice.year) * 12 + end.month - notice.month == {0: 4, 12: 3, 24: 1, 36: 0}[term]


@pytest.mark.parametrize(
    ("notice", "term"), [(D(9999, 12, 31), 0), (D(9999, 10, 1), 12), (D(9999, 12, 1), 24), (D(9999, 12, 31), 36)]
)
def test_an_end_beyond_the_calendar_is_a_clear_domain_error(notice, term):
    if term == 36:  # k = 0: the end is 9999-12-31 itself, which exists
        assert effective_end(notice_received=notice, term_months=term) == D(9999, 12, 31)
        with pytest.raises(DateOutOfRange, match="beyond the calendar"):
            binding_end(go_live=notice, term_months=term)
    else:
        with pytest.raises(DateOutOfRange, match="beyond the calendar"):
            effective_end(notice_received=notice, term_months=term)


def test_a_quote_up_to_the_last_day_of_the_calendar_does_not_overflow():
    contract = Contract(term_months=0, go_live=D(9999, 11, 15), monthly_price=Decimal("15.00"), setup_fee=Decimal(0))
    result = quote(contract=contract, users_on=lambda day: 10, until=D(9999, 12, 31))
    assert [(invoice.period_start, invoice.period_end) for invoice in result.invoices] == [
        (D(9999, 11, 15), D(9999, 12, 31))
    ]
    assert [line.month for line in result.invoices[0].lines if line.kind == "subscription"] == [
        D(9999, 11, 1),
        D(9999, 12, 1),
    ]
