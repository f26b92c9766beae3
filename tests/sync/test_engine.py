"""The rules engine on the cases the worked examples do not spell out."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from sync.rules import DEFAULT_CATALOGUE, Event, RulesError, RuleSettings, compute_absences

OSLO = ZoneInfo("Europe/Oslo")


def at(day, hour, minute=0, month=1):
    return dt.datetime(2026, month, day, hour, minute, tzinfo=OSLO)


def absences(events, rules=None, start=None, end=None):
    return compute_absences(
        settings=rules or RuleSettings(),
        window_start=start or at(5, 0),
        window_end=end or at(12, 0),
        events=events,
        catalogue=DEFAULT_CATALOGUE,
    )


def summary(result):
    return [
        (a.start.strftime("%d %H:%M"), a.end.strftime("%d %H:%M"), a.profile, a.divert, a.event_ids) for a in result
    ]


def test_adjacent_pieces_with_the_same_profile_but_other_diversion_stay_apart():
    result = absences(
        [
            Event("a", at(6, 9), at(6, 10), subject="Møte"),
            Event("b", at(6, 10), at(6, 11), subject="Møte &-"),
        ]
    )
    assert summary(result) == [
        ("06 09:00", "06 10:00", "Møte", True, ("a",)),
        ("06 10:00", "06 11:00", "Møte", False, ("b",)),
    ]


def test_an_event_hidden_behind_another_all_along_is_not_listed():
    result = absences(
        [
            Event("long", at(6, 9), at(6, 12), subject="&Ikt"),
            Event("inner", at(6, 10), at(6, 11), subject="Ikke tilgjengelig-møte", show_as="oof"),
        ]
    )
    assert summary(result) == [("06 09:00", "06 12:00", "Ikke tilgjengelig", True, ("long",))]


def test_later_start_wins_between_equals_then_earlier_end_then_smaller_id():
    result = absences(
        [
            Event("x", at(6, 9), at(6, 12), subject="&For"),
            Event("y", at(6, 10), at(6, 12), subject="&Syk"),
        ]
    )
    assert summary(result) == [
        ("06 09:00", "06 10:00", "Forretningsreise", True, ("x",)),
        ("06 10:00", "06 12:00", "Syk", True, ("y",)),
    ]
    result = absences(
        [
            Event("b", at(6, 9), at(6, 11), subject="&For"),
            Event("a", at(6, 9), at(6, 11), subject="&Syk"),
        ]
    )
    assert summary(result) == [("06 09:00", "06 11:00", "Syk", True, ("a",))]


def test_oof_without_a_code_uses_the_out_of_office_profile_and_modifiers_keep_it():
    result = absences([Event("o", at(7, 9), at(7, 10), show_as="oof", subject="Borte &-")])
    assert summary(result) == [("07 09:00", "07 10:00", "Ikke tilgjengelig", False, ("o",))]


def test_declined_events_and_zero_length_events_are_never_pushed():
    result = absences(
        [
            Event("d", at(7, 9), at(7, 10), subject="&For", response="declined"),
            Event("z", at(7, 11), at(7, 11), subject="&For"),
            Event("n", at(7, 12), at(7, 11), subject="&For"),
        ]
    )
    assert result == ()


def test_free_and_working_elsewhere_without_a_code_are_not_pushed_but_tentatively_accepted_busy_is():
    result = absences(
        [
            Event("f", at(7, 9), at(7, 10), show_as="free"),
            Event("w", at(7, 10), at(7, 11), show_as="workingElsewhere"),
            Event("u", at(7, 11), at(7, 12), show_as="unknown"),
            Event("t", at(7, 13), at(7, 14), show_as="busy", response="tentative"),
        ]
    )
    assert summary(result) == [("07 13:00", "07 14:00", "Møte", True, ("t",))]


def test_everything_is_clipped_to_the_window():
    result = absences([Event("e", at(4, 10), at(5, 10), subject="&Syk")], start=at(5, 0), end=at(5, 9))
    assert summary(result) == [("05 00:00", "05 09:00", "Syk", True, ("e",))]


def test_a_timed_event_over_several_days_is_cut_to_each_days_office_hours_when_asked():
    rules = RuleSettings(office_hours_only=True)
    result = absences([Event("trip", at(8, 12), at(12, 0), subject="&For")], rules=rules)  # Thu noon – Mon
    assert summary(result) == [
        ("08 12:00", "08 16:00", "Forretningsreise", True, ("trip",)),
        ("09 08:00", "09 16:00", "Forretningsreise", True, ("trip",)),
    ]


def test_a_timed_midnight_to_midnight_event_is_not_an_all_day_event():
    result = absences([Event("m", at(10, 0), at(11, 0), subject="&Syk")])  # Saturday, timed
    assert summary(result) == [("10 00:00", "11 00:00", "Syk", True, ("m",))]


def test_all_day_events_use_the_customers_time_zone_and_holidays_can_be_off():
    rules = RuleSettings(timezone="America/New_York", holidays=None)
    result = absences(
        [Event("a", dt.date(2026, 1, 1), dt.date(2026, 1, 2), all_day=True, subject="&Ferie")],
        rules=rules,
        start=at(1, 0),
        end=at(3, 0),
    )
    assert [(a.start.isoformat(), a.end.isoformat()) for a in result] == [
        ("2026-01-01T08:00:00-05:00", "2026-01-01T16:00:00-05:00")
    ]


def test_public_holidays_have_no_office_hours():
    rules = RuleSettings(office_hours=((480, 960),) * 7)
    new_year = [Event("a", dt.date(2026, 1, 1), dt.date(2026, 1, 3), all_day=True, subject="&Ferie")]
    assert summary(absences(new_year, rules=rules, start=at(1, 0), end=at(3, 0))) == [
        ("02 08:00", "02 16:00", "Ferie", True, ("a",))
    ]


def test_a_service_users_default_profile_applies():
    result = absences([Event("m", at(6, 9), at(6, 10))], rules=RuleSettings(default_profile="Ikke Forstyrr"))
    assert summary(result)[0][2] == "Ikke Forstyrr"


def test_unknown_profiles_and_time_zones_are_refused_naming_the_setting():
    with pytest.raises(RulesError, match=r"settings\.default_profile: unknown profile 'Kaffe'"):
        absences([], rules=RuleSettings(default_profile="Kaffe"))
    with pytest.raises(RulesError, match=r"settings\.timezone: unknown time zone 'Mars/Olympus'"):
        absences([], rules=RuleSettings(timezone="Mars/Olympus"))
    with pytest.raises(RulesError, match=r"settings\.timezone: unknown time zone 'Europe'"):  # a directory of zones
        absences([], rules=RuleSettings(timezone="Europe"))
    with pytest.raises(RulesError, match="window: the end must be after the start"):
        absences([], start=at(6, 0), end=at(5, 0))


def test_office_hours_may_end_at_midnight():
    rules = RuleSettings(office_hours=((1200, 1440),) * 7, holidays=None)
    result = absences(
        [Event("a", dt.date(2026, 1, 10), dt.date(2026, 1, 11), all_day=True, subject="&Syk")], rules=rules
    )
    assert summary(result) == [("10 20:00", "11 00:00", "Syk", True, ("a",))]
