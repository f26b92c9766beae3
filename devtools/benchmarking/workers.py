"""The Django app over real HTTP and the workers behind it, for benchmarks that go through the webhooks.

`serve_app` runs the WSGI app on 127.0.0.1:<free port> in this process (as pytest-django's live server
does), so the simulators' notifications reach the real views. Queued syncs are worked off by a q2 cluster
(`manage.py qcluster` beside this process), a Celery worker process, or `InProcessQ2`: threads that take
tasks from the same q2 ORM queue, with the same poll interval, and run them here.
"""

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler

from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.conf import Conf

from common.queue import enqueue_now
from sync.services import queue_syncs
from sync.streaming import EwsListener

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def in_memory_database() -> bool:
    return connection.vendor == "sqlite" and bool(getattr(connection, "is_in_memory_db", lambda: False)())


# An in-memory SQLite database (the default test suite's) lives in this thread's connection: the app's and
# the workers' threads share it, as pytest-django's live server does, one at a time.
_SHARED = threading.RLock()


@contextmanager
def _database_for_thread(shared: BaseDatabaseWrapper | None) -> Iterator[None]:
    if shared is None:
        yield
        return
    connections[DEFAULT_DB_ALIAS] = shared
    with _SHARED:
        yield


def _shared_connection() -> BaseDatabaseWrapper | None:
    if not in_memory_database():
        return None
    connection.inc_thread_sharing()
    return connections[DEFAULT_DB_ALIAS]


@contextmanager
def serve_app() -> Iterator[str]:
    """The Django app on http://127.0.0.1:<port>; yields its base URL."""
    shared = _shared_connection()
    server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
    server.daemon_threads = True
    handler = WSGIHandler()

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        with _database_for_thread(shared):
            return handler(environ, start_response)

    server.set_app(app if shared else handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        if shared is not None:
            connection.dec_thread_sharing()


class InProcessQ2:
    """`threads` consumers of the q2 ORM queue in this process: dequeue (polling as the cluster does), run,
    acknowledge. A task that raises is logged and acknowledged, as q2 records a failure."""

    def __init__(self, threads: int) -> None:
        self._shared = _shared_connection()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"q2-inprocess-{i}", daemon=True) for i in range(threads)
        ]
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "InProcessQ2":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(10)
        if self._shared is not None:
            connection.dec_thread_sharing()

    def _run(self) -> None:
        from django_q.brokers import get_broker
        from django_q.signing import SignedPackage

        broker = get_broker()
        try:
            while not self._stopping.is_set():
                if self._shared is not None:
                    time.sleep(Conf.POLL)  # the ORM broker polls outside the lock while the queue is empty
                with _database_for_thread(self._shared):
                    for ack_id, payload in self._dequeue(broker):
                        task = SignedPackage.loads(payload)
                        ok = True
                        try:
                            import_string(task["func"])(*task.get("args", ()), **task.get("kwargs", {}))
                        except Exception:
                            ok = False
                            logger.exception("q2 task %s failed", task.get("name"))
                        broker.acknowledge(ack_id)
                        with self._lock:
                            self.done += ok
                            self.failed += not ok
                    close_old_connections()
        finally:
            if self._shared is None:
                connections.close_all()

    def _dequeue(self, broker) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
        if self._shared is None:
            return broker.dequeue() or []  # sleeps the poll interval itself when the queue is empty
        # Shared connection: take what is due without the broker's sleep (it would hold the lock).
        from django_q.models import OrmQ

        due = list(OrmQ.objects.filter(key=broker.list_key, lock__lt=timezone.now())[: Conf.BULK])
        claimed = [t for t in due if OrmQ.objects.filter(id=t.id, lock=t.lock).update(lock=broker.timeout(t))]
        return [(t.pk, t.payload) for t in claimed]


@contextmanager
def worker_process(kind: str, env: dict[str, str], workers: int) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py qcluster` ("q2") or a Celery worker ("celery") beside this process, stopped afterwards."""
    if kind == "q2":
        command = [sys.executable, "manage.py", "qcluster"]
    else:
        command = [sys.executable, "-m", "celery", "-A", "kalenderpush", "worker", "-Q", "default,sync"]
        command += ["--concurrency", str(workers), "-l", "warning"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env, "Q_WORKERS": str(workers)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"the {kind} worker exited at once with status {process.returncode}")
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's own process group (the cluster and its children), SIGKILL after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.5)  # let children the cluster stopped leave before checking the group
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return


@contextmanager
def ews_listener(kind: str, env: dict[str, str], connection_minutes: int) -> Iterator[None]:
    """The EWS streaming listener beside the worker: `manage.py stream_ews` in its own process, or ("inprocess") an
    `EwsListener` here whose threads queue through this process's database (shared when it is in memory). The
    sources are read once, as the listener starts."""
    if kind != "inprocess":
        command = [sys.executable, "manage.py", "stream_ews", "--connection-minutes", str(connection_minutes)]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            time.sleep(0.5)
            if process.poll() is not None:
                raise RuntimeError(f"stream_ews exited at once with status {process.returncode}")
            yield
        finally:
            _stop_group(process)
        return
    shared = _shared_connection()

    def on_change(calendar_user_ids: set[int]) -> None:
        with _database_for_thread(shared):
            queue_syncs(calendar_user_ids=calendar_user_ids)
            if shared is None:
                close_old_connections()

    listener = EwsListener(connection_minutes=connection_minutes, on_change=on_change)
    try:
        listener.refresh()
        yield
    finally:
        listener.stop()
        if shared is not None:
            connection.dec_thread_sharing()


def wait_for_q2(timeout: float = 120) -> float:
    """Queue a no-op task on q2 and wait until a cluster has run it; the seconds that took."""
    from django_q.tasks import fetch

    started = time.monotonic()
    task_id = enqueue_now("time.time", name="benchmark-cluster-ready")
    while fetch(task_id) is None:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the q2 cluster ran nothing within {timeout:g} s")
        time.sleep(0.1)
    return time.monotonic() - started


@contextmanager
def schedules_paused() -> Iterator[int]:
    """Hold back q2's Schedules (sweep, group refresh, billing) while a benchmark runs its own cluster: a
    fresh database has them all due at once. Their next runs are put back afterwards."""
    from django_q.models import Schedule

    saved = dict(Schedule.objects.values_list("pk", "next_run"))
    Schedule.objects.update(next_run=timezone.now() + dt.timedelta(days=365))
    try:
        yield len(saved)
    finally:
        for pk, next_run in saved.items():
            Schedule.objects.filter(pk=pk).update(next_run=next_run)
