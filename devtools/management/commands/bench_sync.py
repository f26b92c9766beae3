"""`bench_sync --users N`: the real pipeline against the simulators — initial sync, no-change cycle, 1 % changes.

Users are spread over the three providers and over customers of `--users-per-customer`, each with its own
tenant and MBN enterprise (MBN limits each enterprise to 20 requests/s). Prints one JSON object on stdout
(progress on stderr): {"users", "concurrency", "latency_ms", "providers": {"graph": n}, "customers",
"initial": CYCLE, "noop": CYCLE, "incremental": {CYCLE, "changed_users"}, "steady": {"no_change": {CYCLE,
"mismatches"}, "changed": {CYCLE, "changed_users", "mismatches"}}, "mismatches", "peak_rss_mb",
"simulators", "simulators_peak_rss_mb", "setup_s": {"build", "verify"}} where CYCLE is {"wall_s", "cpu_s",
"simulators_cpu_s", "users", "requests": {service: n}, "calendar_requests", "calendar_requests_per_user",
"mbn_requests", "absences_created", "mbn_requests_per_absence_created", "requests_per_second",
"efficiency"} and efficiency = (requests × latency ÷ concurrency) ÷ wall time.

`noop` syncs every user with no change (a full read of every calendar); `incremental` syncs only the 1 % of
users whose calendar changed, as their change notifications would. `steady` is what the periodic sweep does
(`sync.jobs.sweep`: the batches `sync.services.sync_passes` gives) once everyone is synced: with no change, then
after another 1 % of users changed. `cpu_s` is this process's CPU time (user + system) during the cycle;
`simulators_cpu_s` the simulators' process's (`--simulators process`, the default), else null (their CPU is
in `cpu_s`); with `--celery-workers` or `--q2-workers` the workers' CPU is in neither. `peak_rss_mb` is this
process's peak resident memory over the run. `mismatches` counts users whose MBN state differs from the
engine's answer for their calendar at the end; `steady.no_change.mismatches` the same right after that sweep.
`--dump DIR` writes per user `<user>.events.json` (preview_absences input: settings, window, the scripted
events) and `<user>.mbn.json` (what the MBN simulator holds). The benchmark's rows are deleted afterwards.
"""

import argparse
import contextlib
import datetime as dt
import itertools
import json
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection
from django.test.utils import override_settings
from django.utils import timezone
from django_q.models import OrmQ

from common.progress import ProgressBar
from common.queue import celery_takes_sync_work, enqueue_now
from customers.models import Customer, ServiceUser, Subscription
from customers.services import ensure_customer_settings
from customers.validators import org_numbers_from
from devtools import demo
from devtools.benchmarking import workers as bench_workers
from sync import jobs, pipeline
from sync.attempt import BUSY_RETRY_SECONDS, run_sync_attempt
from sync.models import CalendarSource, CalendarUser, PushedAbsence
from sync.rules import compute_absences
from sync.services import catalogue_from_database, rule_settings_for, sync_passes
from sync.work import SYNC_USERS

BATCH = 20
# the periodic sweep's interval (a source's default `sweep_minutes`): the steady cycles are the sweep that long after
# the one before
SWEEP = dt.timedelta(minutes=CalendarSource._meta.get_field("sweep_minutes").get_default())
Batches = list[list[int]]
PROVIDERS = ("graph", "ews", "google")


def _wire_graph(**kwargs: Any) -> Any:
    return demo.wire_customer(tenant_id=f"bench-{kwargs['customer'].pk:08d}", **kwargs)


WIRE = {"graph": _wire_graph, "ews": demo.wire_ews_customer, "google": demo.wire_google_customer}


