"""The common base of every loopback simulator: an HTTP server in a daemon thread, with switches.

A simulator subclasses `SimServer`, declares its routes and its error body shape, and gets for free:
JSON and form helpers, added latency, fault injection (429, 503, timeouts, malformed bodies), a request
counter and a request log. Faults replace the answer before any route runs, so a faulted write is never
applied. Standard library only; no Django.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import socket
import ssl
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

FAULT_KINDS = ("429", "503", "timeout", "malformed")
DEFAULT_FAULT_TIMEOUT_SECONDS = 10.0

# What a "malformed" fault sends: a 200 whose JSON is cut off mid-way.
MALFORMED_BODY = b'{"value": [{"id": "'


class HttpError(Exception):
    """Raised by a route to answer an error in the service's own body shape."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Request:
    """One HTTP request as a route sees it: path unquoted, query as a flat dict, headers lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body parsed as JSON; raises `ValueError` with a readable message when it is not."""
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the request body is not valid JSON: {exc}") from exc

    def form(self) -> dict[str, str]:
        """The body parsed as `application/x-www-form-urlencoded` (first value of each field)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def bearer_token(self) -> str | None:
        scheme, _, token = self.header("authorization").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def basic_credentials(self) -> tuple[str, str] | None:
        scheme, _, encoded = self.header("authorization").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if sep else None


@dataclass
class Reply:
    """What a route answers. `body` is bytes; use `json_reply`/`empty_reply` to build one. A reply with a `stream`
    is sent chunked instead, one chunk per item as the iterator yields it, and stays open until it ends (or the
    client hangs up, which closes the iterator)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def json_reply(status: int, document: Any, headers: Mapping[str, str] | None = None) -> Reply:
    body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    return Reply(status, body, "application/json", dict(headers or {}))


def empty_reply(status: int = 204) -> Reply:
    return Reply(status, b"", "")


Handler = Callable[[Request, re.Match[str]], Reply]


@dataclass(frozen=True)
class Route:
    """`pattern` is matched against the whole unquoted path, case-insensitively."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, pattern: str, handler: Handler) -> Route:
    return Route(method, re.compile(pattern, re.IGNORECASE), handler)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_datetime(value: object) -> dt.datetime | None:
    """An ISO 8601 date-time (any number of fractional digits, `Z` allowed), or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None


