"""`python -m devtools.benchmarks.report`: every goal it prints is a threshold that can be missed, and a miss fails it.

The JSON files are written in the shapes `devtools.benchmarks.rules`, `bench_billing` and `bench_sync` print.
"""

import json
import re

import pytest

from devtools.benchmarks import report

GOOD = {
    "cost_growth": 9.17,
    "queries_per_invoice_200": 7.09,
    "queries_per_invoice_2000": 7.05,
    "wall_s_200": 0.5,
    "wall_s_2000": 4.88,
    "efficiency": 0.66,
    "calendar_requests_per_user": 0.733,
    "graph_requests": 167,
    "mbn_requests_per_absence_created": 1.003,
    "noop_mbn_requests": 0,
    "mismatches": 0,
    "latency_p95_s": 2.12,
    "never_arrived": 0,
    "latency_mismatches": 0,
    "soak_mismatches": 0,
    "duplicates": 0,
    "outage_backlog_drained_s": 86.5,
    "noop_cpu_s": 120.0,
    "steady_cpu_s": 4.5,
    "steady_mbn_requests": 0,
    "steady_mismatches": 0,
    "changed_mismatches": 0,
    "onboarding_users": 3000,
    "first_day_complete_s": 251.3,
    "onboarding_mismatches": 0,
    "bench_total_s": 850,
    "ews_p95_s": 2.5,
    "ews_never_arrived": 0,
}
GRAPH_USERS = 3334
SYNC_FILES = ("sync-embedded.json", "sync-celery.json")


def _write(directory, name, figures):
    (directory / name).write_text(json.dumps(figures))


def _results(directory, *, only=None, **changes):
    """Writes `make bench`'s files (all, or those named in `only`) with GOOD's figures changed by `changes`."""
    f = {**GOOD, **changes}
    cycle = {"wall_s": 471.0, "users": 10000, "calendar_requests": 7334, "absences_created": 168281}
    files = {
        "rules.json": {
            "machine": "x86_64 Python 3.11.7",
            "window_days": 14,
            "small": {"events": 200, "runs": 100, "ms_per_run": 1.51, "events_per_second": 132673},
            "large": {"events": 2000, "runs": 10, "ms_per_run": 13.83, "events_per_second": 144663},
            "cost_growth": f["cost_growth"],
            "allowed_growth": 12.0,
        },
        **{
            f"billing-{n}.json": {
                "customers": n,
                "invoices": n,
                "wall_s": f[f"wall_s_{n}"],
                "queries": round(n * f[f"queries_per_invoice_{n}"]),
                "queries_per_invoice": f[f"queries_per_invoice_{n}"],
            }
            for n in (200, 2000)
        },
        **{
            name: {
                "users": 10000,
                "concurrency": 32,
                "latency_ms": 50,
                "providers": {"graph": GRAPH_USERS, "ews": 3333, "google": 3333},
                "customers": 501,
                "initial": {
                    **cycle,
                    "requests": {"login": 334, "graph": f["graph_requests"], "ews": 3333, "google": 3500, "mbn": 9},
                    "calendar_requests_per_user": f["calendar_requests_per_user"],
                    "mbn_requests": 168782,
                    "mbn_requests_per_absence_created": f["mbn_requests_per_absence_created"],
                    "efficiency": f["efficiency"],
                },
                "noop": {
                    **cycle,
                    "cpu_s": f["noop_cpu_s"],
                    "simulators_cpu_s": 40.0,
                    "mbn_requests": f["noop_mbn_requests"],
                    "mbn_requests_per_absence_created": None,
                },
                "incremental": {**cycle, "changed_users": 100},
                "steady": {
                    "no_change": {
                        **cycle,
                        "cpu_s": f["steady_cpu_s"],
                        "mbn_requests": f["steady_mbn_requests"],
                        "mismatches": f["steady_mismatches"],
                    },
                    "changed": {**cycle, "cpu_s": 9.0, "mbn_requests": 250, "mismatches": f["changed_mismatches"]},
                },
                "mismatches": f["mismatches"],
                "peak_rss_mb": 960.0,
            }
            for name in SYNC_FILES
        },
        "latency.json": {
            "users": 2000,
            "p50_s": 1.04,
            "p95_s": f["latency_p95_s"],
            "never_arrived": f["never_arrived"],
            "mismatches": f["latency_mismatches"],
            "by_provider": {"ews": {"p50_s": 1.2, "p95_s": f["ews_p95_s"], "never_arrived": f["ews_never_arrived"]}},
        },
        "soak.json": {
            "mismatches": f["soak_mismatches"],
            "duplicates": f["duplicates"],
            "outage_backlog_drained_s": f["outage_backlog_drained_s"],
        },
        "onboarding.json": {
            "users": f["onboarding_users"],
            "first_day_complete_s": f["first_day_complete_s"],
            "all_complete_s": None,
            "mismatches": f["onboarding_mismatches"],
        },
        "bench-time.json": {"steps": {"rules engine": 6, "calendar sync": 600}, "total_s": f["bench_total_s"]},
    }
    for name, figures in files.items():
        if only is None or name in only:
            _write(directory, name, figures)


