"""Re-encrypt every stored calendar and MBN secret with the newest key of CREDENTIALS_KEY (sync.key_rotation)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.progress import ProgressBar
from sync.key_rotation import encrypted_fields, rotate_credentials


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of CREDENTIALS_KEY. Put the new key first "
        "(CREDENTIALS_KEY=new,old), restart the processes, run this, then remove the old key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted; change nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        fields = ", ".join(encrypted.label for encrypted in encrypted_fields())
        self.stdout.write(f"Encrypted fields: {fields}")
        rotation = rotate_credentials(dry_run=dry_run, progress=ProgressBar("Re-encrypting"))
        if rotation.unreadable:
            raise CommandError(
                f"{len(rotation.unreadable)} secret(s) cannot be decrypted with any key of CREDENTIALS_KEY: "
                f"{', '.join(rotation.unreadable)}. Nothing was changed. Add the key they were stored with to "
                "CREDENTIALS_KEY (after the new one), or enter those secrets again in admin."
            )
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(
            f"{verb} {rotation.rotated} secret(s) with the newest key; {rotation.current} already used it."
            + (" Nothing changed (dry run)." if dry_run else "")
        )
