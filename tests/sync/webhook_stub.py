"""A small local webhook for the Graph simulator's change notifications: answers the validation handshake
(optionally late or not at all), keeps the notification POSTs it receives and answers them with a chosen
status. Served over https with a certificate the simulators' CA signed, as Graph wants, or plain http."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class WebhookStub:
    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        echo: bool = True,
        handshake_delay: float = 0.0,
        statuses: Iterator[int] | None = None,
    ) -> None:
        """`statuses` gives the answer to each notification POST in turn (202 once it runs out)."""
        self.notifications: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self._statuses = statuses or iter(())
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token = parse_qs(urlsplit(self.path).query).get("validationToken")
                if token:
                    time.sleep(handshake_delay)
                    self._answer(200 if echo else 500, token[0].encode() if echo else b"nope")
                    return
                webhook.notifications.append(json.loads(body))
                webhook.arrived.set()
                self._answer(next(webhook._statuses, 202), b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                if tls is not None:
                    request = tls.wrap_socket(request, server_side=True)
                super().finish_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        scheme = "https" if tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base_url}/hooks/graph"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def items(self) -> list[dict[str, Any]]:
        """Every notification received so far, across POSTs."""
        return [item for document in self.notifications for item in document["value"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
