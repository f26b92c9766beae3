"""Reading a page changes nothing: the portal's and the staff's GET pages send no INSERT, UPDATE or DELETE.

The customer's usage snapshots stop at the end of June, so every estimate on these pages needs days the
daily job has not stored; the pages count them from the users' history without storing them.
"""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing import services as billing
from billing import tasks
from billing.estimates import estimate_quarter_invoice
from billing.models import UsageSnapshot
from customers.models import Subscription

pytestmark = pytest.mark.django_db
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)

PORTAL_PAGES = [
    ("overview", {}),
    ("users", {}),
    ("settings", {}),
    ("codes", {}),
    ("subscription", {}),
    ("subscription", {"notice": "2027-01-15"}),
    ("terminate", {}),
    ("invoices", {}),
    ("connections", {}),
    ("google_connection", {}),
    ("exchange_connection", {}),
    ("mbn_connection", {}),
]


@pytest.fixture(autouse=True)
def _no_second_factor(settings) -> None:  # type: ignore[no-untyped-def]
    settings.OTP_REQUIRED_FOR_STAFF = False


def _writes(client: Client, url: str, params: dict[str, str] | None = None) -> list[str]:
    """The writing statements a GET of `url` sends, after the login (whose session writes come first)."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200, (url, response.content[:300])
    return [query["sql"] for query in captured.captured_queries if WRITE.match(query["sql"])]


@pytest.mark.parametrize(("name", "params"), PORTAL_PAGES)
def test_it_writes_nothing_when_a_portal_page_is_read(ours, name, params):
    missing_before = not UsageSnapshot.objects.filter(customer=ours.customer, day__gt=dt.date(2026, 6, 30)).exists()
    assert missing_before, "the fixture leaves the recent days for the daily job"
    assert _writes(ours.admin, reverse(f"portal:{name}"), params) == []
    assert _writes(ours.accountant, reverse("portal:invoices")) == []


def test_it_writes_nothing_when_a_portal_page_shows_a_registered_notice(ours):
    subscription = ours.customer.subscriptions.get()
    billing.register_notice(subscription_id=subscription.pk, notice_received=timezone.localdate())
    UsageSnapshot.objects.filter(customer=ours.customer, day__gt=dt.date(2026, 6, 30)).delete()
    assert _writes(ours.admin, reverse("portal:overview")) == []
    assert _writes(ours.admin, reverse("portal:subscription")) == []


def test_it_writes_nothing_when_staff_read_the_dashboard_and_the_customer_overview(ours, admin_client):
    assert _writes(admin_client, reverse("admin:dashboard")) == []
    assert _writes(admin_client, reverse("admin:customers_customer_overview", args=[ours.customer.pk])) == []


def test_the_estimate_is_the_same_before_and_after_the_daily_job_stores_the_days(ours):
    subscription = ours.customer.subscriptions.get()
    today = timezone.localdate()
    before = estimate_quarter_invoice(subscription=subscription, today=today)
    termination_before = billing.termination_for(subscription, notice_received=today)
    tasks.snapshot_usage()
    assert UsageSnapshot.objects.filter(customer=ours.customer, day=today - dt.timedelta(days=1)).exists()
    assert estimate_quarter_invoice(subscription=subscription, today=today) == before
    assert billing.termination_for(subscription, notice_received=today) == termination_before
    assert before is not None and before[1].total > 0


def test_registering_a_notice_stores_the_days_its_fee_is_averaged_over(ours):
    subscription = ours.customer.subscriptions.get()
    today = timezone.localdate()
    billing.register_notice(subscription_id=subscription.pk, notice_received=today)
    stored = set(UsageSnapshot.objects.filter(customer=ours.customer).values_list("day", flat=True))
    assert subscription.go_live is not None
    lived = {subscription.go_live + dt.timedelta(days=n) for n in range((today - subscription.go_live).days)}
    assert lived <= stored, "every day from go-live to yesterday is stored with the notice"
    assert today not in stored
    assert Subscription.objects.get(pk=subscription.pk).status == Subscription.Status.NOTICE_GIVEN
