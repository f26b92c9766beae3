"""A loopback Google Workspace: OAuth token endpoint (JWT bearer), Calendar v3 and Admin SDK Directory v1.

Shaped after what google-auth 2.63 and google-api-python-client 2.202 send (../shared/spec/simulators/google/).
The token endpoint reads `sub` and `scope` from the JWT's middle segment without checking the signature; the
access token names the delegated user, and every API call acts as that user. Scripted events are `SimEvent`s,
expanded like the Graph simulator's (occurrences get `"{id}_{yyyymmdd}"` ids) and rendered as Google event JSON.
Watch channels get Google's header-only notifications from a background thread. A batch holds at most 1000
calls, answers them in any order, and each call counts as a request of its own (faults, per-user switches:
`set_calendar_enabled` → 403 notACalendarUser, `set_user_rate_limited` → 403 userRateLimitExceeded). Each
behaviour and the Google page it follows is listed in README.md.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import email.parser
import json
import queue
import random
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devtools.simulators.base import (
    HttpError,
    Reply,
    Request,
    SimServer,
    json_reply,
    parse_datetime,
    route,
    utc_now,
)
from devtools.simulators.events import EventRecord, Instance, SimEvent, expand

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CALENDAR_SCOPE_PREFIX = "https://www.googleapis.com/auth/calendar"
DIRECTORY_SCOPE_PREFIX = "https://www.googleapis.com/auth/admin.directory.group"
USER_SCOPE_PREFIX = "https://www.googleapis.com/auth/admin.directory.user"
DEFAULT_CHANNEL_SECONDS = 7 * 24 * 3600
MAX_CHANNEL_SECONDS = 30 * 24 * 3600
CHANNEL_ID = re.compile(r"[A-Za-z0-9\-_+/=]{1,64}")  # Push notifications: "Maximum length: 64 characters"
MAX_BATCH_CALLS = 1000  # "You're limited to 1000 calls in a single batch request" (Calendar: Send batch requests)

# SimEvent.response → the attendee's Google responseStatus.
RESPONSE_TO_GOOGLE = {
    "accepted": "accepted",
    "tentative": "tentative",
    "tentativelyAccepted": "tentative",
    "declined": "declined",
    "none": "needsAction",
    "notResponded": "needsAction",
}
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
_REASONS |= {404: "Not Found", 405: "Method Not Allowed", 410: "Gone", 429: "Too Many Requests"}
_REASONS |= {500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class GoogleUser:
    email: str
    name: str
    timezone: str = "Europe/Oslo"
    admin: bool = False
    calendar_enabled: bool = True  # False: Calendar is turned off for the user's organisational unit
    rate_limited: bool = False  # True: the user's per-user quota is spent (403 userRateLimitExceeded)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass
class Channel:
    """One `events.watch` channel."""

    id: str
    resource_id: str
    user: str
    address: str
    token: str
    expiration_ms: int
    messages: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": f"https://www.googleapis.com/calendar/v3/calendars/{self.user}/events?alt=json",
            "token": self.token,
            "expiration": str(self.expiration_ms),
        }


@dataclass
class SyncState:
    user: str
    window: tuple[dt.datetime, dt.datetime]
    snapshot: dict[str, str]


SYNC_TOKENS_KEPT = 16  # per calendar: sync tokens older than the newest 16 are forgotten


@dataclass
class Notification:
    url: str
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None


@dataclass
class _Page:
    items: list[dict[str, Any]]
    sync_token: str | None
    extra: dict[str, Any] = field(default_factory=dict)


class GoogleSimulator(SimServer):
    """Token endpoint + Calendar v3 + Directory v1 on one loopback port."""

    name = "google"
    status_codes = {
        404: "notFound",
        405: "httpMethodNotAllowed",
        429: "rateLimitExceeded",
        500: "backendError",
        503: "backendError",
        504: "backendError",
    }

    def __init__(self) -> None:
        super().__init__()
        self._users: dict[str, GoogleUser] = {}
        self._groups: dict[str, list[str]] = {}
        self._events: dict[str, dict[str, EventRecord]] = {}
        self._version = 0
        self._tokens: dict[str, tuple[str, frozenset[str]]] = {}
        self._sync_states: dict[str, SyncState] = {}
        self._pages: dict[str, _Page] = {}
        self._calendar_reads: collections.Counter[str] = collections.Counter()
        self._user_sync_tokens: dict[str, collections.deque[str]] = {}
        self._channels: dict[str, Channel] = {}
        self._granted_scopes: frozenset[str] | None = None
        self._service_accounts: dict[str, str] = {}  # client_email → client_id
        self._delegations: dict[tuple[str, str], frozenset[str]] = {}  # (domain, client_id) → scopes
        self._batch_rng = random.Random(0)
        self._revoked_keys: set[str] = set()
        self._outbox: queue.Queue[Notification | None] = queue.Queue()
        self._deliveries: list[Notification] = []
        self._pending = 0
        self._pending_cond = threading.Condition()
        self._notifier = threading.Thread(target=self._deliver_loop, name="sim-google-notify", daemon=True)
        self.routes = [
            route("POST", r"/token", self._token),
            route("POST", r"/batch/calendar/v3", self._batch),
            route("GET", r"/calendar/v3/calendars/([^/]+)/events", self._list_events),
            route("POST", r"/calendar/v3/calendars/([^/]+)/events/watch", self._watch),
            route("POST", r"/calendar/v3/channels/stop", self._stop_channel),
            route("GET", r"/admin/directory/v1/groups/([^/]+)/members", self._members),
            route("GET", r"/admin/directory/v1/users", self._list_users),
        ]

    # lifecycle and addresses

    def start(self) -> None:
        super().start()
        self._notifier.start()

    def stop(self) -> None:
        self._outbox.put(None)
        super().stop()

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def calendar_url(self) -> str:
        return f"{self.base_url}/calendar/v3/"

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/"

    # scripting

    def add_user(self, email: str, name: str, *, timezone: str = "Europe/Oslo", admin: bool = False) -> None:
        """A Workspace user with a primary calendar; `admin=True` may read the directory."""
        ZoneInfo(timezone)
        with self.lock:
            self._users[email.lower()] = GoogleUser(email.lower(), name, timezone, admin)
            self._events.setdefault(email.lower(), {})

    def add_group(self, email: str, members: Iterable[str]) -> None:
        """A group whose members are user or group emails (nested groups allowed)."""
        with self.lock:
            self._groups[email.lower()] = [member.lower() for member in members]

    def set_calendar_enabled(self, email: str, enabled: bool) -> None:
        """False: Google Calendar is turned off for the user (Admin console → Apps → Calendar): every Calendar call
        as the user is answered 403 `notACalendarUser`, also inside a batch."""
        with self.lock:
            self._user(email).calendar_enabled = enabled

    def set_user_rate_limited(self, email: str, limited: bool) -> None:
        """True: the user's per-user quota is spent: Calendar calls as the user get 403 `userRateLimitExceeded`
        (each part of a batch counts against its own user's quota)."""
        with self.lock:
            self._user(email).rate_limited = limited

    def grant_scopes(self, scopes: Iterable[str] | None) -> None:
        """The scopes domain-wide delegation allows (None: any). Asking for others gets `unauthorized_client`."""
        with self.lock:
            self._granted_scopes = None if scopes is None else frozenset(scopes)

    def add_service_account(self, client_email: str, client_id: str) -> None:
        """A service account (its key's `client_email` and `client_id`) whose tokens follow per-domain
        delegation: a domain's admin must authorise its client id for the scopes (`authorise_client`)."""
        with self.lock:
            self._service_accounts[client_email.lower()] = client_id

    def authorise_client(self, domain: str, client_id: str, scopes: Iterable[str] | None) -> None:
        """Google Admin → Security → API controls → Domain-wide delegation of `domain`: the client id may act
        for the domain's users with `scopes` (None: remove the entry). Asking for a scope not listed, or acting
        in a domain that has not listed the client, gets `unauthorized_client`, as Google answers."""
        with self.lock:
            if scopes is None:
                self._delegations.pop((domain.lower(), client_id), None)
            else:
                self._delegations[(domain.lower(), client_id)] = frozenset(scopes)

    def revoke_key(self, private_key_id: str) -> None:
        """Tokens signed with this key id are refused with `invalid_grant: Invalid JWT Signature.`."""
        with self.lock:
            self._revoked_keys.add(private_key_id)

    def put_event(self, email: str, event: SimEvent) -> None:
        """Create or replace an event by id; sync tokens and watch channels see the change."""
        if not isinstance(event, SimEvent):
            raise TypeError(f"put_event takes a SimEvent, not {type(event).__name__}")
        with self.lock:
            calendar = self._calendar(email)
            previous = calendar.get(event.id)
            now = utc_now()
            self._version += 1
            calendar[event.id] = EventRecord(event, self._version, previous.created if previous else now, now)
        self._notify(email)

    def delete_event(self, email: str, event_id: str) -> None:
        with self.lock:
            calendar = self._calendar(email)
            if event_id not in calendar:
                raise LookupError(f"user {email} has no event {event_id!r}")
            del calendar[event_id]
        self._notify(email)

    def events(self, email: str) -> list[SimEvent]:
        with self.lock:
            return [record.event for record in self._calendar(email).values()]

    def channels(self) -> list[dict[str, Any]]:
        with self.lock:
            return [channel.to_json() for channel in self._channels.values()]

    def calendar_reads(self) -> dict[str, int]:
        """`events.list` calls served (inside batches too) by kind: `full` (a window, no sync token), `sync` (with a
        `syncToken`), `page` (a `pageToken`)."""
        with self.lock:
            return dict(self._calendar_reads)

    def reset_calendar_reads(self) -> None:
        with self.lock:
            self._calendar_reads.clear()

    def expire_sync_tokens(self) -> None:
        """Forget every sync token: the next call with one gets 410 fullSyncRequired."""
        with self.lock:
            self._sync_states.clear()

    def flush_notifications(self, timeout: float = 5.0) -> bool:
        """Wait until every queued notification was posted; False if `timeout` seconds passed first."""
        with self._pending_cond:
            return self._pending_cond.wait_for(lambda: self._pending == 0, timeout)

    def notification_log(self) -> list[Notification]:
        with self._pending_cond:
            return list(self._deliveries)

    def _user(self, email: str) -> GoogleUser:
        user = self._users.get(email.lower())
        if user is None:
            raise LookupError(f"unknown user {email!r}: call add_user first")
        return user

    def _calendar(self, email: str) -> dict[str, EventRecord]:
        if email.lower() not in self._users:
            raise LookupError(f"unknown user {email!r}: call add_user first")
        return self._events[email.lower()]

    # notifications

    def _notify(self, email: str) -> None:
        now_ms = int(utc_now().timestamp() * 1000)
        with self.lock:
            targets = [c for c in self._channels.values() if c.user == email.lower() and c.expiration_ms > now_ms]
            for channel in targets:
                channel.messages += 1
                self._post(channel, "exists")

    def _post(self, channel: Channel, state: str) -> None:
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Token": channel.token,
            "X-Goog-Channel-Expiration": dt.datetime.fromtimestamp(channel.expiration_ms / 1000, dt.UTC).strftime(
                "%a, %d %b %Y %H:%M:%S GMT"
            ),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.to_json()["resourceUri"],
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(channel.messages),
        }
        with self._pending_cond:
            self._pending += 1
        self._outbox.put(Notification(channel.address, headers))

    def _deliver_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            request = urllib.request.Request(item.url, data=b"", headers=item.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    item.status = response.status
            except urllib.error.HTTPError as error:
                item.status = error.code
            except (OSError, ValueError) as error:
                item.error = str(error)
            with self._pending_cond:
                self._deliveries.append(item)
                self._pending -= 1
                self._pending_cond.notify_all()

    # token endpoint

    def _token(self, request: Request, match: re.Match[str]) -> Reply:
        form = request.form()
        if form.get("grant_type") != JWT_BEARER:
            return _token_error(400, "unsupported_grant_type", "Invalid grant_type.")
        try:
            header, claims = _decode_jwt(form.get("assertion", ""))
        except ValueError:
            return _token_error(400, "invalid_grant", "Invalid JWT: the assertion is not a JWT.")
        subject = str(claims.get("sub") or "").lower()
        scopes = frozenset(str(claims.get("scope") or "").split())
        with self.lock:
            if str(header.get("kid")) in self._revoked_keys:
                return _token_error(400, "invalid_grant", "Invalid JWT Signature.")
            if not subject:
                return _token_error(400, "invalid_scope", "The service account may not act without a subject here.")
            if subject not in self._users:
                return _token_error(400, "invalid_grant", "Invalid email or User ID")
            client_id = self._service_accounts.get(str(claims.get("iss") or "").lower())
            if client_id is not None:  # per-domain delegation of a registered service account
                allowed = self._delegations.get((subject.partition("@")[2], client_id), frozenset())
                refused = not scopes or not scopes <= allowed
            else:
                refused = self._granted_scopes is not None and not scopes <= self._granted_scopes
            if refused:
                return _token_error(
                    401,
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or client not authorized "
                    "for any of the scopes requested.",
                )
            token = f"ya29.sim-{uuid.uuid4().hex}"
            self._tokens[token] = (subject, scopes)
        return json_reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _caller(self, request: Request, scope_prefix: str) -> GoogleUser:
        token = request.bearer_token()
        with self.lock:
            grant = self._tokens.get(token or "")
            if grant is None:
                raise HttpError(401, "authError", "Request had invalid authentication credentials.")
            subject, scopes = grant
            if not any(scope.startswith(scope_prefix) for scope in scopes):
                raise HttpError(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
            return self._users[subject]

    def _own_calendar(self, request: Request, calendar_id: str) -> GoogleUser:
        user = self._caller(request, CALENDAR_SCOPE_PREFIX)
        if not user.calendar_enabled:
            raise HttpError(403, "notACalendarUser", "The user must be signed up for Google Calendar.")
        if user.rate_limited:
            raise HttpError(403, "userRateLimitExceeded", "User Rate Limit Exceeded")
        if calendar_id.lower() not in ("primary", user.email):
            raise HttpError(404, "notFound", "Not Found")
        return user

    # Calendar v3

    def _list_events(self, request: Request, match: re.Match[str]) -> Reply:
        user = self._own_calendar(request, match.group(1))
        query = request.query
        page_token = query.get("pageToken")
        with self.lock:
            kind = "page" if page_token else "sync" if query.get("syncToken") else "full"
            self._calendar_reads[kind] += 1
            if page_token:
                page = self._pages.pop(page_token, None)
                if page is None:
                    raise HttpError(400, "invalid", "Invalid page token value.")
                return self._page_reply(page, user, query)
            sync_token = query.get("syncToken")
            if sync_token:
                if "timeMin" in query or "timeMax" in query:
                    raise HttpError(400, "invalid", "Sync token cannot be used with timeMin or timeMax.")
                state = self._sync_states.get(sync_token)
                if state is None or state.user != user.email:
                    raise HttpError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.")
                window = state.window
                instances = self._instances(user, window)
                zone = _zone(query, user)
                items = [_event_json(i, user, zone) for i in instances if i.fingerprint != state.snapshot.get(i.id)]
                current = {i.id for i in instances}
                gone = [old for old in state.snapshot if old not in current]
                items += [{"kind": "calendar#event", "id": old, "status": "cancelled"} for old in gone]
            else:
                window = (_bound(query, "timeMin", dt.datetime.min), _bound(query, "timeMax", dt.datetime.max))
                instances = self._instances(user, window)
                items = [_event_json(i, user, _zone(query, user)) for i in instances]
            new_token = f"sync-{uuid.uuid4().hex}"
            self._sync_states[new_token] = SyncState(user.email, window, {i.id: i.fingerprint for i in instances})
            tokens = self._user_sync_tokens.setdefault(user.email, collections.deque())
            tokens.append(new_token)
            while len(tokens) > SYNC_TOKENS_KEPT:  # a client uses its newest token; memory stays bounded
                self._sync_states.pop(tokens.popleft(), None)
            return self._page_reply(_Page(items, new_token), user, query)

    def _page_reply(self, page: _Page, user: GoogleUser, query: Mapping[str, str]) -> Reply:
        try:
            size = max(1, min(2500, int(query.get("maxResults", "250"))))
        except ValueError:
            raise HttpError(400, "invalid", "Invalid value for maxResults.") from None
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "summary": user.email,
            "timeZone": user.timezone,
            "items": page.items[:size],
        }
        if len(page.items) > size:
            token = f"page-{uuid.uuid4().hex}"
            self._pages[token] = _Page(page.items[size:], page.sync_token)
            body["nextPageToken"] = token
        elif page.sync_token:
            body["nextSyncToken"] = page.sync_token
        return json_reply(200, body)

    def _instances(self, user: GoogleUser, window: tuple[dt.datetime, dt.datetime]) -> list[Instance]:
        instances: list[Instance] = []
        for record in self._events[user.email].values():
            instances.extend(i for i in expand(record, user.zone) if i.overlaps(*window))
        return sorted(instances, key=lambda i: (i.start, i.id))

    def _watch(self, request: Request, match: re.Match[str]) -> Reply:
        user = self._own_calendar(request, match.group(1))
        try:
            body = request.json()
        except ValueError as error:
            raise HttpError(400, "parseError", str(error)) from None
        if not isinstance(body, dict) or not body.get("id") or not body.get("address"):
            raise HttpError(400, "required", "A channel needs an id and an address.")
        if not CHANNEL_ID.fullmatch(str(body["id"])):
            raise HttpError(400, "invalid", "Invalid channel id: at most 64 of the characters [A-Za-z0-9-_+/=].")
        if body.get("type") not in ("web_hook", "webhook"):
            raise HttpError(400, "invalid", "Unsupported channel type; use web_hook.")
        now_ms = int(utc_now().timestamp() * 1000)
        try:
            wanted = int(body.get("expiration") or now_ms + DEFAULT_CHANNEL_SECONDS * 1000)
        except (TypeError, ValueError):
            raise HttpError(400, "invalid", "Invalid channel expiration.") from None
        expiration = min(wanted, now_ms + MAX_CHANNEL_SECONDS * 1000)
        with self.lock:
            if body["id"] in self._channels:
                raise HttpError(400, "channelIdNotUnique", f"Channel id {body['id']} not unique")
            channel = Channel(
                id=str(body["id"]),
                resource_id=f"res-{uuid.uuid5(uuid.NAMESPACE_URL, user.email).hex[:20]}",
                user=user.email,
                address=str(body["address"]),
                token=str(body.get("token") or ""),
                expiration_ms=expiration,
            )
            self._channels[channel.id] = channel
            self._post(channel, "sync")
        return json_reply(200, channel.to_json())

    def _stop_channel(self, request: Request, match: re.Match[str]) -> Reply:
        user = self._caller(request, CALENDAR_SCOPE_PREFIX)
        try:
            body = request.json()
        except ValueError as error:
            raise HttpError(400, "parseError", str(error)) from None
        channel_id = str(body.get("id") if isinstance(body, dict) else "")
        with self.lock:
            channel = self._channels.get(channel_id)
            if channel is None or channel.user != user.email or channel.resource_id != body.get("resourceId"):
                raise HttpError(404, "notFound", f"Channel '{channel_id}' not found for project 'sim'")
            del self._channels[channel_id]
        return Reply(204, b"", "")

    # Directory v1

    def _members(self, request: Request, match: re.Match[str]) -> Reply:
        caller = self._caller(request, DIRECTORY_SCOPE_PREFIX)
        if not caller.admin:
            raise HttpError(403, "forbidden", "Not Authorized to access this resource/api")
        key = match.group(1).lower()
        derived = request.query.get("includeDerivedMembership") == "true"
        with self.lock:
            if key not in self._groups:
                raise HttpError(404, "notFound", "Resource Not Found: groupKey")
            members = self._resolve(key, derived, set())
        try:
            offset = int(request.query.get("pageToken") or 0)
            size = max(1, min(200, int(request.query.get("maxResults", "200"))))
        except ValueError:
            raise HttpError(400, "invalid", "Invalid paging value.") from None
        body: dict[str, Any] = {"kind": "admin#directory#members", "members": members[offset : offset + size]}
        if offset + size < len(members):
            body["nextPageToken"] = str(offset + size)
        return json_reply(200, body)

    def _list_users(self, request: Request, match: re.Match[str]) -> Reply:
        """`users.list` of the one simulated domain (`customer=my_customer` or `domain=…`), sorted by address."""
        caller = self._caller(request, USER_SCOPE_PREFIX)
        if not (request.query.get("customer") or request.query.get("domain")):
            raise HttpError(400, "badRequest", "Bad Request: either customer or domain is required.")
        if request.query.get("viewType", "admin_view") == "admin_view" and not caller.admin:
            raise HttpError(403, "forbidden", "Not Authorized to access this resource/api")
        with self.lock:
            users = sorted(self._users.values(), key=lambda user: user.email)
        try:
            offset = int(request.query.get("pageToken") or 0)
            size = max(1, min(500, int(request.query.get("maxResults", "100"))))
        except ValueError:
            raise HttpError(400, "invalid", "Invalid paging value.") from None
        body: dict[str, Any] = {
            "kind": "admin#directory#users",
            "users": [_user_json(user) for user in users[offset : offset + size]],
        }
        if offset + size < len(users):
            body["nextPageToken"] = str(offset + size)
        return json_reply(200, body)

    def _resolve(self, key: str, derived: bool, seen: set[str]) -> list[dict[str, Any]]:
        seen.add(key)
        out: list[dict[str, Any]] = []
        for member in self._groups[key]:
            if member in self._groups:
                if derived:
                    if member not in seen:
                        out.extend(self._resolve(member, derived, seen))
                    continue
                out.append(_member_json(member, "GROUP"))
            elif member in self._users and member not in seen:
                seen.add(member)
                out.append(_member_json(member, "USER"))
        return out

    # batch

    def _batch(self, request: Request, match: re.Match[str]) -> Reply:
        content_type = request.header("content-type")
        if not content_type.startswith("multipart/mixed"):
            raise HttpError(400, "badRequest", "A batch request must be multipart/mixed.")
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body
        )
        boundary = f"batch_{uuid.uuid4().hex}"
        out: list[str] = []
        parts: list[Any] = message.get_payload() if message.is_multipart() else []  # type: ignore[assignment]
        if len(parts) > MAX_BATCH_CALLS:
            raise HttpError(400, "badRequest", f"A batch request may hold at most {MAX_BATCH_CALLS} calls.")
        parts = list(parts)
        with self.lock:
            self._batch_rng.shuffle(parts)  # "The server might perform your calls in any order"
        for part in parts:
            content_id = str(part["Content-ID"] or "<+ 0>")
            inner = part.get_payload()
            if isinstance(inner, bytes):
                inner = inner.decode("utf-8", "replace")
            fault = self.draw_fault(("429", "503"))  # each call of a batch counts as a request of its own
            reply = self.fault_reply(fault) if fault else self.dispatch(_inner_request(str(inner), request))
            reason = _REASONS.get(reply.status, "Unknown")
            lines = f"HTTP/1.1 {reply.status} {reason}\r\n"
            if reply.content_type:
                lines += f"Content-Type: {reply.content_type}\r\n"
            lines += "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items())
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id[1:]}\r\n\r\n"
                f"{lines}\r\n{reply.body.decode('utf-8')}\r\n"
            )
        out.append(f"--{boundary}--\r\n")
        return Reply(200, "".join(out).encode("utf-8"), f"multipart/mixed; boundary={boundary}")

    def error_reply(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        document = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"domain": "global", "reason": code, "message": message}],
            }
        }
        return json_reply(status, document, headers)


