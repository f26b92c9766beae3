"""`export_invoices --quarter 2026-Q3 OUTDIR`: PDF and EHF per issued document, the CSV and the ZIP."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.exports import export_quarter
from billing.quarters import Quarter
from common.progress import ProgressBar


class Command(BaseCommand):
    help = "Writes the quarter's invoices and credit notes (PDF + EHF), the CSV and a ZIP of them into OUTDIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quarter", required=True, help="the billing quarter, e.g. 2026-Q3")
        parser.add_argument("outdir", metavar="OUTDIR", help="directory to write to (created if missing)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            quarter = Quarter.parse(options["quarter"])
        except ValueError as error:
            raise CommandError(f"--quarter: {error}") from error
        outdir = Path(options["outdir"])
        if outdir.exists() and not outdir.is_dir():
            raise CommandError(f"OUTDIR: {outdir} exists and is not a directory")
        written = export_quarter(quarter, outdir, progress=ProgressBar(f"Exporting {quarter}"))
        documents = sum(1 for path in written if path.suffix == ".pdf")
        self.stdout.write(f"{quarter}: {documents} document(s) written to {outdir} ({len(written)} files)")
        for path in written:
            if path.suffix in (".csv", ".zip"):
                self.stdout.write(f"  {path}")
