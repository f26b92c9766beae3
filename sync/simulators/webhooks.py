"""Graph change-notification subscriptions: the validation handshake and delivery from a background thread.

The handshake is synchronous (Graph does it inside `POST /subscriptions`); notifications are queued and
posted in order by one daemon thread, so scripting an event never waits for a webhook. Every delivery
attempt is logged; there are no retries (real Graph retries for up to four hours).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sync.simulators.events import graph_timestamp

MAX_EXPIRATION_MINUTES = 4230  # Outlook resources (events)
DELIVERY_TIMEOUT_SECONDS = 10.0

# Loopback webhooks must be reached directly, whatever HTTP(S)_PROXY says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def validate_endpoint(url: str, timeout: float) -> str | None:
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
        with _OPENER.open(request, timeout=timeout) as response:
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
    """One notification POST and its outcome (`status` None when the endpoint could not be reached)."""

    url: str
    document: dict[str, Any]
    status: int | None
    error: str | None


class Notifier:
    """Posts JSON documents to webhook URLs from one daemon thread, in the order they were queued."""

    def __init__(self) -> None:
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._condition = threading.Condition()
        self._in_flight = 0
        self._stopped = False
        self._log: list[Delivery] = []
        self._thread = threading.Thread(target=self._run, name="sim-graph-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()

    def post(self, url: str, document: dict[str, Any]) -> None:
        with self._condition:
            self._queue.append((url, document))
            self._condition.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was delivered (or failed); False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def deliveries(self) -> list[Delivery]:
        with self._condition:
            return list(self._log)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._queue or self._stopped)
                if self._stopped:
                    return
                url, document = self._queue.popleft()
                self._in_flight += 1
            delivery = _deliver(url, document)
            with self._condition:
                self._log.append(delivery)
                self._in_flight -= 1
                self._condition.notify_all()


def _deliver(url: str, document: dict[str, Any]) -> Delivery:
    body = json.dumps(document).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with _OPENER.open(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
            response.read()
            return Delivery(url, document, response.status, None)
    except urllib.error.HTTPError as error:
        return Delivery(url, document, error.code, None)
    except (OSError, ValueError) as error:
        return Delivery(url, document, None, str(error))
