"""EHF Billing 3.0 (= Peppol BIS Billing 3.0, UBL 2.1) files for issued invoices and credit notes, and their validation.

`build_ehf` turns a `BillingDocument` into the XML sent over Peppol. `validate_ehf` checks a file with the official
artefacts in `settings.PEPPOL_RULES_DIR` (vendor/peppol/README.md): the UBL 2.1 schema, then the CEN EN 16931 and
Peppol schematrons, so "valid" means what the Peppol network means. `assert_valid_ehf` is the gate before sending.
"""

import calendar
import datetime as dt
import threading
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from lxml import etree
from saxonche import PySaxonProcessor

from billing.documents import BillingDocument, DocumentLine, Party

CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
SVRL = "http://purl.oclc.org/dsdl/svrl"

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
ORG_NUMBER_SCHEME = "0192"  # ISO 6523 ICD of the Norwegian organisation number (Enhetsregisteret)
UNIT_CODE = "C62"  # UN/ECE rec. 20 "one"
CREDIT_TRANSFER = "30"  # UNCL 4461 payment means code
STANDARD_RATE = "S"  # UNCL 5305 VAT category

BIS_RELEASE = "bis-3.0.21"  # the folder under PEPPOL_RULES_DIR; OpenPeppol publishes new rules each May and November
SCHEMATRONS = ("CEN-EN16931-UBL.xslt", "PEPPOL-EN16931-UBL.xslt")  # run in this order
CENT = Decimal("0.01")


@dataclass(frozen=True)
class _Kind:
    """What differs between a UBL Invoice and a UBL CreditNote."""

    root: str
    namespace: str
    schema_file: str
    type_code_element: str
    type_code: str
    line_element: str
    quantity_element: str


INVOICE = _Kind(
    root="Invoice",
    namespace="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    schema_file="UBL-Invoice-2.1.xsd",
    type_code_element="InvoiceTypeCode",
    type_code="380",
    line_element="InvoiceLine",
    quantity_element="InvoicedQuantity",
)
CREDIT_NOTE = _Kind(
    root="CreditNote",
    namespace="urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
    schema_file="UBL-CreditNote-2.1.xsd",
    type_code_element="CreditNoteTypeCode",
    type_code="381",
    line_element="CreditNoteLine",
    quantity_element="CreditedQuantity",
)
KINDS = {"invoice": INVOICE, "credit_note": CREDIT_NOTE}


# --- building -------------------------------------------------------------------------------------------------------


def build_ehf(document: BillingDocument) -> bytes:
    """The document as a UTF-8 EHF Billing 3.0 Invoice or CreditNote, elements in the UBL 2.1 schema's order."""
    kind = KINDS[document.kind]
    root = etree.Element(f"{{{kind.namespace}}}{kind.root}", nsmap={None: kind.namespace, "cac": CAC, "cbc": CBC})
    _add_header(root, document, kind)
    _add_party(_cac(root, "AccountingSupplierParty"), document.seller, is_seller=True)
    _add_party(_cac(root, "AccountingCustomerParty"), document.buyer, is_seller=False)
    _add_payment(root, document)
    _add_tax_total(root, document)
    _add_monetary_total(root, document)
    for position, line in enumerate(document.lines, start=1):
        _add_line(root, position, line, document, kind)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _add_header(root: etree._Element, document: BillingDocument, kind: _Kind) -> None:
    _cbc(root, "CustomizationID", CUSTOMIZATION_ID)
    _cbc(root, "ProfileID", PROFILE_ID)
    _cbc(root, "ID", document.number)
    _cbc(root, "IssueDate", document.issue_date.isoformat())
    if kind is INVOICE and document.due_date is not None:
        _cbc(root, "DueDate", document.due_date.isoformat())
    _cbc(root, kind.type_code_element, kind.type_code)
    _optional_cbc(root, "Note", document.note)
    _cbc(root, "DocumentCurrencyCode", document.currency)
    _cbc(root, "BuyerReference", _buyer_reference(document))
    _add_period(root, document.period_start, document.period_end)
    if kind is CREDIT_NOTE:
        _add_billing_reference(root, document)


