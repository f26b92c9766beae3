"""Template filters for numbers users read, the Norwegian way: {{ amount|nok }} → "kr 1 234,56"."""

from decimal import Decimal

from django import template

from kalenderpush.formatting import format_nok, format_number

register = template.Library()


@register.filter
def nok(value: Decimal | int | None) -> str:
    return format_nok(value)


@register.filter
def number(value: Decimal | int | None, decimals: int = 0) -> str:
    return "–" if value is None else format_number(value, decimals)
