"""Worker processes for the `services` tests: a Celery worker and a django-q2 cluster as real subprocesses
that can be killed with SIGKILL (the whole process group, or one q2 worker) and started again."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Recovery knobs, small so that a killed worker's work comes back within seconds instead of the
# production defaults (a sync lock of 120 s, Redis redelivery after an hour, q2 redelivery after 35 min).
RECOVERY_ENV = {
    "SYNC_LOCK_SECONDS": "5",  # a dead worker's user locks expire after this
    "CELERY_VISIBILITY_TIMEOUT": "6",  # Redis hands an unacknowledged task out again after this
    "Q_TIMEOUT_SECONDS": "6",  # q2 stops a task running longer than this
    "Q_RETRY_SECONDS": "8",  # q2 hands a task out again when not acknowledged after this
    "BILLING_RUN_STALE_SECONDS": "2",  # a billing run without progress for this long lost its worker
}


CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "kalenderpush", "worker", "-Q", "default,sync"]


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    """The test's environment for a worker subprocess: its database, the recovery knobs, and `extra`."""
    return {**os.environ, "DATABASE_URL": database_url, **RECOVERY_ENV, **extra}


def empty_celery_broker(app) -> None:  # type: ignore[no-untyped-def]
    """Drop every message a worker of an earlier (failed) run left on the test broker, delivered or not."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in ("default", "sync"):
            channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key)


def start_celery_worker(env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`celery -A kalenderpush worker -Q default,sync` in its own process group, output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CELERY_WORKER, "--concurrency", "2", "-l", "info", "--without-mingle", "--without-gossip"],
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_qcluster(env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`manage.py qcluster` in its own process group, output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and every process it started: no shutdown handler, no acknowledgement."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a worker politely (SIGTERM to its main process, which stops its own children), by force when
    it takes more than 15 seconds; nothing of its process group is left running."""
    try:
        process.terminate()
        process.wait(15)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def children(pid: int) -> list[int]:
    """The pids of a process's children, oldest first."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return sorted(int(child) for child in path.read_text().split()) if path.exists() else []


def q2_worker_pids(cluster: subprocess.Popen[bytes], workers: int) -> list[int]:
    """The q2 cluster's worker processes: the sentinel spawns its workers first, then monitor and pusher."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for sentinel in children(cluster.pid):
            spawned = children(sentinel)
            if len(spawned) >= workers + 2:
                return spawned[:workers]
        time.sleep(0.2)
    raise AssertionError("the q2 cluster did not start its workers within 30 s")