def _buyer_reference(document: BillingDocument) -> str:
    """Peppol requires a buyer reference (PEPPOL-EN16931-R003); without the customer's own, our customer number."""
    reference = document.buyer_reference or document.customer_number
    if not reference:
        raise ValueError(
            f"{document.number}: an EHF file needs a buyer reference; set the customer's reference or customer number"
        )
    return reference


def _add_billing_reference(root: etree._Element, document: BillingDocument) -> None:
    if not document.credited_number:
        raise ValueError(f"Credit note {document.number} does not name the invoice it credits (credited_number)")
    reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
    _cbc(reference, "ID", document.credited_number)
    if document.credited_issue_date is not None:
        _cbc(reference, "IssueDate", document.credited_issue_date.isoformat())


def _add_period(parent: etree._Element, start: dt.date, end: dt.date) -> None:
    period = _cac(parent, "InvoicePeriod")
    _cbc(period, "StartDate", start.isoformat())
    _cbc(period, "EndDate", end.isoformat())


def _add_party(role: etree._Element, party: Party, *, is_seller: bool) -> None:
    """The seller (with VAT and Foretaksregisteret registrations) or the buyer, under its role element."""
    element = _cac(role, "Party")
    scheme, identifier = peppol_participant(party)
    _cbc(element, "EndpointID", identifier, schemeID=scheme)
    _cbc(_cac(element, "PartyName"), "Name", party.name)
    _add_postal_address(element, party)
    if is_seller:
        _add_tax_scheme(element, f"NO{party.org_number}MVA", "VAT")
        _add_tax_scheme(element, "Foretaksregisteret", "TAX")  # NO-R-002: the seller is an AS
    legal_entity = _cac(element, "PartyLegalEntity")
    _cbc(legal_entity, "RegistrationName", party.name)
    _cbc(legal_entity, "CompanyID", party.org_number, schemeID=ORG_NUMBER_SCHEME)
    _add_contact(element, party)


def peppol_participant(party: Party) -> tuple[str, str]:
    """The party's Peppol address as (scheme, identifier): from `peppol_participant`, else its org number."""
    participant = party.peppol_participant.strip().removeprefix("iso6523-actorid-upis::")
    if not participant:
        return ORG_NUMBER_SCHEME, party.org_number
    scheme, _, identifier = participant.partition(":")
    if not scheme or not identifier:
        raise ValueError(
            f"The Peppol participant {party.peppol_participant!r} of {party.name} is not 'scheme:identifier', "
            f"e.g. '0192:{party.org_number}'"
        )
    return scheme, identifier


def _add_postal_address(parent: etree._Element, party: Party) -> None:
    address = _cac(parent, "PostalAddress")
    _optional_cbc(address, "StreetName", party.address_line)
    _optional_cbc(address, "AdditionalStreetName", party.address_line_2)
    _optional_cbc(address, "CityName", party.city)
    _optional_cbc(address, "PostalZone", party.postal_code)
    _cbc(_cac(address, "Country"), "IdentificationCode", party.country_code)


def _add_tax_scheme(parent: etree._Element, company_id: str, scheme: str) -> None:
    tax_scheme = _cac(parent, "PartyTaxScheme")
    _cbc(tax_scheme, "CompanyID", company_id)
    _cbc(_cac(tax_scheme, "TaxScheme"), "ID", scheme)


def _add_contact(parent: etree._Element, party: Party) -> None:
    if not (party.phone or party.email):
        return
    contact = _cac(parent, "Contact")
    _optional_cbc(contact, "Telephone", party.phone)
    _optional_cbc(contact, "ElectronicMail", party.email)


def _add_payment(root: etree._Element, document: BillingDocument) -> None:
    """Credit transfer to our account with the KID; on invoices also the terms in words."""
    means = _cac(root, "PaymentMeans")
    _cbc(means, "PaymentMeansCode", CREDIT_TRANSFER)
    _optional_cbc(means, "PaymentID", document.kid)
    _cbc(_cac(means, "PayeeFinancialAccount"), "ID", document.bank_account)
    if document.kind == "invoice" and document.due_date is not None:
        _cbc(_cac(root, "PaymentTerms"), "Note", _payment_terms(document, document.due_date))


