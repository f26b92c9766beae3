"""`bench_latency --providers ews` at tiny scale: Exchange changes reach MBN through the streaming listener."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from customers.models import Customer

pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def run(*args: str) -> dict:  # type: ignore[type-arg]
    out = io.StringIO()
    call_command(*args, "--json", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def test_bench_latency_times_exchange_changes_through_the_streaming_listener():
    figures = run(
        "bench_latency",
        *("--users", "6", "--users-per-customer", "3", "--events-per-user", "5", "--providers", "ews"),
        *("--changes", "3", "--over-seconds", "1", "--latency-ms", "0", "--mbn-rate", "1000"),
        *("--worker", "inprocess", "--workers", "1", "--concurrency", "1", "--wait-seconds", "20"),
    )
    assert figures["providers"] == {"graph": 0, "ews": 6, "google": 0}
    assert figures["changes"] == 3 and figures["never_arrived"] == 0
    assert figures["by_provider"]["ews"]["changes"] == 3 and figures["by_provider"]["ews"]["never_arrived"] == 0
    assert 0 < figures["p50_s"] <= figures["p95_s"] <= figures["max_s"] < 10
    assert figures["listener"]["mailboxes"] == 6 and figures["listener"]["connections"] == 2
    assert figures["notifications"]["sent"] == 0, "no webhook: the stream carried every change"
    assert figures["mismatches"] == 0
    assert not Customer.objects.filter(name__startswith="Benchmark").exists()


def test_bench_latency_names_an_unknown_provider():
    with pytest.raises(CommandError, match="unknown provider"):
        call_command("bench_latency", "--providers", "ews,lotus", stdout=io.StringIO(), stderr=io.StringIO())
