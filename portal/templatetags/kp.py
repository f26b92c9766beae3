"""Template filters for numbers and times users read, the Norwegian way: {{ amount|nok }} → "kr 1 234,56"."""

import datetime as dt
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext

from common.formatting import format_nok, format_number
from sync.connections import STATE_LABELS

register = template.Library()


@register.filter
def nok(value: Decimal | int | None) -> str:
    return format_nok(value)


@register.filter
def number(value: Decimal | int | None, decimals: int = 0) -> str:
    return "–" if value is None else format_number(value, decimals)


@register.filter
def ago(moment: dt.datetime | None) -> str:
    """How long ago, in words: "akkurat nå" under a minute (never "0 minutter"), else "5 minutter siden"."""
    if moment is None:
        return "–"
    now = timezone.now()
    if now - moment < dt.timedelta(minutes=1):
        return gettext("just now")
    return gettext("%(time)s ago") % {"time": timesince(moment, now, depth=1)}


BADGE_OF_STATE = {"working": "ok", "failing": "bad", "untested": "warn", "awaiting_group": "warn"}


@register.filter
def connection_state(state: str) -> str:
    """A connection's state in words (`sync.connections.STATE_LABELS`): works, failing, never tested, …"""
    return str(STATE_LABELS.get(state, state))


@register.filter
def connection_badge(state: str) -> str:
    """The badge colour of a connection's state: ok, bad, warn or none."""
    return BADGE_OF_STATE.get(state, "")
