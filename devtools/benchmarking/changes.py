"""Scripted calendar edits that are sure to change what MBN should hold, and the day they change.

Each edit touches one timed appointment 2 to 9 days ahead (away from the sync window's edges, which move
with the clock), and is kept only if the engine's answer for that day differs before and after.
"""

import dataclasses
import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from devtools import demo
from devtools.benchmarking.arrivals import Interval, on_day
from devtools.benchmarking.fleet import Member, expected_absences
from sync.rules import Event

OSLO = ZoneInfo("Europe/Oslo")
CHANGE_KINDS = ("create", "update", "delete")


@dataclass(frozen=True)
class Change:
    kind: str  # create | update | delete
    member: Member
    event: Event  # the new or replaced appointment, or the one deleted
    events_after: list[Event]
    day_start: dt.datetime
    day_end: dt.datetime
    wanted: list[Interval]  # the engine's absences on that day after the change


def _day(moment: dt.datetime | dt.date) -> dt.date:
    return moment.astimezone(OSLO).date() if isinstance(moment, dt.datetime) else moment


def _day_bounds(event: Event) -> tuple[dt.datetime, dt.datetime]:
    day = _day(event.start)
    start = dt.datetime.combine(day, dt.time(0), OSLO)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), OSLO)


def _effective(member: Member, kind: str, event: Event, after: list[Event], now: dt.datetime) -> Change | None:
    day_start, day_end = _day_bounds(event)
    before = on_day(expected_absences(member, now), day_start, day_end)
    wanted = on_day(expected_absences(member, now, after), day_start, day_end)
    return Change(kind, member, event, after, day_start, day_end, wanted) if wanted != before else None


def plan_change(member: Member, kind: str, rng: random.Random, now: dt.datetime) -> Change:
    """An edit of `kind` that changes the member's absences (falls back to a new appointment)."""
    today = now.astimezone(OSLO).date()
    first, last = today + dt.timedelta(days=2), today + dt.timedelta(days=9)
    timed = [e for e in member.events if not e.all_day and first <= _day(e.start) <= last and not e.cancelled]
    rng.shuffle(timed)
    if kind in ("update", "delete"):
        for old in timed:
            rest = [e for e in member.events if e.id != old.id]
            if kind == "delete":
                change = _effective(member, kind, old, rest, now)
            else:
                moved = dataclasses.replace(
                    old,
                    start=old.start + dt.timedelta(hours=1),
                    end=old.end + dt.timedelta(hours=1),
                    subject="Kundemøte &Eks",
                    show_as="busy",
                    response="organizer",
                    private=False,
                )
                change = _effective(member, kind, moved, [*rest, moved], now)
            if change:
                return change
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    rng.shuffle(days)
    for day in days:
        for hour in (9, 10, 13, 14, 11, 15):
            begin = dt.datetime.combine(day, dt.time(hour, 30), OSLO)
            new = Event(
                f"{member.user.pk}-chg-{rng.randrange(10**9)}",
                begin,
                begin + dt.timedelta(minutes=45),
                subject="Kundemøte &Eks",
                show_as="busy",
                response="organizer",
            )
            change = _effective(member, "create", new, [*member.events, new], now)
            if change:
                return change
    raise ValueError(f"no effective change found for user {member.user.pk}")


def apply_change(sims, change: Change) -> None:  # type: ignore[no-untyped-def]
    """Make the edit in the member's calendar system; its change notification follows from there."""
    member = change.member
    if change.kind == "delete":
        if member.kind == "graph":
            sims.graph.delete_event(demo.graph_user_id(member.user), change.event.id)
        else:
            getattr(sims, member.kind).delete_event(member.user.email, change.event.id)
    else:
        demo.put_events(sims, member.kind, member.user, demo.as_provider_can_hold(member.kind, [change.event]))
    member.events = change.events_after


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (`share` 0.5 for the median), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]
