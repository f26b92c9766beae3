"""Invoices, credit notes and termination letters as PDF: Django templates rendered by WeasyPrint.

Renders the plain dataclasses of `billing.documents` (never the ORM). Every number is written the Norwegian
way by `common.formatting`, and nothing is fetched over the network: the CSS lives in the templates
and the fonts are the machine's (DejaVu).
"""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from stdnum.no import kontonr, orgnr

from billing.core.invoicing import FEE_SHARE, MINIMUM_PER_MONTH
from billing.core.money import round2
from billing.documents import BillingDocument, Party, TerminationLetter
from common.formatting import format_nok, format_number

DOCUMENT_TEMPLATE = "billing/document.html"
TERMINATION_LETTER_TEMPLATE = "billing/termination_letter.html"

_DAY = dt.timedelta(days=1)


def render_document_pdf(document: BillingDocument) -> bytes:
    """An invoice or a credit note as an A4 PDF with everything bokføringsforskriften § 5-1-1 asks for."""
    if document.currency != "NOK":
        raise ValueError(f"Only NOK documents can be printed; document {document.number} is in {document.currency}.")
    is_credit_note = document.kind == "credit_note"
    context = {
        "document": document,
        "is_credit_note": is_credit_note,
        "title": f"{'Kreditnota' if is_credit_note else 'Faktura'} {document.number}",
        "seller": _party(document.seller),
        "buyer": _party(document.buyer),
        "lines": [
            {
                "description": line.description,
                "quantity": format_number(line.quantity),
                "unit_price": format_number(line.unit_price),
                "amount": format_number(line.amount),
            }
            for line in document.lines
        ],
        "vat_rate": _format_percent(document.vat_rate),
        "net": format_nok(document.net),
        "vat": format_nok(document.vat),
        "total": format_nok(document.total),
        "bank_account": kontonr.format(document.bank_account),
    }
    return _render_pdf(DOCUMENT_TEMPLATE, context)


def render_termination_letter_pdf(letter: TerminationLetter) -> bytes:
    """The confirmation of a notice: when the service ends, the fee and how it is computed, and the Telenor
    subscription the customer must cancel themselves."""
    users_cost = letter.average_users * letter.monthly_price
    monthly_basis = round2(max(users_cost, MINIMUM_PER_MONTH))
    has_fee = letter.fee > 0
    context = {
        "letter": letter,
        "title": f"Bekreftelse på oppsigelse – {letter.customer.name}",
        "seller": _party(letter.seller),
        "customer": _party(letter.customer),
        "has_fee": has_fee,
        "ends_before_go_live": _ends_before_go_live(letter),
        "fee": format_nok(letter.fee),
        "fee_share": _format_percent(Decimal(FEE_SHARE.numerator * 100) / FEE_SHARE.denominator),
        "average_users": format_number(letter.average_users, 4),
        "average_from": letter.go_live,
        "average_to": letter.notice_received - _DAY,
        "average_on_go_live": letter.go_live is None or letter.notice_received <= letter.go_live,
        "monthly_price": format_nok(letter.monthly_price),
        "users_cost": format_nok(round2(users_cost)),
        "minimum_applies": users_cost < MINIMUM_PER_MONTH,
        "minimum_per_month": format_nok(MINIMUM_PER_MONTH),
        "monthly_basis": format_nok(monthly_basis),
        "remaining_months": format_number(letter.remaining_months, 4),
        "remaining_from": letter.effective_end + _DAY,
        "no_fee_reason": "" if has_fee else _no_fee_reason(letter),
    }
    return _render_pdf(TERMINATION_LETTER_TEMPLATE, context)


def _render_pdf(template_name: str, context: dict[str, Any]) -> bytes:
    # WeasyPrint takes over half a second to import: loaded when a PDF is made, not by every process that
    # imports billing (the web server, the workers, admin).
    from weasyprint import HTML, URLFetcher

    html = render_to_string(template_name, context)
    # Only local files and inline data: a template asking for a remote font or image fails quietly
    # instead of making the billing run wait on the network.
    fetcher = URLFetcher(allowed_protocols=("file", "data"))
    pdf = HTML(string=html, base_url=str(settings.BASE_DIR / "templates"), url_fetcher=fetcher).write_pdf()
    assert pdf is not None  # write_pdf returns the bytes when given no target
    return pdf


def _party(party: Party) -> dict[str, Any]:
    """A seller or buyer with its organisation number grouped ('918 273 646') and its address as lines."""
    postal_line = f"{party.postal_code} {party.city}".strip()
    address = [line for line in (party.address_line, party.address_line_2, postal_line) if line]
    if party.country_code and party.country_code != "NO":
        address.append(party.country_code)
    return {
        "name": party.name,
        "org_number": orgnr.format(party.org_number) if party.org_number else "",
        "address": address,
        "email": party.email,
        "phone": party.phone,
    }


def _format_percent(rate: Decimal) -> str:
    """Decimal('25') → '25', Decimal('12.5') → '12,5' (the number in 'Mva 25 %')."""
    normalized = rate.normalize()
    exponent = normalized.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return format_number(rate, decimals)


def _no_fee_reason(letter: TerminationLetter) -> str:
    """Why a notice costs nothing, in the customer's words, when the letter's dates say so."""
    if _ends_before_go_live(letter):
        return "Tjenesten opphører før den er satt i drift."
    if letter.binding_end is None:
        return "Avtalen har ingen bindingstid."
    if letter.notice_received > letter.binding_end:
        return "Oppsigelsen er mottatt etter at den opprinnelige avtaletiden er utløpt."
    if letter.effective_end >= letter.binding_end:
        return "Tjenesten opphører ikke før bindingstiden er utløpt."
    return ""


def _ends_before_go_live(letter: TerminationLetter) -> bool:
    """The subscription ends before it starts (billing.md): no invoice and no fee."""
    return letter.go_live is None or letter.effective_end < letter.go_live
