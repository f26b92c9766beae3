"""Billing actions: the quarterly run, issuing, crediting, payment, notices; each one transaction.

The numbers come from the pure core (`billing.core.invoicing`), the same code `billing_quote` runs.
"""

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from stdnum import luhn

from billing import usage
from billing.core.invoicing import Contract, Line, Termination, quarter_invoice, termination
from billing.core.money import round_half_up
from billing.documents import BillingDocument, DocumentLine, LineKind, Party, TerminationLetter, seller_from_settings
from billing.ehf import EhfInvalid, assert_valid_ehf, build_ehf
from billing.models import (
    BillingRun,
    CreditNote,
    CreditNoteLine,
    DocumentCounter,
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    UsageSnapshot,
)
from billing.quarters import Quarter
from common import metrics
from common.queue import enqueue
from customers.models import Customer, Subscription, Term
from customers.numbering import take_next_number
from customers.services import User, act_as, record_history

logger = logging.getLogger(__name__)
_DAY = dt.timedelta(days=1)
MONTHS_NB = [
    "januar",
    "februar",
    "mars",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "desember",
]

Progress = Callable[[int, int], None]


# --- from a subscription to the core's contract ---------------------------------------------------


def contract_for(subscription: Subscription) -> Contract:
    if subscription.go_live is None:
        raise ValidationError(f"{subscription} has no go-live date and is not billed")
    assert subscription.monthly_price is not None and subscription.setup_fee is not None
    return Contract(
        term_months=subscription.term_months,
        go_live=subscription.go_live,
        monthly_price=subscription.monthly_price,
        setup_fee=subscription.setup_fee,
        notice_received=subscription.notice_received,
    )


def users_on_from(by_day: dict[dt.date, int]) -> Callable[[dt.date], int]:
    def users_on(day: dt.date) -> int:
        try:
            return by_day[day]
        except KeyError:
            raise ValidationError(f"no usage snapshot for {day:%d.%m.%Y}") from None

    return users_on


def termination_for(subscription: Subscription, *, notice_received: dt.date | None = None) -> Termination | None:
    """The termination result of a (possible) notice, from the daily snapshots (today's count for later days).

    A read: days without a stored snapshot are counted from the users' history and not stored.
    """
    contract = contract_for(subscription)
    if notice_received is not None:
        contract = Contract(
            contract.term_months, contract.go_live, contract.monthly_price, contract.setup_fee, notice_received
        )
    if contract.notice_received is None:
        return None
    last = max(contract.go_live, contract.notice_received - _DAY)
    by_day = usage.users_by_day_as_of(
        customer_id=subscription.customer_id, first=contract.go_live, last=last, today=timezone.localdate()
    )
    return termination(contract=contract, users_on=users_on_from(by_day))


def _store_days_before_notice(*, subscription: Subscription, notice_received: dt.date, today: dt.date) -> None:
    """Store the snapshots a termination fee is averaged over, as far as they are lived (up to yesterday)."""
    assert subscription.go_live is not None
    usage.ensure_snapshots(
        first=subscription.go_live,
        last=min(notice_received - _DAY, today - _DAY),
        customer_ids=[subscription.customer_id],
        source=UsageSnapshot.Source.BACKFILL,
    )


# --- the quarterly run ----------------------------------------------------------------------------


def _description(line: Line) -> str:
    month = f"{MONTHS_NB[line.month.month - 1]} {line.month.year}" if line.month else ""
    if line.kind == "setup":
        return "Etablering Kalender Push"
    if line.kind == "subscription":
        return f"Abonnement {month} (brukermåneder)"
    if line.kind == "minimum":
        return f"Minstebeløp {month} (kr 200 per måned)"
    return "Gebyr ved oppsigelse innenfor avtaletiden (60 % av gjenværende abonnement)"


