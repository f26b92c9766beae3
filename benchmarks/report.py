"""Summarise `make bench`'s JSON files against the goals of the scale issue (docs/benchmarks.md).

    python -m benchmarks.report var/bench

One line per figure: the measured value, the goal, and whether it is met. Files that are missing (a
benchmark not run) are skipped with a note.
"""

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Check = tuple[str, Callable[[dict[str, Any]], Any], str, Callable[[Any], bool]]

CHECKS: dict[str, list[Check]] = {
    "rules.json": [
        (
            "rules engine, events per second (2 000 events)",
            lambda d: d["large"]["events_per_second"],
            "—",
            lambda v: True,
        ),
        ("rules engine, cost for ×10 events", lambda d: d["cost_growth"], "≤ ×12", lambda v: v <= 12),
    ],
    "billing-200.json": [
        ("billing, 200 customers: queries per invoice", lambda d: d["queries_per_invoice"], "constant", lambda v: True),
        ("billing, 200 customers: wall s", lambda d: d["wall_s"], "—", lambda v: True),
    ],
    "billing-2000.json": [
        (
            "billing, 2 000 customers: queries per invoice",
            lambda d: d["queries_per_invoice"],
            "constant",
            lambda v: True,
        ),
        ("billing, 2 000 customers: wall s", lambda d: d["wall_s"], "linear", lambda v: True),
    ],
}


def _sync_checks(label: str) -> list[Check]:
    return [
        (f"{label}: initial sync wall s", lambda d: d["initial"]["wall_s"], "—", lambda v: True),
        (f"{label}: efficiency of the initial sync", lambda d: d["initial"]["efficiency"], "≥ 0.6", lambda v: v >= 0.6),
        (
            f"{label}: calendar requests per user (initial)",
            lambda d: d["initial"]["calendar_requests_per_user"],
            "≤ 1.1",
            lambda v: v <= 1.1,
        ),
        (
            f"{label}: Graph requests per Graph user (initial; $batch of 20)",
            lambda d: round(d["initial"]["requests"]["graph"] / d["providers"]["graph"], 3),
            "≤ 0.1",
            lambda v: v <= 0.1,
        ),
        (
            f"{label}: Microsoft login requests per Graph user (discovery and token, once per tenant)",
            lambda d: round(d["initial"]["requests"]["login"] / d["providers"]["graph"], 3),
            "—",
            lambda v: True,
        ),
        (
            f"{label}: MBN requests per absence created (initial)",
            lambda d: d["initial"]["mbn_requests_per_absence_created"],
            "≤ 1.05",
            lambda v: v <= 1.05,
        ),
        (
            f"{label}: MBN requests on a cycle with no change",
            lambda d: d["noop"]["mbn_requests"],
            "0",
            lambda v: v == 0,
        ),
        (f"{label}: mismatches with the engine", lambda d: d["mismatches"], "0", lambda v: v == 0),
    ]


CHECKS["sync-embedded.json"] = _sync_checks("sync, embedded default")
CHECKS["sync-celery.json"] = _sync_checks("sync, PostgreSQL + Redis + 2 Celery workers")


def _lines(directory: Path) -> Iterator[str]:
    for name, checks in CHECKS.items():
        path = directory / name
        if not path.is_file():
            yield f"  (not run: {name})"
            continue
        data = json.loads(path.read_text())
        for label, read, goal, met in checks:
            try:
                value = read(data)
            except (KeyError, TypeError, ZeroDivisionError):
                yield f"  {label}: missing in {name}"
                continue
            mark = "" if goal == "—" else ("  ok" if met(value) else "  MISSED")
            yield f"  {label}: {value} (goal {goal}){mark}"
    for name in ("latency.json", "soak.json"):
        path = directory / name
        yield f"  {name}: {path.read_text().strip()}" if path.is_file() else f"  (not run: {name})"


def main(argv: list[str]) -> int:
    directory = Path(argv[1] if len(argv) > 1 else "var/bench")
    print(f"Benchmarks in {directory}:")
    for line in _lines(directory):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
