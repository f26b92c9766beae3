"""Summarise `make bench`'s JSON files against the goals of the scale issue (docs/benchmarks.md).

    python -m devtools.benchmarks.report var/bench

One line per figure. A goal line shows the measured value and its threshold, then "ok" or "MISSED"; an
information line shows a figure that has no goal and is never marked. The billing goals compare the runs
at 200 and 2 000 customers, so they need both files. Files that are missing (a benchmark not run) are
skipped with a note. Exit status: 0 when every goal that could be checked is met, 1 when a goal is missed
(or its figure is missing from a file that was written), 2 when the directory does not exist.
"""

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

# Reads the figure from the parsed JSON files it names, one argument per file, in order.
Reader = Callable[..., Any]


class Comparison(Enum):
    AT_MOST = "≤"
    AT_LEAST = "≥"
    EQUAL_TO = "="

    def holds(self, value: float, threshold: float) -> bool:
        if self is Comparison.AT_MOST:
            return value <= threshold
        if self is Comparison.AT_LEAST:
            return value >= threshold
        return value == threshold


@dataclass(frozen=True)
class Goal:
    """A figure compared with a threshold; `unit` is "", "×" (a ratio) or "%"."""

    label: str
    files: tuple[str, ...]
    read: Reader
    comparison: Comparison
    threshold: float
    unit: str = ""

    def met(self, value: float) -> bool:
        return self.comparison.holds(value, self.threshold)


@dataclass(frozen=True)
class Info:
    """A figure printed for information: it has no goal, so it is never marked ok or missed."""

    label: str
    files: tuple[str, ...]
    read: Reader


Figure = Goal | Info

RULES = "rules.json"
SMALL_CUSTOMERS, LARGE_CUSTOMERS = 200, 2000
BILLING_SMALL, BILLING_LARGE = f"billing-{SMALL_CUSTOMERS}.json", f"billing-{LARGE_CUSTOMERS}.json"
# "Constant queries per invoice": the 2 000-customer run may differ from the 200-customer run by at most this.
QUERIES_PER_INVOICE_DRIFT_PERCENT = 10
# "Linear time": the wall-time ratio may be at most this multiple of the customer ratio (×10 → ×15).
LINEAR_TIME_SLACK = 1.5
# A sweep with no change costs at most 1/20 of a full read of every calendar (issue 19).
STEADY_CPU_SHARE = 0.05
ONBOARDING = "onboarding.json"
ONBOARDING_USERS = 3000
FIRST_DAY_SECONDS = 300  # a 3 000-user customer's absences starting within 24 h are all on MBN within 5 min
BENCH_TIME = "bench-time.json"
BENCH_SECONDS = 15 * 60  # `make bench` at its default sizes


def _require_customer_counts(small: dict[str, Any], large: dict[str, Any]) -> None:
    """The billing goals compare runs of 200 and 2 000 customers: refuse a file that holds another count."""
    for name, run, expected in ((BILLING_SMALL, small, SMALL_CUSTOMERS), (BILLING_LARGE, large, LARGE_CUSTOMERS)):
        if run["customers"] != expected:
            raise ValueError(f"{name} is a run of {run['customers']} customers, not {expected}")


def _queries_per_invoice_drift(small: dict[str, Any], large: dict[str, Any]) -> float:
    _require_customer_counts(small, large)
    before, after = small["queries_per_invoice"], large["queries_per_invoice"]
    return round(abs(after - before) / before * 100, 1)


def _wall_time_ratio(small: dict[str, Any], large: dict[str, Any]) -> float:
    _require_customer_counts(small, large)
    return round(large["wall_s"] / small["wall_s"], 2)


def _steady_cpu_share(data: dict[str, Any]) -> float:
    """The steady no-change sweep's CPU seconds as a share of the full-read no-change cycle's."""
    return round(data["steady"]["no_change"]["cpu_s"] / data["noop"]["cpu_s"], 3)


