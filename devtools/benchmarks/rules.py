"""Rules-engine speed: events per second for one user's 14 days, and how the cost grows with 10× events.

    python -m devtools.benchmarks.rules [--events 200] [--factor 10] [--seconds 2] [--json]

Pure engine, no Django. The calendar is random but seeded: meetings of 15 minutes to 3 hours in
office hours, some outside, lunches, all-day holidays and trips, codes, tentative, declined and
cancelled events, in the proportions of a busy office calendar.
"""

import argparse
import datetime as dt
import json
import platform
import random
import time
from zoneinfo import ZoneInfo

from sync.rules import DEFAULT_CATALOGUE, Event, RuleSettings, compute_absences

OSLO = ZoneInfo("Europe/Oslo")
WINDOW_START = dt.datetime(2026, 3, 23, tzinfo=OSLO)  # two weeks holding the spring DST change
WINDOW_END = WINDOW_START + dt.timedelta(days=14)
SUBJECTS = [
    "Prosjektmøte",
    "Kundemøte &Eks",
    "Lunsj &Ute",
    "1:1",
    "Salgsmøte &For",
    "Q&A med R&D",
    "&Ikt fokus",
    "Styremøte &-",
    "Tannlege &Gåt",
    "Planlegging",
    "&Syk",
    "Intervju &+",
]


def calendar(count: int, seed: int = 2026) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.05:  # all-day: holiday, trip, sick day
            start = WINDOW_START.date() + dt.timedelta(days=rng.randrange(14))
            end = start + dt.timedelta(days=rng.choice([1, 1, 2, 3, 5]))
            events.append(
                Event(
                    f"a{index}",
                    start,
                    end,
                    all_day=True,
                    subject=rng.choice(["&Ferie", "&For", "&Syk"]),
                    show_as=rng.choice(["free", "oof"]),
                )
            )
            continue
        day = WINDOW_START + dt.timedelta(days=rng.randrange(14))
        start = day + dt.timedelta(minutes=15 * rng.randrange(28, 76))  # 07:00–19:00
        end = start + dt.timedelta(minutes=15 * rng.choice([1, 2, 2, 4, 4, 4, 6, 8, 12]))
        events.append(
            Event(
                f"t{index}",
                start,
                end,
                subject=rng.choice(SUBJECTS),
                show_as=rng.choices(["busy", "tentative", "free", "oof"], [70, 15, 10, 5])[0],
                response=rng.choices(["accepted", "organizer", "tentative", "declined", "none"], [50, 20, 15, 10, 5])[
                    0
                ],
                cancelled=rng.random() < 0.03,
            )
        )
    return events


def seconds_per_run(events: list[Event], budget: float) -> tuple[float, int]:
    settings = RuleSettings()
    runs, started = 0, time.perf_counter()
    while True:
        compute_absences(
            settings=settings,
            window_start=WINDOW_START,
            window_end=WINDOW_END,
            events=events,
            catalogue=DEFAULT_CATALOGUE,
        )
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= budget and runs >= 3:
            return elapsed / runs, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    small, large = calendar(args.events), calendar(args.events * args.factor)
    seconds_per_run(small, 0.2)  # warm caches (regex, holidays)
    small_time, small_runs = seconds_per_run(small, args.seconds)
    large_time, large_runs = seconds_per_run(large, args.seconds)
    result = {
        "machine": f"{platform.machine()} Python {platform.python_version()}",
        "window_days": 14,
        "small": {
            "events": len(small),
            "runs": small_runs,
            "ms_per_run": round(small_time * 1000, 3),
            "events_per_second": round(len(small) / small_time),
        },
        "large": {
            "events": len(large),
            "runs": large_runs,
            "ms_per_run": round(large_time * 1000, 3),
            "events_per_second": round(len(large) / large_time),
        },
        "cost_growth": round(large_time / small_time, 2),
        "allowed_growth": round(1.2 * args.factor, 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"rules engine, one user, {result['window_days']} days ({result['machine']})")
    for key in ("small", "large"):
        row = result[key]
        print(
            f"  {row['events']:>6} events: {row['ms_per_run']:>9.3f} ms per run, "
            f"{row['events_per_second']:>9,} events/s ({row['runs']} runs)".replace(",", " ")
        )
    verdict = "ok" if result["cost_growth"] <= result["allowed_growth"] else "TOO SLOW"
    print(f"  cost ×{result['cost_growth']} for ×{args.factor} events (at most ×{result['allowed_growth']}): {verdict}")


if __name__ == "__main__":
    main()
