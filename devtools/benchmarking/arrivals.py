"""When did MBN get it? A watch on the MBN simulator's writes that stamps the moment a user's absences
on one day become what the engine wants.

The MBN simulator keeps a request log without times, so this wraps its `serve` (the method its HTTP
handler calls) on the running instance: after every successful POST/PUT/DELETE on a watched subscriber's
absences it compares what MBN now holds on the watched day with the expectation, and records
`time.monotonic()` on the first match.
"""

import datetime as dt
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from devtools.simulators.base import Reply, Request
from devtools.simulators.mbn import ABSENCES

Interval = tuple[str, dt.datetime, dt.datetime, str]
_WRITE = re.compile(ABSENCES + r"(/[^/]+)?", re.IGNORECASE)


def on_day(intervals: Sequence[Interval], day_start: dt.datetime, day_end: dt.datetime) -> list[Interval]:
    return sorted(i for i in intervals if i[1] < day_end and day_start < i[2])


@dataclass
class Watch:
    enterprise_id: str
    msisdn: str
    day_start: dt.datetime
    day_end: dt.datetime
    wanted: list[Interval]
    changed_at: float
    arrived_at: float | None = None


class MbnArrivals:
    """Install with `with MbnArrivals(sims.mbn) as arrivals:`; `expect(...)` just before making a change."""

    def __init__(self, mbn) -> None:  # type: ignore[no-untyped-def]
        self._mbn = mbn
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], Watch] = {}
        self.watches: list[Watch] = []
        self._original = mbn.serve

    def __enter__(self) -> "MbnArrivals":
        self._mbn.serve = self._serve  # an instance attribute shadows the class's method
        return self

    def __exit__(self, *exc: object) -> None:
        del self._mbn.serve

    def expect(
        self, enterprise_id: str, msisdn: str, day_start: dt.datetime, day_end: dt.datetime, wanted: list[Interval]
    ) -> Watch:
        """Watch the subscriber's day until MBN holds `wanted` there; the clock starts now."""
        watch = Watch(enterprise_id, msisdn, day_start, day_end, on_day(wanted, day_start, day_end), time.monotonic())
        with self._lock:
            self._pending[(enterprise_id, msisdn)] = watch
            self.watches.append(watch)
        return watch

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _serve(self, request: Request) -> Reply:
        reply = self._original(request)
        if request.method in ("POST", "PUT", "DELETE") and 200 <= reply.status < 300:
            match = _WRITE.fullmatch(request.path)
            if match:
                self._check((match["enterprise"], match["msisdn"]))
        return reply

    def _check(self, key: tuple[str, str]) -> None:
        with self._lock:
            watch = self._pending.get(key)
        if watch is None:
            return
        held = [
            (a["reason"], dt.datetime.fromisoformat(a["start"]), dt.datetime.fromisoformat(a["end"]), a["diversion"])
            for a in self._mbn.absences(*key)
        ]
        if on_day(held, watch.day_start, watch.day_end) == watch.wanted:
            now = time.monotonic()
            with self._lock:
                if self._pending.get(key) is watch:
                    watch.arrived_at = now
                    del self._pending[key]
