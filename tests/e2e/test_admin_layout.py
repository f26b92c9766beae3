"""Admin on a 1280 × 800 screen with the demo's customers: the busy lists fit the width (nothing cut off at the
right, no sideways scrolling inside the list), and a customer's overview stays short."""

import datetime as dt
import io
import random
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, ViewportSize, expect

from billing import services as billing_services
from billing.models import Invoice
from billing.quarters import Quarter
from customers.models import Customer, Subscription
from sync.models import CalendarSource, CalendarUser, SyncRun
from tests.e2e.helpers import admin_sign_in, make_staff, shot, today

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREEN: ViewportSize = {"width": 1280, "height": 800}
OVERVIEW_MAX_HEIGHT = 1800
ERRORS = [
    "",
    "",
    "",
    "MBN answered 409: a manual absence overlaps 02.12 10:00–11:00; the user's own absence in MBN is kept.",
    "Microsoft Graph throttled the request (HTTP 429, Retry-After 30): will retry automatically.",
]
SOURCES = [
    {
        "kind": "graph",
        "tenant_id": "5b1f2c9e-0d4a-4c7e-9a51-3e2f8d7c6b10",
        "client_id": "0f3c…",
        "activation_group": "9d2e7a41-62c3-4b8f-a0d5-1c9e4f7b2a36",
    },
    {
        "kind": "ews",
        "endpoint": "https://mail.example.no/EWS/Exchange.asmx",
        "username": "svc-ews@example.no",
        "activation_group": "kalender-push@example.no",
    },
    {"kind": "google", "admin_subject": "admin@example.no", "activation_group": "kalender-push@example.no"},
]


def demo_like_data() -> Customer:
    """The demo's three live customers with their users, an issued invoice each, calendars, sync runs, a notice
    (the fourth, a newcomer that has connected nothing, stays as it is)."""
    call_command("seed_demo", stdout=io.StringIO())
    quarter = Quarter.last_finished(today())
    billing_services.run_billing(quarter=quarter, today=today())
    drafts = list(Invoice.objects.filter(status=Invoice.Status.DRAFT).values_list("pk", flat=True))
    billing_services.issue_drafts(invoice_ids=drafts, today=today())
    rng = random.Random(13)
    now = timezone.now()
    live = Customer.objects.filter(service_users__isnull=False).distinct().order_by("customer_number")
    for customer, source_fields in zip(live, SOURCES, strict=True):
        source = CalendarSource.objects.create(customer=customer, last_success_at=now, **source_fields)
        users = list(customer.service_users.all())
        for user in users:
            CalendarUser.objects.create(
                service_user=user,
                source=source,
                provider_user_id=user.email,
                last_synced_at=now,
                subscription_expires=now + dt.timedelta(days=2),
                last_error="" if user.msisdn else "not matched to an MBN subscriber",
            )
        SyncRun.objects.bulk_create(
            SyncRun(
                source=source,
                service_user=rng.choice(users),
                started_at=now - dt.timedelta(minutes=3 * index),
                events_read=rng.randint(0, 14),
                created=rng.randint(0, 9),
                updated=rng.randint(0, 3),
                deleted=rng.randint(0, 2),
                mbn_requests=rng.randint(0, 12),
                latency_ms=rng.randint(800, 4000),
                error=rng.choice(ERRORS),
            )
            for index in range(40)
        )
    notice = Subscription.objects.order_by("customer__customer_number").first()
    assert notice is not None
    Subscription.objects.filter(pk=notice.pk).update(status=Subscription.Status.NOTICE_GIVEN, notice_received=today())
    return max(Customer.objects.all(), key=lambda customer: customer.service_users.count())


def overflow(page: Page) -> dict[str, Any]:
    return page.evaluate(
        """() => {
            const results = document.querySelector('#changelist-form .results');
            return {
                page: document.documentElement.scrollWidth,
                list: results ? results.scrollWidth - results.clientWidth : 0,
                rows: document.querySelectorAll('#result_list tbody tr').length,
            };
        }"""
    )


def test_the_busy_admin_lists_fit_1280_px_and_the_customer_overview_stays_short(page: Page) -> None:
    biggest = demo_like_data()
    make_staff("line.berg@nettsoft.no")
    page.set_viewport_size(SCREEN)
    admin_sign_in(page, "line.berg@nettsoft.no")

    for url, name in [
        ("/admin/billing/invoice/", "admin-fit-invoices"),
        ("/admin/customers/customer/", "admin-fit-customers"),
        ("/admin/customers/subscription/", "admin-fit-subscriptions"),
        ("/admin/customers/serviceuser/", "admin-fit-service-users"),
        ("/admin/sync/calendaruser/", "admin-fit-calendar-users"),
        ("/admin/sync/syncrun/", "admin-fit-sync-runs"),
        ("/admin/sync/calendarsource/", "admin-fit-calendar-sources"),
        ("/admin/django_q/schedule/", "admin-fit-schedules"),
    ]:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        shot(page, name)
        sizes = overflow(page)
        assert sizes["rows"] > 0, f"{url} lists nothing: the check would prove nothing"
        assert sizes["page"] <= SCREEN["width"], f"{url} is wider than the screen: {sizes}"
        assert sizes["list"] <= 0, f"{url} hides {sizes['list']} px of its columns to the right: {sizes}"
    page.goto("/admin/billing/invoice/")
    expect(page.locator("#result_list thead")).to_contain_text("Last ned")  # the last column is on screen
    assert page.locator("#result_list thead th").last.bounding_box()["x"] < SCREEN["width"]  # type: ignore[index]

    response = page.goto(f"/admin/customers/customer/{biggest.pk}/overview/")
    assert response is not None and response.status == 200
    shot(page, "admin-fit-customer-overview")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < OVERVIEW_MAX_HEIGHT, f"the customer overview is {height} px tall"
    assert page.evaluate("document.documentElement.scrollWidth") <= SCREEN["width"]