def _sync_figures(name: str, label: str, *, cpu_goal: bool) -> list[Figure]:
    """`cpu_goal`: the steady sweep's CPU is compared with the full read's (only where this process does the
    syncs: with Celery workers their CPU is in other processes)."""
    files = (name,)
    steady_cpu: list[Figure] = [
        Goal(
            f"{label}: steady sweep with no change, CPU s as a share of the full-read no-change cycle's",
            files,
            _steady_cpu_share,
            Comparison.AT_MOST,
            STEADY_CPU_SHARE,
        )
    ]
    return [
        Info(f"{label}: initial sync wall s", files, lambda d: d["initial"]["wall_s"]),
        Goal(
            f"{label}: efficiency of the initial sync",
            files,
            lambda d: d["initial"]["efficiency"],
            Comparison.AT_LEAST,
            0.6,
        ),
        Goal(
            f"{label}: calendar requests per user (initial)",
            files,
            lambda d: d["initial"]["calendar_requests_per_user"],
            Comparison.AT_MOST,
            1.1,
        ),
        Goal(
            f"{label}: Graph requests per Graph user (initial; $batch of 20)",
            files,
            lambda d: round(d["initial"]["requests"]["graph"] / d["providers"]["graph"], 3),
            Comparison.AT_MOST,
            0.1,
        ),
        Info(
            f"{label}: Microsoft login requests per Graph user (discovery and token, once per tenant)",
            files,
            lambda d: round(d["initial"]["requests"]["login"] / d["providers"]["graph"], 3),
        ),
        Goal(
            f"{label}: MBN requests per absence created (initial)",
            files,
            lambda d: d["initial"]["mbn_requests_per_absence_created"],
            Comparison.AT_MOST,
            1.05,
        ),
        Goal(
            f"{label}: MBN requests on a cycle with no change",
            files,
            lambda d: d["noop"]["mbn_requests"],
            Comparison.EQUAL_TO,
            0,
        ),
        Goal(f"{label}: mismatches with the engine", files, lambda d: d["mismatches"], Comparison.EQUAL_TO, 0),
        Info(
            f"{label}: no-change cycle (full read): CPU s, simulators' CPU s, wall s",
            files,
            lambda d: (d["noop"]["cpu_s"], d["noop"]["simulators_cpu_s"], d["noop"]["wall_s"]),
        ),
        Info(
            f"{label}: steady sweep, no change: CPU s, calendar requests, wall s",
            files,
            lambda d: (
                d["steady"]["no_change"]["cpu_s"],
                d["steady"]["no_change"]["calendar_requests"],
                d["steady"]["no_change"]["wall_s"],
            ),
        ),
        *(steady_cpu if cpu_goal else []),
        Goal(
            f"{label}: MBN requests on the steady sweep with no change",
            files,
            lambda d: d["steady"]["no_change"]["mbn_requests"],
            Comparison.EQUAL_TO,
            0,
        ),
        Goal(
            f"{label}: mismatches after the steady sweep with no change",
            files,
            lambda d: d["steady"]["no_change"]["mismatches"],
            Comparison.EQUAL_TO,
            0,
        ),
        Info(
            f"{label}: steady sweep after 1 % changed: CPU s, calendar requests, MBN requests, wall s",
            files,
            lambda d: (
                d["steady"]["changed"]["cpu_s"],
                d["steady"]["changed"]["calendar_requests"],
                d["steady"]["changed"]["mbn_requests"],
                d["steady"]["changed"]["wall_s"],
            ),
        ),
        Goal(
            f"{label}: mismatches after the steady sweep with 1 % changed (MBN equals the engine)",
            files,
            lambda d: d["steady"]["changed"]["mismatches"],
            Comparison.EQUAL_TO,
            0,
        ),
        Info(f"{label}: peak memory MB (this process)", files, lambda d: d["peak_rss_mb"]),
    ]


