"""Staff pages in admin: the dashboard (customers, usage, MRR, sync health, billing) and a customer's overview.

Thin views: the reads are in kalenderpush.selectors; here they become links, formatted numbers and a chart.
"""

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext

from common.formatting import format_nok, format_number
from customers.models import NO_SUBSCRIPTION, Customer, Subscription
from kalenderpush import selectors
from kalenderpush.health import render as render_sync_health

TOP_CUSTOMERS = 10
RECENT_SYNC_RUNS = 6  # on a customer's overview, one line each; the rest is one link away


def _changelist(model: str, **filters: object) -> str:
    """The admin changelist of `model` ("app_model"), filtered with the given lookups."""
    url = reverse(f"admin:{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _local(moment: dt.datetime) -> str:
    return timezone.localtime(moment).isoformat(sep=" ", timespec="seconds")


# --- the chart ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class MonthSummary:
    month: dt.date
    average: str
    last: str


@dataclass(frozen=True)
class LineChart:
    """An SVG line chart laid out in Python; the template only draws it."""

    width: int
    height: int
    left: int
    top: int
    bottom: int  # y of the x axis
    right: int  # x of the plot's right edge
    points: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    description: str
    months: list[MonthSummary]  # the text alternative


def _nice_step(rough: float) -> int:
    """1, 2, 5, 10, 20, 50, … at or above `rough`."""
    if rough <= 1:
        return 1
    power = 10 ** math.floor(math.log10(rough))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= rough)


def _month_starts(first: dt.date, last: dt.date) -> list[dt.date]:
    month = first.replace(day=1)
    if month < first:
        month = (month + dt.timedelta(days=32)).replace(day=1)
    starts = []
    while month <= last:
        starts.append(month)
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return starts


def usage_chart(series: list[tuple[dt.date, int]], *, first: dt.date, last: dt.date) -> LineChart | None:
    """Active users per day from `first` to `last`; None without any data."""
    if not series:
        return None
    width, height, left, right_margin, top, bottom_margin = 760, 240, 56, 12, 12, 36
    plot_width, plot_height = width - left - right_margin, height - top - bottom_margin
    span = max((last - first).days, 1)
    highest = max(users for _day, users in series)
    step = _nice_step(highest / 4)
    y_max = max(step * math.ceil(highest / step), step)

    def x(day: dt.date) -> float:
        return left + (day - first).days / span * plot_width

    def y(value: float) -> float:
        return top + plot_height - value / y_max * plot_height

    points = " ".join(f"{x(day):.1f},{y(users):.1f}" for day, users in series)
    x_ticks = [
        Tick(round(x(month), 1), date_format(month, "M Y" if month.month == 1 or index == 0 else "M"))
        for index, month in enumerate(_month_starts(first, last))
    ]
    y_ticks = [Tick(round(y(value), 1), format_number(value, 0)) for value in range(0, y_max + 1, step)]
    months: dict[dt.date, list[int]] = {}
    for day, users in series:
        months.setdefault(day.replace(day=1), []).append(users)
    summaries = [
        MonthSummary(month, format_number(Decimal(sum(values)) / len(values), 1), format_number(values[-1], 0))
        for month, values in months.items()
    ]
    latest_day, latest = series[-1]
    description = gettext(
        "Active users per day, %(first)s to %(last)s: highest %(highest)s, %(latest)s on %(latest_day)s."
    ) % {
        "first": first.strftime("%d.%m.%Y"),
        "last": last.strftime("%d.%m.%Y"),
        "highest": format_number(highest, 0),
        "latest": format_number(latest, 0),
        "latest_day": latest_day.strftime("%d.%m.%Y"),
    }
    return LineChart(
        width=width,
        height=height,
        left=left,
        top=top,
        bottom=top + plot_height,
        right=left + plot_width,
        points=points,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        description=description,
        months=summaries,
    )


# --- the dashboard --------------------------------------------------------------------------------


