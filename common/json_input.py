"""JSON that people and outside services send us (webhooks, the fixed commands, pasted key files).

One parser for all of them, so that no input can crash it: text that is not JSON, bytes that are not
UTF-8 and nesting deeper than any of our formats uses are all bad input, reported as `JSONInputError`.
"""

import json
from typing import Any

# Our formats nest at most a few levels (a Graph notification: 4); anything far deeper is not one of them,
# and deep structures make Python's own recursion (repr, comparisons) fail later.
MAX_DEPTH = 64


class JSONInputError(ValueError):
    """The text is not JSON we accept; the message says why (with line and column where there is one)."""


def parse_json(text: str | bytes) -> Any:
    """The value of a JSON text; `JSONInputError` for anything else, never another exception."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise JSONInputError(f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from error
    except UnicodeDecodeError as error:
        raise JSONInputError("invalid JSON: the text is not UTF-8") from error
    except RecursionError as error:
        raise JSONInputError(f"invalid JSON: nested more than {MAX_DEPTH} levels deep") from error
    except ValueError as error:  # e.g. a number with more digits than Python converts
        raise JSONInputError(f"invalid JSON: {error}") from error
    if _depth(value) > MAX_DEPTH:
        raise JSONInputError(f"invalid JSON: nested more than {MAX_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (a scalar: 0), without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:
            pending.extend((child, level + 1) for child in children)
    return deepest
