"""Log lines as JSON objects, one per line, for a log collector (LOG_FORMAT=json); the plain format otherwise.

`LOG_FORMATTERS` is the `formatters` section of the LOGGING setting: settings pick one by LOG_FORMAT's name.
"""

import datetime as dt
import json
import logging
from typing import Any

# What every record carries that is not the caller's `extra=`: left out of the JSON object.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """time (UTC, ISO 8601), level, logger, message, the process, and `exception` with its traceback; any
    `extra=` fields as they are (or their text when JSON cannot hold them)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in line:
                line[key] = value
        return json.dumps(line, ensure_ascii=False, default=str)


LOG_FORMATTERS: dict[str, dict[str, Any]] = {
    "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    "json": {"()": JsonFormatter},
}
