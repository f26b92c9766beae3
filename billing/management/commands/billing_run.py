"""`billing_run --quarter 2026-Q3 [--issue]`: the quarterly billing run from the shell."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing.models import Invoice
from billing.quarters import Quarter
from billing.services import issue_drafts, run_billing
from common.formatting import format_nok
from common.progress import ProgressBar


class Command(BaseCommand):
    help = "Creates draft invoices for a finished quarter (idempotent); --issue issues the quarter's drafts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quarter", required=True, help="the quarter to bill, e.g. 2026-Q3")
        parser.add_argument("--issue", action="store_true", help="issue every draft of the quarter afterwards")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            quarter = Quarter.parse(options["quarter"])
        except ValueError as error:
            raise CommandError(f"--quarter: {error}") from error
        today = timezone.localdate()
        try:
            run = run_billing(quarter=quarter, today=today, progress=ProgressBar(f"Billing {quarter}"))
        except ValidationError as error:
            raise CommandError(f"--quarter: {'; '.join(error.messages)}") from error
        self.stdout.write(
            f"{quarter}: {run.subscriptions_total} subscription(s), {run.invoices_created} new draft invoice(s), "
            f"{len(run.errors)} error(s)"
        )
        for failure in run.errors:
            self.stderr.write(f"  {failure['customer']} ({failure['customer_number']}): {failure['error']}")
        if options["issue"]:
            drafts = list(
                Invoice.objects.filter(quarter=quarter.label, status=Invoice.Status.DRAFT)
                .order_by("customer__customer_number")
                .values_list("pk", flat=True)
            )
            result = issue_drafts(invoice_ids=drafts, today=today, progress=ProgressBar(f"Issuing {quarter}"))
            for message in result.errors:
                self.stderr.write(f"  not issued: {message}")
            total = sum((invoice.total for invoice in result.issued), start=0)
            self.stdout.write(
                f"Issued {len(result.issued)} invoice(s), total {format_nok(total)} incl. VAT"
                + (f"; {len(result.errors)} could not be issued" if result.errors else "")
            )
        if run.errors:
            raise CommandError(
                f"{len(run.errors)} customer(s) could not be billed; see above and the billing run in admin"
            )
