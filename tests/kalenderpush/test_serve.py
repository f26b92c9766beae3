"""`make serve`: refuses a setup that is not production, and runs the Procfile's processes as one (supervise.sh):
a stop stops them all, and one that ends takes the others down with a non-zero exit."""

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.kalenderpush.test_settings import KEEP, PRODUCTION, ROOT


def _serve(**env: str) -> subprocess.CompletedProcess[str]:
    clean_env = {key: os.environ[key] for key in KEEP if key in os.environ}
    return subprocess.run(
        ["scripts/serve.sh"], cwd=ROOT, env={**clean_env, **env}, capture_output=True, text=True, timeout=60
    )


def test_serve_refuses_debug_and_says_what_is_missing():
    result = _serve(DEBUG="true")

    assert result.returncode == 2
    assert "DEBUG is on. `make serve` runs production: set DEBUG=false (for the demo use `make run`)" in result.stderr
    assert "CELERY_BROKER_URL is not set" in result.stderr


def test_serve_refuses_production_without_a_broker_or_a_credentials_key():
    env = {key: value for key, value in PRODUCTION.items() if key != "CELERY_BROKER_URL"}

    result = _serve(**env)

    assert result.returncode == 2
    assert "serve: refusing to start:" in result.stderr
    assert "CELERY_BROKER_URL is not set" in result.stderr
    assert "CREDENTIALS_KEY is not set" in result.stderr
    assert "DATABASE_URL" not in result.stderr and "DEBUG" not in result.stderr


def test_serve_refuses_a_database_it_cannot_use():
    result = _serve(**PRODUCTION, CREDENTIALS_KEY="x" * 44)  # db.internal does not exist

    assert result.returncode == 2
    assert "unapplied migrations (or cannot be reached). Run `make release` first." in result.stderr


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            found |= {int(child)} | _descendants(int(child))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _supervise(tmp_path: Path, procfile: str, **env: str) -> subprocess.Popen[str]:
    (tmp_path / "Procfile").write_text(procfile)
    return subprocess.Popen(
        [str(ROOT / "scripts" / "supervise.sh"), str(tmp_path / "Procfile")],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _sleeping(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
    except FileNotFoundError:
        return False


def _wait_for_processes(supervisor: subprocess.Popen[str], count: int) -> set[int]:
    """The supervised processes, once `count` of them have come as far as their `sleep`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        processes = _descendants(supervisor.pid)
        if len([pid for pid in processes if _sleeping(pid)]) >= count:
            return processes
        time.sleep(0.1)
    raise AssertionError(f"{count} processes did not start")


def test_a_stop_signal_stops_every_process_and_exits_zero(tmp_path):
    supervisor = _supervise(
        tmp_path,
        "release: echo never run\nweb: sleep 300\n# a comment\nworker: bash -c 'trap \"\" TERM; sleep 300'\n",
        KP_STOP_TIMEOUT="2",
    )
    processes = _wait_for_processes(supervisor, 2)

    supervisor.send_signal(signal.SIGTERM)
    output, _ = supervisor.communicate(timeout=20)

    assert supervisor.returncode == 0, output
    assert "never run" not in output
    assert "worker did not stop within 2 s; killing it" in output
    assert [pid for pid in processes if _alive(pid)] == []


def test_when_one_process_ends_the_others_are_stopped_and_it_exits_non_zero(tmp_path):
    supervisor = _supervise(tmp_path, "web: sleep 300\nqcluster: sleep 300\nworker: bash -c 'sleep 2; exit 3'\n")
    processes = _wait_for_processes(supervisor, 3)

    output, _ = supervisor.communicate(timeout=20)

    assert supervisor.returncode == 3, output
    assert "worker ended (exit status 3); stopping the others" in output
    assert [pid for pid in processes if _alive(pid)] == []


def test_the_systemd_units_run_what_the_procfile_names():
    procfile = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line and not line.startswith("#")
    )
    units = {path.name: path.read_text() for path in (ROOT / "deploy").glob("*.service")}
    starts = {
        name: next(line for line in text.splitlines() if line.startswith("ExecStart=")) for name, text in units.items()
    }

    assert set(procfile) == {"release", "web", "qcluster", "worker", "ews"}
    for name, unit in {
        "release": "kalenderpush-release.service",
        "web": "kalenderpush-web.service",
        "qcluster": "kalenderpush-qcluster.service",
        "worker": "kalenderpush-worker@.service",
        "ews": "kalenderpush-ews.service",
    }.items():
        command = procfile[name].strip().split()
        started = starts[unit].removeprefix("ExecStart=").split()
        program = started[0].rsplit("/", 1)[-1]
        assert [program, *started[1 : len(command)]] == [command[0].rsplit("/", 1)[-1], *command[1:]], unit
        assert "EnvironmentFile=/etc/kalenderpush/kalenderpush.env" in units[unit]
    target = (ROOT / "deploy" / "kalenderpush.target").read_text()
    assert all(unit.replace("@.", "@1.") in target for unit in units if unit != "kalenderpush-release.service")
