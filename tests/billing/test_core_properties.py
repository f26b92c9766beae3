"""Property tests of the pure billing core."""

import datetime as dt
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.core.invoicing import Contract, days_in_month, quote, termination
from billing.core.money import round2, round_half_up

DAY = dt.timedelta(days=1)


@st.composite
def scenarios(draw):
    term = draw(st.sampled_from([0, 12, 24, 36]))
    go_live = draw(st.dates(dt.date(2023, 1, 1), dt.date(2026, 6, 30)))
    steps = sorted(
        {
            go_live + dt.timedelta(days=draw(st.integers(0, 700))): draw(st.integers(0, 60))
            for _ in range(draw(st.integers(1, 5)))
        }.items()
    )
    monthly = Decimal(draw(st.integers(0, 3000))) / 100
    setup = Decimal(draw(st.integers(0, 800000))) / 100
    notice = draw(st.none() | st.dates(go_live - dt.timedelta(days=60), go_live + dt.timedelta(days=1300)))
    until = go_live + dt.timedelta(days=draw(st.integers(0, 900)))
    contract = Contract(term, go_live, monthly, setup, notice)

    def users_on(day):
        count = 0
        for start, value in steps:
            if start <= day:
                count = value
        return count

    return contract, users_on, until


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_invoice_arithmetic_and_the_monthly_minimum(case):
    contract, users_on, until = case
    result = quote(contract=contract, users_on=users_on, until=until)
    setups = 0
    for invoice in result.invoices:
        assert invoice.net == sum(line.amount for line in invoice.lines)
        assert invoice.vat == round2(Fraction(invoice.net) * Fraction(1, 4))
        assert invoice.total == invoice.net + invoice.vat
        assert invoice.period_start <= invoice.period_end
        setups += sum(1 for line in invoice.lines if line.kind == "setup")
        months = {line.month for line in invoice.lines if line.kind == "subscription"}
        for month in months:
            billed = [d for d in _days(invoice.period_start, invoice.period_end) if d.replace(day=1) == month]
            floor = round2(Fraction(200 * len(billed), days_in_month(month)))
            charged = sum(line.amount for line in invoice.lines if line.month == month)
            assert charged >= floor
            subscription = next(line for line in invoice.lines if line.kind == "subscription" and line.month == month)
            if subscription.amount >= floor:
                assert all(line.kind != "minimum" for line in invoice.lines if line.month == month)
    assert setups == (1 if result.invoices and result.invoices[0].period_start == contract.go_live else 0)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_the_fee_is_zero_outside_the_binding_period(case):
    contract, users_on, _until = case
    result = termination(contract=contract, users_on=users_on)
    if result is None:
        assert contract.notice_received is None
        return
    binding = contract.binding_end
    inside = binding is not None and contract.notice_received <= binding and result.effective_end < binding
    if not inside or result.effective_end < contract.go_live:
        assert result.fee == Decimal("0.00") and result.remaining_months == 0
    else:
        assert result.fee >= round2(Fraction(6, 10) * 200 * result.remaining_months)


def _days(first, last):
    while first <= last:
        yield first
        first += DAY


def test_rounding_is_half_up_on_exact_values():
    assert round2(Fraction(10965, 1000)) == Decimal("10.97")
    assert round2(Fraction(-5, 1000)) == Decimal("-0.01")
    assert round2(Decimal("120.665")) == Decimal("120.67")
    assert round_half_up(Fraction(303141, 10000) + Fraction(1, 10**9), 4) == Decimal("30.3141")
