"""The stored calendar state (sync/event_state.py): the engine gives the same absences from the stored events as
from the calendar itself, under any settings, and the stored JSON holds no subject."""

import datetime as dt
import json
import random
from zoneinfo import ZoneInfo

import pytest

from devtools import demo
from sync import event_state
from sync.rules import DEFAULT_CATALOGUE, Catalogue, Event, Profile, RuleSettings, compute_absences

OSLO = ZoneInfo("Europe/Oslo")
NOW = dt.datetime(2026, 12, 7, 6, tzinfo=OSLO)
WINDOW = (NOW, NOW + dt.timedelta(days=14))
SETTINGS = (
    RuleSettings(),
    RuleSettings(include_tentative=True, divert_by_default=False),
    RuleSettings(office_hours_only=True, holidays=None, default_profile="Ekstern avtale"),
)


def stored_and_back(events: list[Event], catalogue: Catalogue = DEFAULT_CATALOGUE) -> list[Event]:
    state = event_state.CalendarState(
        event_state.catalogue_key(catalogue),
        WINDOW[1],
        event_state.apply({}, changed=events, removed=(), catalogue=catalogue),
    )
    data = json.loads(json.dumps(event_state.encode(state)))  # as the database keeps it
    return list(event_state.decode(data, catalogue).events.values())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rules", SETTINGS)
def test_the_engine_gives_the_same_absences_from_the_stored_events(seed: int, rules: RuleSettings) -> None:
    events = demo.scripted_events(rng=random.Random(seed), start=NOW, days=14, count=40, prefix="e")
    events += [
        Event("kode", NOW + dt.timedelta(hours=3), NOW + dt.timedelta(hours=4), subject="Kunde &Eks- &Møt+"),
        Event("fri", NOW + dt.timedelta(hours=5), NOW + dt.timedelta(hours=6), subject="&+", show_as="free"),
        Event("privat", NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=1, hours=1), private=True),
    ]
    before = compute_absences(
        settings=rules, window_start=WINDOW[0], window_end=WINDOW[1], events=events, catalogue=DEFAULT_CATALOGUE
    )
    after = compute_absences(
        settings=rules,
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        events=stored_and_back(events),
        catalogue=DEFAULT_CATALOGUE,
    )
    assert before == after


def test_the_stored_json_has_no_subject_and_is_small() -> None:
    events = [Event("a", NOW, NOW + dt.timedelta(hours=1), subject="Hemmelig oppkjøp av Ørnulf AS &For")]
    state = event_state.CalendarState(
        event_state.catalogue_key(DEFAULT_CATALOGUE),
        WINDOW[1],
        event_state.apply({}, changed=events, removed=(), catalogue=DEFAULT_CATALOGUE),
    )
    text = json.dumps(event_state.encode(state), ensure_ascii=False)
    assert "Ørnulf" not in text and "oppkjøp" not in text
    assert "Forretningsreise" in text  # the parsed code's profile
    assert len(text) < 200


def test_another_catalogue_makes_the_state_unusable() -> None:
    events = [Event("a", NOW, NOW + dt.timedelta(hours=1), subject="&For")]
    state = event_state.CalendarState(
        event_state.catalogue_key(DEFAULT_CATALOGUE),
        WINDOW[1],
        event_state.apply({}, changed=events, removed=(), catalogue=DEFAULT_CATALOGUE),
    )
    other = Catalogue.of([*DEFAULT_CATALOGUE.profiles, Profile("Hje", "Hjemmekontor", "Hjemmekontor", "Hjemme")])
    with pytest.raises(event_state.StateUnusable):
        event_state.decode(event_state.encode(state), other)
    with pytest.raises(event_state.StateUnusable):
        event_state.decode({"v": 99}, DEFAULT_CATALOGUE)


def test_changes_replace_and_remove_events() -> None:
    first = [Event("a", NOW, NOW + dt.timedelta(hours=1)), Event("b", NOW, NOW + dt.timedelta(hours=2))]
    known = event_state.apply({}, changed=first, removed=(), catalogue=DEFAULT_CATALOGUE)
    moved = Event("a", NOW + dt.timedelta(hours=3), NOW + dt.timedelta(hours=4), subject="&Syk")
    after = event_state.apply(known, changed=[moved], removed=["b", "gone"], catalogue=DEFAULT_CATALOGUE)
    assert list(after) == ["a"]
    assert after["a"].start == moved.start and after["a"].subject == ""
    assert after["a"].code is not None and after["a"].code.profile is not None
    assert after["a"].code.profile.full_name == "Syk"


def test_time_alone_changes_the_result_when_an_event_reaches_past_the_horizon() -> None:
    horizon = dt.timedelta(days=14)
    end = NOW + horizon
    inside = Event("in", NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=1, hours=1))
    beyond = Event("out", end + dt.timedelta(days=1), end + dt.timedelta(days=1, hours=1))
    assert event_state.due_after([inside], end, horizon, OSLO) is None
    beyond_start = end + dt.timedelta(days=1)
    assert event_state.due_after([inside, beyond], end, horizon, OSLO) == (beyond_start - horizon).astimezone(dt.UTC)
    day = (end + dt.timedelta(days=2)).date()
    all_day = Event("ferie", day, day + dt.timedelta(days=1), all_day=True)
    midnight = dt.datetime.combine(day, dt.time(), OSLO)
    assert event_state.due_after([all_day], end, horizon, OSLO) == (midnight - horizon).astimezone(dt.UTC)
    # a holiday across the horizon's end: cut at the horizon, and stretched by the next engine run (at the latest
    # the daily full read), not by every sweep
    across = Event("tur", end - dt.timedelta(days=1), end + dt.timedelta(days=5))
    assert event_state.due_after([inside, across], end, horizon, OSLO) is None
    assert event_state.due_after([across, beyond], end, horizon, OSLO) == (beyond_start - horizon).astimezone(dt.UTC)
