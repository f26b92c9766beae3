"""The Prometheus metrics every process counts (web, Celery and q2 workers), defined once for all apps.

With PROMETHEUS_MULTIPROC_DIR set (scripts/serve.sh sets it) each process writes its counts to files in that
directory and `/metrics` adds them up; without it the counts live in the one process. `render()` is the text
`/metrics` serves: these counters plus the gauges a scrape reads from the database and the broker (`StateReader`,
given by the caller, who may import the apps). Metric names are documented in docs/operations.md.
"""

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # each process's first metric opens its file there
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

SYNC_RUNS = Counter(
    "kalenderpush_sync_runs",
    "Users synced, by calendar provider and outcome (ok, error, retry); error_code is empty when ok.",
    ["provider", "outcome", "error_code"],
)
CHANGE_TO_MBN_SECONDS = Histogram(
    "kalenderpush_change_to_mbn_seconds",
    "From a noticed calendar change (webhook or sweep) to its absences written on MBN.",
    ["provider"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
MBN_REQUESTS = Counter(
    "kalenderpush_mbn_requests",
    "Requests to the MBN API by HTTP status (or 'unreachable' when no answer came).",
    ["status"],
)
MBN_THROTTLED = Counter("kalenderpush_mbn_throttled", "MBN answers 429 Too Many Requests.")
BILLING_RUNS = Counter("kalenderpush_billing_runs", "Billing runs finished, by status.", ["status"])
INVOICES_ISSUED = Counter("kalenderpush_invoices_issued", "Invoices given a number and issued.")


def count_sync_run(*, provider: str, error_code: str = "", retrying: bool = False) -> None:
    """One user's sync finished: ok (no code), failed (its code), or held up for a retry."""
    outcome = "retry" if retrying else ("error" if error_code else "ok")
    SYNC_RUNS.labels(provider=provider, outcome=outcome, error_code=error_code).inc()


def count_mbn_answer(status: int | None) -> None:
    """One MBN request: its HTTP status, or None when MBN could not be reached or did not answer in time."""
    MBN_REQUESTS.labels(status=str(status) if status is not None else "unreachable").inc()
    if status == 429:
        MBN_THROTTLED.inc()


@dataclass(frozen=True)
class Gauge:
    """A value read at scrape time: name, help, and (labels, value) samples."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]


StateReader = Callable[[], Iterable[Gauge]]


class _StateCollector(Collector):
    def __init__(self, read_state: StateReader) -> None:
        self.read_state = read_state

    def collect(self) -> Iterator[Metric]:
        for gauge in self.read_state():
            family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=list(gauge.labels))
            for labels, value in gauge.samples:
                family.add_metric(list(labels), value)
            yield family


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def render(read_state: StateReader) -> bytes:
    """The Prometheus text of every process's counters (this process's alone without a multiprocess directory)
    and the gauges `read_state` gives now."""
    registry = CollectorRegistry(auto_describe=True)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counts = generate_latest(registry)
    else:
        counts = generate_latest(REGISTRY)
    state = CollectorRegistry(auto_describe=True)
    state.register(_StateCollector(read_state))
    return counts + generate_latest(state)


def process_exited(pid: int) -> None:
    """Forget a dead process's live gauges (gunicorn's child_exit hook); its counters stay counted."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
