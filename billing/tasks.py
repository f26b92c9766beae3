"""django-q2 jobs for billing (schedules in admin under Bakgrunnsjobber → Planlagte jobber)."""

import datetime as dt
import logging

from django.core.mail import EmailMessage
from django.utils import timezone

from billing import usage
from billing.models import Invoice, InvoiceEvent
from billing.pdf import render_document_pdf
from billing.quarters import Quarter
from billing.services import document_for_invoice, run_billing

logger = logging.getLogger(__name__)
LOOKBACK_DAYS = 62


def snapshot_usage() -> str:
    """Yesterday's active users per customer, and any day of the last two months the job missed."""
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    created = usage.ensure_snapshots(first=yesterday - dt.timedelta(days=LOOKBACK_DAYS), last=yesterday)
    return f"{created} snapshot(s) stored up to {yesterday:%d.%m.%Y}"


def run_quarterly_billing(quarter: str | None = None) -> str:
    """Draft invoices for the quarter just ended (or the one named)."""
    today = timezone.localdate()
    target = Quarter.parse(quarter) if quarter else Quarter.last_finished(today)
    run = run_billing(quarter=target, today=today)
    return f"{target}: {run.invoices_created} invoice(s) created, {len(run.errors)} error(s)"


def email_invoice(invoice_id: int) -> str:
    """Send an issued invoice as PDF to the customer's invoice address."""
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    if invoice.number is None or not invoice.buyer_email:
        return f"invoice {invoice_id} not sent: not issued or no invoice e-mail"
    document = document_for_invoice(invoice)
    message = EmailMessage(
        subject=f"Faktura {invoice.number} fra {document.seller.name} – Kalender Push {invoice.quarter}",
        body=(
            f"Hei,\n\nvedlagt er faktura {invoice.number} for Kalender Push, perioden "
            f"{invoice.period_start:%d.%m.%Y}–{invoice.period_end:%d.%m.%Y}.\n"
            f"Forfall {invoice.due_date:%d.%m.%Y}, KID {invoice.kid}.\n\nVennlig hilsen\n{document.seller.name}\n"
        ),
        to=[invoice.buyer_email],
    )
    message.attach(f"faktura-{invoice.number}.pdf", render_document_pdf(document), "application/pdf")
    try:
        message.send()
    except Exception as error:
        InvoiceEvent.objects.create(
            invoice=invoice, kind=InvoiceEvent.Kind.EMAIL_FAILED, params={"error": str(error)[:500]}
        )
        raise
    InvoiceEvent.objects.create(invoice=invoice, kind=InvoiceEvent.Kind.EMAILED, params={"to": invoice.buyer_email})
    return f"invoice {invoice.number} sent to {invoice.buyer_email}"
