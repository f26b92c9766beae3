"""`bench_soak --users N --minutes M`: a bounded soak with faults on every simulator and an MBN outage.

Builds N users as bench_sync does (over Graph, Exchange and Google, `--users-per-customer` per customer),
syncs them once without faults, then for `--minutes` changes `--change-share` of the calendars every
`--change-every` seconds and queues their syncs (as the webhooks and the sweep would), while every
simulator answers `--fault-rate` of requests with 429, 503, a timeout or a malformed body, and MBN answers
503 to everything for `--outage-seconds` in the middle. Syncs run in threads that run the Celery task's own
attempt (`sync.attempt.run_sync_attempt`: claim, back-off on RetryLater, give up after its retries), or on
Celery workers when a broker is set (then a worker must be running with the same simulator settings; see
`--worker`). Then the faults stop and the drain is timed. Prints one JSON object on stdout (progress on
stderr); the rows are deleted afterwards.
"""

import datetime as dt
import json
import random
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from common.progress import ProgressBar
from common.queue import celery_takes_sync_work
from devtools.benchmarking import workers
from devtools.benchmarking.fleet import build_fleet, database_url, simulator_environment, simulator_settings, sync_all
from devtools.benchmarking.runner import ThreadedFleet
from devtools.benchmarking.soak import run_soak
from devtools.management.commands import bench_sync
from sync.services import queue_syncs


class Command(BaseCommand):
    help = "Soak run: continuous calendar changes, faults on every simulator, an MBN outage (JSON on stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=300)
        parser.add_argument("--minutes", type=float, default=5, help="length of the soak (at most 5)")
        parser.add_argument("--outage-seconds", type=float, default=60, help="MBN fully down in the middle")
        parser.add_argument("--fault-rate", type=float, default=0.10, help="share of requests faulted")
        parser.add_argument("--fault-timeout-seconds", type=float, default=5, help="how long a timeout stalls")
        parser.add_argument("--change-every", type=float, default=3, help="seconds between rounds of changes")
        parser.add_argument("--change-share", type=float, default=0.02, help="share of users changed per round")
        parser.add_argument("--users-per-customer", type=int, default=30)
        parser.add_argument("--events-per-user", type=int, default=10)
        parser.add_argument("--concurrency", type=int, default=4, help="sync threads (threads worker)")
        parser.add_argument("--worker", choices=("auto", "threads", "celery"), default="auto")
        parser.add_argument("--drain-timeout", type=float, default=180, help="how long to wait for the drain")
        parser.add_argument("--mbn-rate", type=int, default=20, help="MBN requests per second per enterprise")
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        from devtools.simulators import Simulators

        if not 0 < options["minutes"] <= 5:
            raise CommandError("--minutes must be more than 0 and at most 5 (the soak is bounded)")
        if options["users"] < 1 or not 0 <= options["fault_rate"] <= 1:
            raise CommandError("--users must be at least 1 and --fault-rate between 0 and 1")
        if options["outage_seconds"] > options["minutes"] * 60:
            raise CommandError("--outage-seconds must fit inside the soak")
        worker = options["worker"]
        if worker == "auto":
            worker = "threads" if not celery_takes_sync_work() else "celery"
        if worker == "celery" and not celery_takes_sync_work():
            raise CommandError("--worker celery needs CELERY_BROKER_URL (a broker and non-eager Celery)")
        with Simulators.start() as sims, simulator_settings(sims, MBN_REQUESTS_PER_SECOND=options["mbn_rate"] * 0.9):
            sims.set_fault_timeout_seconds(options["fault_timeout_seconds"])
            result = self._run(sims, worker, options)
        self.stdout.write(json.dumps(result))

    def _run(self, sims, worker: str, options: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        rng = random.Random(options["seed"])
        started = time.perf_counter()
        now = timezone.now()
        fleet = build_fleet(
            sims,
            users=options["users"],
            users_per_customer=options["users_per_customer"],
            events_per_user=options["events_per_user"],
            rng=rng,
            first_day=now + dt.timedelta(days=1),
            days=10,  # all-day appointments (up to 3 days) end inside the 14-day window, whose end moves
            mbn_rate=options["mbn_rate"],
            progress=ProgressBar("building customers", stream=sys.stderr),
        )
        try:
            initial = sync_all(
                sims, fleet, options["concurrency"], ProgressBar("initial sync (no faults)", stream=sys.stderr)
            )
            with ExitStack() as stack:
                runner: ThreadedFleet | None = None
                if worker == "threads":
                    runner = stack.enter_context(ThreadedFleet(options["concurrency"]))
                else:
                    env = {**simulator_environment(sims), "DATABASE_URL": database_url()}
                    stack.enter_context(workers.worker_process("celery", env, options["concurrency"]))

                def queue(ids: Iterable[int]) -> None:
                    if runner is not None:
                        runner.queue(ids)
                    else:
                        queue_syncs(calendar_user_ids=ids)

                soak = run_soak(
                    sims,
                    fleet,
                    queue=queue,
                    seconds=options["minutes"] * 60,
                    outage_seconds=options["outage_seconds"],
                    fault_rate=options["fault_rate"],
                    change_every=options["change_every"],
                    change_share=options["change_share"],
                    drain_timeout=options["drain_timeout"],
                    rng=rng,
                    log=lambda line: print(line, file=sys.stderr, flush=True),
                )
                fleet_figures = runner.figures() if runner else None
            calendars = {m.user.pk: m.events for m in fleet.members}
            by_customer: dict[int, list[Any]] = {}
            for member in fleet.members:
                by_customer.setdefault(member.customer.pk, []).append(member.user)
            checker = bench_sync.Command()
            verified = sum(
                checker._verify(sims, customer, by_customer[customer.pk], calendars, timezone.now(), None)
                for customer in fleet.customers
            )
        finally:
            fleet.delete()
        return {
            "users": options["users"],
            "customers": len(fleet.customers),
            "worker": worker,
            "concurrency": options["concurrency"],
            "fault_rate": options["fault_rate"],
            "initial_wall_s": initial["wall_s"],
            **soak,
            "mismatches": verified,
            "threaded_fleet": fleet_figures,
            "wall_s": round(time.perf_counter() - started, 1),
        }
