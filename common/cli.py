"""Shared pieces of the fixed command-line interfaces (`preview_absences`, `billing_quote`)."""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from common.json_input import JSONInputError, parse_json


def read_json_argument(name: str) -> Any:
    """The JSON in file `name` (`-` = stdin); a one-line CommandError that says what is wrong otherwise."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise CommandError(f"FILE: {name} does not exist") from error
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"FILE: cannot read {name}: {error}") from error
    try:
        return parse_json(text)
    except JSONInputError as error:
        raise CommandError(f"input: {error}") from error
