"""Sync health of a customer for staff: last success, failing and unmatched users, and a small chart."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Avg, Max
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from billing.models import UsageSnapshot
from common.formatting import format_number
from customers.models import Customer, ServiceUser
from sync.errors import describe
from sync.models import CalendarSource, SyncRun

DAYS = 30


@dataclass(frozen=True)
class Health:
    last_success: dt.datetime | None
    failing: list[tuple[str, str]]  # (user, reason)
    unmatched: list[str]
    latency_by_day: list[tuple[dt.date, float]]
    users_by_day: list[tuple[dt.date, int]]


def health_of(customer: Customer, *, today: dt.date | None = None) -> Health:
    today = today or timezone.localdate()
    since = today - dt.timedelta(days=DAYS)
    last = CalendarSource.objects.filter(customer=customer).aggregate(last=Max("last_success_at"))["last"]
    service_users = ServiceUser.objects.filter(customer=customer)
    failing = [
        (email, f"{describe(code)[0]} ({text})")
        for email, code, text in service_users.failing()
        .order_by("email")
        .values_list("email", "calendar__last_error_code", "calendar__last_error")[:20]
    ]
    unmatched = list(service_users.unmatched().order_by("email").values_list("email", flat=True)[:50])
    latency = list(
        SyncRun.objects.filter(source__customer=customer, latency_ms__isnull=False, started_at__date__gte=since)
        .annotate(day=TruncDate("started_at"))
        .values("day")
        .annotate(ms=Avg("latency_ms"))
        .order_by("day")
        .values_list("day", "ms")
    )
    users = list(
        UsageSnapshot.objects.filter(customer=customer, day__gte=since)
        .order_by("day")
        .values_list("day", "active_users")
    )
    return Health(last, failing, unmatched, latency, users)


# The chart's drawing area in SVG units; the SVG scales to the width of the page's column (at most 720 px).
CHART_WIDTH, CHART_HEIGHT = 720, 150
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 10, 710, 24, 122
USERS_COLOUR, LATENCY_COLOUR = "#2a6fb0", "#d9822b"


def _polyline(points: list[tuple[dt.date, float]], since: dt.date, top: float, colour: str) -> SafeString:
    if not points:
        return mark_safe("")
    top = top or 1
    xy = [
        (
            f"{PLOT_LEFT + (day - since).days / DAYS * (PLOT_RIGHT - PLOT_LEFT):.1f}",
            f"{PLOT_BOTTOM - value / top * (PLOT_BOTTOM - PLOT_TOP):.1f}",
        )
        for day, value in points
    ]
    coords = " ".join(f"{x},{y}" for x, y in xy)
    dots = format_html_join("", '<circle cx="{}" cy="{}" r="2.5" fill="{}"/>', ((x, y, colour) for x, y in xy))
    return format_html('<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"/>{}', colour, coords, dots)


def chart(health: Health, *, today: dt.date | None = None) -> SafeString:
    """Inline SVG: active users (blue) and average change-to-MBN latency (orange), the last 30 days."""
    today = today or timezone.localdate()
    since = today - dt.timedelta(days=DAYS)
    users = [(day, float(n)) for day, n in health.users_by_day]
    top_users = max((n for _day, n in health.users_by_day), default=0)
    top_latency = max((ms for _day, ms in health.latency_by_day), default=0.0)
    users_label = gettext("active users (most %(count)s)") % {"count": format_number(top_users, 0)}
    latency_label = gettext("delay from change to MBN (most %(ms)s ms)") % {"ms": format_number(round(top_latency), 0)}
    return format_html(
        '<svg role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
        'style="display:block;width:100%;max-width:{}px;height:auto;background:#f8f8f8;border:1px solid #ddd">'
        '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#bbb"/><line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#e3e3e3"/>'
        '<text x="{}" y="16" font-size="13" fill="{}">{}</text>'
        '<text x="{}" y="16" font-size="13" fill="{}" text-anchor="end">{}</text>'
        '<text x="{}" y="141" font-size="13" fill="#555">{}</text>'
        '<text x="{}" y="141" font-size="13" fill="#555" text-anchor="end">{}</text>'
        "{}{}</svg>"
        '<p class="help"><span style="color:{}">■</span> {} · <span style="color:{}">■</span> {} · {}</p>',
        gettext("Active users and sync delay, the last %(days)s days") % {"days": DAYS},
        CHART_WIDTH,
        CHART_HEIGHT,
        CHART_WIDTH,
        CHART_HEIGHT,
        CHART_WIDTH,
        PLOT_LEFT,
        PLOT_RIGHT,
        PLOT_BOTTOM,
        PLOT_BOTTOM,
        PLOT_LEFT,
        PLOT_RIGHT,
        PLOT_TOP,
        PLOT_TOP,
        PLOT_LEFT,
        USERS_COLOUR,
        users_label,
        PLOT_RIGHT,
        LATENCY_COLOUR,
        latency_label,
        PLOT_LEFT,
        since.strftime("%d.%m.%Y"),
        PLOT_RIGHT,
        today.strftime("%d.%m.%Y"),
        _polyline(users, since, top_users, USERS_COLOUR),
        _polyline(health.latency_by_day, since, top_latency, LATENCY_COLOUR),
        USERS_COLOUR,
        users_label,
        LATENCY_COLOUR,
        latency_label,
        gettext("the last %(days)s days") % {"days": DAYS},
    )


def render(customer: Customer) -> SafeString:
    health = health_of(customer)
    failing = format_html_join("", "<li>{}: {}</li>", health.failing) or mark_safe("<li>–</li>")
    return format_html(
        "<p>Siste vellykkede synkronisering: <strong>{}</strong></p>"
        "<p>Brukere med feil:</p><ul>{}</ul>"
        "<p>Uten treff i MBN ({}): {}</p>{}",
        timezone.localtime(health.last_success).strftime("%d.%m.%Y %H:%M") if health.last_success else "aldri",
        failing,
        len(health.unmatched),
        ", ".join(health.unmatched) or "–",
        chart(health),
    )
