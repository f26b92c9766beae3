"""`python -m devtools.simulators [--demo]`: run the simulators until Ctrl-C, printing their URLs as JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from devtools.simulators.demo import OSLO, load_demo, load_onboarding, register_nettsoft
from devtools.simulators.hub import Simulators
from devtools.simulators.remote import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulators", description=__doc__)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="script the demo tenant, users, events and MBN side, Nettsoft's app and the customer to connect",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="also open a control channel for `devtools.simulators.remote` (its address and key in the JSON)",
    )
    args = parser.parse_args(argv)
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with Simulators.start() as sims, tempfile.TemporaryDirectory(prefix="kalenderpush-nettsoft-") as keys:
        described = sims.urls()
        if args.demo:
            today = dt.datetime.now(OSLO).date()
            described = load_demo(sims, today)
            described["nettsoft_settings"] = register_nettsoft(sims, Path(keys))
            described["onboarding"] = load_onboarding(sims, today)
        if args.control:
            described = {**described, "control": serve(sims, stopping)}
            print(json.dumps(described), flush=True)  # one line: what RemoteSimulators reads
            while not stopping.wait(0.5):
                pass
            return 0
        print(json.dumps(described, ensure_ascii=False, indent=2), flush=True)
        print("Simulators running; Ctrl-C stops them.", file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
