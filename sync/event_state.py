"""What the sync keeps of a calendar between incremental reads: the events as the engine needs them, no subjects.

Per event: its id, start and end (UTC seconds, or ISO dates for all-day events), showAs, the user's response,
the cancelled / all-day / private flags, and what the catalogue's own parser (`Catalogue.parse`, the engine's)
made of the subject: whether it had a code, the profile it names (by full name) and its `+`/`-` diversion. The
subject itself is never kept. `CalendarUser.event_state` holds it as compact JSON (one row per user: cheaper than
a row per event, measured in docs/architecture.md), next to the delta cursor (`CalendarUser.delta_cursor`).

A change to one event is applied to the stored events (`apply`) and the engine runs on the result
(`events_of`), so a sweep re-reads nothing it already has.
"""

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.rules import Catalogue, Event, RuleSettings, SubjectCode

STATE_VERSION = 1
_ALL_DAY, _CANCELLED, _PRIVATE, _EXPLICIT = 1, 2, 4, 8
_DIVERT = {None: 0, True: 1, False: -1}
_DIVERT_BACK = {0: None, 1: True, -1: False}


class StateUnusable(ValueError):
    """The stored state cannot be used (another version or catalogue, or damaged): read the calendar in full."""


@dataclass(frozen=True)
class CalendarState:
    """A calendar as the sync last read it.

    `window_end`: the end of the window the delta cursor was made for (a Graph delta round keeps its window;
    Google's and EWS's keep theirs alike): beyond it the stored events say nothing. `settled`: the fingerprint
    (`settled_key`) of the settings, number and catalogue under which the engine's result from these events was
    last found on MBN; "" when it was not (a push failed, or never ran). `due`: the instant from which the
    engine's result can change with time alone (an event entering the horizon); None: never.
    """

    catalogue: str
    window_end: dt.datetime
    events: dict[str, Event]
    settled: str = ""
    due: dt.datetime | None = None


def catalogue_key(catalogue: Catalogue) -> str:
    """A short fingerprint of the catalogue: stored codes name its profiles, so another catalogue reads anew."""
    return hashlib.sha1(repr(catalogue.profiles).encode(), usedforsecurity=False).hexdigest()[:16]


def settled_key(*, rules: RuleSettings, catalogue: str, msisdn: str, mbn: str) -> str:
    """What the engine's result and where it goes depend on beside the events: settings, catalogue, MBN number and
    the MBN enterprise (`mbn`, "" when none is connected)."""
    text = f"{rules!r}|{catalogue}|{msisdn}|{mbn}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def _instant(value: dt.date | dt.datetime) -> Any:
    if isinstance(value, dt.datetime):
        seconds = value.timestamp()
        return int(seconds) if seconds.is_integer() else seconds
    return value.isoformat()


def _moment(value: Any, all_day: bool) -> dt.date | dt.datetime:
    if all_day:
        return dt.date.fromisoformat(value)
    return dt.datetime.fromtimestamp(value, dt.UTC)


def encode(state: CalendarState) -> dict[str, Any]:
    """The JSON stored on CalendarUser.event_state."""
    rows = []
    for event in state.events.values():
        code = event.code or SubjectCode()
        flags = (
            (_ALL_DAY if event.all_day else 0)
            | (_CANCELLED if event.cancelled else 0)
            | (_PRIVATE if event.private else 0)
            | (_EXPLICIT if code.explicit else 0)
        )
        rows.append(
            [
                event.id,
                _instant(event.start),
                _instant(event.end),
                event.show_as,
                event.response,
                flags,
                code.profile.full_name if code.profile else "",
                _DIVERT[code.divert],
            ]
        )
    return {
        "v": STATE_VERSION,
        "c": state.catalogue,
        "w": int(state.window_end.timestamp()),
        "s": state.settled,
        "d": int(state.due.timestamp()) if state.due else None,
        "e": rows,
    }


@dataclass(frozen=True)
class StoredHeader:
    """The stored state without its events: enough to tell that nothing needs recomputing."""

    window_end: dt.datetime
    settled: str
    due: dt.datetime | None


def header(data: Any, catalogue: str) -> StoredHeader:
    """The stored JSON's window, settled key and due instant; raises StateUnusable when it cannot be used with the
    catalogue whose key is `catalogue` (another version, another catalogue, damaged)."""
    if not isinstance(data, Mapping) or data.get("v") != STATE_VERSION:
        raise StateUnusable("no state of this version")
    if data.get("c") != catalogue:
        raise StateUnusable("the catalogue changed")
    try:
        window_end = dt.datetime.fromtimestamp(data["w"], dt.UTC)
        due = dt.datetime.fromtimestamp(data["d"], dt.UTC) if data.get("d") is not None else None
        return StoredHeader(window_end, str(data.get("s") or ""), due)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise StateUnusable("the stored state is damaged") from error


