"""Issuing, paying and crediting: numbers, KID, dates, immutability, e-mail."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from stdnum import luhn

from billing import services
from billing.models import CreditNote, DocumentCounter, Invoice, InvoiceEvent
from billing.quarters import Quarter
from tests.billing.factories import live_subscription

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.fixture
def drafts():
    for index, users in enumerate((30, 5, 12)):
        live_subscription(
            term=12,
            go_live=D(2026, 1, 1),
            steps=[(D(2026, 1, 1), users)],
            last=D(2026, 3, 31),
            name=f"Kunde {index} AS",
            buyer_reference=f"Ref {index}",
        )
    services.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 1))
    return list(Invoice.objects.order_by("customer__customer_number"))


def test_issuing_numbers_invoices_in_order_with_kid_and_due_date(drafts):
    result = services.issue_drafts(invoice_ids=[i.pk for i in drafts], today=D(2026, 4, 2))
    assert [invoice.number for invoice in result.issued] == [1, 2, 3]
    for invoice in result.issued:
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.ISSUED
        assert (invoice.issue_date, invoice.due_date) == (D(2026, 4, 2), D(2026, 4, 16))
        assert invoice.kid.startswith(f"{invoice.customer.customer_number}{invoice.number:07d}")
        assert luhn.is_valid(invoice.kid)
        assert invoice.buyer_name == invoice.customer.name
        assert invoice.events.filter(kind=InvoiceEvent.Kind.ISSUED).exists()
    assert DocumentCounter.objects.get(series="invoice").last_number == 3


def test_an_issued_invoice_cannot_be_issued_again(drafts):
    services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    with pytest.raises(ValidationError, match="is not a draft"):
        services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    assert DocumentCounter.objects.get(series="invoice").last_number == 1


def test_an_invoice_ehf_cannot_carry_is_not_issued_and_uses_no_number(drafts):
    from customers.models import Customer

    Customer.objects.filter(pk=drafts[0].customer_id).update(peppol_participant="0192:923609017")
    with pytest.raises(ValidationError, match="Peppol"):
        services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    drafts[0].refresh_from_db()
    assert (drafts[0].status, drafts[0].number) == (Invoice.Status.DRAFT, None)
    assert services.issue_invoice(invoice_id=drafts[1].pk, today=D(2026, 4, 2)).number == 1


def test_the_email_task_sends_the_invoice_pdf(drafts, django_capture_on_commit_callbacks, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    (message,) = mail.outbox
    assert message.to == [invoice.customer.invoice_email]
    assert f"Faktura {invoice.number}" in message.subject
    name, content, mimetype = message.attachments[0]
    assert (name, mimetype) == (f"faktura-{invoice.number}.pdf", "application/pdf")
    assert content.startswith(b"%PDF")
    assert invoice.events.filter(kind=InvoiceEvent.Kind.EMAILED).exists()


def test_credit_notes_have_their_own_gapless_series_and_refer_to_the_invoice(drafts):
    first = services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    second = services.issue_invoice(invoice_id=drafts[1].pk, today=D(2026, 4, 2))
    note = services.credit_invoice(invoice_id=second.pk, reason="Feil antall brukere", today=D(2026, 4, 10))
    assert note.number == 1 and note.invoice == second
    assert note.total == second.total and note.lines.count() == second.lines.count()
    second.refresh_from_db()
    assert second.status == Invoice.Status.CREDITED
    with pytest.raises(ValidationError, match="cannot be credited"):
        services.credit_invoice(invoice_id=second.pk, reason="igjen")
    assert services.credit_invoice(invoice_id=first.pk, reason="Avtalt rabatt").number == 2
    assert CreditNote.objects.count() == 2


def test_a_credited_period_can_be_billed_again(drafts):
    invoice = services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    services.credit_invoice(invoice_id=invoice.pk, reason="Feil")
    run = services.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 20))
    assert run.invoices_created == 1


def test_paid_invoices_are_recorded(drafts):
    invoice = services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    services.mark_paid(invoice_id=invoice.pk, paid_on=D(2026, 4, 12))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_on) == (Invoice.Status.PAID, D(2026, 4, 12))
    with pytest.raises(ValidationError):
        services.mark_paid(invoice_id=drafts[1].pk, paid_on=D(2026, 4, 12))


def test_issued_invoices_are_read_only_in_admin(drafts, admin_client):
    invoice = services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    url = reverse("admin:billing_invoice_change", args=[invoice.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="_save"' not in page
    admin_client.post(url, {"total": "1.00"})
    invoice.refresh_from_db()
    assert invoice.total != Decimal("1.00")
    assert (
        admin_client.post(reverse("admin:billing_invoice_delete", args=[invoice.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert Invoice.objects.filter(pk=invoice.pk).exists()


def test_staff_issue_drafts_in_bulk_from_admin(drafts, admin_client):
    response = admin_client.post(
        reverse("admin:billing_invoice_changelist"),
        {"action": "issue_selected", "_selected_action": [i.pk for i in drafts]},
        follow=True,
    )
    assert "3 fakturaer utstedt" in response.content.decode() or "3 invoices issued" in response.content.decode()
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [1, 2, 3]


def test_invoice_events_store_a_kind_and_parameters_and_are_worded_in_the_readers_language(drafts, admin_client):
    from django.utils import translation

    invoice = services.issue_invoice(invoice_id=drafts[0].pk, today=D(2026, 4, 2))
    services.mark_paid(invoice_id=invoice.pk, paid_on=D(2026, 4, 12))
    other = services.issue_invoice(invoice_id=drafts[1].pk, today=D(2026, 4, 2))
    services.credit_invoice(invoice_id=other.pk, reason="Feil antall brukere", today=D(2026, 4, 10))
    events = {event.kind: event for event in InvoiceEvent.objects.filter(invoice__in=[invoice, other])}
    issued = events[InvoiceEvent.Kind.ISSUED]

    assert issued.params in ({"number": 1, "kid": invoice.kid}, {"number": 2, "kid": other.kid})
    assert events[InvoiceEvent.Kind.PAID].params == {"paid_on": "2026-04-12"}
    assert all(event.message == "" for event in events.values()), "no text is stored: it is worded when shown"
    with translation.override("nb"):
        norwegian = {kind: event.description for kind, event in events.items()}
    with translation.override("en"):
        english = {kind: event.description for kind, event in events.items()}
    assert norwegian[InvoiceEvent.Kind.CREATED] == "Faktureringskjøring 2026-Q1"
    assert english[InvoiceEvent.Kind.CREATED] == "Billing run 2026-Q1"
    assert (
        norwegian[InvoiceEvent.Kind.PAID] == "Betalt 12.04.2026"
        and english[InvoiceEvent.Kind.PAID] == "Paid 12.04.2026"
    )
    assert norwegian[InvoiceEvent.Kind.CREDITED] == "Kreditnota 1: Feil antall brukere"
    assert english[InvoiceEvent.Kind.CREDITED] == "Credit note 1: Feil antall brukere"

    page = admin_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk])).content.decode()
    assert f"Faktura 1, KID {invoice.kid}" in page and "Betalt 12.04.2026" in page


def test_an_invoice_event_from_before_parameters_shows_its_stored_text(drafts):
    old = InvoiceEvent.objects.create(invoice=drafts[0], kind=InvoiceEvent.Kind.PAID, message="Betalt 01.04.2026")

    assert old.description == "Betalt 01.04.2026"