def _status_rows(counts: dict[str, int]) -> list[dict[str, Any]]:
    labels: list[tuple[str, Any]] = [*Subscription.Status.choices, (NO_SUBSCRIPTION, None)]
    return [
        {
            "status": status,
            "label": label if label is not None else gettext("No subscription"),
            "count": _count(counts[status]),
            "url": _changelist("customers_customer", subscription_status=status),
        }
        for status, label in labels
    ]


def _count(value: int) -> str:
    return format_number(value, 0)


def _sync_rows(health: selectors.SyncHealth) -> list[dict[str, Any]]:
    """(label, value, admin link, whether it needs attention) per sync-health figure."""
    active = {"active__exact": 1}
    runs_since = {"started_at__gte": _local(health.runs_since)}
    minutes = int(selectors.STALE_AFTER.total_seconds() // 60)
    rows: list[tuple[str, int, str, bool]] = [
        (
            gettext("Calendar sources with an error"),
            health.sources_with_error,
            _changelist("sync_calendarsource", **active, last_error__gt=""),
            True,
        ),
        (
            gettext("Sources without a successful sync in %(minutes)s minutes") % {"minutes": minutes},
            health.stale_sources,
            _changelist("sync_calendarsource", **active, last_success_at__lt=_local(health.stale_since)),
            True,
        ),
        (
            gettext("Sources never synced"),
            health.never_synced_sources,
            _changelist("sync_calendarsource", **active, last_success_at__isnull="True"),
            False,
        ),
        (
            gettext("Calendar users with an error"),
            health.calendar_users_with_error,
            _changelist("sync_calendaruser", state="failing"),
            False,
        ),
        (
            gettext("Active users without an MBN number"),
            health.unmatched_users,
            _changelist("customers_serviceuser", **active, matched="no"),
            False,
        ),
        (gettext("Sync runs in the last 24 hours"), health.runs, _changelist("sync_syncrun", **runs_since), False),
        (
            gettext("… of them with an error"),
            health.runs_with_error,
            _changelist("sync_syncrun", **runs_since, error__gt=""),
            True,
        ),
    ]
    return [
        {"label": label, "value": _count(value), "url": url, "alert": alert and value > 0}
        for label, value, url, alert in rows
    ]


def dashboard_view(request: HttpRequest) -> HttpResponse:
    today, now = timezone.localdate(), timezone.now()
    first = today - dt.timedelta(days=selectors.USAGE_CHART_DAYS - 1)
    revenue = selectors.recurring_revenue(today=today)
    health = selectors.sync_health(now=now)
    outlook = selectors.billing_outlook(today=today, now=now)
    counts = selectors.customer_counts_by_status()
    context = {
        **admin.site.each_context(request),
        "title": gettext("Dashboard"),
        "status_rows": _status_rows(counts),
        "customer_total": _count(sum(counts.values())),
        "chart": usage_chart(selectors.active_users_by_day(today=today), first=first, last=today),
        "chart_first": first,
        "chart_last": today,
        "revenue_total": format_nok(revenue.total),
        "revenue_count": len(revenue.customers),
        "top_customers": [
            {
                "revenue": customer,
                "amount": format_nok(customer.amount),
                "price": format_nok(customer.monthly_price),
                "users": format_number(customer.users, 0),
                "overview_url": reverse("admin:customers_customer_overview", args=[customer.customer_id]),
            }
            for customer in revenue.customers[:TOP_CUSTOMERS]
        ],
        "health": health,
        "health_rows": _sync_rows(health),
        "latency_average": (
            format_number(round(health.latency_average_ms), 0) if health.latency_average_ms is not None else None
        ),
        "latency_p95": format_number(health.latency_p95_ms, 0) if health.latency_p95_ms is not None else None,
        "outlook": outlook,
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


# --- one customer ---------------------------------------------------------------------------------


def customer_overview_view(request: HttpRequest, pk: int) -> HttpResponse:
    today = timezone.localdate()
    try:
        overview = selectors.customer_overview(customer_id=pk, today=today, sync_runs=RECENT_SYNC_RUNS)
    except Customer.DoesNotExist:
        raise Http404(gettext("No customer with id %(pk)s.") % {"pk": pk}) from None
    customer = overview.customer
    invoices = [
        {
            "invoice": invoice,
            "total": format_nok(invoice.total),
            "url": reverse("admin:billing_invoice_change", args=[invoice.pk]),
            "pdf_url": reverse("admin:billing_invoice_pdf", args=[invoice.pk]) if invoice.is_issued else None,
        }
        for invoice in overview.invoices
    ]
    subscriptions = [
        {
            "subscription": subscription,
            "monthly_price": format_nok(subscription.monthly_price),
            "setup_fee": format_nok(subscription.setup_fee),
            "url": reverse("admin:customers_subscription_change", args=[subscription.pk]),
        }
        for subscription in overview.subscriptions
    ]
    sync_runs = [
        {
            "run": run,
            "latency": f"{format_number(run.latency_ms, 0)} ms" if run.latency_ms is not None else "–",
            "changes": " / ".join(_count(n) for n in (run.created, run.updated, run.deleted)),
        }
        for run in overview.sync_runs
    ]
    users = overview.users
    user_rows = [
        (gettext("Service users"), users.total, _changelist("customers_serviceuser", customer__id__exact=customer.pk)),
        (
            gettext("Active"),
            users.active,
            _changelist("customers_serviceuser", customer__id__exact=customer.pk, active__exact=1),
        ),
        (
            gettext("Active and matched to MBN (billed)"),
            users.matched,
            _changelist("customers_serviceuser", customer__id__exact=customer.pk, active__exact=1, matched="yes"),
        ),
        (
            gettext("Active without an MBN number"),
            users.unmatched,
            _changelist("customers_serviceuser", customer__id__exact=customer.pk, active__exact=1, matched="no"),
        ),
        (
            gettext("Calendar with a sync error"),
            users.failing,
            _changelist("sync_calendaruser", source__customer__id__exact=customer.pk, state="failing"),
        ),
    ]
    context = {
        **admin.site.each_context(request),
        "title": gettext("Overview of %(customer)s") % {"customer": customer},
        "opts": Customer._meta,
        "original": customer,
        "overview": overview,
        "subscriptions": subscriptions,
        "current": next((row for row in subscriptions if row["subscription"] == overview.current_subscription), None),
        "invoices": invoices,
        "sync_runs": sync_runs,
        "latest_snapshot_users": _count(overview.latest_snapshot.active_users) if overview.latest_snapshot else None,
        "user_rows": [{"label": label, "value": _count(value), "url": url} for label, value, url in user_rows],
        "revenue_amount": format_nok(overview.revenue.amount) if overview.revenue else None,
        "health_html": render_sync_health(customer),
        "links": {
            "change": reverse("admin:customers_customer_change", args=[customer.pk]),
            "invoices": _changelist("billing_invoice", customer__id__exact=customer.pk),
            "service_users": _changelist("customers_serviceuser", customer__id__exact=customer.pk),
            "sources": _changelist("sync_calendarsource", customer__id__exact=customer.pk),
            "add_source": reverse("admin:sync_calendarsource_add") + f"?customer={customer.pk}",
            "mbn": (
                reverse("admin:sync_mbnconnection_change", args=[overview.mbn_connection.pk])
                if overview.mbn_connection
                else reverse("admin:sync_mbnconnection_add") + f"?customer={customer.pk}"
            ),
            "sync_runs": _changelist("sync_syncrun", source__customer__id__exact=customer.pk),
            "snapshots": _changelist("billing_usagesnapshot", customer__id__exact=customer.pk),
        },
    }
    return TemplateResponse(request, "admin/customers/customer/overview.html", context)