# --- helpers ------------------------------------------------------------------------------------------------------


def _token_error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description})


def _decode_jwt(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError("not a JWT") from error
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not a JWT")
    return header, claims


def _bound(query: Mapping[str, str], name: str, default: dt.datetime) -> dt.datetime:
    value = query.get(name)
    if value is None:
        return default.replace(tzinfo=dt.UTC)
    moment = parse_datetime(value)
    if moment is None or moment.utcoffset() is None:
        raise HttpError(400, "badRequest", f"Bad Request: {name} must be an RFC 3339 time with an offset.")
    return moment


def _zone(query: Mapping[str, str], user: GoogleUser) -> ZoneInfo:
    name = query.get("timeZone")
    if not name:
        return user.zone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HttpError(400, "invalid", f"Invalid time zone: {name}") from None


def _event_json(instance: Instance, user: GoogleUser, zone: ZoneInfo) -> dict[str, Any]:
    event = instance.record.event
    if event.all_day:
        first = instance.start.astimezone(user.zone).date()
        days = (event.end - event.start).days  # type: ignore[operator]
        start: dict[str, str] = {"date": first.isoformat()}
        end: dict[str, str] = {"date": (first + dt.timedelta(days=days)).isoformat()}
    else:
        start = {"dateTime": instance.start.astimezone(zone).isoformat(), "timeZone": zone.key}
        end = {"dateTime": instance.end.astimezone(zone).isoformat(), "timeZone": zone.key}
    organizer = event.response == "organizer"
    document: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": f'"{instance.record.version}"',
        "id": instance.id,
        "status": "cancelled" if event.cancelled else "confirmed",
        "created": instance.record.created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "updated": instance.record.modified.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "summary": event.subject,
        "start": start,
        "end": end,
        "eventType": {"oof": "outOfOffice", "workingElsewhere": "workingLocation"}.get(event.show_as, "default"),
        "visibility": "private" if event.private else "default",
        "organizer": {"email": user.email if organizer else "organizer@example.invalid", "self": organizer},
        "creator": {"email": user.email if organizer else "organizer@example.invalid", "self": organizer},
    }
    if event.show_as == "free":
        document["transparency"] = "transparent"
    if not organizer:
        document["attendees"] = [
            {"email": user.email, "self": True, "responseStatus": RESPONSE_TO_GOOGLE[event.response]},
            {"email": "organizer@example.invalid", "organizer": True, "responseStatus": "accepted"},
        ]
    if instance.series_master_id:
        document["recurringEventId"] = instance.series_master_id
        document["originalStartTime"] = start
    return document


