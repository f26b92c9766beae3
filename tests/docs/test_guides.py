"""The user guides state the notice periods the billing core applies (billing.md), not a rule of their own."""

import calendar
import datetime as dt
import re
from pathlib import Path

import pytest

from billing.core.terms import effective_end
from billing.services import MONTHS_NB

DOCS = Path(__file__).resolve().parents[2] / "docs"

# The guides write dates in words: Norwegian as invoices print them, English as the calendar module names them.
MONTHS = {
    **{name: number for number, name in enumerate(MONTHS_NB, start=1)},
    **{calendar.month_name[number].casefold(): number for number in range(1, 13)},
}

TERMS = {
    "ingen": 0,
    "none": 0,
    "12 måneder": 12,
    "12 months": 12,
    "24 måneder": 24,
    "24 months": 24,
    "36 måneder": 36,
    "36 months": 36,
}


def notice_table(text: str) -> dict[int, dt.date]:
    """Each term's effective end for a notice received on 10 March, as the guide's table says it."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].casefold() in TERMS:
            day, month = re.fullmatch(r"(\d+)\.? (\w+)", cells[2].casefold()).groups()  # type: ignore[union-attr]
            rows[TERMS[cells[0].casefold()]] = dt.date(2026, MONTHS[month], int(day))
    return rows


@pytest.mark.parametrize("guide", ["user-guide-portal.md", "user-guide-staff.md"])
def test_the_guides_give_every_terms_effective_end_as_billing_computes_it(guide: str) -> None:
    table = notice_table((DOCS / guide).read_text())

    assert sorted(table) == [0, 12, 24, 36]
    for term, stated in table.items():
        assert stated == effective_end(notice_received=dt.date(2026, 3, 10), term_months=term), (guide, term)


@pytest.mark.parametrize("guide", ["user-guide-portal.md", "user-guide-staff.md"])
def test_the_guides_no_longer_promise_one_notice_period_for_every_term(guide: str) -> None:
    text = (DOCS / guide).read_text().casefold()

    assert "rest of the month plus one month" not in text
    assert "resten av måneden pluss én" not in text
