"""`bench_latency --users N`: change → MBN latency under load, through the webhooks and the EWS stream.

Builds N users as bench_sync does (spread over Graph, Exchange and Google, `--users-per-customer` per
customer, one MBN enterprise each), syncs them all (bench_sync's threaded cycle), subscribes to change
notifications with the Django app served over HTTP in this process, starts a worker (a q2 cluster beside
this process by default; `--worker`), then edits `--changes` calendars of Graph and Google users spread
evenly over `--over-seconds`. For each edit it measures the time from the edit in the simulator to the MBN
simulator holding the new absences for that day. Prints one JSON object on stdout (progress on stderr);
the benchmark's rows are deleted afterwards.

`--providers` (e.g. `ews`, or `graph,google,ews`) builds the users over those providers only and edits
their calendars; with `ews` among them the EWS streaming listener (`manage.py stream_ews` beside the worker,
or in this process with `--worker inprocess`) carries Exchange's changes, and the JSON gains `by_provider`
and `listener`. Without it the run is the one docs/benchmarks.md describes (Graph and Google edited).
"""

import datetime as dt
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from common.progress import ProgressBar
from common.queue import celery_takes_sync_work
from devtools.benchmarking import workers
from devtools.benchmarking.arrivals import MbnArrivals
from devtools.benchmarking.changes import CHANGE_KINDS, apply_change, percentile, plan_change
from devtools.benchmarking.fleet import (
    PUSH_KINDS,
    Fleet,
    Member,
    build_fleet,
    database_url,
    expected_absences,
    held_absences,
    mismatched,
    simulator_environment,
    simulator_settings,
    sync_all,
)
from devtools.management.commands import bench_sync
from sync import jobs
from sync.models import CalendarSource, SyncRun
from sync.streaming import GROUP_SIZE

WORKERS = ("auto", "q2", "celery", "inprocess")


