"""Scripted calendar events for the Graph simulator, and how Graph v1.0 shows them.

`SimEvent` is written in the rules engine's terms (sync/rules/model.py) plus a daily recurrence; this
module expands it into calendarView instances (occurrences get `"{id}_{yyyymmdd}"` ids) and renders an
instance as Graph's event JSON in the time zone the client asked for with `Prefer: outlook.timezone`.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sync.rules.model import SHOW_AS

# The engine's response words (and Graph's own) → Graph's `responseStatus.response`.
RESPONSE_TO_GRAPH = {
    "accepted": "accepted",
    "tentative": "tentativelyAccepted",
    "tentativelyAccepted": "tentativelyAccepted",
    "declined": "declined",
    "organizer": "organizer",
    "none": "none",
    "notResponded": "notResponded",
}

# The IANA names Graph accepts besides Windows names (datetimetimezone.md, "dateTimeTimeZone resource type"),
# with the zoneinfo key for the two the page spells its own way.
DOCUMENTED_IANA_ZONES = {
    name: name
    for name in [
        "Etc/GMT+12",
        "Etc/GMT+11",
        "Pacific/Honolulu",
        "America/Anchorage",
        "America/Santa_Isabel",
        "America/Los_Angeles",
        "America/Phoenix",
        "America/Chihuahua",
        "America/Denver",
        "America/Guatemala",
        "America/Chicago",
        "America/Mexico_City",
        "America/Regina",
        "America/Bogota",
        "America/New_York",
        "America/Indiana/Indianapolis",
        "America/Caracas",
        "America/Asuncion",
        "America/Halifax",
        "America/Cuiaba",
        "America/La_Paz",
        "America/Santiago",
        "America/St_Johns",
        "America/Sao_Paulo",
        "America/Argentina/Buenos_Aires",
        "America/Cayenne",
        "America/Godthab",
        "America/Montevideo",
        "America/Bahia",
        "Etc/GMT+2",
        "Atlantic/Azores",
        "Atlantic/Cape_Verde",
        "Africa/Casablanca",
        "Etc/GMT",
        "Europe/London",
        "Atlantic/Reykjavik",
        "Europe/Berlin",
        "Europe/Budapest",
        "Europe/Paris",
        "Europe/Warsaw",
        "Africa/Lagos",
        "Africa/Windhoek",
        "Europe/Bucharest",
        "Asia/Beirut",
        "Africa/Cairo",
        "Asia/Damascus",
        "Africa/Johannesburg",
        "Europe/Kyiv",
        "Europe/Kiev",
        "Europe/Istanbul",
        "Asia/Jerusalem",
        "Asia/Amman",
        "Asia/Baghdad",
        "Europe/Kaliningrad",
        "Asia/Riyadh",
        "Africa/Nairobi",
        "Asia/Tehran",
        "Asia/Dubai",
        "Asia/Baku",
        "Europe/Moscow",
        "Indian/Mauritius",
        "Asia/Tbilisi",
        "Asia/Yerevan",
        "Asia/Kabul",
        "Asia/Karachi",
        "Asia/Tashkent",
        "Asia/Kolkata",
        "Asia/Colombo",
        "Asia/Kathmandu",
        "Asia/Almaty",
        "Asia/Dhaka",
        "Asia/Yekaterinburg",
        "Asia/Yangon",
        "Asia/Rangoon",
        "Asia/Bangkok",
        "Asia/Novosibirsk",
        "Asia/Shanghai",
        "Asia/Krasnoyarsk",
        "Asia/Singapore",
        "Australia/Perth",
        "Asia/Taipei",
        "Asia/Ulaanbaatar",
        "Asia/Irkutsk",
        "Asia/Tokyo",
        "Asia/Seoul",
        "Australia/Adelaide",
        "Australia/Darwin",
        "Australia/Brisbane",
        "Australia/Sydney",
        "Pacific/Port_Moresby",
        "Australia/Hobart",
        "Asia/Yakutsk",
        "Pacific/Guadalcanal",
        "Asia/Vladivostok",
        "Pacific/Auckland",
        "Etc/GMT-12",
        "Pacific/Fiji",
        "Asia/Magadan",
        "Pacific/Tongatapu",
        "Pacific/Apia",
        "Pacific/Kiritimati",
    ]
} | {"Asia/Toshkent": "Asia/Tashkent", "Asia/Astana": "Asia/Almaty"}


class TimeZoneNotSupported(ValueError):
    """A `Prefer: outlook.timezone` name that is neither a Windows zone nor one of the documented IANA names."""


NEVER = "0001-01-01T00:00:00Z"  # Graph's `responseStatus.time` when nobody responded


@dataclass(frozen=True)
class SimEvent:
    """One scripted event. Timed: aware datetimes. All-day: `datetime.date`s, end exclusive.

    `recurrence_days=N>0` makes a daily series of N occurrences starting at `start`.
    """

    id: str
    subject: str
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date
    all_day: bool = False
    show_as: str = "busy"
    response: str = "accepted"
    cancelled: bool = False
    private: bool = False
    recurrence_days: int = 0

    def __post_init__(self) -> None:
        if not self.id or "/" in self.id:
            raise ValueError(f"SimEvent id must be a non-empty string without '/', not {self.id!r}")
        if self.all_day:
            _check_all_day(self)
        else:
            _check_timed(self)
        if self.show_as not in SHOW_AS:
            raise ValueError(f"SimEvent {self.id}: show_as must be one of {SHOW_AS}, not {self.show_as!r}")
        if self.response not in RESPONSE_TO_GRAPH:
            raise ValueError(f"SimEvent {self.id}: response must be one of {tuple(RESPONSE_TO_GRAPH)}")
        if self.recurrence_days < 0:
            raise ValueError(f"SimEvent {self.id}: recurrence_days must be 0 (single) or the number of occurrences")


def _check_all_day(event: SimEvent) -> None:
    if isinstance(event.start, dt.datetime) or isinstance(event.end, dt.datetime):
        raise ValueError(f"SimEvent {event.id}: an all-day event takes datetime.date start and end")
    if event.end <= event.start:
        raise ValueError(f"SimEvent {event.id}: an all-day event ends (exclusive) after its start date")


def _check_timed(event: SimEvent) -> None:
    for name, value in (("start", event.start), ("end", event.end)):
        if not isinstance(value, dt.datetime) or value.utcoffset() is None:
            raise ValueError(f"SimEvent {event.id}: {name} must be a timezone-aware datetime for a timed event")
    if event.end < event.start:
        raise ValueError(f"SimEvent {event.id}: end is before start")


@dataclass(frozen=True)
class EventRecord:
    """A stored event: the scripted event plus what the server keeps about it."""

    event: SimEvent
    version: int
    created: dt.datetime
    modified: dt.datetime

    @property
    def change_key(self) -> str:
        return f"sim{self.version:08d}"


@dataclass(frozen=True)
class Instance:
    """One calendarView entry: a single event or one occurrence of a series, with absolute UTC times."""

    id: str
    record: EventRecord
    start: dt.datetime
    end: dt.datetime
    series_master_id: str | None

    @property
    def fingerprint(self) -> str:
        """Changes whenever a delta query must report this instance again."""
        return f"{self.record.version}|{self.start.isoformat()}|{self.end.isoformat()}"

    def overlaps(self, window_start: dt.datetime, window_end: dt.datetime) -> bool:
        if self.start == self.end:
            return window_start <= self.start < window_end
        return self.start < window_end and self.end > window_start


def expand(record: EventRecord, mailbox_zone: ZoneInfo) -> list[Instance]:
    """The calendarView instances of one stored event; a series repeats at the same local wall-clock time."""
    event = record.event
    if event.recurrence_days == 0:
        start, end = _bounds(event, mailbox_zone, 0)
        return [Instance(event.id, record, start, end, None)]
    instances = []
    for day in range(event.recurrence_days):
        start, end = _bounds(event, mailbox_zone, day)
        local_date = start.astimezone(mailbox_zone).date()
        instances.append(Instance(f"{event.id}_{local_date:%Y%m%d}", record, start, end, event.id))
    return instances


def _bounds(event: SimEvent, zone: ZoneInfo, days: int) -> tuple[dt.datetime, dt.datetime]:
    shift = dt.timedelta(days=days)
    if event.all_day:
        return _local_midnight(event.start + shift, zone), _local_midnight(event.end + shift, zone)
    assert isinstance(event.start, dt.datetime) and isinstance(event.end, dt.datetime)
    # Adding days to a datetime in a ZoneInfo zone moves the wall clock, so 09:00 stays 09:00 across DST.
    start = (event.start.astimezone(zone) + shift).astimezone(dt.UTC)
    end = (event.end.astimezone(zone) + shift).astimezone(dt.UTC)
    return start, end


def _local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)


def zone_from_prefer(name: str | None) -> tuple[ZoneInfo, str] | None:
    """The zone named in `Prefer: outlook.timezone`, or None (no preference: UTC).

    Graph takes any Windows zone name and the IANA names listed in datetimetimezone.md; anything else
    (`Europe/Oslo` included) raises TimeZoneNotSupported, which Graph answers with TimeZoneNotSupportedException.
    """
    if not name:
        return None
    key = _windows_zones().get(name) or DOCUMENTED_IANA_ZONES.get(name)
    if key is None:
        raise TimeZoneNotSupported(name)
    return ZoneInfo(key), name


@functools.cache
def _windows_zones() -> dict[str, str]:
    """Windows zone name → IANA key, from exchangelib's copy of CLDR's windowsZones table."""
    from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

    return dict(MS_TIMEZONE_TO_IANA_MAP)


def windows_zone_name(iana_key: str) -> str:
    """The Windows name Exchange keeps for an IANA zone (originalStartTimeZone); the IANA key if none is known."""
    from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP

    known = IANA_TO_MS_TIMEZONE_MAP.get(iana_key)
    return known[0] if known else iana_key


def graph_datetime(value: dt.datetime, zone: ZoneInfo | None, zone_label: str) -> dict[str, str]:
    """Graph's dateTimeTimeZone: wall-clock time with seven fractional digits, and the zone's name."""
    local = value.astimezone(zone or dt.UTC)
    return {"dateTime": f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}0", "timeZone": zone_label}


def graph_timestamp(value: dt.datetime) -> str:
    """A UTC timestamp as Graph writes one (`2026-01-05T09:00:00.0000000Z`)."""
    utc = value.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0Z"


def event_json(instance: Instance, mailbox_zone: ZoneInfo, prefer: tuple[ZoneInfo, str] | None) -> dict[str, object]:
    """An instance as Graph's event resource; times in the preferred zone, else UTC."""
    event = instance.record.event
    zone, label = prefer if prefer else (None, "UTC")
    response = RESPONSE_TO_GRAPH[event.response]
    return {
        "@odata.etag": f'W/"{instance.record.change_key}"',
        "id": instance.id,
        "createdDateTime": graph_timestamp(instance.record.created),
        "lastModifiedDateTime": graph_timestamp(instance.record.modified),
        "changeKey": instance.record.change_key,
        "subject": event.subject,
        "isAllDay": event.all_day,
        "isCancelled": event.cancelled,
        "isOrganizer": response == "organizer",
        "showAs": event.show_as,
        "sensitivity": "private" if event.private else "normal",
        "type": "occurrence" if instance.series_master_id else "singleInstance",
        "seriesMasterId": instance.series_master_id,
        "responseStatus": {"response": response, "time": NEVER},
        "originalStartTimeZone": windows_zone_name(mailbox_zone.key),
        "originalEndTimeZone": windows_zone_name(mailbox_zone.key),
        "start": graph_datetime(instance.start, zone, label),
        "end": graph_datetime(instance.end, zone, label),
    }


def removed_json(instance_id: str) -> dict[str, object]:
    """How a delta query reports an instance that is gone."""
    return {"@odata.type": "#microsoft.graph.event", "id": instance_id, "@removed": {"reason": "deleted"}}
