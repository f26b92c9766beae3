"""The dates a person types (portal, admin, the fixed commands' JSON) lie in one sane range: 2000–2100.

A year such as 0001 or 9999 is a typo, and dates near the ends of Python's calendar make the billing and
rules arithmetic overflow, or make one request walk millions of days. The form fields here check it with
one validator, so every form says the same thing in the same words; the commands pass TYPED_DATE_RANGE
to their (pure) parsers.
"""

import datetime as dt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2100, 12, 31)
TYPED_DATE_RANGE = (EARLIEST_DATE, LATEST_DATE)


def validate_date_in_range(value: dt.date | dt.datetime) -> None:
    """Refuses a date (or the date of a date-time) outside EARLIEST_DATE … LATEST_DATE."""
    day = value.date() if isinstance(value, dt.datetime) else value
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ValidationError(
            _("Enter a date between %(earliest)s and %(latest)s."),
            code="date_out_of_range",
            params={"earliest": f"{EARLIEST_DATE:%d.%m.%Y}", "latest": f"{LATEST_DATE:%d.%m.%Y}"},
        )


class _InRangeWidgetAttrs:
    """Tells the browser's date pickers the range too (`min`/`max` on date and datetime-local inputs)."""

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs: dict[str, Any] = super().widget_attrs(widget)  # type: ignore[misc]
        input_type = getattr(widget, "input_type", "")
        if input_type == "date":
            attrs.update(min=EARLIEST_DATE.isoformat(), max=LATEST_DATE.isoformat())
        elif input_type == "datetime-local":
            attrs.update(min=f"{EARLIEST_DATE.isoformat()}T00:00", max=f"{LATEST_DATE.isoformat()}T23:59")
        return attrs


class DateInRangeField(_InRangeWidgetAttrs, forms.DateField):
    default_validators = [validate_date_in_range]


class DateTimeInRangeField(_InRangeWidgetAttrs, forms.DateTimeField):
    default_validators = [validate_date_in_range]
