"""Graph change-notification subscriptions: the validation handshake and delivery from a background thread.

The handshake is synchronous (Graph does it inside `POST /subscriptions`, 10 s at most); notifications are
queued and posted in order by one daemon thread, so scripting an event never waits for a webhook. A POST
the webhook does not answer with 2xx is sent again after a back-off, a few times (Graph retries for up to
four hours); notifications held back (`Notifier.hold`) leave together, one POST per URL, as Graph batches
notifications of several subscriptions. Every delivery attempt is logged. Sources: devtools/simulators/README.md.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from devtools.simulators.events import graph_timestamp

MAX_EXPIRATION_MINUTES = 4230  # Outlook resources (events)
VALIDATION_TIMEOUT_SECONDS = 10.0  # the endpoint must answer the validation request within 10 s
DELIVERY_TIMEOUT_SECONDS = 3.0  # Graph publishes with a 3-second HTTP client timeout
RETRY_DELAYS_SECONDS = (1.0, 2.0, 4.0)  # back-off before each new attempt of a non-2xx POST (Graph: up to 4 h)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def opener(ssl_context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    """An opener that reaches loopback webhooks directly, whatever HTTP(S)_PROXY says, trusting `ssl_context`."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ssl_context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
    return urllib.request.build_opener(*handlers)


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


@dataclass
class Subscription:
    """One active change-notification subscription on `/users/{id}/events`."""

    id: str
    tenant_id: str
    application_id: str
    user_id: str
    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": graph_timestamp(self.expiration),
            "creatorId": self.application_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "notificationQueryOptions": None,
            "notificationUrlAppId": None,
        }

    def notification(self, change_type: str, event_id: str, change_key: str) -> dict[str, Any]:
        resource = f"Users/{self.user_id}/Events/{event_id}"
        return {
            "subscriptionId": self.id,
            "subscriptionExpirationDateTime": graph_timestamp(self.expiration),
            "changeType": change_type,
            "resource": resource,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Event",
                "@odata.id": resource,
                "@odata.etag": f'W/"{change_key}"',
                "id": event_id,
            },
            "clientState": self.client_state,
            "tenantId": self.tenant_id,
        }

    def lifecycle_notification(self, lifecycle_event: str) -> dict[str, Any]:
        return {
            "subscriptionId": self.id,
            "subscriptionExpirationDateTime": graph_timestamp(self.expiration),
            "tenantId": self.tenant_id,
            "clientState": self.client_state,
            "lifecycleEvent": lifecycle_event,
        }


def validation_token() -> str:
    """Graph's tokens contain spaces and colons, so a webhook that forgets to URL-decode shows up."""
    return f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"


def validate_endpoint(url: str, timeout: float, via: urllib.request.OpenerDirector | None = None) -> str | None:
    """Graph's handshake: POST `url?validationToken=…`; the endpoint must echo it as 200 text/plain.

    Returns None on success, else what went wrong (for the 400 ValidationError message).
    """
    token = validation_token()
    separator = "&" if "?" in url else "?"
    target = f"{url}{separator}validationToken={quote(token, safe='')}"
    request = urllib.request.Request(
        target, data=b"", method="POST", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    try:
        with (via or opener()).open(request, timeout=timeout) as response:
            status, content_type = response.status, response.headers.get("Content-Type", "")
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return f"the endpoint answered HTTP {error.code}; it must answer 200 OK"
    except (OSError, ValueError) as error:
        return f"the endpoint could not be reached within {timeout:g} s ({error})"
    if status != 200:
        return f"the endpoint answered HTTP {status}; it must answer 200 OK"
    if not content_type.startswith("text/plain"):
        return f"the endpoint answered Content-Type {content_type!r}; it must be text/plain"
    if body != token:
        return "the endpoint's body was not the URL-decoded validationToken"
    return None


@dataclass(frozen=True)
class Delivery:
    """One notification POST and its outcome (`status` None when the endpoint could not be reached).

    `attempt` counts from 1; a POST answered with anything but 2xx is sent again as attempt 2, 3, …"""

    url: str
    document: dict[str, Any]
    status: int | None
    error: str | None
    attempt: int = 1

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class _Post:
    url: str
    document: dict[str, Any]
    attempt: int
    due: float  # time.monotonic() before which it is not sent


class Notifier:
    """Posts JSON documents to webhook URLs from one daemon thread, in the order they were queued.

    A POST not answered with 2xx is queued again after `retry_delays[n]` seconds, until the delays run out.
    While held (`hold()`), nothing is sent; `release()` merges what waits for each URL into one POST.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._queue: list[_Post] = []
        self._condition = threading.Condition()
        self._in_flight = 0
        self._stopped = False
        self._held = False
        self._retry_delays: tuple[float, ...] = RETRY_DELAYS_SECONDS
        self._log: list[Delivery] = []
        self._opener = opener(ssl_context)
        self._thread = threading.Thread(target=self._run, name="sim-graph-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()

    def post(self, url: str, document: dict[str, Any]) -> None:
        with self._condition:
            self._queue.append(_Post(url, document, 1, time.monotonic()))
            self._condition.notify_all()

    def set_retry_delays(self, delays: Sequence[float]) -> None:
        """The back-off before each new attempt of a POST the webhook did not accept; () turns retries off."""
        with self._condition:
            self._retry_delays = tuple(max(0.0, float(delay)) for delay in delays)

    def hold(self) -> None:
        """Keep queued notifications back until `release()`."""
        with self._condition:
            self._held = True

    def release(self) -> None:
        """Send what was held: the documents waiting for each URL merged into one `{"value": [...]}` POST."""
        with self._condition:
            merged: dict[str, _Post] = {}
            for item in self._queue:
                first = merged.get(item.url)
                if first is None:
                    merged[item.url] = _Post(item.url, {"value": list(item.document["value"])}, 1, item.due)
                else:
                    first.document["value"].extend(item.document["value"])
            self._queue = list(merged.values())
            self._held = False
            self._condition.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was delivered (or given up), retries included; False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def deliveries(self) -> list[Delivery]:
        with self._condition:
            return list(self._log)

    def _next(self) -> _Post | None:
        """The first queued POST that is due (under the lock); waits at most until the earliest is due."""
        if self._held or not self._queue:
            self._condition.wait()
            return None
        now = time.monotonic()
        for index, item in enumerate(self._queue):
            if item.due <= now:
                return self._queue.pop(index)
        self._condition.wait(min(item.due for item in self._queue) - now)
        return None

    def _run(self) -> None:
        while True:
            with self._condition:
                if self._stopped:
                    return
                item = self._next()
                if item is None:
                    continue
                self._in_flight += 1
            delivery = _deliver(self._opener, item)
            with self._condition:
                self._log.append(delivery)
                if not delivery.accepted and item.attempt <= len(self._retry_delays):
                    due = time.monotonic() + self._retry_delays[item.attempt - 1]
                    self._queue.append(_Post(item.url, item.document, item.attempt + 1, due))
                self._in_flight -= 1
                self._condition.notify_all()


def _deliver(via: urllib.request.OpenerDirector, item: _Post) -> Delivery:
    body = json.dumps(item.document).encode("utf-8")
    request = urllib.request.Request(
        item.url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with via.open(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
            response.read()
            return Delivery(item.url, item.document, response.status, None, item.attempt)
    except urllib.error.HTTPError as error:
        return Delivery(item.url, item.document, error.code, None, item.attempt)
    except (OSError, ValueError) as error:
        return Delivery(item.url, item.document, None, str(error), item.attempt)
