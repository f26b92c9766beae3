"""The invoice, credit note and termination letter PDFs say what an accountant and a customer need to read.

The documents are built by hand from billing.md's worked examples A and B (no database), rendered with
WeasyPrint, and read back with pypdf.
"""

import dataclasses
import datetime as dt
import io
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.test import override_settings
from pypdf import PdfReader

from billing.documents import BillingDocument, DocumentLine, Party, TerminationLetter, seller_from_settings
from billing.pdf import render_document_pdf, render_termination_letter_pdf

D = dt.date
A4_POINTS = (595.28, 841.89)

SELLER_SETTINGS = {
    "SELLER_NAME": "Nettsoft AS",
    "SELLER_ORG_NUMBER": "918273646",
    "SELLER_ADDRESS_LINE": "Kongens gate 1",
    "SELLER_POSTAL_CODE": "0153",
    "SELLER_CITY": "Oslo",
    "SELLER_COUNTRY_CODE": "NO",
    "SELLER_EMAIL": "faktura@nettsoft.no",
    "SELLER_PHONE": "+47 22 00 00 00",
}


def pdf_pages(pdf: bytes) -> list[str]:
    """Each page's text with every run of whitespace (non-breaking spaces, line breaks) as one space."""
    reader = PdfReader(io.BytesIO(pdf))
    return [re.sub(r"\s+", " ", page.extract_text()).strip() for page in reader.pages]


def pdf_text(pdf: bytes) -> str:
    return " ".join(pdf_pages(pdf))


@pytest.fixture(scope="module")
def seller() -> Iterator[Party]:
    with override_settings(**SELLER_SETTINGS):
        yield seller_from_settings()


@pytest.fixture(scope="module")
def buyer() -> Party:
    return Party(
        name="Fjordtre Rørlegger AS",
        org_number="987654325",
        address_line="Strandveien 12",
        address_line_2="Postboks 44",
        postal_code="7010",
        city="Trondheim",
        email="faktura@fjordtre.no",
    )


@pytest.fixture(scope="module")
def first_invoice(seller: Party, buyer: Party) -> BillingDocument:
    """billing.md example A, Q1 2026: 24 months, go-live 2026-01-15, 20 users, 25 from February."""
    return BillingDocument(
        kind="invoice",
        number="10001",
        issue_date=D(2026, 4, 1),
        due_date=D(2026, 4, 15),
        period_start=D(2026, 1, 15),
        period_end=D(2026, 3, 31),
        seller=seller,
        buyer=buyer,
        lines=(
            DocumentLine("setup", "Etablering", Decimal("1.00"), Decimal("4000.00"), Decimal("4000.00")),
            DocumentLine(
                "subscription",
                "Abonnement januar 2026 (10,97 brukermåneder)",
                Decimal("10.97"),
                Decimal("11.00"),
                Decimal("120.67"),
                D(2026, 1, 1),
            ),
            DocumentLine(
                "subscription",
                "Abonnement februar 2026 (25,00 brukermåneder)",
                Decimal("25.00"),
                Decimal("11.00"),
                Decimal("275.00"),
                D(2026, 2, 1),
            ),
            DocumentLine(
                "subscription",
                "Abonnement mars 2026 (25,00 brukermåneder)",
                Decimal("25.00"),
                Decimal("11.00"),
                Decimal("275.00"),
                D(2026, 3, 1),
            ),
        ),
        net=Decimal("4670.67"),
        vat=Decimal("1167.67"),
        total=Decimal("5838.34"),
        kid="10042100015",
        bank_account="15037587378",
        buyer_reference="Kari Nordmann",
        customer_number="10042",
    )


