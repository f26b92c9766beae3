"""`bench_onboarding --users N`: one big customer's first sync, against one MBN enterprise at 20 requests/s.

One Microsoft 365 customer of N users (one tenant, one MBN enterprise) with a scripted calendar each is synced
for the first time in the order the product queues it (`sync.services.sync_passes`, as the sweep does:
batches of 20, the near-term pass of everyone first), by `--concurrency` threads running the Celery task's own
attempt (`devtools.benchmarking.runner`). MBN allows `--mbn-rate` requests/s for the enterprise; we pace at
90 % of it. Prints one JSON object on stdout (progress on stderr):

    {"users", "first_day_complete_s", "all_complete_s", "mismatches"}

measured from MBN's side (when the simulator stored each absence), from the moment the syncs are queued:
`first_day_complete_s` is when every user's absences starting within 24 h were all on MBN, `all_complete_s`
when every absence was (null when something never arrived). `mismatches` counts users whose MBN state differs
from the engine's answer for their calendar at the end. `--until first-day` queues only the near-term pass
and stops when it is done (minutes instead of the ~47 of 3 000 users' every absence at 18/s): then
`all_complete_s` is null and a mismatch is a user whose MBN state is not exactly their absences starting
within 24 h. `--details` adds the run's figures (requests, CPU, events, absences, and how many absences
starting later than 24 h MBN stored before the first day was complete: 0 when near-term first held) under
"details".
"""

import datetime as dt
import json
import random
import sys
import time
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from common.progress import ProgressBar
from devtools.benchmarking import fleet as fleets
from devtools.benchmarking.runner import ThreadedFleet
from sync import pipeline
from sync.services import sync_passes

BATCH = 20


