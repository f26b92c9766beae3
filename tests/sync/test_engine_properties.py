"""Property tests of the rules engine against a slow, obvious oracle (calendar-rules.md §2–4)."""

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.rules import DEFAULT_CATALOGUE, Event, RuleSettings, compute_absences
from sync.rules.model import RESPONSES, SHOW_AS

OSLO = ZoneInfo("Europe/Oslo")
UTC = dt.UTC
# Both weeks hold a DST change: Sunday 29 March and Sunday 25 October 2026.
WEEKS = [dt.date(2026, 3, 23), dt.date(2026, 10, 19)]
SUBJECTS = [
    "",
    "Møte",
    "Kundemøte &For",
    "&-",
    "&+Ferie",
    "R&D",
    "&Syk &-",
    "&Ikt",
    "Q&A",
    "&Møter",
    "&+",
    "Lunsj &Ute",
    "&-Ferie &+",
    "&-Møt",
    "&+Møt",
    "Styremøte &-",
    "Planlegging",
]
NO_HOLIDAYS = holidays.country_holidays("NO", years=2026)


@st.composite
def day_hours(draw):
    if draw(st.booleans()):
        return None
    start = draw(st.integers(0, 23 * 4)) * 15
    end = draw(st.integers(start // 15 + 1, 96)) * 15
    return (start, end)


@st.composite
def rule_settings(draw):
    office = tuple(draw(day_hours()) for _ in range(7)) if draw(st.booleans()) else RuleSettings().office_hours
    return RuleSettings(
        office_hours=office,
        office_hours_only=draw(st.booleans()),
        holidays=draw(st.sampled_from(["NO", None])),
        divert_by_default=draw(st.booleans()),
        include_tentative=draw(st.booleans()),
        default_profile=draw(st.sampled_from(["Møte", "Ikke tilgjengelig", "Syk"])),
    )


@st.composite
def scenario(draw):
    base = draw(st.sampled_from(WEEKS))
    events = []
    for index in range(draw(st.integers(0, 14))):
        all_day = draw(st.booleans())
        if all_day:
            start = base + dt.timedelta(days=draw(st.integers(-2, 5)))
            end = start + dt.timedelta(days=draw(st.integers(-1, 5)))
        else:
            start = dt.datetime.combine(base, dt.time(), OSLO) + dt.timedelta(minutes=15 * draw(st.integers(-96, 384)))
            start = start.astimezone(UTC).astimezone(OSLO)  # a real instant, shown in Oslo time
            end = start + dt.timedelta(minutes=15 * draw(st.integers(-4, 60)))
        events.append(
            Event(
                id=f"e{index:02d}",
                subject=draw(st.sampled_from(SUBJECTS)),
                start=start,
                end=end,
                all_day=all_day,
                show_as=draw(st.sampled_from(SHOW_AS)),
                response=draw(st.sampled_from(RESPONSES)),
                cancelled=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    window_start = dt.datetime.combine(base, dt.time(), OSLO) + dt.timedelta(hours=draw(st.integers(0, 72)))
    window_end = window_start + dt.timedelta(hours=draw(st.integers(1, 144)))
    return draw(rule_settings()), window_start, window_end, events


# --- the oracle ------------------------------------------------------------------------------------


def office_interval(rules, day):
    hours = rules.office_hours[day.weekday()]
    if hours is None or (rules.holidays and day in NO_HOLIDAYS):
        return None
    midnight = dt.datetime(day.year, day.month, day.day)
    return tuple((midnight + dt.timedelta(minutes=m)).replace(tzinfo=OSLO).astimezone(UTC) for m in hours)


def in_office(rules, instant, days):
    for day in days:
        interval = office_interval(rules, day)
        if interval and interval[0] <= instant < interval[1]:
            return True
    return False


def counts(rules, event):
    if event.cancelled or event.response == "declined":
        return False
    if DEFAULT_CATALOGUE.parse(event.subject).explicit:
        return True
    return event.show_as in ("busy", "oof") or (event.show_as == "tentative" and rules.include_tentative)


def local_midnight(day):
    return dt.datetime(day.year, day.month, day.day, tzinfo=OSLO).astimezone(UTC)


def covers(rules, event, instant):
    local_day = instant.astimezone(OSLO).date()
    if event.all_day:
        days = [d for d in (local_day - dt.timedelta(days=1), local_day) if event.start <= d < event.end]
        return in_office(rules, instant, days)
    if not event.start <= instant < event.end:
        return False
    return not rules.office_hours_only or in_office(rules, instant, [local_day - dt.timedelta(days=1), local_day])


def rank(event):
    code = DEFAULT_CATALOGUE.parse(event.subject)
    start = local_midnight(event.start) if event.all_day else event.start
    end = local_midnight(event.end) if event.all_day else event.end
    show = {"oof": 0, "busy": 1, "tentative": 2}.get(event.show_as, 3)
    return (0 if code.explicit else 1, show, -start.timestamp(), end.timestamp(), event.id)


def expected_at(rules, events, instant):
    live = [e for e in events if counts(rules, e) and covers(rules, e, instant)]
    if not live:
        return None
    winner = min(live, key=rank)
    code = DEFAULT_CATALOGUE.parse(winner.subject)
    profile = code.profile or DEFAULT_CATALOGUE.find(
        rules.out_of_office_profile if winner.show_as == "oof" else rules.default_profile
    )
    divert = rules.divert_by_default if code.divert is None else code.divert
    return winner.id, profile.profile, divert


def bounds(rules, events, window_start, window_end, absences):
    points = {window_start, window_end}
    for event in events:
        if event.all_day:
            points |= {local_midnight(event.start), local_midnight(event.end)}
        else:
            points |= {event.start.astimezone(UTC), event.end.astimezone(UTC)}
    day = window_start.astimezone(OSLO).date() - dt.timedelta(days=2)
    while day <= window_end.astimezone(OSLO).date() + dt.timedelta(days=1):
        points |= set(office_interval(rules, day) or ())
        day += dt.timedelta(days=1)
    for absence in absences:
        points |= {absence.start, absence.end}
    return sorted(p.astimezone(UTC) for p in points if window_start <= p <= window_end)


# --- the properties -------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_the_engine_agrees_with_the_oracle_at_every_instant(case):
    rules, window_start, window_end, events = case
    absences = compute_absences(
        settings=rules, window_start=window_start, window_end=window_end, events=events, catalogue=DEFAULT_CATALOGUE
    )

    # sorted, non-overlapping, inside the window, in the settings' zone
    for absence in absences:
        assert window_start <= absence.start < absence.end <= window_end
        assert absence.start.utcoffset() == absence.start.astimezone(OSLO).utcoffset()
    for before, after in itertools.pairwise(absences):
        assert before.end <= after.start
        # merged: nothing adjacent with the same profile and diversion
        assert not (before.end == after.start and (before.profile, before.divert) == (after.profile, after.divert))

    # at every elementary piece, the winner the oracle names, and nothing where no counting event is live
    winners_inside: dict[int, set[str]] = {i: set() for i in range(len(absences))}
    points = bounds(rules, events, window_start, window_end, absences)
    for here, there in itertools.pairwise(points):
        instant = here + (there - here) / 2
        expected = expected_at(rules, events, instant)
        found = [i for i, a in enumerate(absences) if a.start <= instant < a.end]
        if expected is None:
            assert not found, f"absence at {instant} where no counting event is live"
            continue
        assert len(found) == 1, f"no absence at {instant}, expected {expected}"
        absence = absences[found[0]]
        assert (absence.profile, absence.divert) == expected[1:]
        winners_inside[found[0]].add(expected[0])

    # event ids: exactly the events that win somewhere inside; never a cancelled or declined one
    dropped = {e.id for e in events if e.cancelled or e.response == "declined"}
    for i, absence in enumerate(absences):
        assert set(absence.event_ids) == winners_inside[i]
        assert list(absence.event_ids) == sorted(absence.event_ids)
        assert not dropped & set(absence.event_ids)


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_cancelled_and_declined_events_change_nothing(case):
    rules, window_start, window_end, events = case
    kept = [e for e in events if not (e.cancelled or e.response == "declined")]
    args = {"settings": rules, "window_start": window_start, "window_end": window_end, "catalogue": DEFAULT_CATALOGUE}
    assert compute_absences(events=events, **args) == compute_absences(events=kept, **args)


DST_DAYS = [dt.date(2026, 3, 29), dt.date(2026, 10, 25)]


@settings(max_examples=200, deadline=None)
@given(day=st.sampled_from(DST_DAYS), start=st.integers(0, 95), length=st.integers(1, 96))
def test_office_hours_keep_their_wall_clock_on_both_dst_days_of_2026(day, start, length):
    start_minute, end_minute = start * 15, min(start * 15 + length * 15, 1440)
    spring_gap = range(120, 180)  # 02:00–03:00 does not exist on 29 March
    if day.month == 3 and (start_minute in spring_gap or end_minute in spring_gap):
        return
    rules = RuleSettings(office_hours=((start_minute, end_minute),) * 7, holidays=None)
    event = Event(id="ferie", subject="&Ferie", all_day=True, start=day, end=day + dt.timedelta(days=1))
    window_start = dt.datetime.combine(day, dt.time(), OSLO) - dt.timedelta(days=1)
    (absence,) = compute_absences(
        settings=rules,
        window_start=window_start,
        window_end=window_start + dt.timedelta(days=3),
        events=[event],
        catalogue=DEFAULT_CATALOGUE,
    )
    local_start, local_end = absence.start.astimezone(OSLO), absence.end.astimezone(OSLO)
    assert (local_start.date(), local_start.hour * 60 + local_start.minute) == (day, start_minute)
    if end_minute == 1440:
        assert (local_end.date(), local_end.hour, local_end.minute) == (day + dt.timedelta(days=1), 0, 0)
    else:
        assert (local_end.date(), local_end.hour * 60 + local_end.minute) == (day, end_minute)
    # real elapsed time: an hour less in spring, an hour more in autumn, when the change (03:00) falls inside
    elapsed = (absence.end.astimezone(UTC) - absence.start.astimezone(UTC)) / dt.timedelta(minutes=1)
    shift = (-60 if day.month == 3 else 60) if start_minute < 180 <= end_minute else 0
    assert elapsed == end_minute - start_minute + shift