@pytest.fixture(scope="module")
def final_invoice(seller: Party, buyer: Party) -> BillingDocument:
    """billing.md example B's last invoice: 8 users on 36 months, topped up to kr 200, and the fee."""
    return BillingDocument(
        kind="invoice",
        number="10007",
        issue_date=D(2027, 1, 1),
        due_date=D(2027, 1, 15),
        period_start=D(2026, 10, 1),
        period_end=D(2026, 10, 31),
        seller=seller,
        buyer=buyer,
        lines=(
            DocumentLine(
                "subscription",
                "Abonnement oktober 2026 (8,00 brukermåneder)",
                Decimal("8.00"),
                Decimal("10.00"),
                Decimal("80.00"),
                D(2026, 10, 1),
            ),
            DocumentLine(
                "minimum",
                "Minstebeløp oktober 2026",
                Decimal("1.00"),
                Decimal("120.00"),
                Decimal("120.00"),
                D(2026, 10, 1),
            ),
            DocumentLine(
                "termination_fee",
                "Gebyr ved oppsigelse i bindingstiden",
                Decimal("1.00"),
                Decimal("3360.00"),
                Decimal("3360.00"),
            ),
        ),
        net=Decimal("3560.00"),
        vat=Decimal("890.00"),
        total=Decimal("4450.00"),
        kid="10042100072",
        bank_account="15037587378",
        customer_number="10042",
    )


@pytest.fixture(scope="module")
def credit_note(first_invoice: BillingDocument) -> BillingDocument:
    return dataclasses.replace(
        first_invoice,
        kind="credit_note",
        number="501",
        issue_date=D(2026, 4, 20),
        due_date=None,
        kid="",
        credited_number="10001",
        credited_issue_date=D(2026, 4, 1),
        note="Feil brukertall i februar og mars. Ny faktura sendes.",
    )


@pytest.fixture(scope="module")
def letter_with_fee(seller: Party, buyer: Party) -> TerminationLetter:
    """billing.md example C: 12 months, go-live 2025-02-10, notice 2025-08-20."""
    return TerminationLetter(
        seller=seller,
        customer=buyer,
        customer_number="10042",
        letter_date=D(2025, 8, 21),
        term_label="12 måneder",
        go_live=D(2025, 2, 10),
        notice_received=D(2025, 8, 20),
        effective_end=D(2025, 11, 30),
        binding_end=D(2026, 2, 9),
        average_users=Decimal("30.3141"),
        remaining_months=Decimal("2.3214"),
        monthly_price=Decimal("12.00"),
        fee=Decimal("506.68"),
    )


@pytest.fixture(scope="module")
def first_invoice_text(first_invoice: BillingDocument) -> str:
    return pdf_text(render_document_pdf(first_invoice))


@pytest.fixture(scope="module")
def credit_note_text(credit_note: BillingDocument) -> str:
    return pdf_text(render_document_pdf(credit_note))


@pytest.fixture(scope="module")
def letter_with_fee_text(letter_with_fee: TerminationLetter) -> str:
    return pdf_text(render_termination_letter_pdf(letter_with_fee))


# The invoice


def test_it_renders_an_invoice_as_a_one_page_a4_pdf(first_invoice: BillingDocument) -> None:
    pdf = render_document_pdf(first_invoice)

    reader = PdfReader(io.BytesIO(pdf))
    assert pdf.startswith(b"%PDF-")
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width), 2), round(float(box.height), 2)) == A4_POINTS
    assert reader.metadata is not None and reader.metadata.title == "Faktura 10001"


def test_the_invoice_names_the_seller_as_the_accounting_rules_require(first_invoice_text: str) -> None:
    assert "Nettsoft AS" in first_invoice_text
    assert "Kongens gate 1" in first_invoice_text
    assert "0153 Oslo" in first_invoice_text
    assert "Org.nr. 918 273 646 MVA" in first_invoice_text
    assert "Foretaksregisteret" in first_invoice_text
    assert "faktura@nettsoft.no" in first_invoice_text
    assert "+47 22 00 00 00" in first_invoice_text


def test_the_invoice_names_the_buyer_with_address_and_org_number(first_invoice_text: str) -> None:
    assert "Fjordtre Rørlegger AS Strandveien 12 Postboks 44 7010 Trondheim Org.nr. 987 654 325" in first_invoice_text


def test_the_invoice_shows_number_dates_period_customer_number_and_reference(first_invoice_text: str) -> None:
    assert "Faktura Nr. 10001" in first_invoice_text
    assert "Fakturanr. 10001" in first_invoice_text
    assert "Fakturadato 01.04.2026" in first_invoice_text
    assert "Forfallsdato 15.04.2026" in first_invoice_text
    assert "Periode 15.01.2026–31.03.2026" in first_invoice_text
    assert "Kundenr. 10042" in first_invoice_text
    assert "Deres ref. Kari Nordmann" in first_invoice_text


