"""EHF files for every kind of document we issue pass the official Peppol BIS Billing 3.0 validation.

The validation uses the vendored UBL 2.1 schema and the CEN and Peppol schematrons (vendor/peppol/README.md), so a
test here fails when the network would reject the file, not when our own idea of EHF changes.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from django.core.exceptions import ImproperlyConfigured
from lxml import etree

from billing.documents import BillingDocument, DocumentLine, LineKind, Party, seller_from_settings
from billing.ehf import CAC, CBC, EhfInvalid, assert_valid_ehf, build_ehf, validate_ehf

D = Decimal
JAN, FEB, MAR, APR, MAY, JUN, OCT = (dt.date(2026, month, 1) for month in (1, 2, 3, 4, 5, 6, 10))
NS = {"cac": CAC, "cbc": CBC}
KID = "10420100237"
BANK_ACCOUNT = "15037587378"

BUYER = Party(
    name="Fjellvegen Transport AS",
    org_number="987654325",
    address_line="Industriveien 12",
    postal_code="7080",
    city="Heimdal",
    email="faktura@fjellvegen.no",
)


def line(
    kind: LineKind, description: str, quantity: str, unit_price: str, amount: str, month: dt.date | None = None
) -> DocumentLine:
    return DocumentLine(kind, description, D(quantity), D(unit_price), D(amount), month)


def document(
    lines: Sequence[DocumentLine],
    *,
    kind: Literal["invoice", "credit_note"] = "invoice",
    period: tuple[dt.date, dt.date] = (dt.date(2026, 1, 15), dt.date(2026, 3, 31)),
    **overrides: Any,
) -> BillingDocument:
    """A document as the billing run issues it: net = Σ lines, VAT 25 % rounded half-up, total = net + VAT."""
    net = sum((item.amount for item in lines), D("0.00"))
    vat = (net * D("0.25")).quantize(D("0.01"), rounding=ROUND_HALF_UP)
    fields: dict[str, Any] = {
        "kind": kind,
        "number": "10023",
        "issue_date": dt.date(2026, 4, 1),
        "due_date": dt.date(2026, 4, 15) if kind == "invoice" else None,
        "period_start": period[0],
        "period_end": period[1],
        "seller": seller_from_settings(),
        "buyer": BUYER,
        "lines": tuple(lines),
        "net": net,
        "vat": vat,
        "total": net + vat,
        "kid": KID,
        "bank_account": BANK_ACCOUNT,
        "customer_number": "1042",
    } | overrides
    return BillingDocument(**fields)


# billing.md, example A, Q1: 24 months, go-live 2026-01-15, 20 users, 25 from February
FIRST_INVOICE_LINES = [
    line("setup", "Etablering", "1.00", "4000.00", "4000.00"),
    line("subscription", "Abonnement januar 2026 (10,97 brukermåneder)", "10.97", "11.00", "120.67", JAN),
    line("subscription", "Abonnement februar 2026 (25,00 brukermåneder)", "25.00", "11.00", "275.00", FEB),
    line("subscription", "Abonnement mars 2026 (25,00 brukermåneder)", "25.00", "11.00", "275.00", MAR),
]

# billing.md, example B: 8 users at kr 10, topped up to kr 200 a month; June with no users at all
MINIMUM_LINES = [
    line("subscription", "Abonnement april 2026 (8,00 brukermåneder)", "8.00", "10.00", "80.00", APR),
    line("minimum", "Minstebeløp april 2026", "1.00", "120.00", "120.00", APR),
    line("subscription", "Abonnement mai 2026 (8,00 brukermåneder)", "8.00", "10.00", "80.00", MAY),
    line("minimum", "Minstebeløp mai 2026", "1.00", "120.00", "120.00", MAY),
    line("subscription", "Abonnement juni 2026 (0,00 brukermåneder)", "0.00", "10.00", "0.00", JUN),
    line("minimum", "Minstebeløp juni 2026", "1.00", "200.00", "200.00", JUN),
]

# billing.md, example B: the last invoice, with the early-termination fee
LAST_INVOICE_LINES = [
    line("subscription", "Abonnement oktober 2026 (8,00 brukermåneder)", "8.00", "10.00", "80.00", OCT),
    line("minimum", "Minstebeløp oktober 2026", "1.00", "120.00", "120.00", OCT),
    line("termination_fee", "Gebyr for oppsigelse i avtaletiden (28,0000 måneder)", "1.00", "3360.00", "3360.00"),
]


def first_invoice() -> BillingDocument:
    return document(FIRST_INVOICE_LINES)


def minimum_invoice() -> BillingDocument:
    return document(MINIMUM_LINES, number="10031", period=(dt.date(2026, 4, 1), dt.date(2026, 6, 30)))


def last_invoice() -> BillingDocument:
    return document(LAST_INVOICE_LINES, number="10077", period=(dt.date(2026, 10, 1), dt.date(2026, 10, 31)))


def credit_note() -> BillingDocument:
    """Credits the February and March lines of the first invoice, e.g. after a wrong user count."""
    return document(
        FIRST_INVOICE_LINES[2:],
        kind="credit_note",
        number="K-1003",
        period=(dt.date(2026, 2, 1), dt.date(2026, 3, 31)),
        credited_number="10023",
        credited_issue_date=dt.date(2026, 4, 1),
        note="Kreditering av faktura 10023: feil antall brukere i februar og mars",
        kid="10420010032",
    )


def xpath_text(xml: bytes, path: str) -> list[str]:
    return [element.text for element in etree.fromstring(xml).xpath(path, namespaces=NS)]


def tampered(xml: bytes, path: str, text: str) -> bytes:
    root = etree.fromstring(xml)
    (element,) = root.xpath(path, namespaces=NS)
    element.text = text
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize(
    "make_document",
    [first_invoice, minimum_invoice, last_invoice, credit_note],
    ids=["setup-and-subscription", "minimum-top-up", "termination-fee", "credit-note"],
)
def test_every_document_kind_passes_the_peppol_validation_without_findings(
    make_document: Callable[[], BillingDocument],
) -> None:
    xml = build_ehf(make_document())

    assert validate_ehf(xml) == []
    assert assert_valid_ehf(xml) == []


def test_the_invoice_says_what_the_customer_pays_and_how():
    invoice = first_invoice()
    xml = build_ehf(invoice)

    assert xpath_text(xml, "/*/cbc:InvoiceTypeCode") == ["380"]
    assert xpath_text(xml, "/*/cbc:ID") == ["10023"]
    assert xpath_text(xml, "/*/cbc:DueDate") == ["2026-04-15"]
    assert xpath_text(xml, "//cac:PaymentMeans/cbc:PaymentMeansCode") == ["30"]
    assert xpath_text(xml, "//cac:PaymentMeans/cbc:PaymentID") == [KID]
    assert xpath_text(xml, "//cac:PayeeFinancialAccount/cbc:ID") == [BANK_ACCOUNT]
    assert xpath_text(xml, "//cac:LegalMonetaryTotal/cbc:PayableAmount") == ["5838.34"] == [str(invoice.total)]
    assert xpath_text(xml, "//cac:LegalMonetaryTotal/cbc:LineExtensionAmount") == ["4670.67"]
    assert xpath_text(xml, "/*/cac:TaxTotal/cbc:TaxAmount") == ["1167.67"]
    assert xpath_text(xml, "//cac:InvoiceLine/cbc:LineExtensionAmount") == ["4000.00", "120.67", "275.00", "275.00"]
    assert xpath_text(xml, "//cac:InvoiceLine/cbc:InvoicedQuantity") == ["1.00", "10.97", "25.00", "25.00"]
    assert xpath_text(xml, "//cac:InvoiceLine/cac:Item/cbc:Name")[1] == "Abonnement januar 2026 (10,97 brukermåneder)"
    assert "KID 10420100237" in xpath_text(xml, "//cac:PaymentTerms/cbc:Note")[0]


def test_it_addresses_both_parties_by_organisation_number():
    root = etree.fromstring(build_ehf(first_invoice()))

    (seller_endpoint,) = root.xpath("cac:AccountingSupplierParty/cac:Party/cbc:EndpointID", namespaces=NS)
    (buyer_endpoint,) = root.xpath("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", namespaces=NS)
    assert (seller_endpoint.get("schemeID"), seller_endpoint.text) == ("0192", seller_from_settings().org_number)
    assert (buyer_endpoint.get("schemeID"), buyer_endpoint.text) == ("0192", "987654325")
    tax_ids = root.xpath("cac:AccountingSupplierParty//cac:PartyTaxScheme/cbc:CompanyID/text()", namespaces=NS)
    assert tax_ids == [f"NO{seller_from_settings().org_number}MVA", "Foretaksregisteret"]


def test_it_uses_the_buyers_peppol_participant_when_it_has_one():
    buyer = Party(**(vars(BUYER) | {"peppol_participant": "0192:923609016"}))
    root = etree.fromstring(build_ehf(document(FIRST_INVOICE_LINES, buyer=buyer)))

    (endpoint,) = root.xpath("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", namespaces=NS)
    assert (endpoint.get("schemeID"), endpoint.text) == ("0192", "923609016")


def test_the_buyer_reference_falls_back_to_the_customer_number():
    assert xpath_text(build_ehf(first_invoice()), "/*/cbc:BuyerReference") == ["1042"]
    with_reference = document(FIRST_INVOICE_LINES, buyer_reference="Prosjekt 4471 / Kari Nordmann")
    assert xpath_text(build_ehf(with_reference), "/*/cbc:BuyerReference") == ["Prosjekt 4471 / Kari Nordmann"]


def test_monthly_lines_carry_the_billed_days_of_their_month():
    root = etree.fromstring(build_ehf(first_invoice()))

    periods = [
        (period.findtext("cbc:StartDate", namespaces=NS), period.findtext("cbc:EndDate", namespaces=NS))
        if (period := invoice_line.find("cac:InvoicePeriod", namespaces=NS)) is not None
        else None
        for invoice_line in root.iterfind("cac:InvoiceLine", namespaces=NS)
    ]
    assert periods == [
        None,  # setup
        ("2026-01-15", "2026-01-31"),  # go-live on the 15th
        ("2026-02-01", "2026-02-28"),
        ("2026-03-01", "2026-03-31"),
    ]


def test_a_credit_note_refers_to_the_invoice_it_credits():
    note = credit_note()
    xml = build_ehf(note)

    assert etree.QName(etree.fromstring(xml)).localname == "CreditNote"
    assert xpath_text(xml, "/*/cbc:CreditNoteTypeCode") == ["381"]
    assert xpath_text(xml, "//cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == ["10023"]
    assert xpath_text(xml, "//cac:BillingReference/cac:InvoiceDocumentReference/cbc:IssueDate") == ["2026-04-01"]
    assert xpath_text(xml, "/*/cbc:Note") == [note.note]
    assert xpath_text(xml, "//cac:CreditNoteLine/cbc:CreditedQuantity") == ["25.00", "25.00"]
    assert xpath_text(xml, "//cac:LegalMonetaryTotal/cbc:PayableAmount") == ["687.50"] == [str(note.total)]
    assert xpath_text(xml, "/*/cbc:DueDate") == []


def test_it_rejects_a_wrong_total_with_vat():
    xml = tampered(build_ehf(first_invoice()), "//cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount", "5838.43")

    with pytest.raises(EhfInvalid) as raised:
        assert_valid_ehf(xml)

    rule_ids = {finding.rule_id for finding in raised.value.findings}
    assert "BR-CO-15" in rule_ids
    assert {finding.flag for finding in raised.value.findings} == {"fatal"}
    assert "BR-CO-15" in str(raised.value)


def test_it_rejects_a_seller_vat_id_without_mva():
    xml = tampered(
        build_ehf(first_invoice()),
        "//cac:AccountingSupplierParty//cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID",
        f"NO{seller_from_settings().org_number}",
    )

    findings = validate_ehf(xml)

    assert [(finding.rule_id, finding.flag) for finding in findings] == [("NO-R-001", "fatal")]
    with pytest.raises(EhfInvalid, match="NO-R-001"):
        assert_valid_ehf(xml)


def test_it_returns_warnings_without_rejecting_the_file():
    xml = tampered(
        build_ehf(first_invoice()),
        "//cac:AccountingSupplierParty//cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='TAX']/cbc:CompanyID",
        "Aksjeselskap",
    )

    warnings = assert_valid_ehf(xml)

    assert [(finding.rule_id, finding.flag) for finding in warnings] == [("NO-R-002", "warning")]


def test_it_reports_elements_out_of_order_as_a_schema_finding_and_stops_there():
    root = etree.fromstring(build_ehf(first_invoice()))
    (buyer_reference,) = root.xpath("cbc:BuyerReference", namespaces=NS)
    root.remove(buyer_reference)
    root.insert(0, buyer_reference)  # before CustomizationID
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    findings = validate_ehf(xml)

    assert findings
    assert {finding.flag for finding in findings} == {"schema"}
    assert any("BuyerReference" in finding.text for finding in findings)
    with pytest.raises(EhfInvalid):
        assert_valid_ehf(xml)


def test_it_reports_a_file_that_is_not_xml_instead_of_crashing():
    (finding,) = validate_ehf(b"<Invoice><ID>10023</Invoice>")

    assert (finding.rule_id, finding.flag) == ("XML", "schema")
    assert finding.text.startswith("Not well-formed XML")


def test_it_refuses_amounts_with_more_than_two_decimals():
    lines = [line("setup", "Etablering", "1.00", "4000.00", "4000.005")]

    with pytest.raises(ValueError, match="more than two decimals"):
        build_ehf(document(lines, net=D("4000.00"), vat=D("1000.00"), total=D("5000.00")))


def test_it_rejects_a_buyer_organisation_number_with_a_wrong_check_digit():
    buyer = Party(**(vars(BUYER) | {"org_number": "987654321"}))

    with pytest.raises(EhfInvalid, match="PEPPOL-COMMON-R041"):
        assert_valid_ehf(build_ehf(document(FIRST_INVOICE_LINES, buyer=buyer)))


def test_it_says_where_the_validation_rules_are_missing(settings: Any, tmp_path: Path) -> None:
    settings.PEPPOL_RULES_DIR = tmp_path

    with pytest.raises(ImproperlyConfigured, match="PEPPOL_RULES_DIR"):
        validate_ehf(build_ehf(first_invoice()))
