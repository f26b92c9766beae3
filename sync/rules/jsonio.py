"""The JSON shape of calendar-rules.md §5: parse a preview request, format the absences.

Errors are `InputError`s whose message starts with the field at fault (`events[2].start: …`).
An event's fields the spec does not name are ignored, so provider payloads with extra keys pass through;
in the settings, the window and at the top a field the spec does not name is an error: a misspelt
setting would otherwise quietly take its default.
"""

import datetime as dt
import re
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sync.rules.catalogue import Catalogue
from sync.rules.engine import holiday_dates
from sync.rules.model import DEFAULT_OFFICE_HOURS, RESPONSES, SHOW_AS, WEEKDAYS, Absence, DayHours, Event, RuleSettings


class InputError(ValueError):
    """Bad input; the message names the field."""


_SHOW_AS = {value.casefold(): value for value in SHOW_AS}
_RESPONSES = {value.casefold(): value for value in RESPONSES}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?$")

DateRange = tuple[dt.date, dt.date]
FIELDS = ("settings", "window", "events")
WINDOW_FIELDS = ("start", "end")
SETTINGS_FIELDS = (
    "timezone",
    "office_hours",
    "office_hours_only",
    "holidays",
    "default_profile",
    "out_of_office_profile",
    "divert_by_default",
    "include_tentative",
)


def parse_request(
    payload: Any, *, catalogue: Catalogue, dates: DateRange | None = None
) -> tuple[RuleSettings, dt.datetime, dt.datetime, tuple[Event, ...]]:
    """(settings, window start, window end, events) from the §5 input; `dates` (first, last), when
    given, bounds every date in it."""
    if not isinstance(payload, dict):
        raise InputError("input: expected a JSON object with settings, window and events")
    _refuse_unknown(payload, FIELDS, where="")
    settings = parse_settings(payload.get("settings"), catalogue=catalogue)
    zone = ZoneInfo(settings.timezone)
    window = payload.get("window")
    if not isinstance(window, dict):
        raise InputError("window: missing or not an object with start and end")
    _refuse_unknown(window, WINDOW_FIELDS, where="window.")
    window_start = _in_range(_datetime(window, "start", "window", zone), "window.start", dates)
    window_end = _in_range(_datetime(window, "end", "window", zone), "window.end", dates)
    if window_end <= window_start:
        raise InputError("window.end: must be after window.start")
    events = parse_events(payload.get("events", _MISSING), zone=zone, dates=dates)
    return settings, window_start, window_end, events


def _field_name(key: str) -> str:
    return key if key.isprintable() else repr(key)


def _refuse_unknown(raw: dict[str, Any], known: tuple[str, ...], *, where: str) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise InputError(f"{where}{_field_name(unknown[0])}: unknown field (known: {', '.join(known)})")


_Moment = TypeVar("_Moment", dt.date, dt.datetime)


def _in_range(value: _Moment, field: str, dates: DateRange | None) -> _Moment:
    day = value.date() if isinstance(value, dt.datetime) else value
    if dates is not None and not dates[0] <= day <= dates[1]:
        raise InputError(f"{field}: {value.isoformat()} is outside the dates accepted, {dates[0]} to {dates[1]}")
    return value


_MISSING = object()


def parse_settings(raw: Any, *, catalogue: Catalogue) -> RuleSettings:
    if raw is None:
        return RuleSettings()
    if not isinstance(raw, dict):
        raise InputError("settings: expected an object")
    _refuse_unknown(raw, SETTINGS_FIELDS, where="settings.")
    defaults = RuleSettings()
    timezone = raw.get("timezone", defaults.timezone)
    if not isinstance(timezone, str):
        raise InputError("settings.timezone: expected a time-zone name such as Europe/Oslo")
    try:
        ZoneInfo(timezone)
    except (ValueError, KeyError, OSError) as error:  # OSError: a directory such as "Europe", a name too long
        raise InputError(f"settings.timezone: unknown time zone {timezone!r}") from error
    holidays = raw.get("holidays", defaults.holidays)
    if isinstance(holidays, bool):  # true: Norwegian holidays, false: none
        holidays = "NO" if holidays else None
    if holidays is not None:
        if not isinstance(holidays, str) or not holidays.strip():
            raise InputError('settings.holidays: expected a country code such as "NO", or null')
        holidays = holidays.strip().upper()
        try:
            holiday_dates(holidays, 2026)
        except ValueError as error:
            raise InputError(f"settings.holidays: unknown country code {holidays!r}") from error
    profiles = {}
    for field in ("default_profile", "out_of_office_profile"):
        name = raw.get(field, getattr(defaults, field))
        if not isinstance(name, str) or catalogue.find(name) is None:
            known = ", ".join(profile.full_name for profile in catalogue.profiles)
            raise InputError(f"settings.{field}: unknown profile {name!r} (known: {known})")
        profiles[field] = name
    return RuleSettings(
        timezone=timezone,
        office_hours=_office_hours(raw.get("office_hours")),
        office_hours_only=_bool(raw, "office_hours_only", defaults.office_hours_only, "settings"),
        holidays=holidays,
        divert_by_default=_bool(raw, "divert_by_default", defaults.divert_by_default, "settings"),
        include_tentative=_bool(raw, "include_tentative", defaults.include_tentative, "settings"),
        **profiles,
    )


