"""`preview_absences FILE`: calendar-rules.md §5 — JSON events and settings in, MBN absences out."""

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.rules import InputError, RulesError, preview
from sync.services import catalogue_or_default


class Command(BaseCommand):
    help = "Shows the MBN absences the rules engine makes of calendar events (JSON in, JSON out; FILE or -)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="a JSON file as in calendar-rules.md §5, or - for stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        payload = _read_json(options["file"])
        try:
            result = preview(payload, catalogue=catalogue_or_default())
        except (InputError, RulesError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(json.dumps(result, ensure_ascii=False))


def _read_json(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise CommandError(f"FILE: {name} does not exist") from error
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"FILE: cannot read {name}: {error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(f"input: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from error