def _bill_subscription(subscription: Subscription, quarter: Quarter, run: BillingRun) -> Invoice | None:
    contract = contract_for(subscription)
    result = None
    effective_end = contract.effective_end
    if effective_end is not None and quarter.start <= effective_end <= quarter.end:
        result = termination_for(subscription)
    first, last = max(quarter.start, contract.go_live), min(quarter.end, effective_end or quarter.end)
    by_day = usage.users_by_day(customer_id=subscription.customer_id, first=first, last=last)
    invoice = quarter_invoice(
        contract=contract, quarter_start=quarter.start, users_on=users_on_from(by_day), termination_result=result
    )
    if invoice is None:
        return None
    with transaction.atomic():
        record = Invoice.objects.create(
            customer_id=subscription.customer_id,
            subscription=subscription,
            billing_run=run,
            quarter=quarter.label,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            net=invoice.net,
            vat=invoice.vat,
            total=invoice.total,
        )
        InvoiceLine.objects.bulk_create(
            InvoiceLine(
                invoice=record,
                position=position,
                kind=line.kind,
                month=line.month,
                description=_description(line),
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
            )
            for position, line in enumerate(invoice.lines, start=1)
        )
        InvoiceEvent.objects.create(invoice=record, kind=InvoiceEvent.Kind.CREATED, params={"quarter": quarter.label})
    return record


STALE_RUN_SECONDS = 300  # default for settings.BILLING_RUN_STALE_SECONDS
HEARTBEAT_EVERY = 20  # subscriptions between progress updates


def _stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "BILLING_RUN_STALE_SECONDS", STALE_RUN_SECONDS))


def _start_or_take_over_run(*, quarter: Quarter, started_by: User, total: int) -> BillingRun:
    """A new run for `quarter`, or the quarter's stale run taken over when its worker died mid-run.

    A run whose progress has not moved for `BILLING_RUN_STALE_SECONDS` lost its worker (killed, out of
    memory, machine gone): it is claimed with a conditional UPDATE so one taker continues it, and any
    other stale run of the quarter is marked failed, so no run stays "running" for ever.
    """
    now = timezone.now()
    cutoff = now - _stale_after()
    stale = BillingRun.objects.filter(quarter=quarter.label, status=BillingRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)  # before heartbeats
    )
    for candidate in stale.order_by(F("heartbeat_at").desc(nulls_last=True), "-started_at"):  # latest alive first
        if BillingRun.objects.filter(pk=candidate.pk, heartbeat_at=candidate.heartbeat_at).update(
            heartbeat_at=now, subscriptions_total=total
        ):
            stale.exclude(pk=candidate.pk).update(
                status=BillingRun.Status.FAILED,
                finished_at=now,
                errors=[{"customer": "–", "customer_number": "–", "error": f"Stopped; run {candidate.pk} went on"}],
            )
            logger.warning("billing run %s for %s lost its worker; taken over", candidate.pk, quarter.label)
            candidate.refresh_from_db()
            return candidate
    return BillingRun.objects.create(
        quarter=quarter.label, started_by=started_by, subscriptions_total=total, heartbeat_at=now
    )


def _beat(run: BillingRun, *, done: int, created: int) -> None:
    BillingRun.objects.filter(pk=run.pk).update(
        subscriptions_done=done, invoices_created=created, heartbeat_at=timezone.now()
    )


