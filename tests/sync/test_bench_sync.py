"""`bench_sync` runs the real pipeline against the simulators, and its dump lets anyone recheck MBN."""

import io
import json

import pytest
from django.core.management import call_command

pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_bench_sync_reports_no_mismatch_and_a_silent_no_change_cycle(tmp_path):
    out = io.StringIO()
    call_command(
        "bench_sync",
        "--users",
        "8",
        "--events-per-user",
        "12",
        "--json",
        "--dump",
        str(tmp_path),
        "--mbn-rate",
        "1000",
        "--concurrency",
        "1",
        stdout=out,
        stderr=io.StringIO(),
    )
    figures = json.loads(out.getvalue())
    assert figures["users"] == 8 and figures["providers"] == {"graph": 3, "ews": 3, "google": 2}
    assert figures["mismatches"] == 0
    assert figures["noop"]["mbn_requests"] == 0
    assert figures["initial"]["mbn_requests"] > 0
    assert figures["incremental"]["changed_users"] == 1
    # the steady sweep (what sync.jobs.sweep queues), with no change and after another 1 % changed: the 5 Graph and
    # Google users have change subscriptions and the 3 Exchange mailboxes are streamed by the listener, so the sweep
    # reads them only at their hourly (daily) minute; the changed user's notification queues its sync
    assert (figures["subscriptions"], figures["ews_streamed"]) == (5, 3)
    still, swept = figures["steady"]["no_change"], figures["steady"]["changed"]
    assert (still["mbn_requests"], still["mismatches"]) == (0, 0)
    assert swept["changed_users"] == 1 and swept["notified_users"] == 1
    assert swept["mbn_requests"] > 0 and swept["mismatches"] == 0
    for cycle in (figures["initial"], figures["noop"], still, swept):
        assert cycle["cpu_s"] >= 0 and cycle["wall_s"] > 0
        assert cycle["simulators_cpu_s"] >= 0  # they run in their own process by default
    assert figures["initial"]["cpu_s"] > 0 and figures["initial"]["simulators_cpu_s"] > 0
    assert figures["simulators"] == "process"
    assert 30 < figures["peak_rss_mb"] < 4096 and 10 < figures["simulators_peak_rss_mb"] < 4096
    # the dump: recompute every user's absences with preview_absences and compare with MBN's state
    for events_file in sorted(tmp_path.glob("*.events.json")):
        preview = io.StringIO()
        call_command("preview_absences", str(events_file), stdout=preview)
        expected = sorted(
            (a["mbn_reason"], a["start"], a["end"], "voicemail" if a["divert"] else "none")
            for a in json.loads(preview.getvalue())["absences"]
        )
        held = json.loads(events_file.with_name(events_file.name.replace(".events.", ".mbn.")).read_text())
        have = sorted((a["reason"], a["start"], a["end"], a["diversion"]) for a in held["absences"])
        assert expected == have, events_file.name
    assert len(list(tmp_path.glob("*.mbn.json"))) == 8
