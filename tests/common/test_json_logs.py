"""LOG_FORMAT=json: every log line a process writes is one JSON object."""

import json

from tests.kalenderpush.test_settings import _manage

LOG_LINES = (
    "import logging; log = logging.getLogger('sync.test');"
    "log.warning('MBN answered %s', 429, extra={'enterprise': 'fjord'});"
    "exec('try:\\n 1/0\\nexcept ZeroDivisionError:\\n log.exception(\"broken\")')"
)


def test_with_log_format_json_each_line_is_one_json_object():
    result = _manage("shell", "--no-imports", "-c", LOG_LINES, LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["level"], line["logger"], line["message"]) for line in lines] == [
        ("WARNING", "sync.test", "MBN answered 429"),
        ("ERROR", "sync.test", "broken"),
    ]
    assert lines[0]["enterprise"] == "fjord"
    assert lines[0]["time"].endswith("+00:00")
    assert "ZeroDivisionError" in lines[1]["exception"]


def test_the_plain_format_is_the_default_and_an_unknown_one_is_refused():
    plain = _manage("shell", "--no-imports", "-c", LOG_LINES)
    assert " WARNING sync.test: MBN answered 429" in plain.stderr

    wrong = _manage("check", LOG_FORMAT="xml")
    assert wrong.returncode != 0
    assert "LOG_FORMAT must be one of plain, json, not 'xml'." in wrong.stderr
