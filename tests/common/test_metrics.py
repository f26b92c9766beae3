"""Counts from several processes add up in one scrape (prometheus-client's multiprocess mode), as gunicorn's,
the q2 cluster's and the Celery workers' do under `make serve`."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COUNT = "from common import metrics; metrics.count_mbn_answer(429); metrics.count_sync_run(provider='ews')"
RENDER = "from common import metrics; import sys; sys.stdout.write(metrics.render(lambda: []).decode())"


def _python(code: str, metrics_dir: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_counts_of_processes_that_have_ended_add_up_in_the_scrape(tmp_path):
    metrics_dir = tmp_path / "metrics"  # made by the first process that counts
    for _process in range(3):
        _python(COUNT, metrics_dir)

    scraped = _python(RENDER, metrics_dir)

    assert 'kalenderpush_mbn_requests_total{status="429"} 3.0' in scraped
    assert "kalenderpush_mbn_throttled_total 3.0" in scraped
    assert 'kalenderpush_sync_runs_total{error_code="",outcome="ok",provider="ews"} 3.0' in scraped
