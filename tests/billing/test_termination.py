"""Termination: the admin shows effective end and fee before confirming, stores the notice, writes the
letter, and the final invoice carries the fee."""

import datetime as dt
import io

import pytest
from django.urls import reverse
from pypdf import PdfReader

from billing import services
from billing.models import Invoice
from billing.quarters import Quarter
from customers.models import Subscription
from tests.billing.factories import live_subscription

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.fixture
def subscription():
    return live_subscription(term=36, go_live=D(2026, 3, 1), steps=[(D(2026, 3, 1), 8)], last=D(2026, 11, 24))


def test_the_admin_shows_the_fee_before_anything_is_stored(admin_client, subscription):
    url = reverse("admin:customers_subscription_changelist")
    payload = {
        "action": "register_notice",
        "_selected_action": [subscription.pk],
        "notice_received": "2026-10-12",
        "preview": "1",
    }
    page = admin_client.post(url, payload).content.decode()
    assert "31.10.2026" in page and "28.02.2029" in page
    assert "kr\u00a03\u00a0360,00" in page
    assert "Tilknytning Nettsoft Calendar Push" in page
    subscription.refresh_from_db()
    assert subscription.notice_received is None

    response = admin_client.post(url, {**payload, "confirm": "1"}, follow=True)
    subscription.refresh_from_db()
    assert (subscription.notice_received, subscription.status) == (D(2026, 10, 12), Subscription.Status.NOTICE_GIVEN)
    letter_url = reverse("admin:customers_subscription_letter", args=[subscription.pk])
    assert letter_url in response.content.decode()
    letter = admin_client.get(letter_url)
    text = " ".join("".join(page.extract_text() for page in PdfReader(io.BytesIO(letter.content)).pages).split())
    assert "Tilknytning Nettsoft Calendar Push" in text
    assert "31.10.2026" in text and "3 360,00" in text.replace("\xa0", " ")


def test_the_fee_lands_on_the_invoice_ending_on_the_effective_end(subscription):
    services.register_notice(subscription_id=subscription.pk, notice_received=D(2026, 10, 12))
    subscription.refresh_from_db()
    assert subscription.effective_end == D(2026, 10, 31)
    from tests.billing.factories import snapshots

    snapshots(subscription.customer, [(D(2026, 11, 25), 8)], D(2026, 12, 31))
    services.run_billing(quarter=Quarter.parse("2026-Q4"), today=D(2027, 1, 2))
    invoice = Invoice.objects.get(quarter="2026-Q4")
    assert (invoice.period_start, invoice.period_end) == (D(2026, 10, 1), D(2026, 10, 31))
    assert [(line.kind, str(line.amount)) for line in invoice.lines.order_by("position")] == [
        ("subscription", "80.00"),
        ("minimum", "120.00"),
        ("termination_fee", "3360.00"),
    ]
    assert (str(invoice.net), str(invoice.vat), str(invoice.total)) == ("3560.00", "890.00", "4450.00")


def test_a_notice_on_an_ended_subscription_is_refused(subscription):
    services.register_notice(subscription_id=subscription.pk, notice_received=D(2026, 10, 12))
    with pytest.raises(Exception, match="cannot take a notice"):
        services.register_notice(subscription_id=subscription.pk, notice_received=D(2026, 10, 20))


def test_the_admin_refuses_a_notice_date_after_2100_with_the_allowed_range(admin_client, subscription):
    url = reverse("admin:customers_subscription_changelist")
    payload = {"action": "register_notice", "_selected_action": [subscription.pk], "notice_received": "9999-12-31"}
    page = admin_client.post(url, {**payload, "preview": "1"}).content.decode()
    assert "Skriv inn en dato mellom 01.01.2000 og 31.12.2100." in page
    admin_client.post(url, {**payload, "confirm": "1"})
    subscription.refresh_from_db()
    assert subscription.notice_received is None
