"""What accountants download: PDFs, EHF files and a CSV of a billing quarter, singly or as one ZIP.

The CSV is for Norwegian spreadsheets: UTF-8 with BOM, `;` between fields, decimal comma, one row per
line with the document's header repeated. A quarter holds the issued invoices of that billing quarter
and the credit notes that refer to them.
"""

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.http import HttpResponse

from billing.documents import BillingDocument
from billing.ehf import build_ehf
from billing.models import CreditNote, Invoice
from billing.pdf import render_document_pdf
from billing.quarters import Quarter
from billing.services import document_for_credit_note, document_for_invoice
from common.downloads import download

CSV_COLUMNS = [
    "dokumenttype",
    "nummer",
    "dato",
    "forfall",
    "kundenr",
    "kunde",
    "orgnr",
    "periode_fra",
    "periode_til",
    "kid",
    "linje",
    "linjetype",
    "maaned",
    "beskrivelse",
    "antall",
    "pris",
    "linjebelop",
    "sum_eks_mva",
    "mva",
    "sum_inkl_mva",
    "gjelder_faktura",
]


@dataclass(frozen=True)
class ExportedDocument:
    document: BillingDocument

    @property
    def stem(self) -> str:
        prefix = "faktura" if self.document.kind == "invoice" else "kreditnota"
        return f"{prefix}-{self.document.number}"

    def pdf(self) -> bytes:
        return render_document_pdf(self.document)

    def ehf(self) -> bytes:
        return build_ehf(self.document)

    def pdf_download(self) -> HttpResponse:
        """The PDF for the browser to save (admin and portal), named as in the quarter's ZIP."""
        return download(self.pdf(), f"{self.stem}.pdf", "application/pdf")

    def ehf_download(self) -> HttpResponse:
        """The EHF (UBL XML) for the browser to save (admin and portal), named as in the quarter's ZIP."""
        return download(self.ehf(), f"{self.stem}.xml", "application/xml")


def quarter_documents(quarter: Quarter) -> list[ExportedDocument]:
    invoices = (
        Invoice.objects.filter(quarter=quarter.label, number__isnull=False)
        .select_related("customer")
        .prefetch_related("lines")
        .order_by("number")
    )
    notes = (
        CreditNote.objects.filter(invoice__quarter=quarter.label)
        .select_related("invoice__customer")
        .prefetch_related("lines")
        .order_by("number")
    )
    return [ExportedDocument(document_for_invoice(invoice)) for invoice in invoices] + [
        ExportedDocument(document_for_credit_note(note)) for note in notes
    ]


def _decimal(value: Decimal) -> str:
    return f"{value:.2f}".replace(".", ",")


def csv_rows(documents: list[ExportedDocument]) -> Iterator[list[str]]:
    for exported in documents:
        doc = exported.document
        header = [
            "faktura" if doc.kind == "invoice" else "kreditnota",
            doc.number,
            doc.issue_date.isoformat(),
            doc.due_date.isoformat() if doc.due_date else "",
            doc.customer_number,
            doc.buyer.name,
            doc.buyer.org_number,
            doc.period_start.isoformat(),
            doc.period_end.isoformat(),
            doc.kid,
        ]
        for position, line in enumerate(doc.lines, start=1):
            yield [
                *header,
                str(position),
                line.kind,
                line.month.strftime("%Y-%m") if line.month else "",
                line.description,
                _decimal(line.quantity),
                _decimal(line.unit_price),
                _decimal(line.amount),
                _decimal(doc.net),
                _decimal(doc.vat),
                _decimal(doc.total),
                doc.credited_number,
            ]


def quarter_csv(documents: list[ExportedDocument]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(documents))
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def quarter_zip(quarter: Quarter, documents: list[ExportedDocument] | None = None) -> bytes:
    documents = quarter_documents(quarter) if documents is None else documents
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for exported in documents:
            archive.writestr(f"{exported.stem}.pdf", exported.pdf())
            archive.writestr(f"{exported.stem}.xml", exported.ehf())
        archive.writestr(f"fakturaer-{quarter.label}.csv", quarter_csv(documents))
    return buffer.getvalue()


def export_quarter(quarter: Quarter, directory: Path, progress=None) -> list[Path]:  # type: ignore[no-untyped-def]
    """Write every document's PDF and EHF, the CSV and the ZIP of them all into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    documents = quarter_documents(quarter)
    written: list[Path] = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, exported in enumerate(documents, start=1):
            for suffix, content in ((".pdf", exported.pdf()), (".xml", exported.ehf())):
                path = directory / f"{exported.stem}{suffix}"
                path.write_bytes(content)
                archive.writestr(path.name, content)
                written.append(path)
            if progress is not None:
                progress(index, len(documents))
        csv_path = directory / f"fakturaer-{quarter.label}.csv"
        csv_path.write_bytes(quarter_csv(documents))
        archive.writestr(csv_path.name, csv_path.read_bytes())
        written.append(csv_path)
    zip_path = directory / f"kalenderpush-{quarter.label}.zip"
    zip_path.write_bytes(buffer.getvalue())
    written.append(zip_path)
    return written
