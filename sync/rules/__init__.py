"""The rules engine of calendar-rules.md: pure, one for the sync pipeline, the portal and the CLI."""

import datetime as dt
from typing import Any

from sync.rules.catalogue import DEFAULT_CATALOGUE, DEFAULT_PROFILES, Catalogue, SubjectCode
from sync.rules.engine import RulesError, compute_absences
from sync.rules.jsonio import InputError, format_absences, parse_request
from sync.rules.model import Absence, Event, Profile, RuleSettings

__all__ = [
    "DEFAULT_CATALOGUE",
    "DEFAULT_PROFILES",
    "Absence",
    "Catalogue",
    "Event",
    "InputError",
    "Profile",
    "RuleSettings",
    "RulesError",
    "SubjectCode",
    "compute_absences",
    "format_absences",
    "parse_request",
    "preview",
]


def preview(
    payload: Any, *, catalogue: Catalogue = DEFAULT_CATALOGUE, dates: tuple[dt.date, dt.date] | None = None
) -> dict[str, Any]:
    """calendar-rules.md §5: the JSON input in, the JSON output out (raises InputError / RulesError).

    `dates` (first, last), when given, bounds every date of the input."""
    settings, window_start, window_end, events = parse_request(payload, catalogue=catalogue, dates=dates)
    absences = compute_absences(
        settings=settings, window_start=window_start, window_end=window_end, events=events, catalogue=catalogue
    )
    return format_absences(absences)
