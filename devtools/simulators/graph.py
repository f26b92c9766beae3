"""Microsoft Graph v1.0 look-alike: group members, calendarView (+ delta), $batch and change notifications.

Shapes, paging links and error bodies follow Microsoft's public Graph v1.0 reference. Bearer tokens come
from the login simulator and carry the tenant's application permissions; a token only sees its own
tenant's users and groups. Tests script the directory and the mailboxes through the public methods
(`add_tenant`, `add_user`, `add_group`, `put_event`, …), which are thread-safe.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime as dt
import json
import random
import re
import secrets
import ssl
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devtools.simulators.base import (
    FaultSettings,
    HttpError,
    Reply,
    Request,
    SimServer,
    empty_reply,
    json_reply,
    make_fault_settings,
    parse_datetime,
    route,
    utc_now,
)
from devtools.simulators.events import (
    EventRecord,
    Instance,
    SimEvent,
    TimeZoneNotSupported,
    event_json,
    expand,
    removed_json,
    zone_from_prefer,
)
from devtools.simulators.login import AccessGrant, LoginSimulator
from devtools.simulators.webhooks import (
    MAX_EXPIRATION_MINUTES,
    VALIDATION_TIMEOUT_SECONDS,
    Delivery,
    Notifier,
    Subscription,
    is_loopback,
    opener,
    validate_endpoint,
)

DEFAULT_PERMISSIONS = ("Calendars.Read", "GroupMember.Read.All")
CALENDAR_PERMISSIONS = frozenset({"Calendars.Read", "Calendars.ReadWrite"})
DIRECTORY_PERMISSIONS = frozenset(
    {
        "GroupMember.Read.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
USER_PERMISSIONS = frozenset(
    {
        "User.Read.All",
        "User.ReadBasic.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)

BATCH_LIMIT = 20
BATCH_ITEM_FAULT_KINDS = ("429", "503")
MAILBOX_CONCURRENCY = 4  # Outlook's concurrent requests per app and mailbox (throttling-limits.md)
# What a call on a mailbox answers when `set_mailbox_error` switched it: Graph's code → (status, Graph's message).
MAILBOX_ERRORS = {
    # auth-limit-mailbox-access.md: the mailbox is outside an application access policy (or RBAC for Applications)
    "ErrorAccessDenied": (403, "Access to OData is disabled."),
    # no Exchange Online mailbox: unlicensed, inactive, soft-deleted or on-premises
    "MailboxNotEnabledForRESTAPI": (404, "The mailbox is either inactive, soft-deleted, or is hosted on-premise."),
    # the user (and so the mailbox) does not exist
    "ErrorInvalidUser": (404, "The requested user '{user}' is invalid."),
}
DELTA_TOKENS_KEPT = 16  # per mailbox: delta and skip tokens older than the newest 16 are forgotten
CALENDAR_PAGE = (10, 1000)  # default and largest page of calendarView and its delta
MEMBER_PAGE = (100, 999)  # default and largest page of group members
CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")

USER = r"/v1\.0/users/(?P<user>[^/]+)"
GROUP = r"/v1\.0/groups/(?P<group>[^/]+)"
SUBSCRIPTION = r"/v1\.0/subscriptions/(?P<subscription>[^/]+)"
EVENTS_RESOURCE = re.compile(r"/?users/(?P<user>[^/]+)/events", re.IGNORECASE)


@dataclass(frozen=True)
class GraphUser:
    """A user with a mailbox; `timezone` is the mailbox's zone (all-day events are midnight there).

    `user_type` "Guest" is a B2B guest: a user to the directory (the `microsoft.graph.user` cast keeps it) whose
    mailbox lives in its home tenant, so its calendar here answers MailboxNotEnabledForRESTAPI.
    """

    id: str
    tenant_id: str
    email: str
    display_name: str
    timezone: str
    user_type: str = "Member"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_json(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.user",
            "id": self.id,
            "displayName": self.display_name,
            "mail": self.email,
            "userPrincipalName": self.email,
            "userType": self.user_type,
        }


@dataclass(frozen=True)
class GraphDirectoryObject:
    """A group member that is neither a user nor a group: a device or an organisational contact."""

    id: str
    tenant_id: str
    display_name: str
    odata_type: str  # "#microsoft.graph.device" or "#microsoft.graph.orgContact"
    mail: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"@odata.type": self.odata_type, "id": self.id, "displayName": self.display_name}
        if self.odata_type == "#microsoft.graph.orgContact":
            document["mail"] = self.mail
        return document


@dataclass(frozen=True)
class GraphGroup:
    """A group; `member_ids` name users, devices, org contacts or other groups of the same tenant."""

    id: str
    tenant_id: str
    display_name: str
    member_ids: tuple[str, ...]
    mail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.group",
            "id": self.id,
            "displayName": self.display_name,
            "mail": self.mail,
        }

    def matches_search(self, term: str) -> bool:
        """`$search="displayName:term"`: a word of the display name (split on spaces and punctuation, like
        Graph's tokenizer) starts with the term, case-insensitively (search-query-parameter.md)."""
        words = [word for word in re.split(r"[\s\-_.,;:/()]+", self.display_name.casefold()) if word]
        wanted = term.casefold().strip()
        return bool(wanted) and (
            any(word.startswith(wanted) for word in words) or self.display_name.casefold().startswith(wanted)
        )


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class DeltaState:
    """What a `$deltatoken` stands for: the instances (and their fingerprints) the client has seen."""

    user_id: str
    window: Window
    snapshot: Mapping[str, str]


@dataclass(frozen=True)
class DeltaRound:
    """One delta answer being paged out: changed instances and removed ids, then the new state."""

    state: DeltaState
    entries: tuple[Instance | str, ...]


class GraphSimulator(SimServer):
    """`http://127.0.0.1:PORT/v1.0`."""

    name = "graph"

    def __init__(self, login: LoginSimulator, webhook_trust: ssl.SSLContext | None = None) -> None:
        """`webhook_trust`: the client TLS context for https webhooks (the hub's CA); system CAs without it."""
        super().__init__()
        self.login = login
        self.validation_timeout_seconds = VALIDATION_TIMEOUT_SECONDS
        self._http_on_loopback = False
        self._webhook_opener = opener(webhook_trust)
        self._tenants: set[str] = set()
        self._users: dict[str, GraphUser] = {}
        self._groups: dict[str, GraphGroup] = {}
        self._other_members: dict[str, GraphDirectoryObject] = {}
        self._mailbox_errors: dict[str, str] = {}
        self._mailbox_in_flight: dict[str, int] = {}
        self._mailbox_seconds = 0.0
        self._batch_item_retry_after = "1"
        self._batch_failed_dependency = False
        self._batch_order = random.Random()
        self._events: dict[str, dict[str, EventRecord]] = {}
        self._version = 0
        self._delta_states: dict[str, DeltaState] = {}
        self._delta_cursors: dict[str, tuple[DeltaRound, int]] = {}
        self._delta_tokens: dict[str, collections.deque[str]] = {}  # each user's newest tokens, oldest first
        self._calendar_reads: collections.Counter[str] = collections.Counter()
        self._subscriptions: dict[str, Subscription] = {}
        self._batch_item_faults: FaultSettings | None = None
        self._notifier = Notifier(webhook_trust)
        self.routes = [
            route("GET", USER, self._get_user),
            route("GET", USER + r"/calendarView", self._calendar_view),
            route("GET", USER + r"/calendarView/delta", self._calendar_view_delta),
            route("GET", r"/v1\.0/groups", self._list_groups),
            route("GET", GROUP, self._get_group),
            route(
                "GET",
                GROUP + r"/(?P<relation>members|transitiveMembers)(?P<cast>/microsoft\.graph\.user)?",
                self._group_members,
            ),
            route("POST", r"/v1\.0/\$batch", self._batch),
            route("GET", r"/v1\.0/subscriptions", self._list_subscriptions),
            route("POST", r"/v1\.0/subscriptions", self._create_subscription),
            route("GET", SUBSCRIPTION, self._get_subscription),
            route("PATCH", SUBSCRIPTION, self._renew_subscription),
            route("DELETE", SUBSCRIPTION, self._delete_subscription),
            route("POST", SUBSCRIPTION + r"/reauthorize", self._reauthorize_subscription),
        ]

    def start(self) -> None:
        self._notifier.start()
        super().start()

    def stop(self) -> None:
        super().stop()
        self._notifier.stop()

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    # scripting the directory

    def add_tenant(
        self,
        tenant_id: str,
        client_id: str = "",
        client_secret: str = "",
        permissions: Iterable[str] = DEFAULT_PERMISSIONS,
        certificates: Iterable[str | bytes] = (),
    ) -> None:
        """Create a tenant (or add an app to it) and register the app with the login simulator. Without
        `client_id` the tenant has no app yet: a multi-tenant app gets in by admin consent (login simulator)."""
        if client_id:
            self.login.add_app(tenant_id, client_id, client_secret, permissions, certificates)
        else:
            self.login.add_tenant(tenant_id)
        with self.lock:
            self._tenants.add(tenant_id)

    def add_user(
        self,
        tenant_id: str,
        user_id: str,
        email: str,
        display_name: str,
        timezone: str = "Europe/Oslo",
        user_type: str = "Member",
    ) -> None:
        """A member (or, with `user_type="Guest"`, a B2B guest without a mailbox in this tenant)."""
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"user {user_id}: unknown IANA time zone {timezone!r}") from error
        if user_type not in ("Member", "Guest"):
            raise ValueError(f"user {user_id}: user_type must be 'Member' or 'Guest', not {user_type!r}")
        with self.lock:
            self._require_tenant(tenant_id)
            self._users[user_id] = GraphUser(user_id, tenant_id, email, display_name, timezone, user_type)
            self._events.setdefault(user_id, {})

    def add_device(self, tenant_id: str, device_id: str, display_name: str) -> None:
        """A device (a group member that is no user: the `microsoft.graph.user` cast leaves it out)."""
        self._add_other_member(GraphDirectoryObject(device_id, tenant_id, display_name, "#microsoft.graph.device"))

    def add_org_contact(self, tenant_id: str, contact_id: str, display_name: str, mail: str) -> None:
        """An organisational contact (mail-enabled, but no user and no mailbox in the tenant)."""
        contact = GraphDirectoryObject(contact_id, tenant_id, display_name, "#microsoft.graph.orgContact", mail)
        self._add_other_member(contact)

    def _add_other_member(self, member: GraphDirectoryObject) -> None:
        with self.lock:
            self._require_tenant(member.tenant_id)
            self._other_members[member.id] = member

    def add_group(
        self, tenant_id: str, group_id: str, display_name: str, member_ids: Iterable[str], mail: str | None = None
    ) -> None:
        """Members may be ids of users, devices, org contacts or groups (nested; `transitiveMembers` resolves them)."""
        with self.lock:
            self._require_tenant(tenant_id)
            self._groups[group_id] = GraphGroup(group_id, tenant_id, display_name, tuple(member_ids), mail)

    def _require_tenant(self, tenant_id: str) -> None:
        if tenant_id not in self._tenants:
            raise LookupError(f"unknown tenant {tenant_id!r}: call add_tenant first")

    # scripting mailboxes

    def put_event(self, user_id: str, event: SimEvent) -> None:
        """Create or replace an event by id; delta queries and subscriptions see the change."""
        if not isinstance(event, SimEvent):
            raise TypeError(f"put_event takes a SimEvent, not {type(event).__name__}")
        with self.lock:
            mailbox = self._mailbox_events(user_id)
            previous = mailbox.get(event.id)
            now = utc_now()
            self._version += 1
            record = EventRecord(event, self._version, previous.created if previous else now, now)
            mailbox[event.id] = record
        self._notify(user_id, "updated" if previous else "created", event.id, record.change_key)

    def delete_event(self, user_id: str, event_id: str) -> None:
        with self.lock:
            mailbox = self._mailbox_events(user_id)
            if event_id not in mailbox:
                raise LookupError(f"user {user_id} has no event {event_id!r}")
            record = mailbox.pop(event_id)
        self._notify(user_id, "deleted", event_id, record.change_key)

    def events(self, user_id: str) -> list[SimEvent]:
        """The scripted events of a mailbox, as given."""
        with self.lock:
            return [record.event for record in self._mailbox_events(user_id).values()]

    def _mailbox_events(self, user_id: str) -> dict[str, EventRecord]:
        if user_id not in self._users:
            raise LookupError(f"unknown user {user_id!r}: call add_user first")
        return self._events[user_id]

    def expire_delta_tokens(self) -> None:
        """Forget every delta and skip token: the next call with one gets 410 SyncStateNotFound."""
        with self.lock:
            self._delta_states.clear()
            self._delta_cursors.clear()
            self._delta_tokens.clear()

    def calendar_reads(self) -> dict[str, int]:
        """Calendar requests served (inside `$batch` too) by kind: `calendarView`, `delta_initial` (a delta round
        started without a token), `delta` (with a `$deltatoken`), `delta_page` (a `$skiptoken` page)."""
        with self.lock:
            return dict(self._calendar_reads)

    def reset_calendar_reads(self) -> None:
        with self.lock:
            self._calendar_reads.clear()

    def set_batch_item_faults(
        self, rate: float | None, kinds: Iterable[str] = BATCH_ITEM_FAULT_KINDS, seed: int | None = None
    ) -> None:
        """Faults for the inner responses of `$batch` only; `rate=None` goes back to following `set_faults`."""
        settings = None if rate is None else make_fault_settings(rate, kinds, seed)
        with self.lock:
            self._batch_item_faults = settings

    def set_mailbox_error(self, user_id: str, code: str | None) -> None:
        """Make every call on one mailbox (reads, subscriptions) fail as Graph does (a key of MAILBOX_ERRORS); None
        makes it work again."""
        if code is not None and code not in MAILBOX_ERRORS:
            raise ValueError(f"code must be one of {tuple(MAILBOX_ERRORS)} or None")
        with self.lock:
            if code is None:
                self._mailbox_errors.pop(user_id, None)
            else:
                self._mailbox_errors[user_id] = code

    def set_mailbox_seconds(self, seconds: float) -> None:
        """How long each mailbox read holds one of the mailbox's MAILBOX_CONCURRENCY slots (default 0).

        More requests than that for one mailbox at once are answered 429 ApplicationThrottled.
        """
        with self.lock:
            self._mailbox_seconds = max(0.0, seconds)

    def set_batch_item_retry_after(self, seconds: int) -> None:
        """The Retry-After of inner 429 faults of `$batch` (default 1 s); Outlook asks for more at times."""
        with self.lock:
            self._batch_item_retry_after = str(max(0, int(seconds)))

    def set_batch_failed_dependency(self, enabled: bool) -> None:
        """Answer a `$batch` with an inner 429 as a whole with 424 Failed Dependency (the responses still inside)."""
        with self.lock:
            self._batch_failed_dependency = enabled

    # subscriptions, for tests

    def subscriptions(self) -> list[dict[str, Any]]:
        """The active (unexpired) subscriptions, as Graph shows them."""
        with self.lock:
            return [subscription.to_json() for subscription in self._active_subscriptions()]

    def allow_http_webhooks_on_loopback(self, allowed: bool = True) -> None:
        """Lab switch: accept http notification URLs on 127.0.0.1/localhost/::1 (Graph accepts https only).

        For the demo and tests whose webhook is Django's plain-http server; off by default."""
        with self.lock:
            self._http_on_loopback = allowed

    def expire_subscription(self, subscription_id: str) -> None:
        """Let a subscription run out now, as one not renewed in time: Graph deletes it and says nothing."""
        with self.lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None:
                raise LookupError(f"no active subscription {subscription_id!r}")
            subscription.expiration = utc_now()

    def hold_notifications(self) -> None:
        """Keep notifications back; `release_notifications` then posts them, several subscriptions' in one POST."""
        self._notifier.hold()

    def release_notifications(self) -> None:
        self._notifier.release()

    def set_notification_retries(self, delays: Iterable[float]) -> None:
        """Seconds to wait before each new attempt of a notification POST not answered 2xx; () turns retries off."""
        self._notifier.set_retry_delays(tuple(delays))

    def send_lifecycle(self, subscription_id: str, lifecycle_event: str) -> None:
        """Queue a lifecycle notification; `subscriptionRemoved` also ends the subscription (Graph removed it)."""
        if lifecycle_event not in LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycle_event must be one of {LIFECYCLE_EVENTS}")
        with self.lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None:
                raise LookupError(f"no active subscription {subscription_id!r}")
            if subscription.lifecycle_url is None:
                raise ValueError(f"subscription {subscription_id} has no lifecycleNotificationUrl")
            if lifecycle_event == "subscriptionRemoved":
                del self._subscriptions[subscription_id]
        document = {"value": [subscription.lifecycle_notification(lifecycle_event)]}
        self._notifier.post(subscription.lifecycle_url, document)

    def flush_notifications(self, timeout: float = 5.0) -> bool:
        """Wait until every queued notification was posted; False if `timeout` seconds passed first."""
        return self._notifier.flush(timeout)

    def notification_log(self) -> list[Delivery]:
        """Every notification POST so far, with the webhook's status (None when unreachable)."""
        return self._notifier.deliveries()

    def _active_subscriptions(self) -> list[Subscription]:
        now = utc_now()
        for subscription_id in [key for key, sub in self._subscriptions.items() if sub.expiration <= now]:
            del self._subscriptions[subscription_id]
        return list(self._subscriptions.values())

    def _notify(self, user_id: str, change_type: str, event_id: str, change_key: str) -> None:
        with self.lock:
            targets = [
                sub
                for sub in self._active_subscriptions()
                if sub.user_id == user_id and change_type in sub.change_types
            ]
        for subscription in targets:
            document = {"value": [subscription.notification(change_type, event_id, change_key)]}
            self._notifier.post(subscription.notification_url, document)

    # authorization and lookups

    def _authorize(self, request: Request, needed: frozenset[str], denied_code: str) -> AccessGrant:
        token = request.bearer_token()
        if token is None:
            raise HttpError(401, "InvalidAuthenticationToken", "Access token is empty.", _challenge())
        issued = self.login.grant(token)
        if issued is None:
            raise HttpError(401, "InvalidAuthenticationToken", "Access token validation failure.", _challenge())
        if issued.expired:
            raise HttpError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", _challenge()
            )
        if not issued.permissions & needed:
            message = (
                "Access is denied. Check credentials and try again."
                if denied_code == "ErrorAccessDenied"
                else "Insufficient privileges to complete the operation."
            )
            raise HttpError(403, denied_code, message)
        return issued

    def _mailbox(self, grant: AccessGrant, key: str) -> GraphUser:
        """A user of the caller's tenant by id or userPrincipalName; 404 ErrorInvalidUser otherwise."""
        with self.lock:
            user = self._users.get(key) or next(
                (user for user in self._users.values() if user.email.lower() == key.lower()), None
            )
        if user is None or user.tenant_id != grant.tenant_id:
            raise HttpError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
        with self.lock:
            code = self._mailbox_errors.get(user.id)
        if code is None and user.user_type == "Guest":
            code = "MailboxNotEnabledForRESTAPI"
        if code is not None:
            status, message = MAILBOX_ERRORS[code]
            raise HttpError(status, code, message.format(user=key))
        return user

    @contextlib.contextmanager
    def _mailbox_turn(self, user: GraphUser) -> Iterator[None]:
        """One of the mailbox's MAILBOX_CONCURRENCY slots for the length of a read; 429 when none is free."""
        with self.lock:
            in_flight = self._mailbox_in_flight.get(user.id, 0)
            if in_flight >= MAILBOX_CONCURRENCY:
                raise HttpError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "1"},
                )
            self._mailbox_in_flight[user.id] = in_flight + 1
            hold = self._mailbox_seconds
        try:
            self.pause(hold)
            yield
        finally:
            with self.lock:
                left = self._mailbox_in_flight[user.id] - 1
                if left:
                    self._mailbox_in_flight[user.id] = left
                else:
                    del self._mailbox_in_flight[user.id]

    def _instances(self, user: GraphUser, window: Window) -> list[Instance]:
        with self.lock:
            records = list(self._events[user.id].values())
        instances = [
            instance
            for record in records
            for instance in expand(record, user.zone)
            if instance.overlaps(window.start, window.end)
        ]
        return sorted(instances, key=lambda instance: (instance.start, instance.end, instance.id))

    # users and groups

    def _get_user(self, request: Request, match: re.Match[str]) -> Reply:
        grant = self._authorize(request, USER_PERMISSIONS, "Authorization_RequestDenied")
        with self.lock:
            user = self._users.get(match["user"])
        if user is None or user.tenant_id != grant.tenant_id:
            raise _directory_not_found(match["user"])
        return json_reply(200, _select(user.to_json(), request))

    def _list_groups(self, request: Request, match: re.Match[str]) -> Reply:
        """`GET /groups` (group-list.md) with `$search="displayName:…"` (an advanced query: 400 without
        `ConsistencyLevel: eventual`, aad-advanced-queries.md), `$filter=startswith(displayName,'…')`,
        `$orderby=displayName`, `$top`, `$select` and `$count=true`."""
        grant = self._authorize(request, DIRECTORY_PERMISSIONS, "Authorization_RequestDenied")
        query = request.query
        eventual = request.header("consistencylevel").lower() == "eventual"
        with self.lock:
            groups = [group for group in self._groups.values() if group.tenant_id == grant.tenant_id]
        search = query.get("$search")
        if search is not None:
            if not eventual:
                raise HttpError(
                    400,
                    "Request_UnsupportedQuery",
                    "Request with $search query parameter only works through MSGraph with a special request header: "
                    "'ConsistencyLevel: eventual'",
                )
            found = re.fullmatch(r'"displayName:(?P<term>[^"]*)"', search.strip())
            if found is None:
                raise HttpError(400, "Request_UnsupportedQuery", f"Unsupported or invalid search clause: {search!r}.")
            groups = [group for group in groups if group.matches_search(found["term"])]
        raw_filter = query.get("$filter")
        if raw_filter is not None:
            found = re.fullmatch(r"startswith\(displayName,\s*'(?P<prefix>(?:[^']|'')*)'\)", raw_filter.strip())
            if found is None:
                raise HttpError(400, "Request_UnsupportedQuery", f"Unsupported query: $filter={raw_filter}.")
            prefix = found["prefix"].replace("''", "'").casefold()
            groups = [group for group in groups if group.display_name.casefold().startswith(prefix)]
        order = query.get("$orderby")
        if order and order.strip() not in ("displayName", "displayName asc"):
            raise HttpError(400, "Request_UnsupportedQuery", f"Sorting by {order!r} is not supported.")
        groups.sort(key=lambda group: group.display_name.casefold() if order else group.id)
        size = _page_size(request, MEMBER_PAGE)
        offset = _decode_skiptoken(query.get("$skiptoken"))
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#groups",
            "value": [_select(group.to_json(), request) for group in groups[offset : offset + size]],
        }
        if query.get("$count") == "true":
            if not eventual:
                raise HttpError(
                    400,
                    "Request_BadRequest",
                    "$count is not currently supported without the ConsistencyLevel: eventual header.",
                )
            body["@odata.count"] = len(groups)
        if offset + size < len(groups):
            body["@odata.nextLink"] = self._link(request, {"$skiptoken": _encode_skiptoken(offset + size)})
        return json_reply(200, body)

    def _get_group(self, request: Request, match: re.Match[str]) -> Reply:
        grant = self._authorize(request, DIRECTORY_PERMISSIONS, "Authorization_RequestDenied")
        return json_reply(200, _select(self._group(grant, match["group"]).to_json(), request))

    def _group(self, grant: AccessGrant, group_id: str) -> GraphGroup:
        with self.lock:
            group = self._groups.get(group_id)
        if group is None or group.tenant_id != grant.tenant_id:
            raise _directory_not_found(group_id)
        return group

    def _group_members(self, request: Request, match: re.Match[str]) -> Reply:
        grant = self._authorize(request, DIRECTORY_PERMISSIONS, "Authorization_RequestDenied")
        transitive = match["relation"].lower() == "transitivemembers"
        advanced = request.header("consistencylevel").lower() == "eventual" and request.query.get("$count") == "true"
        if match["cast"] and transitive and not advanced:
            # group-list-transitivemembers.md + aad-advanced-queries.md: an OData cast is an advanced query
            raise HttpError(
                400,
                "Request_UnsupportedQuery",
                (
                    "OData cast 'microsoft.graph.user' is not supported because the required parameters might be "
                    "missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to "
                    "https://aka.ms/graph-docs/advanced-queries for more information"
                ),
            )
        group = self._group(grant, match["group"])
        members = self._resolve_members(group, transitive=transitive)
        if match["cast"]:
            members = [member for member in members if isinstance(member, GraphUser)]
        size = _page_size(request, MEMBER_PAGE)
        offset = _decode_skiptoken(request.query.get("$skiptoken"))
        documents = [_select(member.to_json(), request) for member in members[offset : offset + size]]
        if match["cast"]:
            documents = [{key: value for key, value in doc.items() if key != "@odata.type"} for doc in documents]
        body: dict[str, Any] = {"@odata.context": f"{self.graph_url}/$metadata#directoryObjects", "value": documents}
        if advanced:
            body["@odata.count"] = len(members)
        if offset + size < len(members):
            body["@odata.nextLink"] = self._link(request, {"$skiptoken": _encode_skiptoken(offset + size)})
        return json_reply(200, body)

    def _resolve_members(
        self, group: GraphGroup, transitive: bool
    ) -> list[GraphUser | GraphGroup | GraphDirectoryObject]:
        """Direct members, or every member reachable through nested groups (each once)."""
        found: list[GraphUser | GraphGroup | GraphDirectoryObject] = []
        seen = {group.id}
        pending = list(group.member_ids)
        with self.lock:
            while pending:
                member_id = pending.pop(0)
                member = self._users.get(member_id) or self._groups.get(member_id) or self._other_members.get(member_id)
                if member_id in seen or member is None or member.tenant_id != group.tenant_id:
                    continue
                seen.add(member_id)
                found.append(member)
                if transitive and isinstance(member, GraphGroup):
                    pending.extend(member.member_ids)
        return found

    # calendarView

    def _calendar_view(self, request: Request, match: re.Match[str]) -> Reply:
        grant = self._authorize(request, CALENDAR_PERMISSIONS, "ErrorAccessDenied")
        user = self._mailbox(grant, match["user"])
        window = _window(request)
        prefer = _prefer_zone(request)
        size = _page_size(request, CALENDAR_PAGE)
        skip = _non_negative_int(request.query.get("$skip", "0"), "$skip")
        with self.lock:
            self._calendar_reads["calendarView"] += 1
        with self._mailbox_turn(user):
            instances = self._instances(user, window)
        documents = [
            _select(event_json(instance, user.zone, prefer), request) for instance in instances[skip : skip + size]
        ]
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#users('{user.id}')/calendarView",
            "value": documents,
        }
        if skip + size < len(instances):
            body["@odata.nextLink"] = self._link(request, {"$top": str(size), "$skip": str(skip + size)})
        return json_reply(200, body, _preference_applied(prefer))

    def _calendar_view_delta(self, request: Request, match: re.Match[str]) -> Reply:
        grant = self._authorize(request, CALENDAR_PERMISSIONS, "ErrorAccessDenied")
        user = self._mailbox(grant, match["user"])
        _prefer_zone(request)
        kind = (
            "delta"
            if "$deltatoken" in request.query
            else "delta_page"
            if "$skiptoken" in request.query
            else "delta_initial"
        )
        with self.lock:
            self._calendar_reads[kind] += 1
        with self._mailbox_turn(user):
            if "$deltatoken" in request.query:
                round_, position = self._delta_changes(user, request.query["$deltatoken"]), 0
            elif "$skiptoken" in request.query:
                round_, position = self._delta_cursor(user, request.query["$skiptoken"])
            else:
                round_, position = self._delta_initial(user, _window(request)), 0
        return self._delta_page(request, user, round_, position)

    def _delta_initial(self, user: GraphUser, window: Window) -> DeltaRound:
        current = self._instances(user, window)
        snapshot = {instance.id: instance.fingerprint for instance in current}
        return DeltaRound(DeltaState(user.id, window, snapshot), tuple(current))

    def _delta_changes(self, user: GraphUser, token: str) -> DeltaRound:
        with self.lock:
            state = self._delta_states.get(token)
        if state is None or state.user_id != user.id:
            raise _sync_state_not_found()
        latest = self._delta_initial(user, state.window)
        changed = [
            instance
            for instance in latest.entries
            if isinstance(instance, Instance) and state.snapshot.get(instance.id) != instance.fingerprint
        ]
        removed = [instance_id for instance_id in state.snapshot if instance_id not in latest.state.snapshot]
        return DeltaRound(latest.state, (*changed, *removed))

    def _delta_cursor(self, user: GraphUser, token: str) -> tuple[DeltaRound, int]:
        with self.lock:
            cursor = self._delta_cursors.get(token)
        if cursor is None or cursor[0].state.user_id != user.id:
            raise _sync_state_not_found()
        return cursor

    def _delta_page(self, request: Request, user: GraphUser, round_: DeltaRound, position: int) -> Reply:
        prefer = _prefer_zone(request)
        size = _page_size(request, CALENDAR_PAGE)
        page = round_.entries[position : position + size]
        documents = [
            event_json(entry, user.zone, prefer) if isinstance(entry, Instance) else removed_json(entry)
            for entry in page
        ]
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#Collection(event)",
            "value": documents,
        }
        token = secrets.token_urlsafe(24)
        link = f"{self.graph_url}/users/{user.id}/calendarView/delta"
        with self.lock:
            if position + size < len(round_.entries):
                self._delta_cursors[token] = (round_, position + size)
                body["@odata.nextLink"] = f"{link}?$skiptoken={token}"
            else:
                self._delta_states[token] = round_.state
                body["@odata.deltaLink"] = f"{link}?$deltatoken={token}"
            self._keep_token(user.id, token)
        return json_reply(200, body, _preference_applied(prefer))

    def _keep_token(self, user_id: str, token: str) -> None:
        """Remember the user's newest DELTA_TOKENS_KEPT tokens and forget older ones (lock held): a client uses
        its latest deltaLink, and ten thousand mailboxes swept every five minutes must not grow without end."""
        tokens = self._delta_tokens.setdefault(user_id, collections.deque())
        tokens.append(token)
        while len(tokens) > DELTA_TOKENS_KEPT:
            old = tokens.popleft()
            self._delta_states.pop(old, None)
            self._delta_cursors.pop(old, None)

    def _link(self, request: Request, changes: Mapping[str, str]) -> str:
        query = {**request.query, **changes}
        return f"{self.base_url}{request.path}?{urlencode(query, safe='$')}"

    # $batch

    def _batch(self, request: Request, match: re.Match[str]) -> Reply:
        """json-batching.md: answers matched to requests by id only, in any order; throttling.md: a batch with a
        throttled item may fail as a whole with 424 Failed Dependency (switch: `set_batch_failed_dependency`)."""
        items = _batch_items(request)
        responses = [self._batch_item(request, item) for item in items]
        with self.lock:
            self._batch_order.shuffle(responses)
            failed_dependency = self._batch_failed_dependency
        throttled = any(response["status"] == 429 for response in responses)
        return json_reply(424 if failed_dependency and throttled else 200, {"responses": responses})

    def _batch_item(self, outer: Request, item: Mapping[str, Any]) -> dict[str, Any]:
        fault = self._draw_batch_item_fault()
        try:
            if fault == "429":
                with self.lock:
                    retry_after = self._batch_item_retry_after
                message = "Too many requests (injected fault); retry after the Retry-After seconds."
                reply = self.status_reply(429, message, {"Retry-After": retry_after})
            else:
                reply = self.fault_reply(fault) if fault else self.dispatch(_inner_request(outer, item))
        except HttpError as error:
            reply = self.error_reply(error.status, error.code, error.message, error.headers)
        headers = {"Content-Type": reply.content_type} if reply.content_type else {}
        response: dict[str, Any] = {"id": item["id"], "status": reply.status, "headers": {**headers, **reply.headers}}
        if reply.body:
            response["body"] = (
                reply.json() if reply.content_type.startswith("application/json") else (reply.body.decode("utf-8"))
            )
        return response

    def _draw_batch_item_fault(self) -> str | None:
        with self.lock:
            own = self._batch_item_faults
            if own is not None:
                return own.draw(BATCH_ITEM_FAULT_KINDS)
        return self.draw_fault(BATCH_ITEM_FAULT_KINDS)

    # subscriptions

    def _list_subscriptions(self, request: Request, match: re.Match[str]) -> Reply:
        grant = self._authorize(request, CALENDAR_PERMISSIONS, "ErrorAccessDenied")
        with self.lock:
            mine = [sub.to_json() for sub in self._active_subscriptions() if sub.tenant_id == grant.tenant_id]
        return json_reply(200, {"@odata.context": f"{self.graph_url}/$metadata#subscriptions", "value": mine})

    def _create_subscription(self, request: Request, match: re.Match[str]) -> Reply:
        grant = self._authorize(request, CALENDAR_PERMISSIONS, "ErrorAccessDenied")
        subscription = self._new_subscription(grant, _json_object(request))
        for url in filter(None, (subscription.notification_url, subscription.lifecycle_url)):
            problem = validate_endpoint(url, self.validation_timeout_seconds, self._webhook_opener)
            if problem is not None:
                raise HttpError(
                    400,
                    "ValidationError",
                    (
                        "Subscription validation request failed. Notification endpoint must respond with 200 OK "
                        f"to validation request. ({url}: {problem})"
                    ),
                )
        with self.lock:
            self._subscriptions[subscription.id] = subscription
        body = {"@odata.context": f"{self.graph_url}/$metadata#subscriptions/$entity", **subscription.to_json()}
        return json_reply(201, body)

    def _new_subscription(self, grant: AccessGrant, payload: Mapping[str, Any]) -> Subscription:
        resource = payload.get("resource")
        resource_match = EVENTS_RESOURCE.fullmatch(resource) if isinstance(resource, str) else None
        if resource_match is None:
            raise HttpError(
                400,
                "InvalidRequest",
                f"resource must be '/users/{{id}}/events' (the only resource simulated), not {resource!r}",
            )
        assert isinstance(resource, str)
        user = self._mailbox(grant, resource_match["user"])
        client_state = payload.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise HttpError(400, "ValidationError", "clientState must be a string of at most 128 characters.")
        return Subscription(
            id=str(uuid.uuid4()),
            tenant_id=grant.tenant_id,
            application_id=grant.client_id,
            user_id=user.id,
            resource=resource,
            change_types=_change_types(payload.get("changeType")),
            notification_url=self._webhook_url(payload.get("notificationUrl"), "NotificationUrl"),
            lifecycle_url=(
                self._webhook_url(payload["lifecycleNotificationUrl"], "LifecycleNotificationUrl")
                if payload.get("lifecycleNotificationUrl")
                else None
            ),
            client_state=client_state,
            expiration=_expiration(payload.get("expirationDateTime")),
        )

    def _webhook_url(self, raw: object, name: str) -> str:
        """An absolute https URL; http only on loopback with the lab switch on (Graph's answer otherwise)."""
        parts = urlsplit(raw) if isinstance(raw, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise HttpError(400, "ValidationError", f"{name} must be an absolute https URL.")
        assert isinstance(raw, str)
        with self.lock:
            http_allowed = self._http_on_loopback and is_loopback(raw)
        if parts.scheme == "http" and not http_allowed:
            raise HttpError(400, "InvalidRequest", f"{name} scheme='http' is not supported.")
        return raw

    def _subscription(self, request: Request, match: re.Match[str]) -> Subscription:
        grant = self._authorize(request, CALENDAR_PERMISSIONS, "ErrorAccessDenied")
        subscription_id = match["subscription"]
        with self.lock:
            active = {sub.id: sub for sub in self._active_subscriptions()}
        subscription = active.get(subscription_id)
        if subscription is None or subscription.tenant_id != grant.tenant_id:
            raise HttpError(404, "ResourceNotFound", f"The subscription '{subscription_id}' was not found.")
        return subscription

    def _get_subscription(self, request: Request, match: re.Match[str]) -> Reply:
        return json_reply(200, self._subscription(request, match).to_json())

    def _renew_subscription(self, request: Request, match: re.Match[str]) -> Reply:
        subscription = self._subscription(request, match)
        expiration = _expiration(_json_object(request).get("expirationDateTime"))
        with self.lock:
            subscription.expiration = expiration
        return json_reply(200, subscription.to_json())

    def _delete_subscription(self, request: Request, match: re.Match[str]) -> Reply:
        subscription = self._subscription(request, match)
        with self.lock:
            self._subscriptions.pop(subscription.id, None)
        return empty_reply(204)

    def _reauthorize_subscription(self, request: Request, match: re.Match[str]) -> Reply:
        self._subscription(request, match)
        return empty_reply(204)

    # errors

    def error_reply(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        inner = {
            "date": utc_now().strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": str(uuid.uuid4()),
            "client-request-id": str(uuid.uuid4()),
        }
        return json_reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers)


def _challenge() -> dict[str, str]:
    return {
        "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
        'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
    }


def _directory_not_found(object_id: str) -> HttpError:
    return HttpError(
        404,
        "Request_ResourceNotFound",
        (f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present."),
    )


def _sync_state_not_found() -> HttpError:
    return HttpError(
        410,
        "SyncStateNotFound",
        (
            "The sync state generation is not found or has expired. Start again with a new delta query "
            "(startDateTime and endDateTime)."
        ),
    )


def _prefer(request: Request) -> dict[str, str]:
    """The `Prefer` header's preferences (`outlook.timezone`, `odata.maxpagesize`), names lower-cased."""
    preferences = {}
    for part in request.header("prefer").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            preferences[name.strip().lower()] = value.strip().strip('"')
    return preferences


def _prefer_zone(request: Request) -> tuple[ZoneInfo, str] | None:
    """The zone of `Prefer: outlook.timezone`; 400 TimeZoneNotSupportedException for a name Graph does not know."""
    name = _prefer(request).get("outlook.timezone")
    try:
        return zone_from_prefer(name)
    except TimeZoneNotSupported as error:
        raise HttpError(
            400,
            "TimeZoneNotSupportedException",
            f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{name}'.",
        ) from error


def _preference_applied(prefer: tuple[ZoneInfo, str] | None) -> dict[str, str]:
    return {"Preference-Applied": f'outlook.timezone="{prefer[1]}"'} if prefer else {}


def _window(request: Request) -> Window:
    raw_start, raw_end = request.query.get("startDateTime"), request.query.get("endDateTime")
    if not raw_start or not raw_end:
        raise HttpError(
            400,
            "ErrorInvalidParameter",
            (
                "This request requires a time window specified by the query string parameters StartDateTime and "
                "EndDateTime."
            ),
        )
    return Window(_query_datetime(raw_start, "StartDateTime"), _query_datetime(raw_end, "EndDateTime"))


def _query_datetime(raw: str, name: str) -> dt.datetime:
    value = parse_datetime(raw)
    if value is None:
        hint = " (a '+' in a query string must be sent as %2B)" if " " in raw else ""
        raise HttpError(400, "ErrorInvalidParameter", f"The value '{raw}' of parameter '{name}' is invalid.{hint}")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _non_negative_int(raw: str, name: str) -> int:
    if not raw.isdigit():
        raise HttpError(400, "BadRequest", f"Invalid value '{raw}' for query option {name}.")
    return int(raw)


def _page_size(request: Request, limits: tuple[int, int]) -> int:
    """`$top`, else `Prefer: odata.maxpagesize`, else the default; 400 outside 1..largest."""
    default, largest = limits
    raw = request.query.get("$top") or _prefer(request).get("odata.maxpagesize")
    if raw is None:
        return default
    size = _non_negative_int(raw, "$top")
    if not 1 <= size <= largest:
        raise HttpError(400, "BadRequest", f"Invalid page size specified: '{size}'. Must be between 1 and {largest}.")
    return size


def _encode_skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(f"sim-offset:{offset}".encode()).decode()


def _decode_skiptoken(token: str | None) -> int:
    if not token:
        return 0
    try:
        prefix, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix == "sim-offset" and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise HttpError(400, "Request_BadRequest", "The specified page token value has expired or is invalid.")


def _select(document: Mapping[str, Any], request: Request) -> dict[str, Any]:
    """Keep the `$select`ed properties (plus `id` and OData annotations); everything without `$select`."""
    raw = request.query.get("$select")
    if not raw:
        return dict(document)
    wanted = {name.strip().lower() for name in raw.split(",")} | {"id"}
    return {key: value for key, value in document.items() if key.lower() in wanted or key.startswith("@odata.")}


def _json_object(request: Request) -> dict[str, Any]:
    try:
        payload = request.json()
    except ValueError as error:
        raise HttpError(400, "BadRequest", str(error)) from error
    if not isinstance(payload, dict):
        raise HttpError(400, "BadRequest", "The request body must be a JSON object.")
    return payload


def _batch_items(request: Request) -> list[Mapping[str, Any]]:
    items = _json_object(request).get("requests")
    if not isinstance(items, list) or not items:
        raise HttpError(400, "BadRequest", "Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(items) > BATCH_LIMIT:
        raise HttpError(
            400, "BadRequest", f"Invalid batch payload: {len(items)} requests exceed the limit of {BATCH_LIMIT}."
        )
    ids = [item.get("id") if isinstance(item, dict) else None for item in items]
    for item in items:
        if not (isinstance(item, dict) and all(isinstance(item.get(key), str) for key in ("id", "method", "url"))):
            raise HttpError(400, "BadRequest", "Invalid batch payload format: each request needs id, method and url.")
    if len(set(ids)) != len(ids):
        raise HttpError(400, "BadRequest", "Invalid batch payload format: request ids must be unique.")
    return items


def _inner_request(outer: Request, item: Mapping[str, Any]) -> Request:
    """A `$batch` entry as a request of its own: relative url under /v1.0, the batch's Authorization."""
    parts = urlsplit(item["url"])
    path = "/v1.0/" + unquote(parts.path).lstrip("/")
    if path.lower() == "/v1.0/$batch":
        raise HttpError(400, "BadRequest", "A $batch request cannot contain another $batch.")
    raw_headers = item.get("headers")
    inner_headers: Mapping[str, Any] = raw_headers if isinstance(raw_headers, dict) else {}
    headers = {
        "authorization": outer.header("authorization"),
        **{str(name).lower(): str(value) for name, value in inner_headers.items()},
    }
    body = json.dumps(item["body"]).encode("utf-8") if item.get("body") is not None else b""
    return Request(item["method"].upper(), path, dict(parse_qsl(parts.query, keep_blank_values=True)), headers, body)


def _change_types(raw: object) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in raw.split(",")) if isinstance(raw, str) else ()
    if not kinds or any(kind not in CHANGE_TYPES for kind in kinds):
        raise HttpError(400, "ValidationError", f"changeType must be a comma-separated subset of {CHANGE_TYPES}.")
    return kinds


def _expiration(raw: object) -> dt.datetime:
    value = parse_datetime(raw)
    if value is None:
        raise HttpError(400, "ValidationError", "expirationDateTime must be an ISO 8601 date and time.")
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    now = utc_now()
    if value <= now:
        raise HttpError(400, "ValidationError", "Subscription expiration can't be in the past.")
    if value > now + dt.timedelta(minutes=MAX_EXPIRATION_MINUTES):
        raise HttpError(
            400,
            "ValidationError",
            f"Subscription expiration can only be {MAX_EXPIRATION_MINUTES} minutes in the future.",
        )
    return value
