"""How numbers users read are written: the Norwegian way, whatever the interface language."""

import datetime as dt
from decimal import Decimal

from django.utils import formats, translation


def format_number(value: Decimal | int, decimals: int = 2) -> str:
    """1234.5 → '1 234,50' (non-breaking space between thousands)."""
    with translation.override("nb"):
        return formats.number_format(value, decimal_pos=decimals, use_l10n=True, force_grouping=True)


def format_nok(value: Decimal | int | None) -> str:
    """Decimal('1234.56') → 'kr 1 234,56'; None → '–'."""
    if value is None:
        return "–"
    return f"kr\u00a0{format_number(value)}"


def format_date(value: dt.date | None) -> str:
    """date(2026, 1, 31) → '31.01.2026', the way staff read dates in lists; None → '–'."""
    return value.strftime("%d.%m.%Y") if value else "–"
