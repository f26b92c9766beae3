"""The JSON of billing.md's quote command: parse a scenario, format the quote.

Errors are `QuoteInputError`s whose message starts with the field at fault (`users[1][0]: …`). A field
billing.md does not name is an error too: a misspelt field would otherwise quietly bill something else.
"""

import bisect
import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from billing.core.invoicing import Contract, Quote, UsersOn, quote
from billing.core.money import round_half_up
from billing.core.terms import TERMS_MONTHS

PriceLookup = Callable[[int, dt.date], tuple[Decimal, Decimal]]
DateRange = tuple[dt.date, dt.date]

# Far above any real scenario, and small enough that every amount stays exact in Decimal's 28 digits.
MAX_USERS = 1_000_000_000
MAX_AMOUNT = Decimal(1_000_000_000)

FIELDS = ("term_months", "go_live", "users", "notice_received", "until", "prices")
PRICE_FIELDS = ("monthly", "setup")


class QuoteInputError(ValueError):
    """Bad scenario; the message names the field."""


def run_quote(payload: Any, *, prices_for: PriceLookup, dates: DateRange | None = None) -> dict[str, Any]:
    """billing.md's scenario in, the quote out. `prices_for(term, go_live)` gives (monthly, setup);
    `dates` (first, last), when given, bounds every date of the input."""
    contract, users_on, until = parse_scenario(payload, prices_for=prices_for, dates=dates)
    return format_quote(quote(contract=contract, users_on=users_on, until=until), term_months=contract.term_months)


def parse_scenario(
    payload: Any, *, prices_for: PriceLookup, dates: DateRange | None = None
) -> tuple[Contract, UsersOn, dt.date | None]:
    if not isinstance(payload, dict):
        raise QuoteInputError("input: expected a JSON object with term_months, go_live and users")
    _refuse_unknown(payload, FIELDS, where="")
    term = payload.get("term_months")
    if term is None:
        raise QuoteInputError("term_months: missing")
    if isinstance(term, bool) or not isinstance(term, int) or term not in TERMS_MONTHS:
        raise QuoteInputError(f"term_months: must be one of 0, 12, 24, 36, got {term!r}")
    go_live = _date(payload, "go_live", required=True, dates=dates)
    assert go_live is not None
    notice = _date(payload, "notice_received", required=False, dates=dates)
    until = _date(payload, "until", required=False, dates=dates)
    if notice is None and until is None:
        raise QuoteInputError("until: required when there is no notice_received")
    users_on = _users(payload.get("users"), dates=dates)
    monthly, setup = _prices(payload.get("prices"), default=lambda: prices_for(term, go_live))
    contract = Contract(
        term_months=term, go_live=go_live, monthly_price=monthly, setup_fee=setup, notice_received=notice
    )
    return contract, users_on, until


def _field_name(key: str) -> str:
    return key if key.isprintable() else repr(key)


def _refuse_unknown(raw: dict[str, Any], known: tuple[str, ...], *, where: str) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise QuoteInputError(f"{where}{_field_name(unknown[0])}: unknown field (known: {', '.join(known)})")


def _date(payload: dict[str, Any], key: str, *, required: bool, dates: DateRange | None) -> dt.date | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise QuoteInputError(f"{key}: missing")
        return None
    if not isinstance(value, str):
        raise QuoteInputError(f"{key}: expected a date as YYYY-MM-DD, got {value!r}")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as error:
        raise QuoteInputError(f"{key}: {value!r} is not a date (YYYY-MM-DD)") from error
    if dates is not None and not dates[0] <= day <= dates[1]:
        raise QuoteInputError(f"{key}: {value!r} is outside the dates accepted, {dates[0]} to {dates[1]}")
    return day


def _users(raw: Any, *, dates: DateRange | None) -> UsersOn:
    if raw is None:
        raise QuoteInputError('users: missing (a list of [from_date, count] steps, e.g. [["2026-01-15", 20]])')
    if not isinstance(raw, list):
        raise QuoteInputError("users: expected a list of [from_date, count] steps")
    steps: dict[dt.date, int] = {}
    for index, step in enumerate(raw):
        where = f"users[{index}]"
        if not isinstance(step, list) or len(step) != 2:
            raise QuoteInputError(f"{where}: expected [from_date, count]")
        day = _date({f"{where}[0]": step[0]}, f"{where}[0]", required=True, dates=dates)
        count = step[1]
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_USERS:
            raise QuoteInputError(f"{where}[1]: expected a whole number of users from 0 to {MAX_USERS}, got {count!r}")
        assert day is not None
        if day in steps:
            raise QuoteInputError(f"{where}[0]: {day} appears twice")
        steps[day] = count
    days = sorted(steps)
    counts = [steps[day] for day in days]

    def users_on(day: dt.date) -> int:
        index = bisect.bisect_right(days, day) - 1
        return counts[index] if index >= 0 else 0

    return users_on


def _prices(raw: Any, *, default: Callable[[], tuple[Decimal, Decimal]]) -> tuple[Decimal, Decimal]:
    if raw is None:
        return default()
    if not isinstance(raw, dict):
        raise QuoteInputError('prices: expected {"monthly": "12.00", "setup": "5000.00"}')
    _refuse_unknown(raw, PRICE_FIELDS, where="prices.")
    fallback = default() if not {"monthly", "setup"} <= raw.keys() else (Decimal(0), Decimal(0))
    values = []
    for key, fallback_value in zip(PRICE_FIELDS, fallback, strict=True):
        if key not in raw:
            values.append(fallback_value)
            continue
        value = raw[key]
        try:
            amount = Decimal(str(value)) if isinstance(value, str | int) and not isinstance(value, bool) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount < 0:
            raise QuoteInputError(f'prices.{key}: expected an amount such as "12.00", got {value!r}')
        if amount > MAX_AMOUNT:
            raise QuoteInputError(f"prices.{key}: {value!r} is above the largest amount accepted, {MAX_AMOUNT}")
        values.append(amount.quantize(Decimal("0.01")))
    return values[0], values[1]


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def format_quote(result: Quote, *, term_months: int) -> dict[str, Any]:
    termination = None
    if result.termination is not None:
        t = result.termination
        termination = {
            "notice_received": t.notice_received.isoformat(),
            "effective_end": t.effective_end.isoformat(),
            "average_users": str(round_half_up(t.average_users, 4)),
            "remaining_months": str(round_half_up(t.remaining_months, 4)),
            "fee": _money(t.fee),
        }
    return {
        "term_months": term_months,
        "binding_end": result.binding_end.isoformat() if result.binding_end else None,
        "termination": termination,
        "invoices": [
            {
                "period_start": invoice.period_start.isoformat(),
                "period_end": invoice.period_end.isoformat(),
                "lines": [
                    {
                        "kind": line.kind,
                        "month": line.month.strftime("%Y-%m") if line.month else None,
                        "quantity": _money(line.quantity),
                        "unit_price": _money(line.unit_price),
                        "amount": _money(line.amount),
                    }
                    for line in invoice.lines
                ],
                "net": _money(invoice.net),
                "vat": _money(invoice.vat),
                "total": _money(invoice.total),
            }
            for invoice in result.invoices
        ],
    }
