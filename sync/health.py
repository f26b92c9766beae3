"""Sync health of a customer for staff: last success, failing and unmatched users, and a small chart."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Avg, Max
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from billing.models import UsageSnapshot
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


def _polyline(points: list[tuple[dt.date, float]], since: dt.date, height: int, colour: str) -> SafeString:
    if not points:
        return mark_safe("")
    top = max(value for _day, value in points) or 1
    coords = " ".join(
        f"{(day - since).days * 10:.0f},{height - value / top * (height - 10):.1f}" for day, value in points
    )
    return format_html('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>', colour, coords)


def chart(health: Health, *, today: dt.date | None = None) -> SafeString:
    """Inline SVG: active users (blue) and average change-to-MBN latency (orange), the last 30 days."""
    today = today or timezone.localdate()
    since = today - dt.timedelta(days=DAYS)
    height = 80
    users = [(day, float(n)) for day, n in health.users_by_day]
    top_users = max((n for _d, n in users), default=0)
    top_latency = max((ms for _d, ms in health.latency_by_day), default=0)
    return format_html(
        '<svg role="img" aria-label="{}" width="310" height="{}" viewBox="0 0 310 {}" '
        'style="background:#f8f8f8;border:1px solid #ddd">{}{}</svg>'
        '<div class="help"><span style="color:#2a6fb0">■</span> aktive brukere (maks {}) · '
        '<span style="color:#d9822b">■</span> forsinkelse endring → MBN (maks {} ms) · siste {} dager</div>',
        "Aktive brukere og synkroniseringsforsinkelse",
        height,
        height,
        _polyline(users, since, height, "#2a6fb0"),
        _polyline(health.latency_by_day, since, height, "#d9822b"),
        top_users,
        round(top_latency),
        DAYS,
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
