"""From the engine's absences to MBN calls: the difference, in the order that avoids self-made 409s.

Pure. Each absence we push carries `external_ref = "kp:<user>:<start in UTC>"`: its identity. A changed
end, reason or diversion is an update of the same absence; a retried create finds its own earlier
success by that reference instead of making a copy. Absences without a `kp:` reference were set by hand
on the switchboard and are never touched.
"""

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sync.rules import Absence

EXTERNAL_REF_PREFIX = "kp:"  # the one definition: absences we pushed; any other reference was set by hand


class Existing(Protocol):
    """An absence as MBN holds it (or as we stored it)."""

    @property
    def external_ref(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def start(self) -> dt.datetime: ...
    @property
    def end(self) -> dt.datetime: ...
    @property
    def diversion(self) -> str: ...


@dataclass(frozen=True)
class Wanted:
    external_ref: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    diversion: str  # "voicemail" | "none"

    def same_as(self, other: Existing) -> bool:
        return (self.reason, self.start, self.end, self.diversion) == (
            other.reason,
            other.start,
            other.end,
            other.diversion,
        )


def wanted_absences(*, user_key: str | int, absences: Iterable[Absence]) -> list[Wanted]:
    return [
        Wanted(
            external_ref=f"{EXTERNAL_REF_PREFIX}{user_key}:{absence.start.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}",
            reason=absence.mbn_reason,
            start=absence.start,
            end=absence.end,
            diversion="voicemail" if absence.divert else "none",
        )
        for absence in absences
    ]


def unchanged(wanted: Sequence[Wanted], stored: Sequence[Existing]) -> bool:
    """True when what we last pushed is exactly what the engine wants now: no MBN call is needed."""
    by_ref = {item.external_ref: item for item in stored}
    return len(by_ref) == len(wanted) and all(
        w.external_ref in by_ref and w.same_as(by_ref[w.external_ref]) for w in wanted
    )


@dataclass(frozen=True)
class Plan:
    deletes: tuple[Existing, ...]
    updates: tuple[tuple[Existing, Wanted], ...]
    creates: tuple[Wanted, ...]
    kept: tuple[Existing, ...]

    @property
    def calls(self) -> int:
        return len(self.deletes) + len(self.updates) + len(self.creates)


def plan(*, wanted: Sequence[Wanted], current: Sequence[Existing]) -> Plan:
    """Deletes, updates and creates that turn MBN's `kp:` absences into `wanted` (manual ones untouched)."""
    ours = {item.external_ref: item for item in current if item.external_ref.startswith(EXTERNAL_REF_PREFIX)}
    wanted_refs = {item.external_ref for item in wanted}
    deletes = tuple(item for ref, item in ours.items() if ref not in wanted_refs)
    updates, creates, kept = [], [], []
    for item in wanted:
        existing = ours.get(item.external_ref)
        if existing is None:
            creates.append(item)
        elif item.same_as(existing):
            kept.append(existing)
        else:
            updates.append((existing, item))
    return Plan(deletes, tuple(updates), tuple(creates), tuple(kept))


def first(todo: Plan, *, before: dt.datetime) -> tuple[Plan, tuple[Existing, ...]]:
    """The part of `todo` to push in a near-term pass: every delete (they only free room), and the creates and
    updates of absences starting before `before`; and what stays on MBN as it is until the full pass (the
    deferred updates' current absences), which the caller keeps as held. A deferred absence never overlaps
    one pushed now: an update is pushed now as well when its current absence starts before the latest end of
    what is pushed now (else MBN would refuse a create on top of it as an overlap)."""
    creates = tuple(item for item in todo.creates if item.start < before)
    reach = max([before, *(item.end for item in creates)])
    updates, deferred = [], []
    for existing, item in sorted(todo.updates, key=lambda pair: min(pair[0].start, pair[1].start)):
        if min(existing.start, item.start) < reach:  # near-term, or in the way of what is pushed now
            updates.append((existing, item))
            reach = max(reach, existing.end, item.end)
        else:
            deferred.append(existing)
    return Plan(todo.deletes, tuple(updates), creates, todo.kept), tuple(deferred)
