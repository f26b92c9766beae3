"""Staff see a customer's sync health on the customer page."""

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import UsageSnapshot
from customers.models import ServiceUser
from kalenderpush.health import Health, chart
from sync.models import CalendarSource, CalendarUser, SyncRun
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


def test_the_customer_page_shows_last_success_failing_and_unmatched_users_and_a_chart(admin_client):
    customer = make_customer(name="Helse AS")
    source = CalendarSource.objects.create(
        customer=customer, tenant_id="t", client_id="c", activation_group="g", last_success_at=timezone.now()
    )
    failing = ServiceUser.objects.create(customer=customer, email="feil@helse.no", msisdn="+4791111111")
    ServiceUser.objects.create(customer=customer, email="uten-nummer@helse.no")
    CalendarUser.objects.create(
        service_user=failing,
        source=source,
        provider_user_id="x",
        last_error="A manual absence in MBN overlaps: 02.12 10:00",
        last_error_code="mbn_conflict_manual_absence",
    )
    today = timezone.localdate()
    for days in range(5):
        UsageSnapshot.objects.create(customer=customer, day=today - dt.timedelta(days=days), active_users=10 + days)
        SyncRun.objects.create(
            source=source,
            service_user=failing,
            started_at=timezone.now() - dt.timedelta(days=days),
            latency_ms=800 + days * 100,
        )
    page = admin_client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    assert (
        "feil@helse.no: Et fravær registrert manuelt i MBN overlapper en avtale (A manual absence in MBN overlaps"
        in page
    ), "the worded error, with the text as detail"
    assert "uten-nummer@helse.no" in page
    assert "<svg" in page and "<polyline" in page
    assert "maks 14" in page  # most active users in the period


def test_the_health_chart_is_readable_with_whole_numbers_in_norwegian_format():
    today = dt.date(2026, 12, 2)
    health = Health(
        last_success=None,
        failing=[],
        unmatched=[],
        latency_by_day=[(today - dt.timedelta(days=2), 1234.4), (today - dt.timedelta(days=1), 800.0)],
        users_by_day=[(today - dt.timedelta(days=2), 9), (today - dt.timedelta(days=1), 11)],
    )

    svg = chart(health, today=today)

    assert "aktive brukere (maks 11)" in svg and "11.0" not in svg
    assert "forsinkelse endring → MBN (maks 1\u00a0234 ms)" in svg
    width = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1))  # type: ignore[union-attr]
    assert width >= 600 and 'width="100%"' not in svg and "width:100%" in svg  # scales to the column
    assert "02.11.2026" in svg and "02.12.2026" in svg  # the period, written under the chart
