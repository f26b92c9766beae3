"""The simulators in their own process, scripted from the benchmark's process as if they were local.

`RemoteSimulators.start()` runs `python -m devtools.simulators --control` (the whole `Simulators` hub) and
connects to its control channel (a `multiprocessing.connection` listener on 127.0.0.1 with a random key).
The proxy answers the same attribute paths as `Simulators`: `sims.graph.add_tenant(...)`, `sims.mbn.absences(...)`,
`sims.ews_url`, `sims.requests("mbn")`. A method call or an attribute read is one round trip; arguments and
answers are pickled, so they must be plain data (SimEvent, datetimes, dicts). Each thread has its own connection.

The point is the CPU: calendar services and MBN are other machines in production, and in one process the
simulators' request handling would take the GIL from the sync being measured. `cpu_seconds()` gives the
simulators' process CPU, which the benchmarks report apart from their own.
"""

from __future__ import annotations

import json
import pickle
import secrets
import subprocess
import sys
import threading
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from types import TracebackType
from typing import Any

from devtools.simulators.hub import Simulators

CALL, GET = "call", "get"
_PROXY = "proxy"  # the answer to GET when the attribute is a method or a simulator: call through it


def serve(sims: Simulators, stopping: threading.Event) -> dict[str, Any]:
    """Start the control listener for `sims` in daemon threads; the address and key (hex) a client needs."""
    key = secrets.token_bytes(32)
    listener = Listener(("127.0.0.1", 0), authkey=key)

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection = listener.accept()
            except OSError:  # closed while stopping, or a client that failed the handshake
                continue
            threading.Thread(target=_answer, args=(sims, connection), daemon=True).start()

    threading.Thread(target=accept, name="simulators-control", daemon=True).start()
    host, port = listener.address
    return {"host": host, "port": port, "key": key.hex()}


def _answer(sims: Simulators, connection: Connection) -> None:
    with connection:
        while True:
            try:
                kind, path, args, kwargs = connection.recv()
            except (EOFError, OSError):
                return
            try:
                target: Any = sims
                for name in path:
                    target = getattr(target, name)
                if kind == CALL:
                    reply = ("ok", target(*args, **kwargs))
                elif callable(target) or hasattr(target, "__dict__"):
                    reply = ("ok", _PROXY)
                else:
                    reply = ("ok", target)
                connection.send(reply)
            except Exception as error:  # the caller's error, raised on its side
                connection.send(("error", _portable(error, path)))


class RemoteError(Exception):
    """An error raised in the simulators' process whose own class cannot travel (its type name is kept)."""


def _portable(error: Exception, path: tuple[str, ...]) -> Exception:
    """`error` itself when it survives pickling both ways, else a RemoteError naming it."""
    try:
        return pickle.loads(pickle.dumps(error))  # type: ignore[no-any-return]
    except Exception:
        return RemoteError(f"{'.'.join(path)}: {type(error).__name__}: {error}")


class _Path:
    """An attribute path on the remote hub: call it, or read further attributes from it."""

    def __init__(self, owner: RemoteSimulators, path: tuple[str, ...]) -> None:
        self._owner, self._path = owner, path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._owner._get((*self._path, name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner._request(CALL, self._path, args, kwargs)


class RemoteSimulators:
    """`Simulators` running in a child process; stop with `stop()` or a `with` block."""

    def __init__(self, process: subprocess.Popen[str], address: tuple[str, int], key: bytes) -> None:
        self._process, self._address, self._key = process, address, key
        self._local = threading.local()
        self._proxies: dict[tuple[str, ...], _Path] = {}
        self._connections: list[Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def start(cls, timeout: float = 60) -> RemoteSimulators:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.simulators", "--control"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops them
            cwd=Path(__file__).resolve().parents[2],
        )
        assert process.stdout is not None
        reader = threading.Timer(timeout, process.kill)  # a child that never answers is killed
        reader.start()
        try:
            described = json.loads(process.stdout.readline() or "null")
        except json.JSONDecodeError:
            described = None
        finally:
            reader.cancel()
        if not isinstance(described, dict) or "control" not in described:
            process.kill()
            raise RuntimeError(f"the simulators' process did not start (exit status {process.wait()})")
        control = described["control"]
        return cls(process, (control["host"], control["port"]), bytes.fromhex(control["key"]))

    def _connection(self) -> Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = Client(self._address, authkey=self._key)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _request(self, kind: str, path: tuple[str, ...], args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        connection = self._connection()
        connection.send((kind, path, args, kwargs or {}))
        status, answer = connection.recv()
        if status == "error":
            raise answer
        return answer

    def _get(self, path: tuple[str, ...]) -> Any:
        known = self._proxies.get(path)
        if known is not None:
            return known
        answer = self._request(GET, path)
        if answer == _PROXY:
            self._proxies[path] = _Path(self, path)
            return self._proxies[path]
        return answer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._get((name,))

    def stop(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        if self._process.poll() is None:
            self._process.terminate()  # SIGTERM: the child stops its servers and removes its files
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> RemoteSimulators:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_simulators(where: str) -> Simulators | RemoteSimulators:
    """The simulators for a benchmark: in this process ("thread") or in their own ("process")."""
    if where == "process":
        return RemoteSimulators.start()
    if where == "thread":
        return Simulators.start()
    raise ValueError(f"--simulators must be process or thread, not {where!r}")