def test_each_invoice_line_shows_quantity_unit_price_and_amount(first_invoice_text: str) -> None:
    assert "Beskrivelse Antall Pris Beløp".upper() in first_invoice_text.upper()
    assert "Etablering 1,00 4 000,00 4 000,00" in first_invoice_text
    assert "Abonnement januar 2026 (10,97 brukermåneder) 10,97 11,00 120,67" in first_invoice_text
    assert "Abonnement februar 2026 (25,00 brukermåneder) 25,00 11,00 275,00" in first_invoice_text
    assert "Abonnement mars 2026 (25,00 brukermåneder) 25,00 11,00 275,00" in first_invoice_text


def test_the_invoice_totals_show_net_vat_per_rate_and_the_amount_due(first_invoice_text: str) -> None:
    assert "Sum eks. mva kr 4 670,67" in first_invoice_text
    assert "Mva 25 % av kr 4 670,67 kr 1 167,67" in first_invoice_text
    assert "Å betale kr 5 838,34" in first_invoice_text


def test_the_invoice_asks_for_payment_with_account_kid_and_due_date(first_invoice_text: str) -> None:
    assert "Kontonummer 1503.75.87378".upper() in first_invoice_text.upper()
    assert "KID 10042100015" in first_invoice_text
    assert "FORFALLSDATO 15.04.2026" in first_invoice_text
    assert "Å BETALE kr 5 838,34" in first_invoice_text


def test_the_final_invoice_shows_the_minimum_top_up_and_the_termination_fee(final_invoice: BillingDocument) -> None:
    text = pdf_text(render_document_pdf(final_invoice))

    assert "Periode 01.10.2026–31.10.2026" in text
    assert "Abonnement oktober 2026 (8,00 brukermåneder) 8,00 10,00 80,00" in text
    assert "Minstebeløp oktober 2026 1,00 120,00 120,00" in text
    assert "Gebyr ved oppsigelse i bindingstiden 1,00 3 360,00 3 360,00" in text
    assert "Sum eks. mva kr 3 560,00" in text
    assert "Mva 25 % av kr 3 560,00 kr 890,00" in text
    assert "Å betale kr 4 450,00" in text
    assert "KID 10042100072" in text
    # No reference or note was given: no empty labels.
    assert "Deres ref." not in text
    assert "Merknad" not in text


def test_a_long_invoice_carries_its_number_and_page_count_on_every_page(first_invoice: BillingDocument) -> None:
    line = first_invoice.lines[1]
    long_invoice = dataclasses.replace(first_invoice, lines=(line,) * 60)

    pages = pdf_pages(render_document_pdf(long_invoice))

    assert len(pages) > 1
    for number, page in enumerate(pages, start=1):
        assert f"Faktura 10001 · Side {number} av {len(pages)}" in page
        assert "Org.nr. 918 273 646 MVA · Foretaksregisteret" in page
    assert "Å betale kr 5 838,34" in pages[-1]


def test_it_escapes_text_from_the_customer_record(first_invoice: BillingDocument) -> None:
    buyer = dataclasses.replace(first_invoice.buyer, name="Hansen & Sønn <Elektro> AS")
    text = pdf_text(render_document_pdf(dataclasses.replace(first_invoice, buyer=buyer)))

    assert "Hansen & Sønn <Elektro> AS" in text
    assert "&amp;" not in text


def test_it_prints_a_foreign_buyers_country(first_invoice: BillingDocument) -> None:
    buyer = Party(
        name="Fjällbacka Rör AB",
        org_number="",
        address_line="Storgatan 3",
        postal_code="45071",
        city="Fjällbacka",
        country_code="SE",
    )
    text = pdf_text(render_document_pdf(dataclasses.replace(first_invoice, buyer=buyer)))

    assert "Fjällbacka Rör AB Storgatan 3 45071 Fjällbacka SE" in text
    assert "Org.nr. 987 654 325" not in text


def test_it_refuses_to_print_an_amount_in_another_currency(first_invoice: BillingDocument) -> None:
    with pytest.raises(ValueError, match="Only NOK"):
        render_document_pdf(dataclasses.replace(first_invoice, currency="EUR"))


# The credit note


