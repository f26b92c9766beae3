"""Error reports to Sentry (SENTRY_DSN), scrubbed so that nothing of a customer's or of ours leaves.

Every event and breadcrumb passes `scrub_event` / `scrub_breadcrumb` before it is sent: request bodies,
cookies, query strings and authentication headers are dropped; any value under a key that names a subject,
secret, token, password, key, body, e-mail or mobile number is replaced; inside any text (messages, exception
values) quoted parts (how errors and reprs show a subject), e-mail addresses, mobile numbers, `token=`-style
parameters and bearer or Fernet tokens are replaced; the user is reduced to their id.
Local variables are not collected at all (`include_local_variables=False`): an `events` list holds subjects.
"""

import re
from collections.abc import Mapping
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

FILTERED = "[Filtered]"
# Keys whose values never leave, in any case, anywhere in an event (headers, extra, contexts, breadcrumb data).
_SENSITIVE_KEY = re.compile(
    r"subject|secret|token|passw|authoriz|cookie|session|csrf|api[-_]?key|private|credential|signature|"
    r"body|e-?mail|mail|msisdn|mobile|phone|client[-_]?state|dsn|(?:^|[-_])key$",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)  # also URL-encoded, as in a path
_MSISDN = re.compile(r"\+\d{8,15}\b")  # a mobile number as we store them (+4791234567)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[\w\-.~+/=]+")
_FERNET = re.compile(r"gAAAAA[\w\-=]{20,}")  # a Fernet token (our encrypted secrets) in a message or a query
_LONG_SECRET = re.compile(r"(?i)((?:token|secret|password|key|code|state)=)[^&\s]+")
# Quoted text in a message ('…', "…", «…»): how our errors and Python's reprs show values such as a subject.
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|«[^»\n]*»")
# A stack frame's source lines and paths: our code and the libraries', never a customer's data.
_OUR_CODE = frozenset({"pre_context", "context_line", "post_context", "abs_path", "filename", "module", "function"})
# Request parts that are dropped whole: bodies (forms, webhooks with subjects), cookies, query strings.
_DROPPED_REQUEST_PARTS = ("data", "cookies", "query_string", "env")


def _scrub_text(text: str) -> str:
    text = _QUOTED.sub(lambda quoted: quoted.group(0)[0] + FILTERED + quoted.group(0)[-1], text)
    text = _BEARER.sub(r"\1 " + FILTERED, text)
    text = _FERNET.sub(FILTERED, text)
    text = _LONG_SECRET.sub(r"\1" + FILTERED, text)
    return _MSISDN.sub("[number]", _EMAIL.sub("[e-mail]", text))


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {
            key: item
            if key in _OUR_CODE
            else FILTERED
            if isinstance(key, str) and _SENSITIVE_KEY.search(key)
            else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def scrub_event(event: Event, hint: Hint | None = None) -> Event:
    """Sentry's `before_send`: the event without anything secret or personal (see the module's docstring)."""
    request: Any = event.get("request")
    if isinstance(request, dict):
        for part in _DROPPED_REQUEST_PARTS:
            request.pop(part, None)
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {"id": user["id"]} if "id" in user else {}
    for frame_list in _frames(event):
        for frame in frame_list:
            frame.pop("vars", None)
    scrubbed: Event = _scrub(event)
    return scrubbed


def scrub_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint | None = None) -> Breadcrumb:
    """Sentry's `before_breadcrumb`: SQL breadcrumbs lose their parameters, others are scrubbed like events."""
    if crumb.get("category") == "query":
        crumb.pop("data", None)
    data = crumb.get("data")
    if isinstance(data, dict) and isinstance(data.get("url"), str):
        data["url"] = data["url"].split("?", 1)[0]
    scrubbed: Breadcrumb = _scrub(crumb)
    return scrubbed


def _frames(event: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    found = []
    for section in ("exception", "threads"):
        for item in (event.get(section) or {}).get("values") or []:
            frames = (item.get("stacktrace") or {}).get("frames")
            if isinstance(frames, list):
                found.append(frames)
    return found


def start_error_reports(*, dsn: str, environment: str, transport: type[Transport] | None = None) -> None:
    """Send errors (and error log lines) of this process to Sentry, scrubbed; `transport` replaces the network
    (tests)."""
    options: dict[str, Any] = {"transport": transport} if transport is not None else {}
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        # send_default_pii stays off (its default; this sentry-sdk deprecates the option for data_collection):
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "stack_frame_variables": False,
        },
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        integrations=[DjangoIntegration(), CeleryIntegration(), LoggingIntegration()],
        traces_sample_rate=0,
        **options,
    )
