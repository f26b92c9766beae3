"""A fleet of benchmark customers on the simulators: built with bench_sync's helpers, checked against the engine.

Users are spread round-robin over the providers and over customers of `users_per_customer` users each (one
MBN enterprise per customer, so MBN's 20 requests/s apply per customer as in production).
"""

import datetime as dt
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.test.utils import override_settings

from customers.models import Customer, ServiceUser, Subscription
from devtools import demo
from devtools.management.commands import bench_sync
from sync import pipeline
from sync.models import CalendarSource, CalendarUser
from sync.rules import Event, compute_absences
from sync.services import catalogue_from_database, rule_settings_for

PUSH_KINDS = ("graph", "google")  # webhooks; Exchange on-premises pushes through stream_ews (bench_latency --providers)

Interval = tuple[str, dt.datetime, dt.datetime, str]


@dataclass
class Member:
    """One benchmark user: where the calendar lives and where MBN holds the absences."""

    kind: str
    customer: Customer
    user: ServiceUser
    calendar_user_id: int
    enterprise_id: str
    events: list[Event] = field(default_factory=list)


@dataclass
class Fleet:
    members: list[Member]
    customers: list[Customer]
    sources: list[CalendarSource]

    def by_calendar_user(self) -> dict[int, Member]:
        return {m.calendar_user_id: m for m in self.members}

    def batches(self, size: int = bench_sync.BATCH) -> list[list[int]]:
        """The users in batches of one source each (one Graph $batch), as the sweep queues them."""
        by_source: dict[int, list[int]] = {}
        for member in self.members:
            by_source.setdefault(member.customer.pk, []).append(member.calendar_user_id)
        per_source = [[ids[i : i + size] for i in range(0, len(ids), size)] for ids in by_source.values()]
        # round-robin over the customers (as bench_sync does), so batches in flight hit different enterprises
        return [batch for group in itertools.zip_longest(*per_source) for batch in group if batch]

    def delete(self) -> None:
        ids = [c.pk for c in self.customers]
        Subscription.objects.filter(customer_id__in=ids).delete()  # the pending ones demo wiring made
        Customer.objects.filter(pk__in=ids).delete()


def customer_plan(users: int, users_per_customer: int, kinds: Sequence[str]) -> list[tuple[str, int]]:
    """(provider, users) per customer: users spread evenly over the providers, then cut into customers."""
    shares = {kind: users // len(kinds) + (i < users % len(kinds)) for i, kind in enumerate(kinds)}
    plan = []
    for kind, count in shares.items():
        while count > 0:
            size = min(users_per_customer, count)
            plan.append((kind, size))
            count -= size
    return plan


def build_fleet(
    sims,  # type: ignore[no-untyped-def]
    *,
    users: int,
    users_per_customer: int,
    events_per_user: int,
    rng: random.Random,
    first_day: dt.datetime,
    days: int,
    mbn_rate: int,
    kinds: Sequence[str] = bench_sync.PROVIDERS,
    progress: Callable[[int, int], None] | None = None,
) -> Fleet:
    """Customers, users, sources and MBN enterprises, and every user's scripted calendar in its simulator."""
    builder = bench_sync.Command()
    plan = customer_plan(users, users_per_customer, kinds)
    fleet = Fleet([], [], [])
    try:
        for index, (kind, count) in enumerate(plan):
            customer, service_users = builder._build(count, kind)
            fleet.customers.append(customer)
            enterprise_id = f"bench-{customer.pk}"
            source = bench_sync.WIRE[kind](
                sims=sims,
                customer=customer,
                users=service_users,
                enterprise_id=enterprise_id,
                mbn_rate_per_second=mbn_rate,
            )
            fleet.sources.append(source)
            ids = dict(CalendarUser.objects.filter(source=source).values_list("service_user_id", "pk"))
            for user in service_users:
                events = demo.as_provider_can_hold(
                    kind,
                    demo.scripted_events(
                        rng=rng, start=first_day, days=days, count=events_per_user, prefix=f"{user.pk}-"
                    ),
                )
                demo.put_events(sims, kind, user, events)
                fleet.members.append(Member(kind, customer, user, ids[user.pk], enterprise_id, list(events)))
            if progress:
                progress(index + 1, len(plan))
    except BaseException:
        fleet.delete()
        raise
    return fleet


@contextmanager
def simulator_settings(sims, **extra: Any) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Point the app at the simulators (as bench_sync does), plus any `extra` settings."""
    with override_settings(**sims.app_settings(), **extra):
        yield


def simulator_environment(sims) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The same settings as environment variables, for a worker process started beside this one."""
    return {
        **sims.app_settings(),
        "CREDENTIALS_KEY": settings.CREDENTIALS_KEY,
        "MBN_REQUESTS_PER_SECOND": str(settings.MBN_REQUESTS_PER_SECOND),
    }


def database_url() -> str:
    """This process's database as a DATABASE_URL, for a worker process; only file or server databases."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise ValueError("an in-memory SQLite database cannot be shared with another process")
        return f"sqlite:///{name}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def expected_absences(member: Member, now: dt.datetime, events: Sequence[Event] | None = None) -> list[Interval]:
    """What the rules engine says MBN should hold for the member's calendar (or `events`)."""
    start, end = pipeline.sync_window(now)
    rules = rule_settings_for(customer_settings=member.customer.settings, service_user=member.user)
    computed = compute_absences(
        settings=rules,
        window_start=start,
        window_end=end,
        events=member.events if events is None else events,
        catalogue=catalogue_from_database(),
    )
    return sorted((a.mbn_reason, a.start, a.end, "voicemail" if a.divert else "none") for a in computed)


def held_absences(sims, member: Member) -> list[Interval]:  # type: ignore[no-untyped-def]
    return sorted(
        (a["reason"], dt.datetime.fromisoformat(a["start"]), dt.datetime.fromisoformat(a["end"]), a["diversion"])
        for a in sims.mbn.absences(member.enterprise_id, member.user.msisdn)
    )


def mismatched(sims, members: Sequence[Member], now: dt.datetime) -> list[Member]:  # type: ignore[no-untyped-def]
    """The members whose MBN state differs from the engine's answer for their current calendar."""
    return [m for m in members if held_absences(sims, m) != expected_absences(m, now)]


def duplicates(sims, member: Member) -> int:  # type: ignore[no-untyped-def]
    """Absences held twice: the same external_ref, or the same interval, more than once."""
    held = sims.mbn.absences(member.enterprise_id, member.user.msisdn)
    refs = [a["external_ref"] for a in held if a["external_ref"]]
    intervals = [(a["start"], a["end"]) for a in held]
    return (len(refs) - len(set(refs))) + (len(intervals) - len(set(intervals)))


def sync_all(
    sims, fleet: Fleet, concurrency: int, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Every user synced once, in batches of one source, by `concurrency` threads running the Celery task's own
    attempt and back-off (`devtools.benchmarking.runner`); the wall time and the requests each simulator served."""
    from devtools.benchmarking.runner import ThreadedFleet

    sims.reset_counters()
    batches = fleet.batches()
    started = time.perf_counter()
    with ThreadedFleet(concurrency) as runner:
        for batch in batches:
            runner.queue(batch)
        while not runner.idle():
            if progress:
                progress(runner.figures()["syncs"], len(batches))
            time.sleep(0.2)
        figures = runner.figures()
    if progress:
        progress(len(batches), len(batches))
    return {
        "wall_s": round(time.perf_counter() - started, 3),
        "users": len(fleet.members),
        "requests": {name: sims.requests(name) for name in ("login", "graph", "ews", "google", "mbn")},
        **figures,
    }
