"""A soak run: calendars change all the time while every simulator injects faults and MBN goes down for a
while in the middle; afterwards MBN must equal the engine for everyone, with no duplicates, and every
failure must have been visible (sync runs, users, sources) and cleared again.

`run_soak` takes how syncs are queued (`queue(ids)`: the threaded fleet, or `queue_syncs` onto Celery) and
returns the figures; the `bench_soak` command and the services test both call it.
"""

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.utils import timezone

from devtools.benchmarking.changes import CHANGE_KINDS, apply_change, plan_change
from devtools.benchmarking.fleet import Fleet, duplicates, mismatched
from devtools.simulators.base import FAULT_KINDS
from sync.models import CalendarSource, CalendarUser, SyncRun

SERVICES = ("login", "graph", "ews", "google", "mbn")


def errors_recorded(fleet: Fleet, since: dt.datetime, until: dt.datetime | None = None) -> dict[str, int]:
    """What admin shows: sync runs with an error in [since, until), and users and sources with an error now."""
    runs = SyncRun.objects.filter(source__in=fleet.sources, started_at__gte=since).exclude(error="")
    if until is not None:
        runs = runs.filter(started_at__lt=until)
    return {
        "sync_runs_with_error": runs.count(),
        "users_with_error": CalendarUser.objects.filter(source__in=fleet.sources).exclude(last_error="").count(),
        "sources_with_error": CalendarSource.objects.filter(pk__in=[s.pk for s in fleet.sources])
        .exclude(last_error="")
        .count(),
    }


def run_soak(
    sims,  # type: ignore[no-untyped-def]
    fleet: Fleet,
    *,
    queue: Callable[[Iterable[int]], None],
    seconds: float,
    outage_seconds: float,
    fault_rate: float,
    change_every: float,
    change_share: float,
    drain_timeout: float,
    rng: random.Random,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Changes every `change_every` s for `seconds` s with faults at `fault_rate` on every simulator and MBN
    answering 503 to everything for `outage_seconds` in the middle; then faults off and the drain measured."""
    members = fleet.members
    by_id = fleet.by_calendar_user()
    sims.reset_counters()
    for service in SERVICES:
        sims.set_faults(service, rate=fault_rate, kinds=FAULT_KINDS, seed=rng.randrange(2**32))
    started_at, begin = timezone.now(), time.monotonic()
    outage_from = begin + max(0.0, (seconds - outage_seconds) / 2)
    outage_until = outage_from + outage_seconds
    outage: dict[str, Any] = {}
    backlog: set[int] = set()  # users not yet right in MBN when the outage ended
    backlog_drained_s: float | None = None
    changes = 0
    next_change = begin
    state = "faults"
    while (now := time.monotonic()) < begin + seconds:
        if state == "faults" and now >= outage_from and outage_seconds > 0:
            sims.set_faults("mbn", rate=1.0, kinds=("503",))
            outage["from"], state = timezone.now(), "outage"
            log(f"MBN down for {outage_seconds:g} s")
        elif state == "outage" and now >= outage_until:
            outage["until"], state = timezone.now(), "recovered"
            outage["during"] = errors_recorded(fleet, outage["from"], outage["until"])
            sims.set_faults("mbn", rate=fault_rate, kinds=FAULT_KINDS, seed=rng.randrange(2**32))
            backlog = {m.calendar_user_id for m in mismatched(sims, members, timezone.now())}
            outage["backlog_users"] = len(backlog)
            log(f"MBN back; {len(backlog)} user(s) behind")
        if now >= next_change:
            chosen = rng.sample(members, max(1, round(len(members) * change_share)))
            for index, member in enumerate(chosen):
                apply_change(sims, plan_change(member, CHANGE_KINDS[(changes + index) % 3], rng, timezone.now()))
            changes += len(chosen)
            for member in chosen:  # one sync per user, as queue_syncs does (a batch must be one source's)
                queue([member.calendar_user_id])
            next_change += change_every
        if backlog:
            backlog = {m.calendar_user_id for m in mismatched(sims, [by_id[pk] for pk in backlog], timezone.now())}
            if not backlog and backlog_drained_s is None:
                backlog_drained_s = time.monotonic() - outage_until
        time.sleep(min(0.5, max(0.0, next_change - time.monotonic())))
    for service in SERVICES:
        sims.set_faults(service, rate=0)
    recovered_at = time.monotonic()
    behind = mismatched(sims, members, timezone.now())
    behind_when_faults_off = len(behind)
    log(f"faults off; {len(behind)} user(s) behind")
    drain_s: float | None = None
    while time.monotonic() - recovered_at < drain_timeout:
        behind = mismatched(sims, behind, timezone.now())
        if not behind:
            drain_s = time.monotonic() - recovered_at
            break
        time.sleep(0.5)
    if backlog and not behind:  # the outage's backlog drained only after the faults were off
        backlog_drained_s = time.monotonic() - outage_until
    return {
        "changes": changes,
        "outage_seconds": outage_seconds,
        "outage_backlog_users": outage.get("backlog_users", 0),
        "outage_backlog_drained_s": None if backlog_drained_s is None else round(backlog_drained_s, 1),
        "behind_when_faults_off": behind_when_faults_off,
        "drain_s": None if drain_s is None else round(drain_s, 1),
        "mismatches": len(mismatched(sims, members, timezone.now())),
        "duplicates": sum(duplicates(sims, m) for m in members),
        "errors_during_outage": outage.get("during", {}),
        "errors_during_soak": errors_recorded(fleet, started_at)["sync_runs_with_error"],
        "errors_after_drain": {
            key: value for key, value in errors_recorded(fleet, started_at).items() if key != "sync_runs_with_error"
        },
        "requests": {service: sims.requests(service) for service in SERVICES},
        "soak_s": round(seconds, 1),
    }