class Command(BaseCommand):
    help = "Benchmarks one big customer's first sync against MBN's rate (JSON on stdout, progress on stderr)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=3000)
        parser.add_argument("--events-per-user", type=int, default=20)
        parser.add_argument("--days", type=int, default=14, help="the scripted calendars span this many days")
        parser.add_argument("--latency-ms", type=int, default=50, help="added latency per simulator request")
        parser.add_argument("--concurrency", type=int, default=32, help="batches synced at the same time")
        parser.add_argument("--mbn-rate", type=int, default=20, help="MBN requests per second for the enterprise")
        parser.add_argument("--until", choices=("all", "first-day"), default="all")
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--simulators", choices=("process", "thread"), default="process")
        parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
        parser.add_argument("--details", action="store_true", help='add the run\'s figures under "details"')

    def handle(self, *args: Any, **options: Any) -> None:
        from devtools.simulators.remote import start_simulators

        if options["users"] < 1 or options["concurrency"] < 1 or options["mbn_rate"] < 1:
            raise CommandError("--users, --concurrency and --mbn-rate must be at least 1")
        if options["events_per_user"] < 0 or options["days"] < 1:
            raise CommandError("--events-per-user must be at least 0 and --days at least 1")
        with start_simulators(options["simulators"]) as sims:
            for service in ("login", "graph", "mbn"):
                sims.set_latency(service, options["latency_ms"])
            with fleets.simulator_settings(
                sims,
                MBN_REQUESTS_PER_SECOND=options["mbn_rate"] * 0.9,
                DEBUG=False,
                CREDENTIALS_KEY=django_settings.CREDENTIALS_KEY or Fernet.generate_key().decode(),
            ):
                result = self._run(sims, options)
        self.stdout.write(json.dumps(result))

    def _run(self, sims, options: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        now = timezone.now()
        rng = random.Random(options["seed"])
        count = options["users"]
        building = ProgressBar("customer and calendars", stream=sys.stderr)
        fleet = fleets.build_fleet(
            sims,
            users=count,
            users_per_customer=count,
            events_per_user=options["events_per_user"],
            rng=rng,
            first_day=now,
            days=options["days"],
            mbn_rate=options["mbn_rate"],
            kinds=("graph",),
            progress=building,
        )
        try:
            return self._onboard(sims, fleet, now, options)
        finally:
            fleet.delete()

    def _onboard(self, sims, fleet: fleets.Fleet, now: dt.datetime, options: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        first_day_only = options["until"] == "first-day"
        cutoff = now + pipeline.FIRST_DAY
        expected = {m.calendar_user_id: fleets.expected_absences(m, now) for m in fleet.members}
        near = {pk: [a for a in wanted if a[1] < cutoff] for pk, wanted in expected.items()}
        passes = sync_passes(calendar_user_ids=[m.calendar_user_id for m in fleet.members], batch=BATCH)
        if first_day_only:
            passes = [(batch, first_day) for batch, first_day in passes if first_day]
        if not passes or not passes[0][1]:
            raise CommandError(
                "the product did not queue a near-term pass for this customer: onboarding passes start above "
                "sync.services.FIRST_DAY_PASS_USERS never-synced users; use more --users"
            )
        sims.reset_counters()
        progress = ProgressBar(f"onboarding {len(fleet.members)} users", stream=sys.stderr)
        cpu_before, sims_cpu_before = time.process_time(), sims.cpu_seconds()
        started = time.time()
        with ThreadedFleet(options["concurrency"], now=now) as runner:
            for batch, first_day in passes:
                runner.queue(batch, first_day=first_day)
            while not runner.idle():
                progress(runner.figures()["syncs"], len(passes))
                time.sleep(1.0)
            figures = runner.figures()
        progress(len(passes), len(passes))
        wall = time.time() - started
        enterprise = fleet.members[0].enterprise_id
        held_since = sims.mbn.held_since(enterprise)
        arrived: list[float] = []  # per user: when the last of its near-term absences was stored
        mismatches = 0
        for member in fleet.members:
            held = {_interval(a): a["stored_at"] for a in held_since.get(member.user.msisdn, [])}
            wanted = near[member.calendar_user_id] if first_day_only else expected[member.calendar_user_id]
            mismatches += sorted(held) != sorted(wanted)
            stored = [held.get(a) for a in near[member.calendar_user_id]]
            arrived.append(float("inf") if None in stored else max([started, *(t for t in stored if t)]))
        everything = [a["stored_at"] for absences in held_since.values() for a in absences]
        first_day_s = max(arrived, default=started) - started
        # near-term first: the later absences MBN stored before the last first-day one
        later_first = sum(
            1
            for absences in held_since.values()
            for a in absences
            if _interval(a)[1] >= cutoff and a["stored_at"] < started + first_day_s
        )
        result: dict[str, Any] = {
            "users": len(fleet.members),
            "first_day_complete_s": None if first_day_s == float("inf") else round(first_day_s, 1),
            "all_complete_s": None
            if first_day_only or mismatches
            else round(max(everything, default=started) - started, 1),
            "mismatches": mismatches,
        }
        if options["details"]:
            result["details"] = {
                "until": options["until"],
                "wall_s": round(wall, 1),
                "cpu_s": round(time.process_time() - cpu_before, 2),
                "simulators_cpu_s": round(sims.cpu_seconds() - sims_cpu_before, 2),
                "passes": {"first_day": sum(1 for _b, f in passes if f), "full": sum(1 for _b, f in passes if not f)},
                "events": sum(len(m.events) for m in fleet.members),
                "absences_first_day": sum(len(a) for a in near.values()),
                "absences": sum(len(a) for a in expected.values()),
                "later_absences_before_first_day_complete": later_first,
                "mbn_requests": sims.requests("mbn"),
                "graph_requests": sims.requests("graph"),
                **figures,
            }
        return result


def _interval(absence: dict[str, Any]) -> fleets.Interval:
    """(reason, start, end, diversion) of an absence as the MBN simulator gives it: what the engine's answer is."""
    start, end = dt.datetime.fromisoformat(absence["start"]), dt.datetime.fromisoformat(absence["end"])
    return absence["reason"], start, end, absence["diversion"]