def decode(data: Any, catalogue: Catalogue) -> CalendarState:
    """The stored JSON back as a state; raises StateUnusable when it cannot be used with this catalogue."""
    key = catalogue_key(catalogue)
    head = header(data, key)
    events: dict[str, Event] = {}
    try:
        for event_id, start, end, show_as, response, flags, profile_name, divert in data["e"]:
            profile = catalogue.find(profile_name) if profile_name else None
            if profile_name and profile is None:
                raise StateUnusable("a stored code names a profile the catalogue lacks")
            all_day = bool(flags & _ALL_DAY)
            explicit = bool(flags & _EXPLICIT)
            events[event_id] = Event(
                id=event_id,
                start=_moment(start, all_day),
                end=_moment(end, all_day),
                all_day=all_day,
                show_as=show_as,
                response=response,
                cancelled=bool(flags & _CANCELLED),
                private=bool(flags & _PRIVATE),
                code=SubjectCode(explicit=explicit, profile=profile, divert=_DIVERT_BACK[divert])
                if explicit
                else SubjectCode(),
            )
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        if isinstance(error, StateUnusable):
            raise
        raise StateUnusable("the stored state is damaged") from error
    return CalendarState(key, head.window_end, events, head.settled, head.due)


def without_subject(event: Event, catalogue: Catalogue) -> Event:
    """The event as stored: the subject parsed by the catalogue's parser, then dropped."""
    code = catalogue.parse(event.subject) if event.code is None else event.code
    return Event(
        id=event.id,
        start=event.start,
        end=event.end,
        all_day=event.all_day,
        show_as=event.show_as,
        response=event.response,
        cancelled=event.cancelled,
        private=event.private,
        code=code,
    )


def apply(
    events: Mapping[str, Event], *, changed: Iterable[Event], removed: Iterable[str], catalogue: Catalogue
) -> dict[str, Event]:
    """The stored events with the changes applied: changed ones replaced whole, removed ones dropped."""
    result = dict(events)
    for event_id in removed:
        result.pop(event_id, None)
    for event in changed:
        result[event.id] = without_subject(event, catalogue)
    return result


def _utc_start(event: Event, zone: dt.tzinfo | None = None) -> dt.datetime:
    if isinstance(event.start, dt.datetime):
        return event.start.astimezone(dt.UTC)
    if zone is not None:  # an all-day event starts at midnight in the customer's zone
        return dt.datetime.combine(event.start, dt.time(), zone).astimezone(dt.UTC)
    # in an unknown zone, local midnight lies between UTC-12 and UTC+14: the earliest is safe
    return dt.datetime.combine(event.start, dt.time(), dt.UTC) - dt.timedelta(hours=14)


def _utc_end(event: Event, zone: dt.tzinfo | None = None) -> dt.datetime:
    if isinstance(event.end, dt.datetime):
        return event.end.astimezone(dt.UTC)
    if zone is not None:
        return dt.datetime.combine(event.end, dt.time(), zone).astimezone(dt.UTC)
    return dt.datetime.combine(event.end, dt.time(), dt.UTC) + dt.timedelta(hours=12)


def current(events: Mapping[str, Event], now: dt.datetime) -> dict[str, Event]:
    """The events that have not ended: those that have say nothing any more."""
    return {event_id: event for event_id, event in events.items() if _utc_end(event) > now}


def due_after(
    events: Iterable[Event], window_end: dt.datetime, horizon: dt.timedelta, zone: dt.tzinfo
) -> dt.datetime | None:
    """When time alone changes the engine's result: the first event starting past the window's end enters the
    horizon when `now + horizon` passes its start. None when no event starts past it. An event already inside
    the horizon and reaching past its end (its absence cut at the horizon) is not due each time the horizon moves
    on: it grows with the next run of the engine (a change, at the latest the daily full read), so its absence's
    far end is never more than a day short of the horizon and MBN is not asked to stretch it every sweep.
    All-day events run from midnight to midnight in `zone`, the customer's (the engine's office calendar)."""
    starts = [start for event in events if (start := _utc_start(event, zone)) >= window_end]
    return min(starts) - horizon if starts else None