def run_billing(
    *, quarter: Quarter, today: dt.date, started_by: User = None, progress: Progress | None = None
) -> BillingRun:
    """Draft invoices for every live or ended subscription with billed days in `quarter`.

    Idempotent: a subscription already invoiced for the quarter is skipped. A customer that fails is
    recorded on the run with the reason, and the run goes on. A run whose worker died is continued by
    the next run of its quarter (see `_start_or_take_over_run`).
    """
    if quarter.end >= today:
        raise ValidationError(
            f"{quarter.label} ends on {quarter.end:%d.%m.%Y}; invoices are made in arrears, from "
            f"{quarter.end + _DAY:%d.%m.%Y}."
        )
    candidates = [
        subscription
        for subscription in Subscription.objects.exclude(status=Subscription.Status.PENDING)
        .filter(go_live__isnull=False, go_live__lte=quarter.end)
        .select_related("customer")
        .order_by("customer__customer_number")
        if subscription.effective_end is None or subscription.effective_end >= quarter.start
    ]
    run = _start_or_take_over_run(quarter=quarter, started_by=started_by, total=len(candidates))
    done = set(
        Invoice.objects.filter(period_start__gte=quarter.start, period_start__lte=quarter.end)
        .exclude(status=Invoice.Status.CREDITED)
        .values_list("subscription_id", flat=True)
    )
    to_bill = [subscription for subscription in candidates if subscription.pk not in done]
    usage.ensure_snapshots(
        first=quarter.start, last=quarter.end, customer_ids={s.customer_id for s in to_bill}, source="backfill"
    )
    for subscription in to_bill:  # a termination fee in the quarter averages the users since go-live
        effective_end = subscription.effective_end
        if subscription.notice_received and effective_end and quarter.start <= effective_end <= quarter.end:
            _store_days_before_notice(
                subscription=subscription, notice_received=subscription.notice_received, today=today
            )
    errors: list[dict[str, object]] = []
    created = Invoice.objects.filter(billing_run=run).count()  # more than 0 when taken over
    _beat(run, done=0, created=created)
    for index, subscription in enumerate(candidates, start=1):
        if subscription.pk not in done:
            try:
                if _bill_subscription(subscription, quarter, run) is not None:
                    created += 1
            except IntegrityError:
                pass  # a concurrent run invoiced this subscription for the quarter first
            except Exception as error:  # one broken customer must not stop the run
                logger.exception("billing %s failed for %s", quarter.label, subscription.customer)
                message = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
                errors.append(
                    {
                        "customer": subscription.customer.name,
                        "customer_number": subscription.customer.customer_number,
                        "error": message,
                    }
                )
        if progress is not None:
            progress(index, len(candidates))
        if index % HEARTBEAT_EVERY == 0:
            _beat(run, done=index, created=created)
    run.subscriptions_done = len(candidates)
    run.invoices_created = created
    run.errors = errors
    run.status = BillingRun.Status.FINISHED_WITH_ERRORS if errors else BillingRun.Status.FINISHED
    run.finished_at = timezone.now()
    run.heartbeat_at = run.finished_at
    run.save()
    metrics.BILLING_RUNS.labels(status=run.status).inc()
    return run


# --- issuing, paying, crediting -------------------------------------------------------------------


def kid_for(*, customer_number: int, invoice_number: int) -> str:
    """Customer number + invoice number (7 digits) + MOD10 (Luhn) check digit."""
    base = f"{customer_number}{invoice_number:07d}"
    return base + luhn.calc_check_digit(base)


def _next_number(series: str) -> int:
    return take_next_number(DocumentCounter.objects.all(), series=series)


def _validate_ehf(document: BillingDocument) -> None:
    try:
        assert_valid_ehf(build_ehf(document))
    except (EhfInvalid, ValueError) as error:  # ValueError: data EHF cannot carry (e.g. a bad Peppol id)
        raise ValidationError(f"{document.number}: the EHF document breaks the Peppol rules: {error}") from error


def _snapshot_buyer(invoice: Invoice, customer: Customer) -> None:
    invoice.buyer_name = customer.name
    invoice.buyer_org_number = customer.org_number
    invoice.buyer_address_line = customer.address_line
    invoice.buyer_address_line_2 = customer.address_line_2
    invoice.buyer_postal_code = customer.postal_code
    invoice.buyer_city = customer.city
    invoice.buyer_country_code = customer.country_code
    invoice.buyer_email = customer.invoice_email
    invoice.buyer_reference = customer.buyer_reference
    invoice.buyer_peppol = customer.peppol_participant


def issue_invoice(*, invoice_id: int, issued_by: User = None, today: dt.date | None = None) -> Invoice:
    """Give a draft its number, dates and KID, check its EHF against the Peppol rules, and lock it."""
    today = today or timezone.localdate()
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("customer").get(pk=invoice_id)
        if invoice.status != Invoice.Status.DRAFT:
            raise ValidationError(f"{invoice} is not a draft (status: {invoice.get_status_display()})")
        invoice.number = _next_number(DocumentCounter.Series.INVOICE)
        invoice.issue_date = today
        invoice.due_date = today + dt.timedelta(days=settings.INVOICE_DUE_DAYS)
        invoice.kid = kid_for(customer_number=invoice.customer.customer_number, invoice_number=invoice.number)
        invoice.status = Invoice.Status.ISSUED
        invoice.issued_at = timezone.now()
        invoice.issued_by = issued_by  # type: ignore[assignment]
        _snapshot_buyer(invoice, invoice.customer)
        _validate_ehf(document_for_invoice(invoice))
        act_as(invoice, by=issued_by)
        invoice.save()
        InvoiceEvent.objects.create(
            invoice=invoice,
            kind=InvoiceEvent.Kind.ISSUED,
            user=issued_by,  # type: ignore[misc]
            params={"number": invoice.number, "kid": invoice.kid},
        )
        enqueue("billing.tasks.email_invoice", invoice.pk, name=f"email-invoice-{invoice.pk}")
        transaction.on_commit(metrics.INVOICES_ISSUED.inc)
    return invoice


