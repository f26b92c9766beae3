"""What accountants get: the quarter's PDFs, EHF files and CSV agree with each other and the database;
accountants can download them and change nothing."""

import csv
import datetime as dt
import io
import zipfile
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.urls import reverse
from lxml import etree
from pypdf import PdfReader

from billing import services
from billing.models import Invoice
from billing.quarters import Quarter
from common.formatting import format_number
from tests.billing.factories import live_subscription

pytestmark = pytest.mark.django_db
D = dt.date
NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}


@pytest.fixture
def quarter():
    for index, (term, users) in enumerate(((12, 40), (36, 6), (0, 15))):
        live_subscription(
            term=term,
            go_live=D(2026, 7, 10),
            steps=[(D(2026, 7, 10), users)],
            last=D(2026, 9, 30),
            name=f"Regnskap {index} AS",
        )
    services.run_billing(quarter=Quarter.parse("2026-Q3"), today=D(2026, 10, 1))
    issued = services.issue_drafts(invoice_ids=Invoice.objects.values_list("pk", flat=True), today=D(2026, 10, 2))
    services.credit_invoice(invoice_id=issued.issued[0].pk, reason="Feil antall brukere", today=D(2026, 10, 5))
    return Quarter.parse("2026-Q3")


def pdf_text(content: bytes) -> str:
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    return " ".join(text.replace("\xa0", " ").split())


def assert_export_agrees(directory, label: str) -> set[tuple[str, str]]:
    """Every document's CSV lines, EHF totals, PDF text and database row tell the same amounts."""
    rows = list(
        csv.DictReader(io.StringIO((directory / f"fakturaer-{label}.csv").read_text("utf-8-sig")), delimiter=";")
    )
    documents = {(row["dokumenttype"], row["nummer"]) for row in rows}
    for kind, number in documents:
        stem = f"{kind}-{number}"
        lines = [row for row in rows if (row["dokumenttype"], row["nummer"]) == (kind, number)]
        amount = lambda text: Decimal(text.replace(",", "."))  # noqa: E731
        net, vat, total = amount(lines[0]["sum_eks_mva"]), amount(lines[0]["mva"]), amount(lines[0]["sum_inkl_mva"])
        assert sum(amount(row["linjebelop"]) for row in lines) == net
        assert net + vat == total
        ehf = etree.fromstring((directory / f"{stem}.xml").read_bytes())
        assert Decimal(ehf.findtext(".//cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS)) == total
        assert Decimal(ehf.findtext(".//cac:TaxTotal/cbc:TaxAmount", namespaces=NS)) == vat
        text = pdf_text((directory / f"{stem}.pdf").read_bytes())
        assert format_number(total).replace("\xa0", " ") in text
        assert format_number(net).replace("\xa0", " ") in text
        if kind == "faktura":
            invoice = Invoice.objects.get(number=int(number))
            assert invoice.total == total and invoice.kid in text
    with zipfile.ZipFile(directory / f"kalenderpush-{label}.zip") as archive:
        names = set(archive.namelist())
    assert names == {f"{kind}-{number}.{ext}" for kind, number in documents for ext in ("pdf", "xml")} | {
        f"fakturaer-{label}.csv"
    }
    return documents


def test_export_invoices_writes_agreeing_pdf_ehf_and_csv(quarter, tmp_path):
    out = io.StringIO()
    call_command("export_invoices", "--quarter", "2026-Q3", str(tmp_path), stdout=out)
    assert "4 document(s)" in out.getvalue()
    documents = assert_export_agrees(tmp_path, "2026-Q3")
    assert documents == {("faktura", "1"), ("faktura", "2"), ("faktura", "3"), ("kreditnota", "1")}


@pytest.fixture
def accountant(client):
    user = User.objects.create_user("regnskap", password="hemmelig-passord-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Accountants"))
    client.force_login(user)
    return client


def test_an_accountant_downloads_the_quarter_zip_and_single_documents(quarter, accountant):
    assert accountant.get(reverse("admin:billing_invoice_changelist")).status_code == 200
    response = accountant.get(reverse("admin:billing_invoice_quarter_zip", args=["2026-Q3"]))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "fakturaer-2026-Q3.csv" in zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    invoice = Invoice.objects.get(number=2)
    assert accountant.get(reverse("admin:billing_invoice_pdf", args=[invoice.pk])).content.startswith(b"%PDF")
    assert b"<Invoice" in accountant.get(reverse("admin:billing_invoice_ehf", args=[invoice.pk])).content
    assert accountant.get(reverse("admin:billing_creditnote_changelist")).status_code == 200


def test_an_accountant_cannot_change_anything(quarter, accountant):
    invoice = Invoice.objects.get(number=2)
    before = (invoice.status, invoice.total, invoice.number)
    changelist = reverse("admin:billing_invoice_changelist")
    page = accountant.get(changelist).content.decode()
    assert "issue_selected" not in page and "credit_selected" not in page
    accountant.post(changelist, {"action": "issue_selected", "_selected_action": [invoice.pk]})
    accountant.post(changelist, {"action": "mark_paid", "_selected_action": [invoice.pk]})
    accountant.post(reverse("admin:billing_invoice_change", args=[invoice.pk]), {"total": "1.00"})
    assert (
        accountant.post(reverse("admin:billing_invoice_delete", args=[invoice.pk]), {"post": "yes"}).status_code == 403
    )
    invoice.refresh_from_db()
    assert (invoice.status, invoice.total, invoice.number) == before
    for name in (
        "admin:customers_customer_changelist",
        "admin:billing_billingrun_run",
        "admin:billing_usagesnapshot_changelist",
        "admin:customers_subscription_changelist",
    ):
        assert accountant.get(reverse(name)).status_code == 403, name
