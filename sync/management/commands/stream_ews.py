"""`manage.py stream_ews`: the long-running listener for Exchange on-premises change notifications (sync.streaming).

Run exactly one per installation, beside the q2 cluster and the Celery workers; SIGTERM or Ctrl-C stops it cleanly
(connections closed, subscriptions ended).
"""

import logging
import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.streaming import DEFAULT_CONNECTION_MINUTES, DEFAULT_REFRESH_SECONDS, EwsListener


class Command(BaseCommand):
    help = (
        "Hold EWS streaming subscriptions open for every active Exchange on-premises source and queue a sync of each "
        "user whose calendar changes. Runs until SIGTERM or Ctrl-C; the 5-minute sweep remains the safety net."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--connection-minutes",
            type=int,
            default=DEFAULT_CONNECTION_MINUTES,
            help="how long Exchange keeps each GetStreamingEvents connection open before the next one (1-30)",
        )
        parser.add_argument(
            "--refresh-seconds",
            type=float,
            default=DEFAULT_REFRESH_SECONDS,
            help="how often sources, users and credentials are read again from the database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["connection_minutes"] <= 30:
            raise CommandError("--connection-minutes must be between 1 and 30 (Exchange's limit).")
        if options["refresh_seconds"] <= 0:
            raise CommandError("--refresh-seconds must be more than 0.")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        listener = EwsListener(
            connection_minutes=options["connection_minutes"], refresh_seconds=options["refresh_seconds"]
        )
        self.stderr.write("Streaming Exchange notifications; Ctrl-C or SIGTERM stops.")
        listener.run(stopping)
        self.stderr.write("Stopped: connections closed, subscriptions ended.")
