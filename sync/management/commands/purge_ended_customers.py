"""Delete the secrets and personal data of customers whose service ended PURGE_AFTER_DAYS ago (sync.purge)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from sync.purge import purge_ended_customers


class Command(BaseCommand):
    help = (
        "Delete the calendar and MBN secrets, service users' names and e-mail addresses, stored absences and sync "
        "records of customers whose service ended PURGE_AFTER_DAYS (default 90) days ago. Invoices and the audit "
        "trail stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Print what would be deleted; delete nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        purges = purge_ended_customers(dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for purge in purges:
            self.stdout.write(f"{verb}: {purge.describe()}")
        self.stdout.write(
            f"{len(purges)} customer(s) ended {settings.PURGE_AFTER_DAYS} days ago or more: "
            f"{'nothing deleted (dry run)' if dry_run else 'purged'}"
        )