def _raw(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


FIGURES: list[Figure] = [
    Info("rules engine, events per second (2 000 events)", (RULES,), lambda d: d["large"]["events_per_second"]),
    Goal("rules engine, cost for ×10 events", (RULES,), lambda d: d["cost_growth"], Comparison.AT_MOST, 12, "×"),
    Info("billing, 200 customers: queries per invoice", (BILLING_SMALL,), lambda d: d["queries_per_invoice"]),
    Info("billing, 200 customers: wall s", (BILLING_SMALL,), lambda d: d["wall_s"]),
    Info("billing, 2 000 customers: queries per invoice", (BILLING_LARGE,), lambda d: d["queries_per_invoice"]),
    Info("billing, 2 000 customers: wall s", (BILLING_LARGE,), lambda d: d["wall_s"]),
    Goal(
        "billing: change in queries per invoice from 200 to 2 000 customers (constant)",
        (BILLING_SMALL, BILLING_LARGE),
        _queries_per_invoice_drift,
        Comparison.AT_MOST,
        QUERIES_PER_INVOICE_DRIFT_PERCENT,
        "%",
    ),
    Goal(
        "billing: wall time for ×10 customers, 200 to 2 000 (linear, within ×1.5 of the customer ratio)",
        (BILLING_SMALL, BILLING_LARGE),
        _wall_time_ratio,
        Comparison.AT_MOST,
        LINEAR_TIME_SLACK * LARGE_CUSTOMERS / SMALL_CUSTOMERS,
        "×",
    ),
    *_sync_figures("sync-embedded.json", "sync, embedded default", cpu_goal=True),
    *_sync_figures("sync-celery.json", "sync, PostgreSQL + Redis + 2 Celery workers", cpu_goal=False),
    Goal("change → MBN latency: p95 s", ("latency.json",), lambda d: d["p95_s"], Comparison.AT_MOST, 5),
    Goal(
        "change → MBN latency: changes that never arrived",
        ("latency.json",),
        lambda d: d["never_arrived"],
        Comparison.EQUAL_TO,
        0,
    ),
    Goal(
        "change → MBN latency: mismatches with the engine",
        ("latency.json",),
        lambda d: d["mismatches"],
        Comparison.EQUAL_TO,
        0,
    ),
    Goal(
        "change → MBN latency, Exchange on-premises: p95 s",
        ("latency.json",),
        lambda d: d["by_provider"]["ews"]["p95_s"],
        Comparison.AT_MOST,
        5,
    ),
    Goal(
        "change → MBN latency, Exchange on-premises: changes that never arrived",
        ("latency.json",),
        lambda d: d["by_provider"]["ews"]["never_arrived"],
        Comparison.EQUAL_TO,
        0,
    ),
    Info("change → MBN latency (latency.json)", ("latency.json",), _raw),
    Goal("soak with faults: mismatches afterwards", ("soak.json",), lambda d: d["mismatches"], Comparison.EQUAL_TO, 0),
    Goal("soak with faults: duplicate absences", ("soak.json",), lambda d: d["duplicates"], Comparison.EQUAL_TO, 0),
    Goal(
        "soak with faults: backlog drained after MBN came back, s",
        ("soak.json",),
        lambda d: d["outage_backlog_drained_s"],
        Comparison.AT_MOST,
        120,
    ),
    Info("soak with faults (soak.json)", ("soak.json",), _raw),
    Goal(
        "onboarding: users of the one customer",
        (ONBOARDING,),
        lambda d: d["users"],
        Comparison.AT_LEAST,
        ONBOARDING_USERS,
    ),
    Goal(
        "onboarding: every user's first 24 h on MBN after, s",
        (ONBOARDING,),
        lambda d: d["first_day_complete_s"],
        Comparison.AT_MOST,
        FIRST_DAY_SECONDS,
    ),
    Goal("onboarding: mismatches with the engine", (ONBOARDING,), lambda d: d["mismatches"], Comparison.EQUAL_TO, 0),
    Info("onboarding: everything on MBN after, s (null: first-day run)", (ONBOARDING,), lambda d: d["all_complete_s"]),
    Info("make bench: seconds per step", (BENCH_TIME,), lambda d: _raw(d["steps"])),
    Goal("make bench: wall s", (BENCH_TIME,), lambda d: d["total_s"], Comparison.AT_MOST, BENCH_SECONDS),
]


def _shown(value: Any, unit: str) -> str:
    text = f"{value:g}" if isinstance(value, float) and value.is_integer() else str(value)
    return {"×": f"×{text}", "%": f"{text} %"}.get(unit, text)


@dataclass(frozen=True)
class Line:
    """One printed line; `missed` counts it against the exit status."""

    text: str
    missed: bool = False


def _lines(directory: Path) -> Iterator[Line]:
    loaded: dict[str, dict[str, Any] | None] = {}
    for figure in FIGURES:
        for name in figure.files:
            if name not in loaded:
                path = directory / name
                loaded[name] = json.loads(path.read_text()) if path.is_file() else None
                if loaded[name] is None:
                    yield Line(f"  (not run: {name})")
        not_run = [name for name in figure.files if loaded[name] is None]
        if not_run:
            if len(not_run) < len(figure.files):
                yield Line(f"  {figure.label}: not compared, {', '.join(not_run)} not run")
            continue
        yield _line(figure, [loaded[name] for name in figure.files])


def _line(figure: Figure, files: list[Any]) -> Line:
    """The figure's line; a goal whose figure cannot be read from files that were written is missed."""
    try:
        value = figure.read(*files)
        if isinstance(figure, Info):
            return Line(f"  {figure.label}: {value} (information)")
        met = figure.met(value)
    except (KeyError, TypeError, ZeroDivisionError) as error:
        problem = f"cannot be read from {' and '.join(figure.files)} ({type(error).__name__}: {error})"
    except ValueError as error:
        problem = str(error)
    else:
        mark = "ok" if met else "MISSED"
        return Line(f"  {figure.label}: {_shown(value, figure.unit)} (goal {_goal(figure)})  {mark}", missed=not met)
    if isinstance(figure, Info):
        return Line(f"  {figure.label}: {problem} (information)")
    return Line(f"  {figure.label}: {problem} (goal {_goal(figure)})  MISSED", missed=True)


def _goal(goal: Goal) -> str:
    return f"{goal.comparison.value} {_shown(goal.threshold, goal.unit)}"


def main(argv: list[str]) -> int:
    directory = Path(argv[1] if len(argv) > 1 else "var/bench")
    if not directory.is_dir():
        print(f"No benchmark results in {directory}: the directory does not exist. Run `make bench` first.")
        return 2
    print(f"Benchmarks in {directory}:")
    missed = 0
    for line in _lines(directory):
        print(line.text)
        missed += line.missed
    if missed:
        print(f"{missed} goal(s) missed.")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
