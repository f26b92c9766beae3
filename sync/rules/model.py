"""The rules engine's plain data: settings, events, profiles and the absences it produces."""

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the catalogue imports this module
    from sync.rules.catalogue import SubjectCode

SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
RESPONSES = ("accepted", "tentative", "declined", "organizer", "none")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

MINUTES_PER_DAY = 24 * 60

# Office hours of one weekday as minutes after local midnight: (start, end), end ≤ 1440; None = day off.
DayHours = tuple[int, int] | None

DEFAULT_OFFICE_HOURS: tuple[DayHours, ...] = ((480, 960),) * 5 + (None, None)


@dataclass(frozen=True)
class Profile:
    """One row of the absence-profile catalogue (calendar-rules.md §1)."""

    short_code: str
    full_name: str
    profile: str
    mbn_reason: str


@dataclass(frozen=True)
class RuleSettings:
    """A customer's settings (with a service user's overrides applied); defaults from calendar-rules.md.

    `office_hours` has seven entries, Monday first. Profiles are named by full name, profile or short
    code and resolved against the catalogue.
    """

    timezone: str = "Europe/Oslo"
    office_hours: tuple[DayHours, ...] = DEFAULT_OFFICE_HOURS
    office_hours_only: bool = False
    holidays: str | None = "NO"
    default_profile: str = "Møte"
    out_of_office_profile: str = "Ikke tilgjengelig"
    divert_by_default: bool = True
    include_tentative: bool = False

    def __post_init__(self) -> None:
        if len(self.office_hours) != 7:
            raise ValueError("office_hours needs seven entries, Monday first")
        for day, hours in zip(WEEKDAYS, self.office_hours, strict=True):
            if hours is not None and not (0 <= hours[0] < hours[1] <= MINUTES_PER_DAY):
                raise ValueError(f"office_hours.{day}: the end must be after the start")


@dataclass(frozen=True)
class Event:
    """A calendar event in the engine's shape.

    Timed events have aware datetimes; all-day events (`all_day=True`) have dates, end exclusive.
    `code`, when set, is what the catalogue's parser made of the subject earlier (an event rebuilt from the
    sync's stored state, which keeps no subject); otherwise the engine parses `subject`.
    """

    id: str
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date
    all_day: bool = False
    subject: str = ""
    show_as: str = "busy"
    response: str = "accepted"
    cancelled: bool = False
    private: bool = False
    code: "SubjectCode | None" = None


@dataclass(frozen=True)
class Absence:
    """One interval pushed to MBN. Times are aware, in the settings' time zone."""

    start: dt.datetime
    end: dt.datetime
    profile: str
    mbn_reason: str
    divert: bool
    event_ids: tuple[str, ...]
