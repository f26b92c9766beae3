"""`bench_latency` and `bench_soak` at tiny scale: the commands run end to end and report what they promise."""

import io
import json

import pytest
from django.core.management import call_command

from customers.models import Customer

pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def run(*args: str) -> dict:  # type: ignore[type-arg]
    out = io.StringIO()
    call_command(*args, "--json", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def test_bench_latency_times_every_change_through_the_webhooks():
    figures = run(
        "bench_latency",
        *("--users", "6", "--users-per-customer", "3", "--events-per-user", "5"),
        *("--changes", "3", "--over-seconds", "1", "--latency-ms", "0", "--mbn-rate", "1000"),
        *("--worker", "inprocess", "--workers", "1", "--concurrency", "1", "--wait-seconds", "20"),
    )
    assert figures["changes"] == 3 and figures["never_arrived"] == 0
    assert figures["change_kinds"] == {"create": 1, "update": 1, "delete": 1}
    assert 0 < figures["p50_s"] <= figures["p95_s"] <= figures["max_s"] < 20
    assert figures["notifications"]["sent"] >= 3 and figures["notifications"]["failed"] == 0
    assert figures["mismatches"] == 0
    assert not Customer.objects.filter(name__startswith="Benchmark").exists()  # rows deleted afterwards


def test_bench_soak_converges_after_faults_and_an_mbn_outage():
    figures = run(
        "bench_soak",
        *("--users", "6", "--users-per-customer", "3", "--events-per-user", "5", "--minutes", "0.06"),
        *("--outage-seconds", "1.5", "--fault-timeout-seconds", "0.2", "--change-every", "1", "--change-share", "0.3"),
        *("--concurrency", "1", "--mbn-rate", "1000", "--drain-timeout", "20"),
    )
    assert figures["changes"] >= 4
    assert figures["mismatches"] == 0 and figures["duplicates"] == 0
    assert figures["drain_s"] is not None and figures["drain_s"] < 20
    assert figures["requests"]["mbn"] > 0
    assert not Customer.objects.filter(name__startswith="Benchmark").exists()
