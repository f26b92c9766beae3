"""`Simulators`: starts the login, Graph and MBN simulators together and gives tests one set of switches.

Every switch takes a service name ("login", "graph", "mbn"); simulators added later (EWS, Google) join
the same table.
"""

from __future__ import annotations

import resource
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme

from devtools.simulators.base import FAULT_KINDS, SimServer
from devtools.simulators.ews import EwsSimulator
from devtools.simulators.google import GoogleSimulator
from devtools.simulators.graph import GraphSimulator
from devtools.simulators.login import LoginSimulator, server_ssl_context
from devtools.simulators.mbn import MbnSimulator


class Simulators:
    """The running simulators. Build with `Simulators.start()`; stop with `stop()` or a `with` block."""

    def __init__(
        self,
        login: LoginSimulator,
        graph: GraphSimulator,
        mbn: MbnSimulator,
        workdir: tempfile.TemporaryDirectory[str],
        ews: EwsSimulator | None = None,
        google: GoogleSimulator | None = None,
        ca: trustme.CA | None = None,
    ) -> None:
        self.ca = ca
        self.login = login
        self.graph = graph
        self.mbn = mbn
        self.ews = ews or EwsSimulator()
        self.google = google or GoogleSimulator()
        self._workdir = workdir
        self._services: dict[str, SimServer] = {
            "login": login,
            "graph": graph,
            "mbn": mbn,
            "ews": self.ews,
            "google": self.google,
        }

    @classmethod
    def start(cls) -> Simulators:
        """A fresh trustme CA, then every simulator on its own ephemeral 127.0.0.1 port."""
        workdir = tempfile.TemporaryDirectory(prefix="kalenderpush-simulators-")
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(Path(workdir.name) / "ca.pem"))
        login = LoginSimulator(ca)
        webhook_trust = ssl.create_default_context()
        ca.configure_trust(webhook_trust)  # Graph reaches https webhooks whose certificate this CA signed
        sims = cls(login, GraphSimulator(login, webhook_trust), MbnSimulator(), workdir, ca=ca)
        try:
            for service in sims._services.values():
                service.start()
        except BaseException:
            sims.stop()
            raise
        return sims

    def stop(self) -> None:
        for service in self._services.values():
            service.stop()
        self._workdir.cleanup()

    def __enter__(self) -> Simulators:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # where they are

    @property
    def login_url(self) -> str:
        return self.login.base_url

    @property
    def graph_url(self) -> str:
        return self.graph.graph_url

    @property
    def mbn_url(self) -> str:
        return self.mbn.base_url

    @property
    def ews_url(self) -> str:
        return self.ews.url

    @property
    def ca_path(self) -> str:
        """The trustme CA (PEM) that signed the login simulator's certificate."""
        return str(Path(self._workdir.name) / "ca.pem")

    def webhook_ssl_context(self) -> ssl.SSLContext:
        """A server TLS context for a webhook on 127.0.0.1/localhost that the Graph simulator trusts."""
        if self.ca is None:
            raise RuntimeError("these simulators were built without a CA; start them with Simulators.start()")
        return server_ssl_context(self.ca)

    def urls(self) -> dict[str, Any]:
        return {
            "login_url": self.login_url,
            "graph_url": self.graph_url,
            "mbn_url": self.mbn_url,
            "ews_url": self.ews_url,
            "google_token_url": self.google.token_url,
            "google_calendar_url": self.google.calendar_url,
            "google_directory_url": self.google.directory_url,
            "ca_path": self.ca_path,
        }

    def app_settings(self) -> dict[str, str]:
        """The Django settings (also their environment variables) that point the app at these simulators."""
        return {
            "MICROSOFT_LOGIN_BASE_URL": self.login_url,
            "MICROSOFT_LOGIN_CA_BUNDLE": self.ca_path,
            "GRAPH_BASE_URL": self.graph_url,
            "MBN_BASE_URL": self.mbn_url,
            "GOOGLE_TOKEN_URL": self.google.token_url,
            "GOOGLE_CALENDAR_BASE_URL": self.google.calendar_url,
            "GOOGLE_DIRECTORY_BASE_URL": self.google.directory_url,
        }

    def put_events(self, service: str, owner: str, events: Iterable[Any]) -> None:
        """Script events in one calendar ("graph": the user id, "ews"/"google": the e-mail), in one call."""
        simulator = self.service(service)
        for event in events:
            simulator.put_event(owner, event)  # type: ignore[attr-defined]

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) of the process the simulators run in, so far."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def peak_rss_mb(self) -> float:
        """The peak resident memory of the process the simulators run in, in MB."""
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux

    # switches

    def service(self, name: str) -> SimServer:
        try:
            return self._services[name]
        except KeyError:
            raise ValueError(f"unknown service {name!r}; choose from {tuple(self._services)}") from None

    def set_latency(self, service: str, ms: float) -> None:
        self.service(service).set_latency(ms)

    def set_faults(
        self, service: str, rate: float = 0.1, kinds: Iterable[str] = FAULT_KINDS, seed: int | None = None
    ) -> None:
        self.service(service).set_faults(rate, kinds, seed)

    def set_fault_timeout_seconds(self, seconds: float, service: str | None = None) -> None:
        """How long a `timeout` fault stalls (default 10 s), for one service or all."""
        for name in [service] if service else list(self._services):
            self.service(name).set_fault_timeout_seconds(seconds)

    def requests(self, service: str) -> int:
        return self.service(service).requests()

    def request_log(self, service: str) -> list[tuple[str, str, int]]:
        return self.service(service).request_log()

    def reset_counters(self, service: str | None = None) -> None:
        for name in [service] if service else list(self._services):
            self.service(name).reset_counters()
