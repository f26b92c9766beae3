"""gunicorn's settings for Kalender Push (the Procfile's `web`, the kalenderpush-web systemd unit).

PORT (default 8000) and BIND_ADDRESS (default 0.0.0.0) say where it listens, WEB_CONCURRENCY how many worker
processes (default 2) and GUNICORN_TIMEOUT how long a request may take (seconds, default 30). Logs go to stderr.
"""

import os
from typing import Any

from common.json_logs import LOG_FORMATTERS
from common.metrics import process_exited

bind = f"{os.environ.get('BIND_ADDRESS', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
if os.environ.get("LOG_FORMAT") == "json":  # gunicorn's own lines (start-up, access log) as JSON objects too
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": LOG_FORMATTERS["json"]},
        "handlers": {
            "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }
# Behind a reverse proxy on the same host; set FORWARDED_ALLOW_IPS to the proxy's address otherwise.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended: its live metrics go (its counts stay counted)."""
    process_exited(worker.pid)


control_socket_disable = True  # systemd or scripts/serve.sh manage the process; no second way in