def test_the_credit_note_is_headed_and_numbered_as_a_credit_note(credit_note: BillingDocument) -> None:
    pdf = render_document_pdf(credit_note)
    text = pdf_text(pdf)

    assert "Kreditnota Nr. 501" in text
    assert "Kreditnotanr. 501" in text
    assert "Kreditnotadato 20.04.2026" in text
    assert "Faktura Nr." not in text
    assert "Fakturanr." not in text
    assert "Fakturadato" not in text
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.metadata is not None and reader.metadata.title == "Kreditnota 501"


def test_the_credit_note_refers_to_the_invoice_and_gives_the_reason(credit_note_text: str) -> None:
    assert "Gjelder faktura 10001 av 01.04.2026" in credit_note_text
    assert "Feil brukertall i februar og mars. Ny faktura sendes." in credit_note_text


def test_the_credit_note_shows_parties_lines_and_credited_totals(credit_note_text: str) -> None:
    assert "Org.nr. 918 273 646 MVA" in credit_note_text
    assert "Foretaksregisteret" in credit_note_text
    assert "Fjordtre Rørlegger AS Strandveien 12 Postboks 44 7010 Trondheim Org.nr. 987 654 325" in credit_note_text
    assert "Periode 15.01.2026–31.03.2026" in credit_note_text
    assert "Etablering 1,00 4 000,00 4 000,00" in credit_note_text
    assert "Sum kreditert eks. mva kr 4 670,67" in credit_note_text
    assert "Kreditert mva 25 % av kr 4 670,67 kr 1 167,67" in credit_note_text
    assert "Totalt kreditert kr 5 838,34" in credit_note_text


def test_the_credit_note_asks_for_no_payment(credit_note_text: str) -> None:
    assert "skal ikke betales" in credit_note_text
    assert "Å betale" not in credit_note_text
    assert "Forfallsdato" not in credit_note_text
    assert "KID" not in credit_note_text
    assert "Kontonummer".upper() not in credit_note_text.upper()
    assert "1503.75.87378" not in credit_note_text


# The termination letter


def test_the_letter_confirms_the_notice_and_its_dates(letter_with_fee_text: str) -> None:
    text = letter_with_fee_text

    assert "Bekreftelse på oppsigelse" in text
    assert "Fjordtre Rørlegger AS Strandveien 12 Postboks 44 7010 Trondheim" in text
    assert "Dato 21.08.2025" in text
    assert "Kundenr. 10042" in text
    assert "Avtaletid 12 måneder" in text
    assert "Tjenesten satt i drift 10.02.2025" in text
    assert "Oppsigelse mottatt 20.08.2025" in text
    assert "Tjenesten opphører 30.11.2025" in text
    assert "Bindingstid til og med 09.02.2026" in text
    assert "Org.nr. 918 273 646 MVA" in text


def test_the_letter_shows_how_the_fee_is_computed(letter_with_fee_text: str) -> None:
    text = letter_with_fee_text

    assert "60 % × maks(gjennomsnittlig antall brukere × pris per bruker, kr 200,00) × gjenværende måneder" in text
    assert "Gjennomsnittlig antall brukere 10.02.2025–19.08.2025 30,3141" in text
    assert "Månedskostnad 30,3141 × kr 12,00 = kr 363,77 kr 363,77" in text
    assert "Gjenværende måneder 01.12.2025–09.02.2026 2,3214" in text
    assert "Gebyr: 60 % × kr 363,77 × 2,3214 kr 506,68" in text
    assert "Gebyret på kr 506,68 eks. mva kommer på sluttfakturaen." in text
    assert "ikke gebyr" not in text


def test_the_letter_reminds_the_customer_to_cancel_the_telenor_subscription(letter_with_fee_text: str) -> None:
    assert "Husk å si opp Telenor API-abonnementet selv" in letter_with_fee_text
    assert "«Tilknytning Nettsoft Calendar Push»" in letter_with_fee_text
    assert "dere må selv si opp abonnementet hos Telenor" in letter_with_fee_text


def test_the_letter_fits_on_one_a4_page(letter_with_fee: TerminationLetter) -> None:
    reader = PdfReader(io.BytesIO(render_termination_letter_pdf(letter_with_fee)))

    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width), 2), round(float(box.height), 2)) == A4_POINTS