def _office_hours(raw: Any) -> tuple[DayHours, ...]:
    if raw is None:
        return DEFAULT_OFFICE_HOURS
    if not isinstance(raw, dict):
        raise InputError('settings.office_hours: expected an object such as {"mon": ["08:00", "16:00"], "sat": null}')
    unknown = sorted(set(raw) - set(WEEKDAYS))
    if unknown:
        raise InputError(f"settings.office_hours.{unknown[0]}: unknown weekday (use {', '.join(WEEKDAYS)})")
    hours: list[DayHours] = []
    for day, default in zip(WEEKDAYS, DEFAULT_OFFICE_HOURS, strict=True):
        if day not in raw or raw[day] is None:
            hours.append(default if day not in raw else None)  # a missing weekday keeps its default
            continue
        value = raw[day]
        field = f"settings.office_hours.{day}"
        if not isinstance(value, list) or len(value) != 2:
            raise InputError(f'{field}: expected ["HH:MM", "HH:MM"] or null')
        start, end = _minutes(value[0], f"{field}[0]"), _minutes(value[1], f"{field}[1]")
        if end <= start:
            raise InputError(f"{field}: the end {value[1]} must be after the start {value[0]}")
        hours.append((start, end))
    return tuple(hours)


def _minutes(value: Any, field: str) -> int:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if not match:
        raise InputError(f"{field}: expected a time as HH:MM, got {value!r}")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise InputError(f"{field}: {value!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _bool(raw: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _datetime(raw: dict[str, Any], key: str, where: str, zone: ZoneInfo) -> dt.datetime:
    """An ISO 8601 date-time; without an offset it is read in the settings' zone; a date is its midnight."""
    value = raw.get(key)
    field = f"{where}.{key}"
    if value is None:
        raise InputError(f"{field}: missing")
    if not isinstance(value, str):
        raise InputError(f"{field}: expected an ISO 8601 date-time string, got {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as error:
        raise InputError(f"{field}: {value!r} is not an ISO 8601 date-time") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed


def parse_events(raw: Any, *, zone: ZoneInfo, dates: DateRange | None = None) -> tuple[Event, ...]:
    if raw is _MISSING:
        raise InputError("events: missing (use [] for no events)")
    if not isinstance(raw, list):
        raise InputError("events: expected a list")
    events: list[Event] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"events[{index}]"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected an object")
        event_id = item.get("id")
        if isinstance(event_id, int) and not isinstance(event_id, bool):
            event_id = str(event_id)
        if not isinstance(event_id, str) or not event_id:
            raise InputError(f"{where}.id: missing or not a string")
        if event_id in seen:
            raise InputError(f"{where}.id: {event_id!r} is used by another event; ids must be unique")
        seen.add(event_id)
        all_day = _bool(item, "all_day", False, where)
        start: dt.date | dt.datetime
        end: dt.date | dt.datetime
        if all_day:
            start, end = _date(item, "start", where), _date(item, "end", where)
        else:
            start, end = _timed(item, "start", where, zone), _timed(item, "end", where, zone)
        start, end = _in_range(start, f"{where}.start", dates), _in_range(end, f"{where}.end", dates)
        subject = item.get("subject") or ""
        if not isinstance(subject, str):
            raise InputError(f"{where}.subject: expected a string")
        events.append(
            Event(
                id=event_id,
                subject=subject,
                start=start,
                end=end,
                all_day=all_day,
                show_as=_choice(item, "show_as", _SHOW_AS, "busy", where),
                response=_choice(item, "response", _RESPONSES, "accepted", where),
                cancelled=_bool(item, "cancelled", False, where),
                private=_bool(item, "private", False, where),
            )
        )
    return tuple(events)


def _date(item: dict[str, Any], key: str, where: str) -> dt.date:
    value = item.get(key)
    field = f"{where}.{key}"
    if value is None:
        raise InputError(f"{field}: missing")
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            try:
                return dt.datetime.fromisoformat(value).date()
            except ValueError:
                pass
    raise InputError(f"{field}: expected a date such as 2026-01-07 for an all-day event, got {value!r}")


def _timed(item: dict[str, Any], key: str, where: str, zone: ZoneInfo) -> dt.datetime:
    value = item.get(key)
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise InputError(
            f"{where}.{key}: {value!r} is a date; a timed event needs a date and time "
            '(e.g. "2026-01-05T10:00:00+01:00"), or set "all_day": true'
        )
    return _datetime(item, key, where, zone)


def _choice(item: dict[str, Any], key: str, allowed: dict[str, str], default: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.casefold() in allowed:
        return allowed[value.casefold()]
    raise InputError(f"{where}.{key}: unknown value {value!r} (expected one of {', '.join(allowed.values())})")


def format_absences(absences: tuple[Absence, ...]) -> dict[str, list[dict[str, Any]]]:
    return {
        "absences": [
            {
                "start": absence.start.isoformat(timespec="seconds"),
                "end": absence.end.isoformat(timespec="seconds"),
                "profile": absence.profile,
                "mbn_reason": absence.mbn_reason,
                "divert": absence.divert,
                "event_ids": list(absence.event_ids),
            }
            for absence in absences
        ]
    }
