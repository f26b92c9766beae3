"""calendar-rules.md §6: every worked example, through the engine and through `preview_absences`."""

import io
import json

import pytest
from django.core.management import call_command

from sync.rules import DEFAULT_CATALOGUE, preview

pytestmark = pytest.mark.django_db

WEEK = {"start": "2026-01-05T00:00:00+01:00", "end": "2026-01-12T00:00:00+01:00"}  # Mon 5 – Sun 11 January


def timed(event_id, subject, day, start, end, **fields):
    return {
        "id": event_id,
        "subject": subject,
        "start": f"2026-01-{day:02d}T{start}:00+01:00",
        "end": f"2026-01-{day:02d}T{end}:00+01:00",
        **fields,
    }


def absence(day, start, end, profile, reason, divert, ids, month="01", offset="+01:00"):
    return {
        "start": f"2026-{month}-{day:02d}T{start}:00{offset}",
        "end": f"2026-{month}-{day:02d}T{end}:00{offset}",
        "profile": profile,
        "mbn_reason": reason,
        "divert": divert,
        "event_ids": ids,
    }


def run_engine(payload, tmp_path):
    return preview(payload, catalogue=DEFAULT_CATALOGUE)


def run_command(payload, tmp_path):
    path = tmp_path / "input.json"
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    out = io.StringIO()
    call_command("preview_absences", str(path), stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture(params=[run_engine, run_command], ids=["engine", "command"])
def run(request, tmp_path):
    return lambda payload: request.param(payload, tmp_path)


def test_example_1_business_trip(run):
    events = [timed("e1", "Salgsmøte i Tyskland &For", 6, "09:00", "17:00", show_as="busy")]
    trip = [absence(6, "09:00", "17:00", "Forretningsreise", "Jobbreise", True, ["e1"])]
    assert run({"window": WEEK, "events": events})["absences"] == trip
    office_only = run({"settings": {"office_hours_only": True}, "window": WEEK, "events": events})
    assert office_only["absences"] == [absence(6, "09:00", "16:00", "Forretningsreise", "Jobbreise", True, ["e1"])]


def test_example_2_all_day_holiday_follows_office_hours(run):
    events = [
        {
            "id": "e1",
            "subject": "&-Ferie",
            "all_day": True,
            "start": "2026-01-08",
            "end": "2026-01-12",
            "show_as": "free",
        }
    ]
    assert run({"window": WEEK, "events": events})["absences"] == [
        absence(8, "08:00", "16:00", "Ferie", "Ferie", False, ["e1"]),
        absence(9, "08:00", "16:00", "Ferie", "Ferie", False, ["e1"]),
    ]


def test_example_3_explicit_free_lunch_and_a_busy_meeting(run):
    events = [
        timed("m", "Kundemøte", 7, "13:00", "14:00", show_as="busy"),
        timed("l", "Lunsj &Ute", 7, "11:00", "11:30", show_as="free"),
    ]
    assert run({"window": WEEK, "events": events})["absences"] == [
        absence(7, "11:00", "11:30", "Ute til lunch", "Lunch", True, ["l"]),
        absence(7, "13:00", "14:00", "Møte", "Møte", True, ["m"]),
    ]


def test_example_4_explicit_wins_the_overlap(run):
    events = [
        timed("ikt", "&Ikt", 5, "10:00", "12:00", show_as="busy"),
        timed("styre", "Styremøte", 5, "11:00", "13:00", show_as="busy"),
    ]
    assert run({"window": WEEK, "events": events})["absences"] == [
        absence(5, "10:00", "12:00", "Ikke tilgjengelig", "Opptatt", True, ["ikt"]),
        absence(5, "12:00", "13:00", "Møte", "Møte", True, ["styre"]),
    ]


def test_example_5_back_to_back_meetings_merge(run):
    events = [timed("a", "Møte 1", 9, "09:00", "10:00"), timed("b", "Møte 2", 9, "10:00", "11:00")]
    assert run({"window": WEEK, "events": events})["absences"] == [
        absence(9, "09:00", "11:00", "Møte", "Møte", True, ["a", "b"])
    ]


def test_example_6_all_day_on_a_public_holiday_gives_nothing(run):
    window = {"start": "2026-05-11T00:00:00+02:00", "end": "2026-05-18T00:00:00+02:00"}
    events = [
        {"id": "e1", "subject": "Fri", "all_day": True, "start": "2026-05-14", "end": "2026-05-15", "show_as": "oof"}
    ]
    assert run({"window": window, "events": events})["absences"] == []
    # the same on an ordinary Wednesday is the out-of-office profile within office hours
    events[0].update(start="2026-05-13", end="2026-05-14")
    assert run({"window": window, "events": events})["absences"] == [
        absence(13, "08:00", "16:00", "Ikke tilgjengelig", "Opptatt", True, ["e1"], month="05", offset="+02:00")
    ]


def test_example_7_tentative_only_when_included_and_cancelled_never(run):
    tentative = [timed("t", "Planlegging", 8, "09:00", "10:00", show_as="tentative")]
    assert run({"window": WEEK, "events": tentative})["absences"] == []
    included = run({"settings": {"include_tentative": True}, "window": WEEK, "events": tentative})
    assert included["absences"] == [absence(8, "09:00", "10:00", "Møte", "Møte", True, ["t"])]
    cancelled = [timed("c", "Avlyst: Møte &Møt", 8, "12:00", "13:00", show_as="busy", cancelled=True)]
    assert run({"window": WEEK, "events": cancelled})["absences"] == []


def test_example_8_ampersands_inside_words_are_not_codes(run):
    events = [timed("qa", "Q&A med R&D", 6, "14:00", "15:00", show_as="busy")]
    assert run({"window": WEEK, "events": events})["absences"] == [
        absence(6, "14:00", "15:00", "Møte", "Møte", True, ["qa"])
    ]


def test_the_spec_input_example_gives_the_spec_output(run):
    payload = {
        "settings": {
            "timezone": "Europe/Oslo",
            "office_hours": {
                "mon": ["08:00", "16:00"],
                "tue": ["08:00", "16:00"],
                "wed": ["08:00", "16:00"],
                "thu": ["08:00", "16:00"],
                "fri": ["08:00", "16:00"],
                "sat": None,
                "sun": None,
            },
            "office_hours_only": False,
            "holidays": "NO",
            "default_profile": "Møte",
            "out_of_office_profile": "Ikke tilgjengelig",
            "divert_by_default": True,
            "include_tentative": False,
        },
        "window": WEEK,
        "events": [
            {
                "id": "e1",
                "subject": "Kundebesøk &Eks",
                "start": "2026-01-05T10:00:00+01:00",
                "end": "2026-01-05T12:00:00+01:00",
                "all_day": False,
                "show_as": "busy",
                "response": "accepted",
                "cancelled": False,
                "private": False,
            }
        ],
    }
    assert run(payload) == {"absences": [absence(5, "10:00", "12:00", "Ekstern avtale", "Eksternt Møte", True, ["e1"])]}
