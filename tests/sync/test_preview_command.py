"""`preview_absences`: the fixed interface of calendar-rules.md §5, including bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "window": {"start": "2026-01-05T00:00:00+01:00", "end": "2026-01-12T00:00:00+01:00"},
    "events": [
        {
            "id": "e1",
            "subject": "Kundebesøk &Eks",
            "start": "2026-01-05T10:00:00+01:00",
            "end": "2026-01-05T12:00:00+01:00",
        }
    ],
}


def run(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "preview_absences", *(args or ("-",))],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_reads_stdin_and_prints_json_with_defaults_for_missing_fields():
    result = run(json.dumps(GOOD))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "absences": [
            {
                "start": "2026-01-05T10:00:00+01:00",
                "end": "2026-01-05T12:00:00+01:00",
                "profile": "Ekstern avtale",
                "mbn_reason": "Eksternt Møte",
                "divert": True,
                "event_ids": ["e1"],
            }
        ]
    }
    assert result.stderr == ""


def test_it_reads_a_file(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(GOOD))
    result = run("", str(path))
    assert result.returncode == 0
    assert len(json.loads(result.stdout)["absences"]) == 1


def with_(path: str, value):
    payload = json.loads(json.dumps(GOOD))
    target = payload
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("stdin", "field"),
    [
        ("{not json", "invalid JSON"),
        ("[]", "input"),
        (with_("window", KeyError), "window"),
        (with_("window.end", KeyError), "window.end"),
        (with_("window.end", "2026-01-01T00:00:00+01:00"), "window.end"),
        (with_("window.start", "i morgen"), "window.start"),
        (with_("events", KeyError), "events"),
        (with_("events.0.end", KeyError), "events[0].end"),
        (with_("events.0.id", KeyError), "events[0].id"),
        (with_("events.0.show_as", "bussy"), "events[0].show_as"),
        (with_("events.0.response", "maybe"), "events[0].response"),
        (with_("events.0.start", "2026-01-05"), "events[0].start"),
        (with_("events.0.cancelled", "yes"), "events[0].cancelled"),
        (with_("settings.timezone", "Europe/Olso"), "settings.timezone"),
        (with_("settings.default_profile", "Kaffepause"), "settings.default_profile"),
        (with_("settings.out_of_office_profile", "Borte"), "settings.out_of_office_profile"),
        (with_("settings.office_hours", {"mon": ["16:00", "08:00"]}), "settings.office_hours.mon"),
        (with_("settings.office_hours", {"mon": ["8", "16:00"]}), "settings.office_hours.mon[0]"),
        (with_("settings.office_hours", {"man": ["08:00", "16:00"]}), "settings.office_hours.man"),
        (with_("settings.holidays", "XX"), "settings.holidays"),
        (with_("settings.divert_by_default", "ja"), "settings.divert_by_default"),
        (with_("settings.timezone", "Europe"), "settings.timezone"),
        (with_("settings.timezone", "x" * 5000), "settings.timezone"),
        (with_("settings.office_hours_onyl", True), "settings.office_hours_onyl"),
        (with_("window.tz", "Europe/Oslo"), "window.tz"),
        (with_("evnets", []), "evnets"),
        (with_("window.end", "9999-12-31T00:00:00+01:00"), "window.end"),
        (with_("window.start", "0001-01-01T00:00:00+00:00"), "window.start"),
        (with_("events.0.end", "9999-12-31T23:59:59-12:00"), "events[0].end"),
        (
            json.dumps({**GOOD, "events": [{"id": "d", "all_day": True, "start": "0001-01-01", "end": "2026-01-06"}]}),
            "events[0].start",
        ),
        ("[" * 5000 + "]" * 5000, "input"),
        ("1" * 5000, "input"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_naming_the_field(stdin, field):
    result = run(stdin)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert field in lines[0]


def test_duplicate_event_ids_are_refused():
    payload = json.loads(json.dumps(GOOD))
    payload["events"].append(dict(payload["events"][0]))
    result = run(json.dumps(payload))
    assert result.returncode != 0
    assert "events[1].id" in result.stderr and "unique" in result.stderr


def test_a_missing_file_is_named():
    result = run("", "/nonexistent/input.json")
    assert result.returncode != 0
    assert "/nonexistent/input.json" in result.stderr


def test_extra_fields_of_an_event_pass_through_as_before():
    payload = json.loads(json.dumps(GOOD))
    payload["events"][0]["organizer"] = {"emailAddress": {"address": "kari@firma.no"}}
    result = run(json.dumps(payload))
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["absences"]) == 1