def _payment_terms(document: BillingDocument, due_date: dt.date) -> str:
    days = (due_date - document.issue_date).days
    payment = f"Betal til konto {document.bank_account} med KID {document.kid}."
    return f"Netto {days} dager, forfall {due_date:%d.%m.%Y}. {payment}"


def _add_tax_total(root: etree._Element, document: BillingDocument) -> None:
    tax_total = _cac(root, "TaxTotal")
    _amount(tax_total, "TaxAmount", document.vat, document.currency)
    subtotal = _cac(tax_total, "TaxSubtotal")
    _amount(subtotal, "TaxableAmount", document.net, document.currency)
    _amount(subtotal, "TaxAmount", document.vat, document.currency)
    _add_tax_category(subtotal, "TaxCategory", document.vat_rate)


def _add_tax_category(parent: etree._Element, element_name: str, rate: Decimal) -> None:
    category = _cac(parent, element_name)
    _cbc(category, "ID", STANDARD_RATE)
    _cbc(category, "Percent", f"{rate.normalize():f}")
    _cbc(_cac(category, "TaxScheme"), "ID", "VAT")


def _add_monetary_total(root: etree._Element, document: BillingDocument) -> None:
    totals = _cac(root, "LegalMonetaryTotal")
    _amount(totals, "LineExtensionAmount", document.net, document.currency)
    _amount(totals, "TaxExclusiveAmount", document.net, document.currency)
    _amount(totals, "TaxInclusiveAmount", document.total, document.currency)
    _amount(totals, "PayableAmount", document.total, document.currency)


def _add_line(root: etree._Element, position: int, line: DocumentLine, document: BillingDocument, kind: _Kind) -> None:
    element = _cac(root, kind.line_element)
    _cbc(element, "ID", str(position))
    _cbc(element, kind.quantity_element, f"{line.quantity:f}", unitCode=UNIT_CODE)
    _amount(element, "LineExtensionAmount", line.amount, document.currency)
    if line.month is not None:
        _add_period(element, *_billed_days_of_month(line.month, document))
    item = _cac(element, "Item")
    _cbc(item, "Name", line.description)
    _add_tax_category(item, "ClassifiedTaxCategory", document.vat_rate)
    _amount(_cac(element, "Price"), "PriceAmount", line.unit_price, document.currency)


def _billed_days_of_month(month: dt.date, document: BillingDocument) -> tuple[dt.date, dt.date]:
    """The part of a monthly line's month that the document covers (Peppol: within the document's period)."""
    month_end = month.replace(day=calendar.monthrange(month.year, month.month)[1])
    return max(month, document.period_start), min(month_end, document.period_end)


def _money(amount: Decimal) -> str:
    if amount != amount.quantize(CENT):
        raise ValueError(f"The amount {amount} has more than two decimals; EHF amounts are in whole øre")
    return f"{amount.quantize(CENT):f}"


def _amount(parent: etree._Element, name: str, amount: Decimal, currency: str) -> etree._Element:
    return _cbc(parent, name, _money(amount), currencyID=currency)


def _cac(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{CAC}}}{name}")


def _cbc(parent: etree._Element, name: str, text: str, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CBC}}}{name}", attributes)
    element.text = text
    return element


def _optional_cbc(parent: etree._Element, name: str, text: str) -> None:
    """Peppol forbids empty elements (PEPPOL-EN16931-R008), so an optional value that is blank is left out."""
    if text.strip():
        _cbc(parent, name, text)


# --- validating -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EhfFinding:
    """One broken rule: `flag` is "schema" (UBL XSD or not XML at all), or the schematron's "fatal" or "warning"."""

    rule_id: str
    flag: str
    location: str
    text: str


class EhfInvalid(Exception):
    """An EHF file the Peppol network would reject; `findings` are its schema errors and fatal rule breaches."""

    def __init__(self, findings: list[EhfFinding]) -> None:
        self.findings = findings
        rule_ids = ", ".join(dict.fromkeys(finding.rule_id for finding in findings))
        super().__init__(f"The EHF file is not valid Peppol BIS Billing 3.0 ({rule_ids}): {findings[0].text}")