def _report(directory, capsys):
    code = report.main(["report", str(directory)])
    return code, capsys.readouterr().out.splitlines()


def _line(lines, label):
    found = [line.strip() for line in lines if line.strip().startswith(label)]
    assert len(found) == 1, f"expected one line for {label!r} in:\n" + "\n".join(lines)
    return found[0]


def _goal_lines(lines):
    """Goal lines by label (the text before the value)."""
    goals = [line.strip() for line in lines if " (goal" in line]
    return {line[: line.rindex(": ", 0, line.index(" (goal"))]: line for line in goals}


def test_it_prints_ok_for_met_goals_and_exits_0(tmp_path, capsys):
    _results(tmp_path)
    code, lines = _report(tmp_path, capsys)
    assert code == 0
    assert _line(lines, "billing: change in queries per invoice") == (
        "billing: change in queries per invoice from 200 to 2 000 customers (constant): 0.6 % (goal ≤ 10 %)  ok"
    )
    assert _line(lines, "billing: wall time for ×10 customers").endswith(": ×9.76 (goal ≤ ×15)  ok")
    assert (
        _line(lines, "rules engine, cost for ×10 events") == "rules engine, cost for ×10 events: ×9.17 (goal ≤ ×12)  ok"
    )
    assert not [line for line in lines if "MISSED" in line]


def test_it_prints_missed_for_a_missed_goal_and_exits_1(tmp_path, capsys):
    _results(tmp_path, efficiency=0.58)
    code, lines = _report(tmp_path, capsys)
    assert code == 1
    missed = [line.strip() for line in lines if line.endswith("MISSED")]
    assert missed == [
        f"sync, {run}: efficiency of the initial sync: 0.58 (goal ≥ 0.6)  MISSED"
        for run in ("embedded default", "PostgreSQL + Redis + 2 Celery workers")
    ]
    assert lines[-1] == "2 goal(s) missed."


def test_information_lines_are_never_marked_ok(tmp_path, capsys):
    _results(tmp_path)
    _code, lines = _report(tmp_path, capsys)
    assert _line(lines, "billing, 2 000 customers: wall s") == "billing, 2 000 customers: wall s: 4.88 (information)"
    assert _line(lines, "billing, 200 customers: queries per invoice") == (
        "billing, 200 customers: queries per invoice: 7.09 (information)"
    )
    assert _line(lines, "rules engine, events per second").endswith(": 144663 (information)")
    for line in lines:
        if line.endswith("ok"):
            assert re.search(r"\(goal [≤≥=] ×?[\d.]+( %)?\)  ok$", line), line
        else:
            assert "MISSED" not in line


@pytest.mark.parametrize(
    ("queries_per_invoice_2000", "mark"), [(8.4, "MISSED"), (5.6, "MISSED"), (7.35, "ok"), (6.65, "ok")]
)
def test_queries_per_invoice_may_drift_at_most_10_percent_from_200_to_2000_customers(
    tmp_path, capsys, queries_per_invoice_2000, mark
):
    _results(tmp_path, queries_per_invoice_200=7.0, queries_per_invoice_2000=queries_per_invoice_2000)
    code, lines = _report(tmp_path, capsys)
    assert _line(lines, "billing: change in queries per invoice").endswith(f"(goal ≤ 10 %)  {mark}")
    assert code == (1 if mark == "MISSED" else 0)


@pytest.mark.parametrize(("wall_s_2000", "mark"), [(10.0, "MISSED"), (7.6, "MISSED"), (7.5, "ok"), (4.88, "ok")])
def test_wall_time_may_grow_at_most_1_5_times_the_customer_ratio(tmp_path, capsys, wall_s_2000, mark):
    _results(tmp_path, wall_s_200=0.5, wall_s_2000=wall_s_2000)
    code, lines = _report(tmp_path, capsys)
    line = _line(lines, "billing: wall time for ×10 customers")
    assert line.endswith(f": ×{wall_s_2000 / 0.5:g} (goal ≤ ×15)  {mark}")
    assert code == (1 if mark == "MISSED" else 0)


