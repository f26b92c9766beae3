"""Issued billing documents as plain data: what the PDF, the EHF file and the CSV are made from.

Built from the database by `billing.services` (or by hand in tests); the renderers (`billing.pdf`,
`billing.ehf`) never touch the ORM, so every output of one document comes from one snapshot.
"""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from django.conf import settings

from billing.core import invoicing

# The VAT rate in percent as documents print it ("Mva 25 %") and EHF states it: the billing core's rate, the one
# definition, which computes every VAT amount.
VAT_RATE = Decimal(invoicing.VAT_RATE.numerator * 100) / Decimal(invoicing.VAT_RATE.denominator)

LineKind = Literal["setup", "subscription", "minimum", "termination_fee"]


@dataclass(frozen=True)
class Party:
    """Seller or buyer as printed: name, organisation number (9 digits), postal address, e-mail."""

    name: str
    org_number: str
    address_line: str
    postal_code: str
    city: str
    country_code: str = "NO"
    address_line_2: str = ""
    email: str = ""
    phone: str = ""
    peppol_participant: str = ""  # e.g. "0192:923609016"


@dataclass(frozen=True)
class DocumentLine:
    """One invoice line. Amounts ex. VAT; `month` is the first day of the month for monthly lines."""

    kind: LineKind
    description: str  # Norwegian, e.g. "Abonnement januar 2026 (10,97 brukermåneder)"
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    month: dt.date | None = None


@dataclass(frozen=True)
class BillingDocument:
    """An issued invoice or credit note.

    Amounts are positive on both kinds (a credit note's lines credit what they say). For a credit note,
    `credited_number` and `credited_issue_date` name the invoice it corrects.
    """

    kind: Literal["invoice", "credit_note"]
    number: str
    issue_date: dt.date
    due_date: dt.date | None  # None on credit notes
    period_start: dt.date
    period_end: dt.date
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...]
    net: Decimal
    vat: Decimal
    total: Decimal
    kid: str  # payment reference (KID, MOD10)
    bank_account: str  # seller's Norwegian account number, 11 digits
    buyer_reference: str = ""
    customer_number: str = ""
    currency: str = "NOK"
    vat_rate: Decimal = VAT_RATE
    credited_number: str = ""
    credited_issue_date: dt.date | None = None
    note: str = ""  # free text printed on the document (e.g. the reason for a credit note)
    extra: dict[str, str] = field(default_factory=dict)


def seller_from_settings() -> Party:
    return Party(
        name=settings.SELLER_NAME,
        org_number=settings.SELLER_ORG_NUMBER,
        address_line=settings.SELLER_ADDRESS_LINE,
        postal_code=settings.SELLER_POSTAL_CODE,
        city=settings.SELLER_CITY,
        country_code=settings.SELLER_COUNTRY_CODE,
        email=settings.SELLER_EMAIL,
        phone=settings.SELLER_PHONE,
        peppol_participant=f"0192:{settings.SELLER_ORG_NUMBER}",
    )


@dataclass(frozen=True)
class TerminationLetter:
    """The confirmation of a notice, as sent to the customer (billing.md, early-termination fee)."""

    seller: Party
    customer: Party
    customer_number: str
    letter_date: dt.date
    term_label: str  # e.g. "36 måneder" or "Ingen avtaletid"
    go_live: dt.date | None
    notice_received: dt.date
    effective_end: dt.date
    binding_end: dt.date | None
    average_users: Decimal  # 4 decimals
    remaining_months: Decimal  # 4 decimals
    monthly_price: Decimal
    fee: Decimal  # 0.00 when no fee applies