class Command(BaseCommand):
    help = "Benchmarks calendar sync against the loopback simulators (JSON on stdout, progress on stderr)."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wanted: dict[int, tuple[int, list[Any]]] = {}  # `_verify`'s engine answers, per user
        self._listener: Any = None  # `stream_ews`'s listener for the EWS sources (`_start_listener`)
        self._streamed = 0  # EWS mailboxes it streams
        self._notified: set[int] = set()
        self._profiles: list[Any] | None = None
        self._sims: Any = None
        self._push = False  # Graph and Google change notifications to the app (`--no-push` turns them off)
        self._first_task = 0  # the q2 queue's last task before the run: what the webhooks queue after it is dropped

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=100)
        parser.add_argument("--events-per-user", type=int, default=20)
        parser.add_argument("--latency-ms", type=int, default=0, help="added latency per simulator request")
        parser.add_argument("--concurrency", type=int, default=4, help="batches synced at the same time")
        parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
        parser.add_argument("--dump", type=Path, help="directory for per-user events and MBN state")
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--mbn-rate", type=int, default=20, help="MBN requests per second per enterprise")
        parser.add_argument(
            "--profile-steady",
            type=Path,
            help="write a cProfile (CPU time) of the sync threads in the steady no-change sweep to FILE (pstats)",
        )
        parser.add_argument(
            "--stream",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="run the EWS streaming listener (`stream_ews`'s) in this process from before the no-change cycle on, "
            "its CPU counted in every cycle, so the sweep leaves streamed Exchange mailboxes to their notifications "
            "(default); --no-stream: every sweep polls every Exchange mailbox, as without the listener",
        )
        parser.add_argument(
            "--no-push",
            action="store_true",
            help="no Graph subscriptions or Google watch channels (the app is not served): the sweep reads every "
            "Graph and Google calendar, as without notifications; always so with --celery-workers or --q2-workers, "
            "whose workers would run the notified syncs themselves",
        )
        parser.add_argument(
            "--simulators",
            choices=("process", "thread"),
            default="process",
            help="run the simulators in their own process (as the real services are elsewhere) or in this one",
        )
        parser.add_argument(
            "--celery-workers",
            type=int,
            default=0,
            help="sync on N Celery worker processes (threads, --concurrency in all) through CELERY_BROKER_URL; "
            "needs a database the workers share (PostgreSQL) and CELERY_RESULT_BACKEND",
        )
        parser.add_argument(
            "--q2-workers",
            type=int,
            default=0,
            help="sync on a django-q2 cluster of N worker processes (the embedded default's way), one job per batch",
        )
        parser.add_argument(
            "--users-per-customer",
            type=int,
            default=100,
            help="users per customer; each customer has its own calendar tenant and MBN enterprise",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from devtools.simulators.remote import start_simulators

        if options["users"] < 1 or options["events_per_user"] < 0 or options["concurrency"] < 1:
            raise CommandError("--users and --concurrency must be at least 1, --events-per-user at least 0")
        if options["users_per_customer"] < 1:
            raise CommandError("--users-per-customer must be at least 1")
        if options["celery_workers"]:
            if not celery_takes_sync_work() or not django_settings.CELERY_RESULT_BACKEND:
                raise CommandError("--celery-workers needs CELERY_BROKER_URL and CELERY_RESULT_BACKEND set")
            if connection.vendor == "sqlite":
                raise CommandError("--celery-workers needs a database the workers share: set DATABASE_URL (PostgreSQL)")
        with start_simulators(options["simulators"]) as sims:
            for service in ("login", "graph", "mbn", "ews", "google"):
                sims.set_latency(service, options["latency_ms"])
            with override_settings(
                **sims.app_settings(),
                MBN_REQUESTS_PER_SECOND=options["mbn_rate"] * 0.9,
                DEBUG=False,  # what production runs: no query log, no debug cursor
                # the benchmark's own secrets, deleted with its customers (production requires a real key)
                CREDENTIALS_KEY=django_settings.CREDENTIALS_KEY or Fernet.generate_key().decode(),
            ):
                if options["celery_workers"]:
                    workers = self._start_workers(sims, options)
                elif options["q2_workers"]:
                    workers = self._start_q2(sims, options)
                else:
                    workers = []
                self._sims = sims
                self._push = not (options["no_push"] or options["celery_workers"] or options["q2_workers"])
                self._first_task = OrmQ.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
                try:
                    with contextlib.ExitStack() as stack:
                        if self._push:  # the webhooks the subscriptions point at
                            sims.graph.allow_http_webhooks_on_loopback()  # plain http on 127.0.0.1
                            app_url = stack.enter_context(bench_workers.serve_app())
                            stack.enter_context(override_settings(PUBLIC_BASE_URL=app_url))
                        result = self._run(sims, options)
                finally:
                    self._stop_workers(workers)
                    OrmQ.objects.filter(pk__gt=self._first_task).delete()
        self.stdout.write(json.dumps(result))

    def _run(self, sims, options: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        self._celery = bool(options["celery_workers"])
        self._q2 = bool(options["q2_workers"])
        self._remote = options["simulators"] == "process"
        rng = random.Random(options["seed"])
        count, concurrency = options["users"], options["q2_workers"] or options["concurrency"]
        shares = {kind: count // len(PROVIDERS) + (i < count % len(PROVIDERS)) for i, kind in enumerate(PROVIDERS)}
        per_customer = options["users_per_customer"]
        clock = time.perf_counter()
        built = [
            (kind, *self._build(min(per_customer, n - first), kind))
            for kind, n in shares.items()
            for first in range(0, n, per_customer)
        ]
        try:
            now = timezone.now()
            calendars: dict[int, list[Any]] = {}
            per_source: list[list[list[int]]] = []
            for kind, customer, users in built:
                source = WIRE[kind](
                    sims=sims,
                    customer=customer,
                    users=users,
                    enterprise_id=f"bench-{customer.pk}",
                    mbn_rate_per_second=options["mbn_rate"],
                )
                for user in users:
                    events = demo.as_provider_can_hold(
                        kind,
                        demo.scripted_events(
                            rng=rng, start=now, days=14, count=options["events_per_user"], prefix=f"{user.pk}-"
                        ),
                    )
                    calendars[user.pk] = events
                    demo.put_events(sims, kind, user, events)
                ids = list(CalendarUser.objects.filter(source=source).order_by("pk").values_list("pk", flat=True))
                per_source.append([ids[i : i + BATCH] for i in range(0, len(ids), BATCH)])
            # Round-robin over the customers, so batches in flight together hit different MBN enterprises.
            batches = [batch for group in itertools.zip_longest(*per_source) for batch in group if batch]
            latency = options["latency_ms"]
            build_s = time.perf_counter() - clock
            initial = self._cycle(sims, batches, now, concurrency, latency, "initial sync")
            # production's `stream_ews` listener for the EWS sources, subscribed before the sweeps below
            clock = time.perf_counter()
            self._listener = self._start_listener(shares["ews"]) if options["stream"] else None
            listen_s = time.perf_counter() - clock
            # Graph subscriptions and Google watch channels, answered by the app on a real HTTP server
            clock = time.perf_counter()
            subscribed = self._subscribe(sims, built, latency) if self._push else 0
            subscribe_s = time.perf_counter() - clock
            self._forget_change_cursors(built)  # today's full read, whatever the sweep does
            noop = self._cycle(sims, batches, now, concurrency, latency, "no-change cycle")
            # The sweep once everyone is synced, as it runs SWEEP after the previous one in steady state: what
            # `sync.jobs.sweep` picks for each source (`pipeline.sweep_calendars`, its CPU in the cycle's),
            # round-robin over the sources.
            self._as_if_swept_before(built)
            self._profiles = [] if options["profile_steady"] else None
            still = self._cycle(
                sims, lambda: self._sweep_batches(built), now, concurrency, latency, "steady: no change"
            )
            if self._profiles:
                import pstats

                pstats.Stats(*self._profiles).dump_stats(str(options["profile_steady"]))
            self._profiles = None
            clock = time.perf_counter()
            still["mismatches"] = sum(
                self._verify(sims, customer, users, calendars, now, None) for _kind, customer, users in built
            )
            verify_s = time.perf_counter() - clock
            everyone = [(kind, user) for kind, _customer, users in built for user in users]
            changed = rng.sample(everyone, max(1, count // 100))
            for kind, user in changed:
                extra = demo.as_provider_can_hold(
                    kind, demo.scripted_events(rng=rng, start=now, days=3, count=2, prefix=f"{user.pk}-chg-")
                )
                calendars[user.pk] = calendars[user.pk] + extra
                demo.put_events(sims, kind, user, extra)
            # what `queue_syncs` marks for a notified change (the notifications' own marks and queued syncs are
            # dropped: this cycle syncs exactly these users)
            self._notified_of([])
            changed_users = [user for _kind, user in changed]
            changed_batches = [
                [pk] for pk in CalendarUser.objects.filter(service_user__in=changed_users).values_list("pk", flat=True)
            ]
            CalendarUser.objects.filter(pk__in=[pk for (pk,) in changed_batches]).update(changed_at=timezone.now())
            incremental = {
                **self._cycle(sims, changed_batches, now, concurrency, latency, "1 % changed"),
                "changed_users": len(changed),
            }
            unchanged = [pair for pair in everyone if pair not in changed]
            moved = rng.sample(unchanged, min(len(unchanged), max(1, count // 100)))
            notified: list[int] = []

            def change() -> list[list[int]]:
                """The changes (inside the cycle: the webhooks they cause run in this process) and the syncs their
                notifications queue (`queue_syncs`), which run before the sweep that follows."""
                for kind, user in moved:
                    extra = demo.as_provider_can_hold(
                        kind, demo.scripted_events(rng=rng, start=now, days=3, count=2, prefix=f"{user.pk}-steady-")
                    )
                    calendars[user.pk] = calendars[user.pk] + extra
                    demo.put_events(sims, kind, user, extra)
                notified.extend(self._notified_of([user for kind, user in moved]))
                return [[pk] for pk in notified]

            self._as_if_swept_before(built)
            swept = {
                **self._cycle(
                    sims, (change, lambda: self._sweep_batches(built)), now, concurrency, latency, "steady: 1 % changed"
                ),
                "changed_users": len(moved),
                "notified_users": len(notified),
            }
            clock = time.perf_counter()
            mismatches = sum(
                self._verify(sims, customer, users, calendars, now, options.get("dump"))
                for _kind, customer, users in built
            )
            verify_s += time.perf_counter() - clock
            swept["mismatches"] = mismatches
        finally:
            if self._listener is not None:
                self._listener.stop()
            ids = [customer.pk for _kind, customer, _users in built]
            Subscription.objects.filter(customer_id__in=ids).delete()  # the pending ones demo wiring made
            Customer.objects.filter(pk__in=ids).delete()
        return {
            "users": count,
            "concurrency": concurrency,
            "latency_ms": options["latency_ms"],
            "runner": f"{options['celery_workers']} Celery worker processes"
            if options["celery_workers"]
            else f"a q2 cluster of {options['q2_workers']} worker processes"
            if options["q2_workers"]
            else "threads in one process",
            "database": connection.vendor,
            "providers": {kind: n for kind, n in shares.items() if n},
            "customers": len(built),
            "initial": initial,
            "noop": noop,
            "incremental": incremental,
            "steady": {"no_change": still, "changed": swept},
            "mismatches": mismatches,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # KiB on Linux
            "simulators": options["simulators"],
            # the simulators' process: every scripted calendar and what MBN holds (the same as above in "thread")
            "simulators_peak_rss_mb": sims.peak_rss_mb(),
            "setup_s": {
                "build": round(build_s, 1),
                "verify": round(verify_s, 1),
                "listener": round(listen_s, 1),
                "subscribe": round(subscribe_s, 1),
            },
            "ews_streamed": self._streamed,
            "subscriptions": subscribed,
        }

    def _start_listener(self, mailboxes: int):  # type: ignore[no-untyped-def]
        """`stream_ews`'s listener in this process (its CPU counted in the cycles'), once every EWS mailbox has a
        live subscription and a heartbeat. Notified calendars are kept for `_notified_of`."""
        import threading

        from sync.streaming import EwsListener

        if not mailboxes:
            return None
        # Production runs the listener as its own process. Here it shares this process with the sync, and exchangelib
        # keeps one session pool per server and account, made by whoever comes first: let it be the listener's (its
        # open connections each hold a session), shared by the sync's providers made afresh after it.
        from exchangelib.protocol import close_connections

        pipeline.forget_providers()
        close_connections()
        lock = threading.Lock()

        def notified(ids: set[int]) -> None:
            with lock:
                self._notified |= ids

        listener = EwsListener(on_change=notified)
        listener.refresh()
        deadline = time.monotonic() + 600
        progress = ProgressBar("EWS streams", stream=sys.stderr)
        while (streamed := listener.heartbeat()) < mailboxes:
            progress(streamed, mailboxes)
            if time.monotonic() > deadline:
                listener.stop()
                raise CommandError(f"only {streamed} of {mailboxes} EWS mailboxes streamed after 600 s")
            time.sleep(1.0)
        progress(streamed, mailboxes)
        self._streamed = streamed
        return listener

    def _notified_of(self, users: list[ServiceUser]) -> list[int]:
        """The calendars among these users' that were notified of their change: Graph's and Google's through the
        app's webhooks (which mark them changed, `queue_syncs`), Exchange's through the listener (at most 60 s
        each), marked changed as `queue_syncs` marks them. The syncs the webhooks queued are dropped: the cycle
        runs them. Without push (`--no-push`, workers in other processes) and without a listener, none."""
        if self._push:
            if not (self._sims.graph.flush_notifications(60) and self._sims.google.flush_notifications(60)):
                raise CommandError("the app did not answer the simulators' notifications within 60 s")
            OrmQ.objects.filter(pk__gt=self._first_task).delete()
        wanted = set(CalendarUser.objects.filter(service_user__in=users).values_list("pk", flat=True))
        found: set[int] = set()
        if self._push:
            found |= set(
                CalendarUser.objects.filter(pk__in=wanted, changed_at__isnull=False).values_list("pk", flat=True)
            )
        ews = set(
            CalendarUser.objects.filter(pk__in=wanted, source__kind=CalendarSource.Kind.EWS).values_list(
                "pk", flat=True
            )
        )
        if self._listener is not None and ews:
            deadline = time.monotonic() + 60
            while not ews <= self._notified and time.monotonic() < deadline:
                time.sleep(0.1)
            streamed = ews & self._notified
            self._notified -= ews
            CalendarUser.objects.filter(pk__in=streamed).update(changed_at=timezone.now())
            found |= streamed
        return sorted(found)

    def _subscribe(self, sims, built: list[tuple[str, Customer, list[ServiceUser]]], latency_ms: int) -> int:  # type: ignore[no-untyped-def]
        """Change notifications for every Graph and Google user, as the renewal job makes them
        (`jobs.ensure_subscriptions`): Graph checks the webhook with its validation handshake, Google posts a
        "sync" message to each new channel. Setup, not a measured cycle: without the simulators' latency, 8 sources
        at a time (one at a time on the in-memory test database, whose connection the app's threads share)."""
        sources = list(
            CalendarSource.objects.filter(customer__in=[c for kind, c, _u in built if kind != "ews"]).select_related(
                "customer"
            )
        )
        progress = ProgressBar("change subscriptions", stream=sys.stderr)

        def subscribe(source: CalendarSource) -> int:
            try:
                made = jobs.ensure_subscriptions(source=source)
                if bench_workers.in_memory_database():  # answered before this thread queries again
                    sims.google.flush_notifications(60)
                return made
            finally:
                if not bench_workers.in_memory_database():
                    close_old_connections()

        for service in ("login", "graph", "google"):
            sims.set_latency(service, 0)
        made = 0
        try:
            if bench_workers.in_memory_database():
                for done, source in enumerate(sources, 1):
                    made += subscribe(source)
                    progress(done, len(sources))
            else:
                with ThreadPoolExecutor(max_workers=8) as pool:
                    for done, count in enumerate(pool.map(subscribe, sources), 1):
                        made += count
                        progress(done, len(sources))
            # every new Google channel posted its "sync" message: 3 333 of them at 10 000 users, one at a time
            if not (sims.graph.flush_notifications(600) and sims.google.flush_notifications(600)):
                raise CommandError("the app did not answer the new channels' notifications within 10 minutes")
        finally:
            for service in ("login", "graph", "google"):
                sims.set_latency(service, latency_ms)
        OrmQ.objects.filter(pk__gt=self._first_task).delete()  # none is expected: no calendar changed
        return made

    def _as_if_swept_before(self, built: list[tuple[str, Customer, list[ServiceUser]]]) -> None:
        """Set every user's times to what they are in steady state when the next sweep comes SWEEP after the last
        one: the last read at the user's hourly minute (`pipeline.pushed_read_due`) and the last full read at
        their second of the day (`pipeline.full_read_due`), as the sweeps before would have left them, and their
        notifications (subscription, stream) older than both. So a sweep now reads the pushed users whose hourly
        or daily read falls in the last SWEEP, as every sweep of a day does, instead of the none (or all) that
        the minutes since the initial sync would give."""
        now = timezone.now().timestamp()
        period = django_settings.SYNC_PUSHED_READ_MINUTES * 60
        day = 24 * 3600
        before = now - SWEEP.total_seconds()
        long_ago = timezone.now() - dt.timedelta(hours=2)

        def last(offset: int, every: int) -> dt.datetime:
            at = (before - offset) // every * every + offset
            return dt.datetime.fromtimestamp(at, tz=dt.UTC)

        users = [user for _kind, _customer, group in built for user in group]
        rows = []
        for pk, streamed_since, push_since in CalendarUser.objects.filter(service_user__in=users).values_list(
            "pk", "streamed_since", "push_since"
        ):
            hashed = pipeline.read_slot(pk)
            row = CalendarUser(
                pk=pk, last_synced_at=last(hashed % period, period), full_read_at=last(hashed % day, day)
            )
            row.streamed_since = long_ago if streamed_since else None
            row.push_since = long_ago if push_since else None
            rows.append(row)
        fields = ["last_synced_at", "full_read_at", "streamed_since", "push_since"]
        CalendarUser.objects.bulk_update(rows, fields, batch_size=500)

    def _forget_change_cursors(self, built: list[tuple[str, Customer, list[ServiceUser]]]) -> None:
        """Where the calendars are read incrementally (a stored change cursor per user), forget the cursors so
        that the next sync reads every calendar in full, as the sweep did before incremental reads."""
        if any(field.name == "delta_cursor" for field in CalendarUser._meta.get_fields()):
            users = [user for _kind, _customer, group in built for user in group]
            CalendarUser.objects.filter(service_user__in=users).update(delta_cursor="")  # type: ignore[misc]

    def _sweep_batches(self, built: list[tuple[str, Customer, list[ServiceUser]]]) -> list[list[int]]:
        """The batches the periodic sweep queues: the users it picks (`pipeline.sweep_calendars`) in the batches
        `sync.services.sync_passes` makes (20 users of one source each), alternating between the customers as the
        sweeps of many sources would."""
        now = timezone.now()
        per_source = []
        for source in CalendarSource.objects.filter(customer__in=[customer for _kind, customer, _users in built]):
            ids = pipeline.sweep_calendars(source=source, now=now)
            per_source.append([batch for batch, _first_day in sync_passes(calendar_user_ids=ids, batch=BATCH)])
        return [batch for group in itertools.zip_longest(*per_source) for batch in group if batch]

    def _build(self, count: int, kind: str) -> tuple[Customer, list[ServiceUser]]:
        taken = set(Customer.objects.values_list("org_number", flat=True))
        org_number = next(n for n in org_numbers_from(81000000) if n not in taken)
        customer = Customer(
            name=f"Benchmark Sync {kind} AS",
            org_number=org_number,
            address_line="Testveien 1",
            postal_code="0150",
            city="Oslo",
            invoice_email="bench@bench.example",
        )
        customer.save()
        ensure_customer_settings(customer=customer)
        ServiceUser.objects.bulk_create(
            ServiceUser(
                customer=customer,
                email=f"{kind}{i}@bench{customer.pk}.example",
                name=f"Bruker {i}",
                msisdn=f"+479{customer.pk % 100:02d}{i:05d}",
            )
            for i in range(count)
        )
        return customer, list(ServiceUser.objects.filter(customer=customer).order_by("pk"))

    def _worker_env(self, sims) -> dict[str, str]:  # type: ignore[no-untyped-def]
        """What a worker process needs to reach the simulators and read the benchmark's secrets."""
        import os

        return {
            **os.environ,
            **sims.app_settings(),
            "MBN_REQUESTS_PER_SECOND": str(django_settings.MBN_REQUESTS_PER_SECOND),
            "CREDENTIALS_KEY": django_settings.CREDENTIALS_KEY,
            "DEBUG": "false",
            "SECRET_KEY": django_settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
        }

    def _start_q2(self, sims, options: dict[str, Any]) -> list[Any]:  # type: ignore[no-untyped-def]
        """A q2 cluster of --q2-workers processes; the schedules are held back while the benchmark runs."""
        import subprocess

        from django_q.models import Schedule

        self._held_schedules = list(Schedule.objects.values_list("pk", "next_run"))
        Schedule.objects.update(next_run=timezone.now() + dt.timedelta(days=1))
        env = {**self._worker_env(sims), "Q_WORKERS": str(options["q2_workers"])}
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], env=env, start_new_session=True, stdout=subprocess.DEVNULL
        )
        from django_q.tasks import result

        probe = enqueue_now("sync.tasks.worker_health")
        if result(probe, wait=120_000) is None:  # the clock starts once the cluster takes jobs
            self._stop_workers([cluster])
            raise CommandError("the q2 cluster did not run a job within 120 s")
        return [cluster]

    def _start_workers(self, sims, options: dict[str, Any]) -> list[Any]:  # type: ignore[no-untyped-def]
        """Celery worker processes (thread pools) reaching the simulators through the environment."""
        import subprocess

        env = self._worker_env(sims)
        count = options["celery_workers"]
        threads = max(1, options["concurrency"] // count)
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "kalenderpush",
                    "worker",
                    "-Q",
                    "sync",
                    "-P",
                    "threads",
                    "-c",
                    str(threads),
                    "-n",
                    f"bench{index}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                ],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,  # stdout is the benchmark's JSON
            )
            for index in range(count)
        ]
        from kalenderpush.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=1.0) or []
            if sum(1 for reply in replies for name in reply if name.startswith("bench")) >= count:
                return workers
        self._stop_workers(workers)
        raise CommandError("the Celery workers did not start within 60 s: is the broker reachable?")

    def _stop_workers(self, workers: list[Any]) -> None:
        import os
        import signal

        from django_q.models import Schedule

        for pk, next_run in getattr(self, "_held_schedules", []):
            Schedule.objects.filter(pk=pk).update(next_run=next_run)

        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except Exception:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)

    def _cycle(  # type: ignore[no-untyped-def]
        self,
        sims,
        work: Batches | Callable[[], Batches] | Sequence[Callable[[], Batches]],
        now: dt.datetime,
        concurrency: int,
        latency_ms: int,
        label: str,
    ) -> dict[str, Any]:
        """One sync of every batch; efficiency = (requests × latency ÷ concurrency) ÷ wall time. `work` is the
        batches, or what finds them (its CPU and time counted in the cycle's), or several such phases, each
        synced before the next is found."""
        sims.reset_counters()
        absences_before = PushedAbsence.objects.count()
        cpu_before = time.process_time()
        sims_cpu_before = sims.cpu_seconds() if self._remote else None
        started = time.perf_counter()
        phases = [work] if isinstance(work, list) or callable(work) else list(work)
        users = 0
        for phase in phases:
            if self._listener is not None:  # its bulk heartbeat, as its refresh writes it every minute in production
                self._listener.heartbeat()
            batches = phase() if callable(phase) else phase
            users += sum(len(batch) for batch in batches)
            self._sync_batches(batches, now, concurrency, label)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        sims_cpu = None if sims_cpu_before is None else sims.cpu_seconds() - sims_cpu_before
        by_service = {name: sims.requests(name) for name in ("login", "graph", "ews", "google", "mbn")}

        calendar_requests = sum(n for name, n in by_service.items() if name != "mbn")
        created = max(PushedAbsence.objects.count() - absences_before, 0)
        total = calendar_requests + by_service["mbn"]
        return {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 2),
            "simulators_cpu_s": None if sims_cpu is None else round(sims_cpu, 2),
            "users": users,
            "requests": by_service,
            "calendar_requests": calendar_requests,
            "calendar_requests_per_user": round(calendar_requests / users, 3) if users else 0,
            "mbn_requests": by_service["mbn"],
            "absences_created": created,
            "mbn_requests_per_absence_created": round(by_service["mbn"] / created, 3) if created else None,
            "requests_per_second": round(total / wall, 1) if wall else 0,
            "efficiency": round(total * latency_ms / 1000 / concurrency / wall, 3) if wall and latency_ms else None,
        }

    def _sync_batches(self, batches: Batches, now: dt.datetime, concurrency: int, label: str) -> None:
        """Sync every batch on the chosen runner and wait until all are done."""
        progress = ProgressBar(label, stream=sys.stderr)
        done = 0

        profiles = self._profiles

        def run(batch: list[int]) -> None:
            """One batch as the Celery task and the q2 job run it (`run_sync_attempt`): users held up by a
            throttled or failing service come back after its back-off, users another sync holds after a pause."""
            profile = None
            if profiles is not None:
                import cProfile

                profile = cProfile.Profile(time.thread_time)  # CPU, not time spent waiting
                profile.enable()
            try:
                queued = [(batch, 0)]
                while queued:
                    pending, attempt = queued.pop(0)
                    outcome = run_sync_attempt(calendar_user_ids=pending, attempt=attempt, now=now)
                    if outcome.gave_up:
                        raise CommandError(f"users {outcome.held_up[:3]}… still failing: {outcome.error}")
                    if outcome.busy:
                        queued.append((outcome.busy, attempt))
                    if outcome.retry_in is not None:
                        queued.append((outcome.held_up, attempt + 1))
                    if queued:
                        time.sleep(BUSY_RETRY_SECONDS if outcome.retry_in is None else outcome.retry_in)
            finally:
                if profile is not None and profiles is not None:
                    profile.disable()
                    profiles.append(profile)
                close_old_connections()

        if self._q2:
            from django_q.models import Schedule, Task

            group = f"bench-{time.time_ns()}"
            for batch in batches:  # on the q2 cluster whatever Celery's configuration: what this run measures
                enqueue_now(SYNC_USERS.function, batch, 0, now.isoformat(), group=group)
            while True:
                time.sleep(0.5)
                done = Task.objects.filter(group=group).count()
                progress(min(done, len(batches)), len(batches))
                retrying = Schedule.objects.filter(func=SYNC_USERS.function).exists()
                if done >= len(batches) and not retrying:
                    break
            failed = Task.objects.filter(group=group, success=False).count()
            if failed:
                raise CommandError(f"{failed} q2 sync jobs failed: see admin → Bakgrunnsjobber → Mislykkede jobber")
        elif self._celery:
            from celery.result import AsyncResult

            cycle_start = timezone.now()  # the broker is configured (checked above): `enqueue_now` sends to Celery
            pending = [AsyncResult(enqueue_now(SYNC_USERS, batch, 0, now.isoformat())) for batch in batches]
            every = [pk for batch in batches for pk in batch]
            checks = 0
            while pending:
                # One count in the database per second, not one result lookup per task: the lookups would
                # take the simulators' CPU. Every tenth second, collect the finished tasks (failures raise).
                time.sleep(1.0)
                checks += 1
                synced = CalendarUser.objects.filter(pk__in=every, last_synced_at__gte=cycle_start).count()
                progress(round(len(batches) * synced / len(every)), len(batches))
                if synced >= len(every) or checks % 10 == 0:
                    finished = [result for result in pending if result.ready()]
                    for result in finished:
                        result.get(propagate=True)
                    pending = [result for result in pending if result not in finished]
            progress(len(batches), len(batches))
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for _ in pool.map(run, batches):
                    done += 1
                    progress(done, len(batches))

    def _verify(
        self,
        sims,
        customer: Customer,
        users: list[ServiceUser],
        calendars,
        now: dt.datetime,  # type: ignore[no-untyped-def]
        dump: Path | None,
    ) -> int:
        catalogue = catalogue_from_database()
        start, end = pipeline.sync_window(now)
        settings_row = customer.settings
        eid = customer.mbn_connection.enterprise_id
        mismatches = 0
        if dump:
            dump.mkdir(parents=True, exist_ok=True)
        known = self._wanted  # user → (events, the engine's answer) at the last check: calendars only grow
        for user in users:
            rules = rule_settings_for(customer_settings=settings_row, service_user=user)
            events = calendars[user.pk]
            if known.get(user.pk, (None,))[0] != len(events):
                expected = compute_absences(
                    settings=rules, window_start=start, window_end=end, events=events, catalogue=catalogue
                )
                wanted = sorted((a.mbn_reason, a.start, a.end, "voicemail" if a.divert else "none") for a in expected)
                known[user.pk] = (len(events), wanted)
            want = known[user.pk][1]
            held = sims.mbn.absences(eid, user.msisdn)
            have = sorted(
                (
                    a["reason"],
                    dt.datetime.fromisoformat(a["start"]),
                    dt.datetime.fromisoformat(a["end"]),
                    a["diversion"],
                )
                for a in held
            )
            mismatches += want != have
            if dump:
                self._dump(dump, user, rules, start, end, calendars[user.pk], held)
        return mismatches

    def _dump(self, directory: Path, user: ServiceUser, rules, start, end, events, held) -> None:  # type: ignore[no-untyped-def]
        from sync.rules.model import WEEKDAYS

        def clock(minutes: int) -> str:
            return f"{minutes // 60:02d}:{minutes % 60:02d}"

        settings_json = {
            "timezone": rules.timezone,
            "office_hours": {
                day: ([clock(h[0]), clock(h[1])] if h else None)
                for day, h in zip(WEEKDAYS, rules.office_hours, strict=True)
            },
            "office_hours_only": rules.office_hours_only,
            "holidays": rules.holidays,
            "default_profile": rules.default_profile,
            "out_of_office_profile": rules.out_of_office_profile,
            "divert_by_default": rules.divert_by_default,
            "include_tentative": rules.include_tentative,
        }
        payload = {
            "settings": settings_json,
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "events": [
                {
                    "id": e.id,
                    "subject": e.subject,
                    "start": e.start.isoformat(),
                    "end": e.end.isoformat(),
                    "all_day": e.all_day,
                    "show_as": e.show_as,
                    "response": e.response,
                    "cancelled": e.cancelled,
                    "private": e.private,
                }
                for e in events
            ],
        }
        name = user.email.split("@")[0]
        (directory / f"{name}.events.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1))
        absences = [{key: a[key] for key in ("start", "end", "reason", "diversion")} for a in held]
        (directory / f"{name}.mbn.json").write_text(json.dumps({"absences": absences}, ensure_ascii=False, indent=1))
