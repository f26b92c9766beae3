"""`preview_absences FILE`: calendar-rules.md §5 — JSON events and settings in, MBN absences out."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.cli import read_json_argument
from common.typed_dates import TYPED_DATE_RANGE
from sync.rules import InputError, RulesError, preview
from sync.services import catalogue_or_default


class Command(BaseCommand):
    help = "Shows the MBN absences the rules engine makes of calendar events (JSON in, JSON out; FILE or -)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="a JSON file as in calendar-rules.md §5, or - for stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        payload = read_json_argument(options["file"])
        try:
            result = preview(payload, catalogue=catalogue_or_default(), dates=TYPED_DATE_RANGE)
        except (InputError, RulesError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(json.dumps(result, ensure_ascii=False))