def assert_valid_ehf(xml: bytes) -> list[EhfFinding]:
    """Raise EhfInvalid on any schema error or fatal finding; return the warnings, which do not stop a file."""
    findings = validate_ehf(xml)
    errors = [finding for finding in findings if finding.flag in ("schema", "fatal")]
    if errors:
        raise EhfInvalid(errors)
    return findings


def validate_ehf(xml: bytes) -> list[EhfFinding]:
    """Every finding of the UBL 2.1 schema, or (on a schema-valid file) of the CEN and Peppol schematrons."""
    try:
        document = etree.fromstring(xml, _safe_parser())
    except etree.XMLSyntaxError as error:
        return [EhfFinding("XML", "schema", f"line {error.lineno}", f"Not well-formed XML: {error.msg}")]
    schema_findings = _schema_findings(document)
    if schema_findings:  # the schematrons assume a schema-valid document
        return schema_findings
    return _schematron_findings(etree.tostring(document, encoding="unicode"))


def _safe_parser() -> etree.XMLParser:
    """A new parser each time (lxml parsers are not shared between threads); no entities, DTDs or network."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _schema_findings(document: etree._Element) -> list[EhfFinding]:
    kind = _kind_of(document)
    if kind is None:
        text = f"The root element {document.tag} is not a UBL 2.1 Invoice or CreditNote"
        return [EhfFinding("XSD", "schema", "/", text)]
    schema = _ubl_schema(_rules_dir() / "ubl-2.1" / "maindoc" / kind.schema_file)
    with _LOCK:  # an XMLSchema keeps its error log on itself
        schema.validate(document)
        return [
            EhfFinding("XSD", "schema", f"{error.path} (line {error.line})", error.message)
            for error in schema.error_log
        ]


def _kind_of(document: etree._Element) -> _Kind | None:
    qname = etree.QName(document)
    return next((k for k in KINDS.values() if (k.namespace, k.root) == (qname.namespace, qname.localname)), None)


def _rules_dir() -> Path:
    rules_dir = Path(settings.PEPPOL_RULES_DIR)
    if not (rules_dir / BIS_RELEASE).is_dir() or not (rules_dir / "ubl-2.1").is_dir():
        raise ImproperlyConfigured(
            f"PEPPOL_RULES_DIR={rules_dir} does not hold the EHF validation artefacts ({BIS_RELEASE}/ and ubl-2.1/); "
            "point it at the project's vendor/peppol or a copy of it (vendor/peppol/README.md)"
        )
    return rules_dir


@cache
def _ubl_schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path), _safe_parser()))


def _schematron_findings(xml_text: str) -> list[EhfFinding]:
    stylesheets = [_rules_dir() / BIS_RELEASE / name for name in SCHEMATRONS]
    reports = _SAXON.transform(stylesheets, xml_text)
    return [finding for report in reports for finding in _failed_asserts(report)]


def _failed_asserts(svrl: str) -> list[EhfFinding]:
    report = etree.fromstring(svrl.encode("utf-8"), _safe_parser())
    return [
        EhfFinding(
            rule_id=failed.get("id", ""),
            flag=failed.get("flag", ""),
            location=failed.get("location", ""),
            text=" ".join(failed.findtext(f"{{{SVRL}}}text", "").split()),
        )
        for failed in report.iter(f"{{{SVRL}}}failed-assert")
    ]


class _Saxon:
    """The process's one Saxon processor and the schematron XSLTs compiled on it, each compiled once.

    Created on first use; in a pre-forking server, use it only after the fork.
    """

    def __init__(self) -> None:
        self._processor: Any = None
        self._stylesheets: dict[Path, Any] = {}

    def transform(self, stylesheets: list[Path], xml_text: str) -> list[str]:
        """The SVRL report of each stylesheet on the document."""
        with _LOCK:
            if self._processor is None:
                self._processor = PySaxonProcessor(license=False)
            node = self._processor.parse_xml(xml_text=xml_text)
            return [self._compiled(path).transform_to_string(xdm_node=node) for path in stylesheets]

    def _compiled(self, path: Path) -> Any:
        if path not in self._stylesheets:
            compiler = self._processor.new_xslt30_processor()
            self._stylesheets[path] = compiler.compile_stylesheet(stylesheet_file=str(path))
        return self._stylesheets[path]


_LOCK = threading.Lock()
_SAXON = _Saxon()
