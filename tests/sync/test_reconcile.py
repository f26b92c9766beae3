"""Reconciling MBN with the engine's absences: the smallest set of calls, manual absences untouched."""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sync.reconcile import plan, unchanged, wanted_absences
from sync.rules import Absence

OSLO = ZoneInfo("Europe/Oslo")


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 2, hour, minute, tzinfo=OSLO)


@dataclass(frozen=True)
class Held:
    id: str
    external_ref: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    diversion: str


def absence(start, end, reason="Møte", divert=True) -> Absence:
    return Absence(start=start, end=end, profile=reason, mbn_reason=reason, divert=divert, event_ids=("e",))


def held(item, mbn_id="1") -> Held:
    return Held(mbn_id, item.external_ref, item.reason, item.start, item.end, item.diversion)


def test_references_identify_an_absence_by_user_and_start():
    (wanted,) = wanted_absences(user_key=42, absences=[absence(at(9), at(10), divert=False)])
    assert wanted.external_ref == "kp:42:20260302T080000Z"
    assert (wanted.reason, wanted.diversion) == ("Møte", "none")


def test_nothing_changed_means_no_calls():
    wanted = wanted_absences(user_key=1, absences=[absence(at(9), at(10)), absence(at(13), at(14))])
    stored = [held(item, str(i)) for i, item in enumerate(wanted)]
    assert unchanged(wanted, stored)
    assert plan(wanted=wanted, current=stored).calls == 0
    assert not unchanged(wanted[:1], stored)


def test_changes_become_deletes_then_updates_then_creates():
    before = wanted_absences(user_key=1, absences=[absence(at(9), at(10)), absence(at(11), at(12))])
    current = [held(before[0], "a"), held(before[1], "b")]
    manual = Held("m", "", "Lunch", at(12), at(12, 30), "none")
    after = wanted_absences(user_key=1, absences=[absence(at(9), at(10, 30)), absence(at(14), at(15))])
    todo = plan(wanted=after, current=[*current, manual])
    assert [item.id for item in todo.deletes] == ["b"]
    assert [(old.id, new.end) for old, new in todo.updates] == [("a", at(10, 30))]
    assert [item.start for item in todo.creates] == [at(14)]
    assert manual not in todo.deletes  # set by hand on the switchboard: never touched


def test_a_retried_create_finds_its_earlier_success():
    wanted = wanted_absences(user_key=1, absences=[absence(at(9), at(10))])
    already_there = [held(wanted[0], "x")]  # the first attempt reached MBN, its answer was lost
    todo = plan(wanted=wanted, current=already_there)
    assert todo.calls == 0 and len(todo.kept) == 1


def test_the_mbn_client_counts_exactly_the_references_reconcile_makes_as_ours():
    from sync.mbn import MbnAbsence

    (wanted,) = wanted_absences(user_key=7, absences=[absence(at(9), at(10))])
    pushed = MbnAbsence("1", wanted.reason, wanted.start, wanted.end, "voicemail", wanted.external_ref)
    manual = MbnAbsence("2", "Lunsj", at(11), at(12), "none", "switchboard:7")

    assert pushed.is_ours and not manual.is_ours
    assert plan(wanted=[], current=[pushed, manual]).deletes == (pushed,), "reconcile removes ours, never the manual"
