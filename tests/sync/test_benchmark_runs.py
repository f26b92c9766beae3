"""The rules benchmark stays runnable (its figures are in docs/benchmarks.md, not asserted here)."""

import json
import subprocess
import sys
from pathlib import Path


def test_the_rules_benchmark_prints_events_per_second():
    result = subprocess.run(
        [sys.executable, "-m", "devtools.benchmarks.rules", "--events", "20", "--seconds", "0.05", "--json"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(result.stdout)
    assert figures["small"]["events"] == 20 and figures["large"]["events"] == 200
    assert figures["small"]["events_per_second"] > 0
