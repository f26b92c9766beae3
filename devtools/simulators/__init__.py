"""Loopback simulators of the external APIs (Microsoft login, Graph, MBN) for tests, benchmarks and the demo.

Each is a real HTTP server on 127.0.0.1 speaking the service's wire format, so the real client libraries
(msal, requests) run unmodified against it. Pure Python; importable without Django settings.

    from devtools.simulators import Simulators, SimEvent
    with Simulators.start() as sims:
        sims.graph.add_tenant(tenant_id, client_id, client_secret)
        ...
"""

from devtools.simulators.base import FAULT_KINDS
from devtools.simulators.events import SimEvent
from devtools.simulators.hub import Simulators
from devtools.simulators.mbn import MBN_REASONS, MbnError

__all__ = ["FAULT_KINDS", "MBN_REASONS", "MbnError", "SimEvent", "Simulators"]