@dataclass(frozen=True)
class BulkResult:
    issued: list[Invoice]
    errors: list[str]


def issue_drafts(
    *,
    invoice_ids: Iterable[int],
    issued_by: User = None,
    today: dt.date | None = None,
    progress: Progress | None = None,
) -> BulkResult:
    ids = list(invoice_ids)
    issued, errors = [], []
    for index, invoice_id in enumerate(ids, start=1):
        try:
            issued.append(issue_invoice(invoice_id=invoice_id, issued_by=issued_by, today=today))
        except ValidationError as error:
            errors.append("; ".join(error.messages))
        if progress is not None:
            progress(index, len(ids))
    return BulkResult(issued, errors)


def mark_paid(*, invoice_id: int, paid_on: dt.date, by: User = None) -> Invoice:
    with transaction.atomic():
        claimed = Invoice.objects.filter(pk=invoice_id, status=Invoice.Status.ISSUED).update(
            status=Invoice.Status.PAID, paid_on=paid_on
        )
        invoice = Invoice.objects.get(pk=invoice_id)
        if claimed != 1:
            raise ValidationError(f"{invoice} is not issued and unpaid (status: {invoice.get_status_display()})")
        record_history(invoice, by=by)
        InvoiceEvent.objects.create(
            invoice=invoice,
            kind=InvoiceEvent.Kind.PAID,
            user=by,  # type: ignore[misc]
            params={"paid_on": paid_on.isoformat()},
        )
    return invoice


def credit_invoice(*, invoice_id: int, reason: str, by: User = None, today: dt.date | None = None) -> CreditNote:
    """Credit an issued invoice in full with a credit note in its own gapless series."""
    today = today or timezone.localdate()
    if not reason.strip():
        raise ValidationError("Give the reason for the credit note; it is printed on it.")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("customer").get(pk=invoice_id)
        if invoice.status not in (Invoice.Status.ISSUED, Invoice.Status.PAID):
            raise ValidationError(f"{invoice} cannot be credited (status: {invoice.get_status_display()})")
        note = CreditNote.objects.create(
            invoice=invoice,
            number=_next_number(DocumentCounter.Series.CREDIT_NOTE),
            issue_date=today,
            reason=reason.strip(),
            net=invoice.net,
            vat=invoice.vat,
            total=invoice.total,
            created_by=by,
        )
        CreditNoteLine.objects.bulk_create(
            CreditNoteLine(
                credit_note=note,
                position=line.position,
                kind=line.kind,
                month=line.month,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
            )
            for line in invoice.lines.all()
        )
        _validate_ehf(document_for_credit_note(note))
        invoice.status = Invoice.Status.CREDITED  # the row is locked (select_for_update) since the check above
        act_as(invoice, by=by)
        invoice.save(update_fields=["status"])
        InvoiceEvent.objects.create(
            invoice=invoice,
            credit_note=note,
            kind=InvoiceEvent.Kind.CREDITED,
            user=by,
            params={"number": note.number, "reason": note.reason},
        )  # type: ignore[misc]
    return note


# --- documents ------------------------------------------------------------------------------------


def _buyer_party(invoice: Invoice) -> Party:
    return Party(
        name=invoice.buyer_name,
        org_number=invoice.buyer_org_number,
        address_line=invoice.buyer_address_line,
        address_line_2=invoice.buyer_address_line_2,
        postal_code=invoice.buyer_postal_code,
        city=invoice.buyer_city,
        country_code=invoice.buyer_country_code or "NO",
        email=invoice.buyer_email,
        peppol_participant=invoice.buyer_peppol,
    )


