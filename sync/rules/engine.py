"""The rules engine: calendar events in, MBN absences out (calendar-rules.md §2–4).

Pure: no database, no network, no clock. Instants are handled in UTC inside the engine (comparing
datetimes that share a ZoneInfo compares wall clocks, which is wrong around DST changes) and turned
into the settings' time zone on the way out.
"""

import datetime as dt
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from sync.rules.catalogue import Catalogue, Profile
from sync.rules.model import Absence, Event, RuleSettings

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_SHOW_AS_RANK = {"oof": 0, "busy": 1, "tentative": 2}
_ONE_DAY = dt.timedelta(days=1)


class RulesError(ValueError):
    """Settings the engine cannot work with; the message names the field."""


@lru_cache(maxsize=64)
def holiday_dates(country: str, year: int) -> frozenset[dt.date]:
    """Public holidays of a country in a year (the `holidays` package)."""
    try:
        return frozenset(holidays_lib.country_holidays(country, years=year))
    except NotImplementedError as error:
        raise RulesError(f"settings.holidays: unknown country code {country!r}") from error


def _micros(instant: dt.datetime) -> int:
    return (instant - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class _Piece:
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    rank: tuple[int, int, int, int, str]
    event_id: str
    profile: Profile
    divert: bool


class _OfficeCalendar:
    """Office hours of local dates as UTC intervals, computed once per date per engine call."""

    def __init__(self, settings: RuleSettings, zone: ZoneInfo) -> None:
        self.settings = settings
        self.zone = zone
        self._cache: dict[dt.date, tuple[dt.datetime, dt.datetime] | None] = {}

    def interval(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        if day not in self._cache:
            self._cache[day] = self._compute(day)
        return self._cache[day]

    def _compute(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        hours = self.settings.office_hours[day.weekday()]
        if hours is None:
            return None
        if self.settings.holidays and day in holiday_dates(self.settings.holidays, day.year):
            return None
        return self.local_instant(day, hours[0]), self.local_instant(day, hours[1])

    def local_instant(self, day: dt.date, minutes: int) -> dt.datetime:
        """Wall-clock `minutes` after midnight of `day` in the settings' zone, as a UTC instant."""
        day = day + dt.timedelta(days=minutes // 1440)
        minutes %= 1440
        wall = dt.datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=self.zone)
        return wall.astimezone(UTC)

    def local_date(self, instant: dt.datetime) -> dt.date:
        return instant.astimezone(self.zone).date()


def _resolve(catalogue: Catalogue, name: str, field: str) -> Profile:
    profile = catalogue.find(name)
    if profile is None:
        raise RulesError(f"settings.{field}: unknown profile {name!r}")
    return profile


def compute_absences(
    *,
    settings: RuleSettings,
    window_start: dt.datetime,
    window_end: dt.datetime,
    events: Iterable[Event],
    catalogue: Catalogue,
) -> tuple[Absence, ...]:
    """The absences for one calendar in [window_start, window_end), sorted and non-overlapping."""
    try:
        zone = ZoneInfo(settings.timezone)
    except (ValueError, KeyError, OSError) as error:  # not found: KeyError; "Europe" (a directory): OSError
        raise RulesError(f"settings.timezone: unknown time zone {settings.timezone!r}") from error
    default_profile = _resolve(catalogue, settings.default_profile, "default_profile")
    out_of_office_profile = _resolve(catalogue, settings.out_of_office_profile, "out_of_office_profile")
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise RulesError("window: start and end need a UTC offset")
    window_start, window_end = window_start.astimezone(UTC), window_end.astimezone(UTC)
    if window_end <= window_start:
        raise RulesError("window: the end must be after the start")

    office = _OfficeCalendar(settings, zone)
    pieces: list[_Piece] = []
    for event in events:
        pieces.extend(
            _pieces_of(
                event, settings, office, catalogue, default_profile, out_of_office_profile, window_start, window_end
            )
        )
    return _merge(_winners(pieces), zone)


def _pieces_of(
    event: Event,
    settings: RuleSettings,
    office: _OfficeCalendar,
    catalogue: Catalogue,
    default_profile: Profile,
    out_of_office_profile: Profile,
    window_start: dt.datetime,
    window_end: dt.datetime,
) -> list[_Piece]:
    """The intervals one event would occupy (before overlaps are resolved), clipped to the window."""
    if event.cancelled or event.response == "declined":
        return []
    code = catalogue.parse(event.subject) if event.code is None else event.code
    if not code.explicit and not (
        event.show_as in ("busy", "oof") or (event.show_as == "tentative" and settings.include_tentative)
    ):
        return []

    if event.all_day:
        first_day, end_day = _as_date(event.start, office), _as_date(event.end, office)
        if end_day <= first_day:
            return []
        event_start = office.local_instant(first_day, 0)
        event_end = office.local_instant(end_day, 0)
        intervals = _office_intervals(first_day, end_day, office, window_start, window_end)
    else:
        assert isinstance(event.start, dt.datetime) and isinstance(event.end, dt.datetime)
        event_start, event_end = event.start.astimezone(UTC), event.end.astimezone(UTC)
        if event_end <= event_start or event_end <= window_start or event_start >= window_end:
            return []
        start, end = max(event_start, window_start), min(event_end, window_end)
        if settings.office_hours_only:
            intervals = [
                (max(start, office_start), min(end, office_end))
                for office_start, office_end in _office_intervals(
                    office.local_date(start), office.local_date(end) + _ONE_DAY, office, start, end
                )
            ]
        else:
            intervals = [(start, end)]

    profile = code.profile or (out_of_office_profile if event.show_as == "oof" else default_profile)
    divert = settings.divert_by_default if code.divert is None else code.divert
    rank = (
        0 if code.explicit else 1,
        _SHOW_AS_RANK.get(event.show_as, 3),
        -_micros(event_start),
        _micros(event_end),
        event.id,
    )
    return [_Piece(start, end, rank, event.id, profile, divert) for start, end in intervals if start < end]


def _as_date(value: dt.date | dt.datetime, office: _OfficeCalendar) -> dt.date:
    if isinstance(value, dt.datetime):
        return office.local_date(value)
    return value


def _office_intervals(
    first_day: dt.date, end_day: dt.date, office: _OfficeCalendar, clip_start: dt.datetime, clip_end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Office hours of the local dates [first_day, end_day) that overlap [clip_start, clip_end), clipped."""
    first_day = max(first_day, office.local_date(clip_start) - _ONE_DAY)
    end_day = min(end_day, office.local_date(clip_end) + 2 * _ONE_DAY)
    intervals = []
    day = first_day
    while day < end_day:
        hours = office.interval(day)
        if hours is not None:
            start, end = max(hours[0], clip_start), min(hours[1], clip_end)
            if start < end:
                intervals.append((start, end))
        day += _ONE_DAY
    return intervals


def _winners(pieces: list[_Piece]) -> list[tuple[dt.datetime, dt.datetime, _Piece]]:
    """Elementary segments with the piece that wins there (§4 priority), by a sweep over the bounds."""
    if not pieces:
        return []
    pieces.sort(key=lambda piece: piece.start)
    bounds = sorted({piece.start for piece in pieces} | {piece.end for piece in pieces})
    live: list[tuple[tuple[int, int, int, int, str], int]] = []
    segments: list[tuple[dt.datetime, dt.datetime, _Piece]] = []
    next_piece = 0
    for here, there in itertools.pairwise(bounds):
        while next_piece < len(pieces) and pieces[next_piece].start <= here:
            heapq.heappush(live, (pieces[next_piece].rank, next_piece))
            next_piece += 1
        while live and pieces[live[0][1]].end <= here:
            heapq.heappop(live)
        if live:
            segments.append((here, there, pieces[live[0][1]]))
    return segments


def _merge(segments: list[tuple[dt.datetime, dt.datetime, _Piece]], zone: ZoneInfo) -> tuple[Absence, ...]:
    """Adjacent segments with the same profile and diversion become one absence."""
    merged: list[tuple[dt.datetime, dt.datetime, Profile, bool, set[str]]] = []
    for start, end, piece in segments:
        if merged:
            last_start, last_end, profile, divert, ids = merged[-1]
            if last_end == start and profile == piece.profile and divert == piece.divert:
                ids.add(piece.event_id)
                merged[-1] = (last_start, end, profile, divert, ids)
                continue
        merged.append((start, end, piece.profile, piece.divert, {piece.event_id}))
    return tuple(
        Absence(
            start=start.astimezone(zone),
            end=end.astimezone(zone),
            profile=profile.profile,
            mbn_reason=profile.mbn_reason,
            divert=divert,
            event_ids=tuple(sorted(ids)),
        )
        for start, end, profile, divert, ids in merged
    )