def test_the_letter_shows_the_minimum_when_few_users_are_left(letter_with_fee: TerminationLetter) -> None:
    # billing.md example B: 8 users on 36 months, notice 2026-10-12.
    letter = dataclasses.replace(
        letter_with_fee,
        letter_date=D(2026, 10, 13),
        term_label="36 måneder",
        go_live=D(2026, 3, 1),
        notice_received=D(2026, 10, 12),
        effective_end=D(2026, 10, 31),
        binding_end=D(2029, 2, 28),
        average_users=Decimal("8.0000"),
        remaining_months=Decimal("28.0000"),
        monthly_price=Decimal("10.00"),
        fee=Decimal("3360.00"),
    )
    text = pdf_text(render_termination_letter_pdf(letter))

    assert "Månedskostnad 8,0000 × kr 10,00 = kr 80,00 (under minstebeløpet) kr 200,00" in text
    assert "Gjenværende måneder 01.11.2026–28.02.2029 28,0000" in text
    assert "Gebyr: 60 % × kr 200,00 × 28,0000 kr 3 360,00" in text
    assert "Tjenesten opphører 31.10.2026" in text


def test_the_letter_says_there_is_no_fee_without_a_term(letter_with_fee: TerminationLetter) -> None:
    # billing.md example D: no term, notice 2026-05-05.
    letter = dataclasses.replace(
        letter_with_fee,
        letter_date=D(2026, 5, 6),
        term_label="Ingen avtaletid",
        go_live=D(2026, 2, 1),
        notice_received=D(2026, 5, 5),
        effective_end=D(2026, 9, 30),
        binding_end=None,
        average_users=Decimal("30.0000"),
        remaining_months=Decimal("0.0000"),
        monthly_price=Decimal("15.00"),
        fee=Decimal("0.00"),
    )
    text = pdf_text(render_termination_letter_pdf(letter))

    assert "Det påløper ikke gebyr ved denne oppsigelsen. Avtalen har ingen bindingstid." in text
    assert "Bindingstid til og med Ingen bindingstid" in text
    assert "Tjenesten opphører 30.09.2026" in text
    assert "Gebyr ved oppsigelse i bindingstiden" not in text
    assert "sluttfakturaen" not in text
    assert "«Tilknytning Nettsoft Calendar Push»" in text


def test_the_letter_says_there_is_no_fee_after_the_original_term(letter_with_fee: TerminationLetter) -> None:
    letter = dataclasses.replace(
        letter_with_fee,
        notice_received=D(2026, 3, 2),
        letter_date=D(2026, 3, 3),
        effective_end=D(2026, 6, 30),
        remaining_months=Decimal("0.0000"),
        fee=Decimal("0.00"),
    )
    text = pdf_text(render_termination_letter_pdf(letter))

    assert "Det påløper ikke gebyr ved denne oppsigelsen." in text
    assert "Oppsigelsen er mottatt etter at den opprinnelige avtaletiden er utløpt." in text
    assert "Bindingstid til og med 09.02.2026" in text
    assert "Husk å si opp Telenor API-abonnementet selv" in text


def test_the_letter_promises_no_invoice_when_the_service_ends_before_it_starts(
    letter_with_fee: TerminationLetter,
) -> None:
    letter = dataclasses.replace(
        letter_with_fee,
        term_label="36 måneder",
        go_live=None,
        notice_received=D(2025, 8, 20),
        effective_end=D(2025, 8, 31),
        binding_end=None,
        average_users=Decimal("0.0000"),
        remaining_months=Decimal("0.0000"),
        fee=Decimal("0.00"),
    )
    text = pdf_text(render_termination_letter_pdf(letter))

    assert "Den opphører før den er satt i drift, så det blir ingen faktura." in text
    assert "Tjenesten satt i drift Ikke satt i drift" in text
    assert "Bindingstid til og med Regnes fra driftsstart" in text
    assert "Det påløper ikke gebyr ved denne oppsigelsen. Tjenesten opphører før den er satt i drift." in text
    assert "faktureres abonnementet som før" not in text
    assert "Avtalen har ingen bindingstid" not in text
    assert "«Tilknytning Nettsoft Calendar Push»" in text


def test_the_printed_vat_rate_is_the_rate_the_billing_core_computes_vat_with() -> None:
    from fractions import Fraction

    from billing.core.invoicing import VAT_RATE as core_rate
    from billing.documents import VAT_RATE as printed_percent

    assert Fraction(printed_percent) / 100 == core_rate
    assert BillingDocument.__dataclass_fields__["vat_rate"].default == printed_percent