def _document_lines(lines: Iterable[InvoiceLine | CreditNoteLine]) -> tuple[DocumentLine, ...]:
    return tuple(
        DocumentLine(
            kind=cast(LineKind, line.kind),
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
            month=line.month,
        )
        for line in lines
    )


def document_for_invoice(invoice: Invoice) -> BillingDocument:
    assert invoice.number is not None and invoice.issue_date is not None
    return BillingDocument(
        kind="invoice",
        number=str(invoice.number),
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        lines=_document_lines(invoice.lines.all()),
        net=invoice.net,
        vat=invoice.vat,
        total=invoice.total,
        **_from_invoice(invoice),
    )


def _from_invoice(invoice: Invoice) -> dict[str, Any]:
    """What an invoice's document and its credit notes' documents take alike from the invoice: the period, the
    parties, the KID, the account and the references."""
    return {
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "seller": seller_from_settings(),
        "buyer": _buyer_party(invoice),
        "kid": invoice.kid,
        "bank_account": settings.SELLER_BANK_ACCOUNT,
        "buyer_reference": invoice.buyer_reference,
        "customer_number": str(invoice.customer.customer_number),
    }


def document_for_credit_note(note: CreditNote) -> BillingDocument:
    invoice = note.invoice
    assert invoice.number is not None
    return BillingDocument(
        kind="credit_note",
        number=str(note.number),
        issue_date=note.issue_date,
        due_date=None,
        lines=_document_lines(note.lines.all()),
        net=note.net,
        vat=note.vat,
        total=note.total,
        credited_number=str(invoice.number),
        credited_issue_date=invoice.issue_date,
        note=note.reason,
        **_from_invoice(invoice),
    )


# --- termination ----------------------------------------------------------------------------------


def register_notice(*, subscription_id: int, notice_received: dt.date, by: User = None) -> Termination | None:
    """Store a customer's written notice; the fee (if any) goes on the invoice ending on the effective end.

    Returns the termination result (None for a subscription that never went live: nothing to bill).
    """
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().select_related("customer").get(pk=subscription_id)
        if subscription.status not in (Subscription.Status.LIVE, Subscription.Status.PENDING):
            raise ValidationError(f"{subscription} cannot take a notice (status: {subscription.get_status_display()})")
        if notice_received < subscription.signed_on:
            raise ValidationError(f"The notice {notice_received:%d.%m.%Y} is before the signing date.")
        result = None
        if subscription.go_live:
            _store_days_before_notice(
                subscription=subscription, notice_received=notice_received, today=timezone.localdate()
            )
            result = termination_for(subscription, notice_received=notice_received)
        subscription.notice_received = notice_received
        subscription.status = Subscription.Status.NOTICE_GIVEN
        act_as(subscription, by=by)
        subscription.save(update_fields=["notice_received", "status", "updated_at"])
    return result


def termination_letter(*, subscription: Subscription, today: dt.date | None = None) -> TerminationLetter:
    if subscription.notice_received is None:
        raise ValidationError(f"{subscription} has no notice registered")
    customer = subscription.customer
    result = termination_for(subscription) if subscription.go_live else None
    return TerminationLetter(
        seller=seller_from_settings(),
        customer=Party(
            name=customer.name,
            org_number=customer.org_number,
            address_line=customer.address_line,
            address_line_2=customer.address_line_2,
            postal_code=customer.postal_code,
            city=customer.city,
            country_code=customer.country_code,
            email=customer.invoice_email,
        ),
        customer_number=str(customer.customer_number),
        letter_date=today or timezone.localdate(),
        term_label=str(Term(subscription.term_months).label),
        go_live=subscription.go_live,
        notice_received=subscription.notice_received,
        effective_end=subscription.effective_end or subscription.notice_received,
        binding_end=subscription.binding_end,
        average_users=round_half_up(result.average_users, 4) if result else Decimal("0.0000"),
        remaining_months=round_half_up(result.remaining_months, 4) if result else Decimal("0.0000"),
        monthly_price=subscription.monthly_price or Decimal("0.00"),
        fee=result.fee if result else Decimal("0.00"),
    )