def test_the_billing_goals_need_both_runs_and_a_missing_benchmark_is_not_a_miss(tmp_path, capsys):
    _results(tmp_path, only={"rules.json", "billing-200.json"})
    code, lines = _report(tmp_path, capsys)
    assert code == 0
    assert "  (not run: billing-2000.json)" in lines
    assert _line(lines, "billing: wall time for ×10 customers").endswith(": not compared, billing-2000.json not run")
    assert "  (not run: sync-celery.json)" in lines


def test_a_goal_whose_figure_is_missing_from_a_written_file_is_missed(tmp_path, capsys):
    _results(tmp_path)
    _write(tmp_path, "billing-2000.json", {"customers": 300, "invoices": 300, "wall_s": 1.0, "queries_per_invoice": 7})
    _write(tmp_path, "rules.json", {"large": {"events_per_second": 1}})
    code, lines = _report(tmp_path, capsys)
    assert code == 1
    assert _line(lines, "billing: wall time for ×10 customers").endswith(
        ": billing-2000.json is a run of 300 customers, not 2000 (goal ≤ ×15)  MISSED"
    )
    assert _line(lines, "rules engine, cost for ×10 events").endswith("(goal ≤ ×12)  MISSED")


def test_every_goal_it_prints_can_be_missed(tmp_path, capsys):
    """Figures far too high, then far too low: each goal line must say MISSED for one of the two."""
    too_high = {key: 1000 for key in GOOD} | {"queries_per_invoice_200": 1, "wall_s_200": 1}
    too_high["graph_requests"] = 1000 * GRAPH_USERS
    too_low = {key: 0.001 for key in GOOD}
    marks: dict[str, set[str]] = {}
    for figures in (too_high, too_low):
        _results(tmp_path, **figures)
        _code, lines = _report(tmp_path, capsys)
        for label, line in _goal_lines(lines).items():
            marks.setdefault(label, set()).add(line.split()[-1])
    assert {label for label, seen in marks.items() if "MISSED" not in seen} == set()
    assert len(marks) == len([figure for figure in report.FIGURES if isinstance(figure, report.Goal)])


@pytest.mark.parametrize(
    ("changes", "label"),
    [
        ({"steady_cpu_s": 6.1}, "sync, embedded default: steady sweep with no change, CPU s as a share"),
        ({"steady_mbn_requests": 3}, ": MBN requests on the steady sweep with no change"),  # both sync runs
        ({"steady_mismatches": 1}, ": mismatches after the steady sweep with no change"),
        ({"changed_mismatches": 2}, ": mismatches after the steady sweep with 1 % changed"),
        ({"onboarding_users": 600}, "onboarding: users of the one customer"),
        ({"first_day_complete_s": 300.5}, "onboarding: every user's first 24 h on MBN"),
        ({"first_day_complete_s": None}, "onboarding: every user's first 24 h on MBN"),  # never complete
        ({"onboarding_mismatches": 1}, "onboarding: mismatches with the engine"),
        ({"bench_total_s": 901}, "make bench: wall s"),
        ({"ews_p95_s": 5.2}, "change → MBN latency, Exchange on-premises: p95 s"),
        ({"ews_never_arrived": 1}, "change → MBN latency, Exchange on-premises: changes that never arrived"),
    ],
)
def test_the_steady_onboarding_and_bench_time_goals_are_missed_past_their_thresholds(tmp_path, capsys, changes, label):
    _results(tmp_path, **changes)
    code, lines = _report(tmp_path, capsys)
    assert code == 1
    missed = [line.strip() for line in lines if line.endswith("MISSED")]
    assert missed == [line.strip() for line in lines if label in line]
    assert len(missed) == (2 if label.startswith(":") else 1)


def test_the_steady_figures_and_the_cpu_goal_where_it_applies(tmp_path, capsys):
    _results(tmp_path)
    code, lines = _report(tmp_path, capsys)
    assert code == 0
    assert _line(lines, "sync, embedded default: steady sweep with no change, CPU s as a share").endswith(
        ": 0.037 (goal ≤ 0.05)  ok"
    )
    assert not [line for line in lines if "Celery workers: steady sweep with no change, CPU s as a share" in line]
    assert _line(lines, "sync, embedded default: peak memory MB").endswith(": 960.0 (information)")
    assert _line(lines, "onboarding: every user's first 24 h on MBN after, s").endswith(": 251.3 (goal ≤ 300)  ok")
    assert _line(lines, "make bench: wall s").endswith(": 850 (goal ≤ 900)  ok")