def _member_json(email_address: str, kind: str) -> dict[str, Any]:
    """A member as `members.list` documents it: no name (names come from `users.list` / `users.get`)."""
    member_id = uuid.uuid5(uuid.NAMESPACE_DNS, email_address).hex[:21]
    return {
        "kind": "admin#directory#member",
        "etag": f'"{member_id}"',
        "id": member_id,
        "email": email_address,
        "role": "MEMBER",
        "type": kind,
        "status": "ACTIVE",
        "delivery_settings": "ALL_MAIL",
    }


def _user_json(user: GoogleUser) -> dict[str, Any]:
    """A user of `users.list` (basic projection), with the name split as Google stores it."""
    given, _space, family = user.name.partition(" ")
    user_id = uuid.uuid5(uuid.NAMESPACE_DNS, user.email).hex[:21]
    return {
        "kind": "admin#directory#user",
        "id": user_id,
        "etag": f'"{user_id}"',
        "primaryEmail": user.email,
        "name": {"givenName": given, "familyName": family, "fullName": user.name},
        "isAdmin": user.admin,
        "suspended": False,
        "orgUnitPath": "/",
    }


def _inner_request(inner: str, outer: Request) -> Request:
    """One part of a batch as an ordinary request; the part's own Authorization wins over the outer one."""
    head, _, body = inner.replace("\r\n", "\n").partition("\n\n")
    request_line, *header_lines = head.strip("\n").split("\n")
    method, target, *_ = request_line.split(" ")
    headers = {"authorization": outer.header("authorization")}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    parts = urlsplit(target)
    return Request(
        method=method,
        path=unquote(parts.path),
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        body=body.encode("utf-8"),
    )