class Command(BaseCommand):
    help = "Measures calendar change → MBN latency through the webhooks under load (JSON on stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=10000)
        parser.add_argument("--changes", type=int, default=100)
        parser.add_argument("--over-seconds", type=float, default=10)
        parser.add_argument("--latency-ms", type=int, default=50, help="added latency per simulator request")
        parser.add_argument("--users-per-customer", type=int, default=100)
        parser.add_argument("--events-per-user", type=int, default=20)
        parser.add_argument("--concurrency", type=int, default=4, help="batches synced at once in the initial sync")
        parser.add_argument("--worker", choices=WORKERS, default="auto", help="what works off the queued syncs")
        parser.add_argument("--workers", type=int, default=4, help="q2 / Celery worker processes (or threads)")
        parser.add_argument(
            "--with-schedules",
            action="store_true",
            help="let the q2 cluster run its due Schedules (sweep, group refresh) during the measurement",
        )
        parser.add_argument("--wait-seconds", type=float, default=60, help="how long to wait for the last change")
        parser.add_argument("--mbn-rate", type=int, default=20, help="MBN requests per second per enterprise")
        parser.add_argument(
            "--providers",
            default="",
            help="comma-separated providers to build and edit (graph, google, ews); ews runs the streaming listener",
        )
        parser.add_argument(
            "--connection-minutes", type=int, default=10, help="the EWS listener's GetStreamingEvents timeout (1-30)"
        )
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        from devtools.simulators import Simulators

        if options["users"] < 1 or options["changes"] < 1 or options["over_seconds"] < 0:
            raise CommandError("--users and --changes must be at least 1, --over-seconds at least 0")
        options["provider_list"] = _providers(options["providers"])
        if not 1 <= options["connection_minutes"] <= 30:
            raise CommandError("--connection-minutes must be between 1 and 30 (Exchange's limit)")
        worker = self._worker(options["worker"])
        with ExitStack() as stack:
            sims = stack.enter_context(Simulators.start())
            sims.graph.allow_http_webhooks_on_loopback()  # the app is served over plain http on 127.0.0.1
            app_url = stack.enter_context(workers.serve_app())
            stack.enter_context(
                simulator_settings(sims, PUBLIC_BASE_URL=app_url, MBN_REQUESTS_PER_SECOND=options["mbn_rate"] * 0.9)
            )
            result = self._run(sims, worker, options)
        self.stdout.write(json.dumps(result))

    def _worker(self, choice: str) -> str:
        if choice != "auto":
            return choice
        if celery_takes_sync_work():
            return "celery"
        try:
            database_url()
        except ValueError:
            return "inprocess"
        return "q2"

    def _run(self, sims, worker: str, options: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        rng = random.Random(options["seed"])
        started = time.perf_counter()
        now = timezone.now()
        providers = options["provider_list"]
        edited = providers or PUSH_KINDS
        fleet = build_fleet(
            sims,
            users=options["users"],
            users_per_customer=options["users_per_customer"],
            events_per_user=options["events_per_user"],
            rng=rng,
            first_day=now + dt.timedelta(days=1),
            days=10,  # all-day appointments (up to 3 days) end inside the 14-day window, whose end moves
            mbn_rate=options["mbn_rate"],
            kinds=providers or bench_sync.PROVIDERS,
            progress=ProgressBar("building customers", stream=sys.stderr),
        )
        try:
            built_s = time.perf_counter() - started
            initial = sync_all(
                sims,
                fleet,
                options["concurrency"],
                ProgressBar("initial sync (simulators without latency)", stream=sys.stderr),
            )
            subscribing = time.perf_counter()
            subscriptions = self._subscribe(sims, [s for s in fleet.sources if s.kind != CalendarSource.Kind.EWS])
            streamed = "ews" in providers
            subscribe_s = time.perf_counter() - subscribing
            # a new Google channel posts a "sync" message: let those deliveries finish before the clock starts
            flushing = time.perf_counter()
            if not (sims.google.flush_notifications(timeout=600) and sims.graph.flush_notifications(timeout=600)):
                raise CommandError("the simulators' notification queues did not drain within 10 minutes")
            flush_s = time.perf_counter() - flushing
            for service in ("login", "graph", "mbn", "ews", "google"):
                sims.set_latency(service, options["latency_ms"])
            sims.reset_counters()
            push = [m for m in fleet.members if m.kind in edited]
            if len(push) < options["changes"]:
                raise CommandError(f"only {len(push)} users of {', '.join(edited)} for {options['changes']} changes")
            chosen = rng.sample(push, options["changes"])
            changes = [plan_change(m, CHANGE_KINDS[i % 3], rng, now) for i, m in enumerate(chosen)]
            phase_started_at = timezone.now()
            worker_ready_s = 0.0
            listener: dict[str, Any] = {}
            with ExitStack() as stack:
                if streamed:
                    listener = self._start_listener(stack, sims, fleet, worker, options)
                if worker == "inprocess":
                    stack.enter_context(workers.InProcessQ2(options["workers"]))
                else:
                    env = {**simulator_environment(sims), "DATABASE_URL": database_url()}
                    if worker == "q2" and not options["with_schedules"]:
                        stack.enter_context(workers.schedules_paused())
                    stack.enter_context(workers.worker_process(worker, env, options["workers"]))
                    if worker == "q2":  # the clock starts once the cluster runs tasks
                        worker_ready_s = workers.wait_for_q2()
                    else:
                        time.sleep(5)  # a Celery worker: give it time to connect
                arrivals = stack.enter_context(MbnArrivals(sims.mbn))
                progress = ProgressBar(f"{len(changes)} changes over {options['over_seconds']:g} s", stream=sys.stderr)
                watches = []
                begin = time.monotonic()
                for index, change in enumerate(changes):
                    due = begin + index * options["over_seconds"] / len(changes)
                    time.sleep(max(0.0, due - time.monotonic()))
                    watches.append(
                        arrivals.expect(
                            change.member.enterprise_id,
                            change.member.user.msisdn,
                            change.day_start,
                            change.day_end,
                            change.wanted,
                        )
                    )
                    apply_change(sims, change)
                    progress(index + 1, len(changes))
                deadline = time.monotonic() + options["wait_seconds"]
                while arrivals.pending() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if streamed:  # while the listener still runs
                    listener["connections_open_at_end"] = sims.ews.open_streams()
            latencies = [w.arrived_at - w.changed_at for w in watches if w.arrived_at is not None]
            recorded = list(
                SyncRun.objects.filter(
                    service_user__in=[c.member.user for c in changes],
                    started_at__gte=phase_started_at,
                    latency_ms__isnull=False,
                ).values_list("latency_ms", flat=True)
            )
            recorded_ms = [float(ms) for ms in recorded if ms is not None]
            calendars = {m.user.pk: m.events for m in fleet.members}
            by_customer: dict[int, list[Any]] = {}
            for member in fleet.members:
                by_customer.setdefault(member.customer.pk, []).append(member.user)
            checker = bench_sync.Command()
            mismatches = sum(
                checker._verify(sims, customer, by_customer[customer.pk], calendars, timezone.now(), None)
                for customer in fleet.customers
            )
            changed_ids = {c.member.calendar_user_id for c in changes}
            wrong = [
                _difference(sims, m, timezone.now(), m.calendar_user_id in changed_ids)
                for m in (mismatched(sims, fleet.members, timezone.now())[:5] if mismatches else [])
            ]
        finally:
            fleet.delete()
        figures = {
            "users": options["users"],
            "customers": len(fleet.customers),
            "providers": {kind: sum(m.kind == kind for m in fleet.members) for kind in bench_sync.PROVIDERS},
            "worker": worker,
            "workers": options["workers"],
            "worker_ready_s": round(worker_ready_s, 1),
            "schedules": worker == "q2" and options["with_schedules"],
            "latency_ms": options["latency_ms"],
            "build_s": round(built_s, 1),
            "initial": initial,
            "subscriptions": subscriptions,
            "subscribe_s": round(subscribe_s, 1),
            "subscription_notifications_flush_s": round(flush_s, 1),
            "changes": len(changes),
            "change_kinds": {kind: sum(c.kind == kind for c in changes) for kind in CHANGE_KINDS},
            "over_seconds": options["over_seconds"],
            "p50_s": _round(percentile(latencies, 0.5)),
            "p95_s": _round(percentile(latencies, 0.95)),
            "max_s": _round(max(latencies, default=None)),
            "min_s": _round(min(latencies, default=None)),
            "never_arrived": len(changes) - len(latencies),
            "latencies_s": [None if w.arrived_at is None else round(w.arrived_at - w.changed_at, 2) for w in watches],
            "sync_run_latency_p50_s": _round(_ms(percentile(recorded_ms, 0.5))),
            "sync_run_latency_p95_s": _round(_ms(percentile(recorded_ms, 0.95))),
            "notifications": self._notifications(sims),
            "phase_requests": {name: sims.requests(name) for name in ("login", "graph", "ews", "google", "mbn")},
            "mismatches": mismatches,
            "mismatched_examples": wrong,
            "wall_s": round(time.perf_counter() - started, 1),
        }
        if providers:  # the figures of the --providers run; the default run's JSON stays as it was
            figures["providers_edited"] = list(edited)
            figures["by_provider"] = {
                kind: _latency_figures([w for c, w in zip(changes, watches, strict=True) if c.member.kind == kind])
                for kind in edited
            }
            figures["listener"] = listener
        return figures

    def _start_listener(
        self, stack: ExitStack, sims, fleet: Fleet, worker: str, options: dict[str, Any]
    ) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        """The EWS streaming listener (its own process, or threads here with --worker inprocess), once every
        Exchange mailbox is subscribed and every group's connection is open."""
        mailboxes = sum(1 for m in fleet.members if m.kind == "ews")
        groups = sum(
            -(-sum(1 for m in fleet.members if m.kind == "ews" and m.customer.pk == s.customer_id) // GROUP_SIZE)
            for s in fleet.sources
            if s.kind == CalendarSource.Kind.EWS
        )
        starting = time.perf_counter()
        env = {} if worker == "inprocess" else {**simulator_environment(sims), "DATABASE_URL": database_url()}
        stack.enter_context(workers.ews_listener(worker, env, options["connection_minutes"]))
        deadline = time.monotonic() + max(60.0, mailboxes / 10)
        while len(sims.ews.subscriptions()) < mailboxes and time.monotonic() < deadline:
            time.sleep(0.1)
        if not sims.ews.wait_for_streams(groups, timeout=max(1.0, deadline - time.monotonic())):
            raise CommandError(
                f"the EWS listener did not subscribe {mailboxes} mailboxes on {groups} connection(s) in time "
                f"({len(sims.ews.subscriptions())} subscribed, {sims.ews.open_streams()} connection(s) open)"
            )
        return {
            "mailboxes": mailboxes,
            "connections": groups,
            "connection_minutes": options["connection_minutes"],
            "ready_s": round(time.perf_counter() - starting, 1),
            "process": "in this process" if worker == "inprocess" else "manage.py stream_ews",
        }

    def _subscribe(self, sims, sources: list[CalendarSource]) -> int:  # type: ignore[no-untyped-def]
        def subscribe(source: CalendarSource) -> int:
            try:
                return jobs.ensure_subscriptions(source=source)
            finally:
                close_old_connections()

        if workers.in_memory_database():  # the webhooks share this thread's connection: one at a time
            made = 0
            for source in sources:
                made += jobs.ensure_subscriptions(source=source)
                # a new Google channel posts a "sync" message: answered before this thread queries again
                sims.google.flush_notifications(timeout=30)
            return made
        with ThreadPoolExecutor(max_workers=4) as pool:
            return sum(pool.map(subscribe, sources))

    def _notifications(self, sims) -> dict[str, int]:  # type: ignore[no-untyped-def]
        """Change notifications posted to the app and how many it did not accept in the end (Graph posts a
        refused one again: its last attempt counts; `retried` says how many attempts were repeats). Google's
        "sync" message (sent as a channel is made, possibly before we saved the channel) is counted apart."""
        google = sims.google.notification_log()
        confirmations = [n for n in google if n.headers.get("X-Goog-Resource-State") == "sync"]
        graph = sims.graph.notification_log()
        last_attempts = {id(d.document): d for d in graph}  # a retry re-sends the same document
        changes = [d.status for d in last_attempts.values()]
        changes += [n.status for n in google if n.headers.get("X-Goog-Resource-State") != "sync"]
        return {
            "sent": len(changes),
            "retried": sum(1 for d in graph if d.attempt > 1),
            "failed": sum(1 for status in changes if status is None or status >= 400),
            "google_channel_confirmations_refused": sum(1 for n in confirmations if n.status != 200),
        }


def _difference(sims, member: Member, now: dt.datetime, changed: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What MBN holds that the engine does not want, and the reverse, for a report."""
    held, wanted = set(held_absences(sims, member)), set(expected_absences(member, now))

    def text(intervals: set[Any]) -> list[str]:
        return [f"{r} {s.isoformat()}–{e.isoformat()} {d}" for r, s, e, d in sorted(intervals)]

    return {
        "kind": member.kind,
        "calendar_user": member.calendar_user_id,
        "changed": changed,
        "only_in_mbn": text(held - wanted),
        "only_wanted": text(wanted - held),
    }


def _providers(value: str) -> tuple[str, ...]:
    """The --providers list, in bench_sync's order; empty for the default run."""
    given = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(given - set(bench_sync.PROVIDERS))
    if unknown:
        raise CommandError(f"unknown provider(s) {', '.join(unknown)}: choose from {', '.join(bench_sync.PROVIDERS)}")
    return tuple(kind for kind in bench_sync.PROVIDERS if kind in given)


def _latency_figures(watches: list[Any]) -> dict[str, Any]:
    latencies = [w.arrived_at - w.changed_at for w in watches if w.arrived_at is not None]
    return {
        "changes": len(watches),
        "p50_s": _round(percentile(latencies, 0.5)),
        "p95_s": _round(percentile(latencies, 0.95)),
        "max_s": _round(max(latencies, default=None)),
        "never_arrived": len(watches) - len(latencies),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1000


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