@dataclass
class FaultSettings:
    """The fault switch of one simulator: with probability `rate`, one of `kinds`."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    rng: random.Random = field(default_factory=random.Random)

    def draw(self, allowed: Iterable[str] = FAULT_KINDS) -> str | None:
        kinds = [kind for kind in self.kinds if kind in allowed]
        if self.rate <= 0 or not kinds or self.rng.random() >= self.rate:
            return None
        return self.rng.choice(kinds)


def make_fault_settings(rate: float, kinds: Iterable[str], seed: int | None) -> FaultSettings:
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; choose from {FAULT_KINDS}")
    if not 0 <= rate <= 1:
        raise ValueError(f"fault rate must be between 0 and 1, not {rate}")
    return FaultSettings(rate, kinds, random.Random(seed))


class _HTTPServer(ThreadingHTTPServer):
    """A threading server that does the TLS handshake in the request thread and stays quiet about
    clients that hang up (the timeout fault makes them do so on purpose)."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, sim: SimServer, ssl_context: ssl.SSLContext | None) -> None:
        self.sim = sim
        self.ssl_context = ssl_context
        super().__init__(("127.0.0.1", 0), _RequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            request.settimeout(_RequestHandler.timeout)  # a client that never says hello frees the thread
            request = self.ssl_context.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError | socket.timeout):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection frees its thread after a minute
    # Headers and body leave in one segment: no Nagle / delayed-ACK stall of ~40 ms per response.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        request = self._read_request()
        reply = self.server.sim.serve(request)
        self._write_reply(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _read_request(self) -> Request:
        parts = urlsplit(self.path)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        return Request(
            method=self.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _write_reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.stream is not None:
            self._write_stream(reply.stream)
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()

    def _write_stream(self, stream: Iterator[bytes]) -> None:
        """A chunked body written as the stream yields; the connection closes after it."""
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()  # the status line and headers now, not with the first chunk (a keep-alive may be 30 s off)
        self.close_connection = True
        try:
            for chunk in stream:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            pass  # the client hung up
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


class SimServer:
    """Base of every simulator: lifecycle, switches, counters, routing and fault injection.

    Subclasses set `name`, fill `routes` and implement `error_reply` in their service's error shape.
    State lives in the subclass, guarded by `self.lock`.
    """

    name = "base"
    scheme = "http"
    # The error code this service writes for the statuses the base answers by itself.
    status_codes: Mapping[int, str] = {
        404: "NotFound",
        405: "MethodNotAllowed",
        429: "TooManyRequests",
        500: "InternalServerError",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.lock = threading.RLock()
        self.routes: list[Route] = []
        self._stopping = threading.Event()
        self._switch_lock = threading.Lock()
        self._latency_seconds = 0.0
        self._faults = FaultSettings()
        self._fault_timeout_seconds = DEFAULT_FAULT_TIMEOUT_SECONDS
        self._request_count = 0
        self._request_log: list[tuple[str, str, int]] = []
        self._httpd = _HTTPServer(self, ssl_context)
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sim-{self.name}", daemon=True
        )

    # lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # wakes requests sleeping in latency or a timeout fault
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # switches

    def set_latency(self, ms: float) -> None:
        """Sleep `ms` milliseconds before every answer (0 turns it off)."""
        with self._switch_lock:
            self._latency_seconds = max(0.0, ms / 1000)

    def set_faults(self, rate: float = 0.1, kinds: Iterable[str] = FAULT_KINDS, seed: int | None = None) -> None:
        """Answer a share `rate` of requests with one of `kinds` instead of serving them (rate 0 turns off)."""
        settings = make_fault_settings(rate, kinds, seed)
        with self._switch_lock:
            self._faults = settings

    def set_fault_timeout_seconds(self, seconds: float) -> None:
        """How long a `timeout` fault keeps the client waiting before it answers 504 (default 10 s)."""
        with self._switch_lock:
            self._fault_timeout_seconds = max(0.0, seconds)

    def draw_fault(self, allowed: Iterable[str] = FAULT_KINDS) -> str | None:
        with self._switch_lock:
            return self._faults.draw(allowed)

    # counters

    def requests(self) -> int:
        with self._switch_lock:
            return self._request_count

    def request_log(self) -> list[tuple[str, str, int]]:
        with self._switch_lock:
            return list(self._request_log)

    def reset_counters(self) -> None:
        with self._switch_lock:
            self._request_count = 0
            self._request_log.clear()

    # serving

    def serve(self, request: Request) -> Reply:
        """Serve one request: count it, sleep the latency, maybe inject a fault, else route it."""
        with self._switch_lock:
            self._request_count += 1
            latency = self._latency_seconds
            timeout = self._fault_timeout_seconds
        self.pause(latency)
        fault = self.draw_fault()
        reply = self.fault_reply(fault) if fault else self.dispatch(request)
        self._log(request, reply)
        if fault == "timeout":
            self.pause(timeout)
        return reply

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _log(self, request: Request, reply: Reply) -> None:
        with self._switch_lock:
            self._request_log.append((request.method, request.path, reply.status))

    def dispatch(self, request: Request) -> Reply:
        """Run the first route whose pattern matches; 404 when none does, 405 for a wrong method."""
        path_matched = False
        for candidate in self.routes:
            match = candidate.pattern.fullmatch(request.path)
            if match is None:
                continue
            path_matched = True
            if candidate.method == request.method:
                return self._run(candidate, request, match)
        if path_matched:
            return self.status_reply(405, f"{request.method} is not allowed on {request.path}")
        return self.status_reply(404, f"No such resource: {request.path}")

    def _run(self, candidate: Route, request: Request, match: re.Match[str]) -> Reply:
        try:
            return candidate.handler(request, match)
        except HttpError as error:
            return self.error_reply(error.status, error.code, error.message, error.headers)
        except Exception:  # a bug in the simulator: answer 500 and show the traceback
            traceback.print_exc()
            return self.status_reply(500, f"The {self.name} simulator failed; see its stderr.")

    def fault_reply(self, kind: str) -> Reply:
        """The answer of an injected fault; the request itself is not served."""
        if kind == "malformed":
            return Reply(200, MALFORMED_BODY, "application/json")
        if kind == "429":
            message = "Too many requests (injected fault); retry after the Retry-After seconds."
            return self.status_reply(429, message, {"Retry-After": "1"})
        if kind == "503":
            return self.status_reply(503, "The service is unavailable (injected fault).")
        return self.status_reply(504, "The request timed out (injected fault).")

    def status_reply(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.error_reply(status, self.status_codes[status], message, headers)

    def error_reply(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        """An error in the service's own body shape; subclasses override."""
        return json_reply(status, {"code": code, "message": message}, headers)
