"""Exchange on-premises look-alike: the EWS SOAP endpoint (`POST /EWS/Exchange.asmx`) as exchangelib 5.6.0 uses it.

Speaks exactly the minimal shapes verified in shared/spec/simulators/ews/: Basic auth of one or more service
accounts (`set_credentials`, `add_service_account`: each its own password and the mailboxes it may impersonate, as
each customer's own Exchange organisation would have it), `ExchangeImpersonation`
(one calendar per mailbox), `GetFolder` (root, calendar), `FindItem` with `CalendarView` (series expanded into
occurrences; all-day items midnight-to-midnight in the mailbox zone with `StartTimeZone`/`EndTimeZone`, timed
items in UTC) and `ExpandDL`. Faults come from the base's switches: "503" is an HTTP 503, "429" is EWS's own
throttling answer, an `ErrorServerBusy` SOAP fault with `BackOffMilliseconds`; `set_busy_after` is a throttling
budget that stays spent until the back-off has passed. Per mailbox: `set_impersonation_scope` (a management scope
leaving mailboxes out: ErrorImpersonateUserDenied) and `set_mailbox_unavailable` (ErrorMailboxMoveInProgress,
ErrorMailboxStoreUnavailable); an unknown address is ErrorNonExistentMailbox. Each behaviour and the Microsoft page
it follows is listed in README.md. Standard library only.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

from devtools.simulators.base import HttpError, Reply, Request, SimServer, parse_datetime, route, utc_now
from devtools.simulators.events import EventRecord, Instance, SimEvent, expand

EWS_PATH = "/EWS/Exchange.asmx"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"
NS = (
    'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"'
)
ERRORS_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"
DEFAULT_BACK_OFF_MS = 30_000
RECIPIENT_KINDS = ("Contact", "PublicFolder", "GroupMailbox")  # MailboxType values other than Mailbox and DLs
# The per-mailbox answers Exchange gives while a mailbox cannot be opened (set_mailbox_unavailable).
MAILBOX_UNAVAILABLE_CODES = {
    "ErrorMailboxMoveInProgress": "The mailbox is being moved to another database. Try again later.",
    "ErrorMailboxStoreUnavailable": "The mailbox database is temporarily unavailable.",
}

# The IANA zones a mailbox may have → the Windows id EWS writes in StartTimeZone/EndTimeZone.
WINDOWS_ZONE_IDS = {
    "Europe/Oslo": "W. Europe Standard Time",
    "Europe/Berlin": "W. Europe Standard Time",
    "Europe/Stockholm": "W. Europe Standard Time",
    "Europe/Copenhagen": "Romance Standard Time",
    "Europe/Paris": "Romance Standard Time",
    "Europe/London": "GMT Standard Time",
    "UTC": "UTC",
}
FREE_BUSY = {
    "free": "Free",
    "tentative": "Tentative",
    "busy": "Busy",
    "oof": "OOF",
    "workingElsewhere": "WorkingElsewhere",
    "unknown": "NoData",
}
# Streaming notifications (Subscribe with StreamingSubscriptionRequest, GetStreamingEvents, Unsubscribe).
MAX_STREAM_SUBSCRIPTIONS = 200  # subscriptions one GetStreamingEvents may carry (the affinity guidance's group size)
DEFAULT_KEEPALIVE_SECONDS = 30.0
CALENDAR_FOLDER_ID = "CALENDAR"
AFFINITY_COOKIE = "X-BackEndOverrideCookie"
AFFINITY_SERVER = "SIM-MBX01~1"  # the cookie's value: the one mailbox server behind this endpoint

RESPONSE_TYPES = {
    "accepted": "Accept",
    "tentative": "Tentative",
    "tentativelyAccepted": "Tentative",
    "declined": "Decline",
    "organizer": "Organizer",
    "none": "Unknown",
    "notResponded": "NoResponseReceived",
}


@dataclass(frozen=True)
class Mailbox:
    email: str
    name: str
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class ServiceAccount:
    """A service account Basic auth accepts, and the mailboxes its ApplicationImpersonation role covers."""

    username: str
    password: str
    mailboxes: frozenset[str] | None  # casefolded addresses; None: every mailbox

    def may_impersonate(self, email: str) -> bool:
        return self.mailboxes is None or email.casefold() in self.mailboxes


@dataclass(frozen=True)
class DistributionGroup:
    email: str
    name: str
    member_emails: tuple[str, ...]


@dataclass
class StreamingSubscription:
    """One streaming subscription on a mailbox's calendar: the events not yet delivered, and which open
    GetStreamingEvents connection (if any) delivers them."""

    id: str
    mailbox: str  # casefolded address
    event_types: frozenset[str]
    pending: list[str] = field(default_factory=list)  # rendered event elements, oldest first
    watermark: int = 0
    connection: object | None = None


def envelope(body: str) -> bytes:
    return f'<?xml version="1.0" encoding="utf-8"?><s:Envelope {NS}><s:Body>{body}</s:Body></s:Envelope>'.encode()


def soap_fault(code: str, message: str, details: str = "") -> bytes:
    """A SOAP fault the way Exchange writes one (unqualified `detail`, codes in the errors namespace)."""
    text = escape(message)
    return envelope(
        "<s:Fault>"
        f'<faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{text}</faultstring>'
        "<detail>"
        f'<e:ResponseCode xmlns:e="{ERRORS_NS}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{ERRORS_NS}">{text}</e:Message>{details}'
        "</detail></s:Fault>"
    )


def _response(operation: str, message: str) -> str:
    return f"<m:{operation}Response><m:ResponseMessages>{message}</m:ResponseMessages></m:{operation}Response>"


def _error_message(operation: str, code: str, text: str) -> str:
    return _response(
        operation,
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"</m:{operation}ResponseMessage>",
    )


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class EwsSimulator(SimServer):
    """The EWS endpoint of one Exchange organisation, scripted through the public methods (thread-safe)."""

    name = "ews"
    status_codes = {**SimServer.status_codes, 401: "ErrorUnauthorized", 400: "ErrorInvalidRequest"}

    def __init__(self, username: str = "svc-ews@firma.no", password: str = "secret") -> None:
        super().__init__()
        self._accounts: dict[str, ServiceAccount] = {}  # casefolded user name → account
        self._first_account = ""  # the account `credentials()` gives (the one `set_credentials` or __init__ set)
        self.set_credentials(username, password)
        self._impersonation_allowed = True
        self._impersonation_scope: frozenset[str] | None = None
        self._unavailable: dict[str, str] = {}
        self._back_off_ms = DEFAULT_BACK_OFF_MS
        self._busy_after: int | None = None
        self._budget: int | None = None
        self._busy_until = 0.0
        self._mailboxes: dict[str, Mailbox] = {}
        self._groups: dict[str, DistributionGroup] = {}
        self._recipients: dict[str, tuple[str, str]] = {}  # address → (name, MailboxType) of other recipients
        self._events: dict[str, dict[str, EventRecord]] = {}
        self._version = 0
        self._operations: list[tuple[str, str | None]] = []
        self._subscriptions: dict[str, StreamingSubscription] = {}
        self._affinity_log: list[tuple[str, str, str]] = []  # (operation, X-AnchorMailbox, affinity cookie)
        self._streams_changed = threading.Condition(self.lock)
        self._keepalive_seconds = DEFAULT_KEEPALIVE_SECONDS
        self._minute_seconds = 60.0
        self._open_streams = 0
        self._watermarks = itertools.count(1)
        # SyncFolderItems: each mailbox's calendar changes in order (version, "Create"/"Update"/"Delete", item id,
        # change key); a sync state names the mailbox, the generation and the last version the client has seen.
        self._changes: dict[str, list[tuple[int, str, str, str]]] = {}
        self._sync_generation = 0
        self.routes = [route("POST", EWS_PATH, self._soap)]

    @property
    def url(self) -> str:
        return f"{self.base_url}{EWS_PATH}"

    # --- scripting -----------------------------------------------------------------------------------------------

    def set_credentials(self, username: str, password: str) -> None:
        """The one service account Basic auth accepts, allowed to impersonate every mailbox (any other accounts,
        `add_service_account`'s, are removed)."""
        with self.lock:
            self._accounts = {username.casefold(): ServiceAccount(username, password, None)}
            self._first_account = username.casefold()

    def add_service_account(self, username: str, password: str, mailboxes: Iterable[str] | None = None) -> None:
        """One more service account Basic auth accepts (or new password and mailboxes for a known one), beside the
        others: each Exchange organisation's own. It may impersonate `mailboxes` only (None: every mailbox); any
        other is ErrorImpersonateUserDenied, as from a management scope leaving it out."""
        scope = None if mailboxes is None else frozenset(e.casefold() for e in mailboxes)
        with self.lock:
            self._accounts[username.casefold()] = ServiceAccount(username, password, scope)

    def allow_impersonation(self, username: str, emails: Iterable[str]) -> None:
        """More mailboxes `username` may impersonate (a mailbox created in its organisation later)."""
        with self.lock:
            account = self._accounts[username.casefold()]
            if account.mailboxes is not None:
                more = frozenset(e.casefold() for e in emails)
                self._accounts[username.casefold()] = ServiceAccount(
                    account.username, account.password, account.mailboxes | more
                )

    def remove_service_account(self, username: str) -> None:
        """Basic auth no longer accepts `username` (HTTP 401, as for a disabled account)."""
        with self.lock:
            self._accounts.pop(username.casefold(), None)

    def credentials(self) -> tuple[str, str]:
        """(user name, password) of the service account `set_credentials` (or the constructor) set."""
        with self.lock:
            account = self._accounts.get(self._first_account) or next(iter(self._accounts.values()))
            return account.username, account.password

    def service_accounts(self) -> list[str]:
        """The user names Basic auth accepts."""
        with self.lock:
            return [account.username for account in self._accounts.values()]

    def set_impersonation_allowed(self, allowed: bool) -> None:
        """False: the service accounts lack the ApplicationImpersonation role (ErrorImpersonateUserDenied)."""
        with self.lock:
            self._impersonation_allowed = allowed

    def set_impersonation_scope(self, emails: Iterable[str] | None) -> None:
        """The mailboxes the ApplicationImpersonation role's management scope covers (None: all of them), for every
        service account besides its own mailboxes. Any other mailbox is refused with ErrorImpersonateUserDenied, the
        same answer as a missing role."""
        with self.lock:
            self._impersonation_scope = None if emails is None else frozenset(e.casefold() for e in emails)

    def set_mailbox_unavailable(self, email: str, code: str | None) -> None:
        """A mailbox that cannot be opened for now: FindItem on it answers with `code` (one of
        MAILBOX_UNAVAILABLE_CODES) in its response message; None makes it available again."""
        if code is not None and code not in MAILBOX_UNAVAILABLE_CODES:
            raise ValueError(f"code must be one of {tuple(MAILBOX_UNAVAILABLE_CODES)}")
        with self.lock:
            if code is None:
                self._unavailable.pop(email.casefold(), None)
            else:
                self._unavailable[email.casefold()] = code

    def set_busy_after(self, requests: int | None) -> None:
        """The service account's throttling budget: after `requests` more FindItem calls every request is answered
        ErrorServerBusy (with BackOffMilliseconds) until the back-off has passed; then the budget starts again.
        None: no budget."""
        with self.lock:
            self._busy_after = None if requests is None else max(0, int(requests))
            self._budget = self._busy_after
            self._busy_until = 0.0

    def set_back_off_ms(self, ms: int) -> None:
        """The BackOffMilliseconds of the ErrorServerBusy fault (fault kind "429")."""
        with self.lock:
            self._back_off_ms = max(0, int(ms))

    def add_mailbox(self, email: str, name: str, timezone: str = "Europe/Oslo") -> None:
        if timezone not in WINDOWS_ZONE_IDS:
            raise ValueError(f"mailbox time zone must be one of {tuple(WINDOWS_ZONE_IDS)}")
        with self.lock:
            self._mailboxes[email.casefold()] = Mailbox(email, name, timezone)
            self._events.setdefault(email.casefold(), {})

    def add_group(self, email: str, member_emails: Iterable[str], name: str | None = None) -> None:
        """A distribution group; members are mailboxes or other groups (nested groups come back as PublicDL)."""
        with self.lock:
            self._groups[email.casefold()] = DistributionGroup(email, name or email, tuple(member_emails))

    def add_recipient(self, email: str, name: str, kind: str) -> None:
        """A recipient without a calendar that a distribution group may hold: kind "Contact" (a mail contact),
        "PublicFolder" or "GroupMailbox" (a Microsoft 365 group), returned by ExpandDL with that MailboxType."""
        if kind not in RECIPIENT_KINDS:
            raise ValueError(f"kind must be one of {RECIPIENT_KINDS}")
        with self.lock:
            self._recipients[email.casefold()] = (name, kind)

    def put_event(self, email: str, event: SimEvent) -> None:
        """Create or replace an event by id in the mailbox's calendar."""
        if not isinstance(event, SimEvent):
            raise TypeError(f"put_event takes a SimEvent, not {type(event).__name__}")
        with self.lock:
            calendar = self._calendar(email)
            previous = calendar.get(event.id)
            now = utc_now()
            self._version += 1
            calendar[event.id] = EventRecord(event, self._version, previous.created if previous else now, now)
            self._notify(email, "ModifiedEvent" if previous else "CreatedEvent", event.id)
            self._log_change(email, "Update" if previous else "Create", event.id)

    def delete_event(self, email: str, event_id: str) -> None:
        with self.lock:
            calendar = self._calendar(email)
            if event_id not in calendar:
                raise LookupError(f"mailbox {email} has no event {event_id!r}")
            del calendar[event_id]
            self._version += 1
            self._log_change(email, "Delete", event_id)
            self._notify(email, "DeletedEvent", event_id)

    def stop(self) -> None:
        super().stop()
        with self.lock:
            self._streams_changed.notify_all()  # open streams end at once

    def set_keepalive_seconds(self, seconds: float) -> None:
        """How often an open GetStreamingEvents connection with nothing to deliver sends ConnectionStatus OK."""
        with self.lock:
            self._keepalive_seconds = max(0.01, float(seconds))

    def set_stream_minute_seconds(self, seconds: float) -> None:
        """How many real seconds one minute of a GetStreamingEvents ConnectionTimeout lasts (60; tests shorten it)."""
        with self.lock:
            self._minute_seconds = max(0.01, float(seconds))

    def expire_subscriptions(self, email: str | None = None) -> int:
        """Exchange no longer holds the mailbox's streaming subscriptions (all of them for None), as after a mailbox
        move, a server restart or a subscription left without a connection: open connections carrying one end with
        ConnectionStatus Closed, and asking for one again answers ErrorSubscriptionNotFound. Returns how many."""
        with self.lock:
            gone = [s for s in self._subscriptions.values() if email is None or s.mailbox == email.casefold()]
            for subscription in gone:
                del self._subscriptions[subscription.id]
            self._streams_changed.notify_all()
        return len(gone)

    def subscriptions(self, email: str | None = None) -> list[str]:
        """The ids of the streaming subscriptions Exchange holds (for one mailbox, or all)."""
        with self.lock:
            return [s.id for s in self._subscriptions.values() if email is None or s.mailbox == email.casefold()]

    def affinity_log(self) -> list[tuple[str, str, str]]:
        """(operation, X-AnchorMailbox, X-BackEndOverrideCookie cookie) of every Subscribe, GetStreamingEvents and
        Unsubscribe received: how a group of subscriptions kept its affinity."""
        with self.lock:
            return list(self._affinity_log)

    def open_streams(self) -> int:
        """GetStreamingEvents connections open now."""
        with self.lock:
            return self._open_streams

    def wait_for_streams(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least `count` GetStreamingEvents connections are open carrying every subscription."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not (
                self._open_streams >= count and all(s.connection is not None for s in self._subscriptions.values())
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._streams_changed.wait(left)
        return True

    def events(self, email: str) -> list[SimEvent]:
        with self.lock:
            return [record.event for record in self._calendar(email).values()]

    def expire_sync_states(self) -> None:
        """Forget every SyncFolderItems sync state: the next call with one gets ErrorInvalidSyncStateData."""
        with self.lock:
            self._sync_generation += 1

    def _log_change(self, email: str, kind: str, item_id: str) -> None:
        """Record a calendar change for SyncFolderItems (lock held)."""
        self._changes.setdefault(email.casefold(), []).append((self._version, kind, item_id, f"sim{self._version:08d}"))

    def operations(self) -> list[tuple[str, str | None]]:
        """Every SOAP call received, faulted ones included: (operation, impersonated mailbox or None)."""
        with self.lock:
            return list(self._operations)

    def operation_count(self, operation: str, mailbox: str | None = None) -> int:
        return sum(
            1
            for op, who in self.operations()
            if op == operation and (mailbox is None or (who or "").casefold() == mailbox.casefold())
        )

    def reset_counters(self) -> None:
        super().reset_counters()
        with self.lock:
            self._operations.clear()

    def _calendar(self, email: str) -> dict[str, EventRecord]:
        key = email.casefold()
        if key not in self._mailboxes:
            raise LookupError(f"no mailbox {email}; add_mailbox first")
        return self._events[key]

    # --- serving -------------------------------------------------------------------------------------------------

    def serve(self, request: Request) -> Reply:
        operation, mailbox = _peek(request.body)
        with self.lock:
            self._operations.append((operation, mailbox))
        return super().serve(request)

    def _spend_budget(self, operation: str) -> bool:
        """True when the throttling budget is spent: the request is answered ErrorServerBusy (lock held)."""
        if self._busy_after is None:
            return False
        now = time.monotonic()
        if now < self._busy_until:
            return True
        if self._busy_until:  # the back-off has passed: a fresh budget
            self._busy_until = 0.0
            self._budget = self._busy_after
        if operation != "FindItem":
            return False
        if not self._budget:
            self._busy_until = now + self._back_off_ms / 1000
            return True
        self._budget -= 1
        return False

    def fault_reply(self, kind: str) -> Reply:
        if kind == "429":
            with self.lock:
                ms = self._back_off_ms
            value = f'<t:MessageXml><t:Value Name="BackOffMilliseconds">{ms}</t:Value></t:MessageXml>'
            message = "The server cannot service this request right now. Try again later."
            return Reply(500, soap_fault("ErrorServerBusy", message, value), "text/xml; charset=utf-8")
        if kind == "malformed":
            return Reply(200, envelope("<m:FindItemResponse>")[:120], "text/xml; charset=utf-8")
        return super().fault_reply(kind)

    def error_reply(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        if status == 500:
            return Reply(500, soap_fault(code, message), "text/xml; charset=utf-8", dict(headers or {}))
        if status == 401:
            return Reply(401, b"", "", {"WWW-Authenticate": 'Basic realm="EWS"', **(headers or {})})
        return Reply(status, message.encode(), "text/plain; charset=utf-8", dict(headers or {}))

    def _soap(self, request: Request, _match: object) -> Reply:
        given = request.basic_credentials()
        with self.lock:
            account = self._accounts.get(given[0].casefold()) if given else None
            impersonation_allowed = self._impersonation_allowed
            scope = self._impersonation_scope
        if given is None or account is None or given[1] != account.password:
            raise HttpError(401, "ErrorUnauthorized", "Unauthorized")
        try:
            root = ET.fromstring(request.body)
        except ET.ParseError as error:
            raise HttpError(500, "ErrorSchemaValidation", f"The request is not valid XML: {error}") from error
        body = root.find(f"{SOAP}Body")
        if body is None or not len(body):
            raise HttpError(500, "ErrorInvalidRequest", "The request has no SOAP body.")
        operation = body[0]
        name = _local(operation.tag)
        with self.lock:
            busy = self._spend_budget(name)
        if busy:
            return self.fault_reply("429")
        if name == "ExpandDL":
            return self._ok(self._expand_dl(operation))
        impersonated = root.findtext(f"{SOAP}Header/{T}ExchangeImpersonation/{T}ConnectingSID/{T}PrimarySmtpAddress")
        target = operation.findtext(f".//{T}Mailbox/{T}EmailAddress") or impersonated
        mailbox = self._mailboxes.get((target or "").casefold())
        if mailbox is None or (impersonated is not None and impersonated.casefold() not in self._mailboxes):
            raise HttpError(500, "ErrorNonExistentMailbox", f"No mailbox with address {impersonated or target}.")
        if impersonated is not None and (
            not impersonation_allowed
            or (scope is not None and impersonated.casefold() not in scope)
            or not account.may_impersonate(impersonated)
        ):
            raise HttpError(
                500, "ErrorImpersonateUserDenied", "The account does not have permission to impersonate the user."
            )
        if name in ("Subscribe", "GetStreamingEvents", "Unsubscribe"):
            cookies = dict(
                part.strip().partition("=")[::2] for part in request.header("Cookie").split(";") if "=" in part
            )
            with self.lock:
                self._affinity_log.append((name, request.header("X-AnchorMailbox"), cookies.get(AFFINITY_COOKIE, "")))
        if name == "Subscribe":
            reply = self._ok(self._subscribe(operation, mailbox))
            if request.header("X-PreferServerAffinity").lower() == "true":  # affinity: the mailbox server's cookie
                reply.headers["Set-Cookie"] = f"{AFFINITY_COOKIE}={AFFINITY_SERVER}; path=/"
            return reply
        if name == "GetStreamingEvents":
            return self._get_streaming_events(operation)
        if name == "Unsubscribe":
            return self._ok(self._unsubscribe(operation))
        if name == "GetFolder":
            return self._ok(self._get_folder(operation))
        if name == "FindItem":
            with self.lock:
                unavailable = self._unavailable.get(mailbox.email.casefold())
            if unavailable:
                return self._ok(_error_message("FindItem", unavailable, MAILBOX_UNAVAILABLE_CODES[unavailable]))
            return self._ok(self._find_item(operation, mailbox))
        if name == "SyncFolderItems":
            return self._ok(self._sync_folder_items(operation, mailbox))
        raise HttpError(500, "ErrorInvalidRequest", f"The simulator does not implement {name}.")

    @staticmethod
    def _ok(body: str) -> Reply:
        return Reply(200, envelope(body), "text/xml; charset=utf-8")

    def _get_folder(self, operation: ET.Element) -> str:
        folder = operation.find(f".//{T}DistinguishedFolderId")
        which = folder.get("Id") if folder is not None else None
        if which == "root":
            tag, folder_id, extra = "Folder", "ROOT", ""
        elif which == "calendar":
            tag, folder_id, extra = "CalendarFolder", "CALENDAR", "<t:DisplayName>Kalender</t:DisplayName>"
        else:
            return _error_message("GetFolder", "ErrorFolderNotFound", f"The simulator has no folder {which!r}.")
        return _response(
            "GetFolder",
            '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f'<m:Folders><t:{tag}><t:FolderId Id="{folder_id}" ChangeKey="CK1"/>{extra}</t:{tag}></m:Folders>'
            "</m:GetFolderResponseMessage>",
        )

    def _find_item(self, operation: ET.Element, mailbox: Mailbox) -> str:
        view = operation.find(f"{M}CalendarView")
        if view is None:
            return _error_message("FindItem", "ErrorInvalidRequest", "The simulator only serves CalendarView.")
        start = parse_datetime(view.get("StartDate"))
        end = parse_datetime(view.get("EndDate"))
        if start is None or end is None or start.tzinfo is None or end.tzinfo is None or end < start:
            return _error_message("FindItem", "ErrorCalendarInvalidDateRange", "The CalendarView dates are invalid.")
        with self.lock:
            records = list(self._events[mailbox.email.casefold()].values())
        instances = [
            instance for record in records for instance in expand(record, mailbox.zone) if instance.overlaps(start, end)
        ]
        instances.sort(key=lambda instance: (instance.start, instance.id))
        items = "".join(_calendar_item(instance, mailbox) for instance in instances)
        return _response(
            "FindItem",
            '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f'<m:RootFolder TotalItemsInView="{len(instances)}" IncludesLastItemInRange="true">'
            f"<t:Items>{items}</t:Items></m:RootFolder></m:FindItemResponseMessage>",
        )

    def _sync_folder_items(self, operation: ET.Element, mailbox: Mailbox) -> str:
        """SyncFolderItems on the calendar: without a SyncState every item as a Create, with one the changes since
        (the last change of each item: Create, Update or Delete), at most MaxChangesReturned per answer with
        IncludesLastItemInRange false while more wait. Items are the stored events (recurring masters, not their
        occurrences), returned IdOnly. A sync state the server no longer knows is ErrorInvalidSyncStateData."""
        key = mailbox.email.casefold()
        state = (operation.findtext(f"{M}SyncState") or "").strip()
        try:
            limit = max(1, min(512, int(operation.findtext(f"{M}MaxChangesReturned") or "512")))
        except ValueError:
            return _error_message("SyncFolderItems", "ErrorInvalidRequest", "MaxChangesReturned is not a number.")
        with self.lock:
            generation = self._sync_generation
            if state:
                try:
                    seen_generation, seen_mailbox, seen = _decode_sync_state(state)
                except ValueError:
                    seen_generation, seen_mailbox, seen = -1, "", 0
                if seen_generation != generation or seen_mailbox != key:
                    # Exchange's error message carries an empty SyncState and IncludesLastItemInRange, as the
                    # schema's SyncFolderItemsResponseMessageType has them (exchangelib reads both first).
                    return _response(
                        "SyncFolderItems",
                        '<m:SyncFolderItemsResponseMessage ResponseClass="Error">'
                        "<m:MessageText>Synchronization state data is corrupt or otherwise invalid.</m:MessageText>"
                        "<m:ResponseCode>ErrorInvalidSyncStateData</m:ResponseCode>"
                        "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:SyncState/>"
                        "<m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"
                        "</m:SyncFolderItemsResponseMessage>",
                    )
                latest: dict[str, tuple[int, str, str]] = {}
                for version, kind, item_id, change_key in self._changes.get(key, []):
                    if version > seen:
                        first = latest.get(item_id)
                        if first is not None and first[1] == "Create" and kind == "Update":
                            kind = "Create"  # created and changed since: still new to the client
                        latest[item_id] = (version, kind, change_key)
                changes = sorted((version, kind, item_id, ck) for item_id, (version, kind, ck) in latest.items())
            else:
                changes = sorted(
                    (record.version, "Create", item_id, record.change_key)
                    for item_id, record in self._events[key].items()
                )
            last_version = self._version
        page, more = changes[:limit], len(changes) > limit
        upto = page[-1][0] if more else last_version
        entries = "".join(
            f"<t:Delete><t:ItemId Id={quoteattr(item_id)} ChangeKey={quoteattr(ck)}/></t:Delete>"
            if kind == "Delete"
            else f"<t:{kind}><t:CalendarItem><t:ItemId Id={quoteattr(item_id)} ChangeKey={quoteattr(ck)}/>"
            f"</t:CalendarItem></t:{kind}>"
            for _version, kind, item_id, ck in page
        )
        return _response(
            "SyncFolderItems",
            '<m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"<m:SyncState>{_encode_sync_state(generation, key, upto)}</m:SyncState>"
            f"<m:IncludesLastItemInRange>{'false' if more else 'true'}</m:IncludesLastItemInRange>"
            f"<m:Changes>{entries}</m:Changes></m:SyncFolderItemsResponseMessage>",
        )

    def _expand_dl(self, operation: ET.Element) -> str:
        address = operation.findtext(f".//{T}EmailAddress") or ""
        with self.lock:
            group = self._groups.get(address.casefold())
            if group is None:
                return _error_message("ExpandDL", "ErrorNameResolutionNoResults", "No results were found.")
            entries = []
            for member in group.member_emails:
                if member.casefold() in self._groups:
                    entries.append((self._groups[member.casefold()].name, member, "PublicDL"))
                elif member.casefold() in self._mailboxes:
                    entries.append((self._mailboxes[member.casefold()].name, member, "Mailbox"))
                elif member.casefold() in self._recipients:
                    name, kind = self._recipients[member.casefold()]
                    entries.append((name, member, kind))
        mailboxes = "".join(
            f"<t:Mailbox><t:Name>{escape(name)}</t:Name><t:EmailAddress>{escape(email)}</t:EmailAddress>"
            f"<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>{kind}</t:MailboxType></t:Mailbox>"
            for name, email, kind in entries
        )
        return _response(
            "ExpandDL",
            '<m:ExpandDLResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f'<m:DLExpansion TotalItemsInView="{len(entries)}" IncludesLastItemInRange="true">{mailboxes}'
            "</m:DLExpansion></m:ExpandDLResponseMessage>",
        )

    # --- streaming notifications ---------------------------------------------------------------------------------

    def _notify(self, email: str, event_type: str, item_id: str) -> None:
        """Queue an event on every streaming subscription of the mailbox that asked for its type (lock held)."""
        key = email.casefold()
        stamp = _utc(utc_now())
        for subscription in self._subscriptions.values():
            if subscription.mailbox != key or event_type not in subscription.event_types:
                continue
            subscription.watermark = next(self._watermarks)
            subscription.pending.append(
                f"<t:{event_type}><t:Watermark>{_watermark(subscription.watermark)}</t:Watermark>"
                f'<t:TimeStamp>{stamp}</t:TimeStamp><t:ItemId Id={quoteattr(item_id)} ChangeKey="CK{self._version}"/>'
                f'<t:ParentFolderId Id="{CALENDAR_FOLDER_ID}" ChangeKey="CK1"/></t:{event_type}>'
            )
        self._streams_changed.notify_all()

    def _subscribe(self, operation: ET.Element, mailbox: Mailbox) -> str:
        request = operation.find(f"{M}StreamingSubscriptionRequest")
        if request is None:
            return _error_message(
                "Subscribe", "ErrorInvalidSubscriptionRequest", "The simulator only serves streaming subscriptions."
            )
        folders = request.findall(f"{T}FolderIds/{T}DistinguishedFolderId")
        if request.get("SubscribeToAllFolders") not in (None, "false") or [f.get("Id") for f in folders] != [
            "calendar"
        ]:
            return _error_message(
                "Subscribe", "ErrorInvalidSubscriptionRequest", "The simulator subscribes to the calendar folder only."
            )
        kinds = frozenset(e.text or "" for e in request.findall(f"{T}EventTypes/{T}EventType"))
        if not kinds:
            return _error_message("Subscribe", "ErrorInvalidSubscriptionRequest", "No event types were given.")
        subscription = StreamingSubscription(uuid.uuid4().hex, mailbox.email.casefold(), kinds)
        with self.lock:
            self._subscriptions[subscription.id] = subscription
        return _response(
            "Subscribe",
            '<m:SubscribeResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"<m:SubscriptionId>{subscription.id}</m:SubscriptionId></m:SubscribeResponseMessage>",
        )

    def _unsubscribe(self, operation: ET.Element) -> str:
        subscription_id = operation.findtext(f"{M}SubscriptionId") or ""
        with self.lock:
            subscription = self._subscriptions.pop(subscription_id, None)
            self._streams_changed.notify_all()
        if subscription is None:
            return _error_message(
                "Unsubscribe", "ErrorSubscriptionNotFound", "The specified subscription was not found."
            )
        return _response(
            "Unsubscribe",
            '<m:UnsubscribeResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            "</m:UnsubscribeResponseMessage>",
        )

    def _get_streaming_events(self, operation: ET.Element) -> Reply:
        ids = [e.text or "" for e in operation.findall(f"{M}SubscriptionIds/{T}SubscriptionId")]
        try:
            minutes = int(operation.findtext(f"{M}ConnectionTimeout") or "")
        except ValueError:
            minutes = 0
        if not 1 <= minutes <= 30:
            return self._ok(
                _error_message(
                    "GetStreamingEvents", "ErrorInvalidArgument", "ConnectionTimeout must be between 1 and 30 minutes."
                )
            )
        if not 0 < len(ids) <= MAX_STREAM_SUBSCRIPTIONS:
            return self._ok(
                _error_message(
                    "GetStreamingEvents",
                    "ErrorInvalidArgument",
                    f"A connection carries 1 to {MAX_STREAM_SUBSCRIPTIONS} subscriptions.",
                )
            )
        with self.lock:
            missing = [i for i in ids if i not in self._subscriptions]
        if missing:
            return Reply(200, b"", "text/xml; charset=utf-8", stream=iter([_subscriptions_not_found(missing)]))
        return Reply(200, b"", "text/xml; charset=utf-8", stream=self._stream(ids, minutes))

    def _stream(self, ids: list[str], minutes: int) -> Iterator[bytes]:
        """The open connection: notifications as they happen, ConnectionStatus OK when idle for the keep-alive
        interval, ConnectionStatus Closed at the connection timeout (or when another connection took over a
        subscription, or Exchange dropped one). The subscriptions' events wait in them while no connection is open."""
        connection = object()
        with self.lock:
            deadline = time.monotonic() + minutes * self._minute_seconds
            for subscription_id in ids:
                if subscription_id in self._subscriptions:  # one dropped meanwhile: the stream closes at once
                    self._subscriptions[subscription_id].connection = connection
            self._open_streams += 1
            self._streams_changed.notify_all()
        try:
            last_sent = time.monotonic()
            while not self._stopping.is_set():
                with self.lock:
                    ours = [self._subscriptions.get(i) for i in ids]
                    lost = any(s is None or s.connection is not connection for s in ours)
                    notifications = "" if lost else "".join(_notification(s) for s in ours if s and s.pending)
                    now = time.monotonic()
                    wake = min(deadline, last_sent + self._keepalive_seconds)
                    if not notifications and not lost and now < wake:
                        self._streams_changed.wait(wake - now)
                        continue
                if notifications:
                    yield _streaming_message(f"<m:Notifications>{notifications}</m:Notifications>")
                elif lost or now >= deadline:
                    break
                else:
                    yield _streaming_message("<m:ConnectionStatus>OK</m:ConnectionStatus>")
                last_sent = time.monotonic()
            yield _streaming_message("<m:ConnectionStatus>Closed</m:ConnectionStatus>")
        finally:
            with self.lock:
                for subscription_id in ids:
                    subscription = self._subscriptions.get(subscription_id)
                    if subscription is not None and subscription.connection is connection:
                        subscription.connection = None
                self._open_streams -= 1
                self._streams_changed.notify_all()


def _watermark(number: int) -> str:
    return f"AQAAA{number:012d}"


def _notification(subscription: StreamingSubscription) -> str:
    """One `m:Notification` with the subscription's pending events, which it takes (lock held)."""
    previous = _watermark(max(0, subscription.watermark - len(subscription.pending)))
    events = "".join(subscription.pending)
    subscription.pending.clear()
    return (
        f"<m:Notification><t:SubscriptionId>{subscription.id}</t:SubscriptionId>"
        f"<t:PreviousWatermark>{previous}</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>"
        f"{events}</m:Notification>"
    )


def _streaming_message(content: str) -> bytes:
    return envelope(
        _response(
            "GetStreamingEvents",
            '<m:GetStreamingEventsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"{content}</m:GetStreamingEventsResponseMessage>",
        )
    )


def _subscriptions_not_found(ids: list[str]) -> bytes:
    listed = "".join(f"<m:SubscriptionId>{escape(i)}</m:SubscriptionId>" for i in ids)
    return envelope(
        _response(
            "GetStreamingEvents",
            '<m:GetStreamingEventsResponseMessage ResponseClass="Error">'
            "<m:MessageText>The specified subscription was not found.</m:MessageText>"
            "<m:ResponseCode>ErrorSubscriptionNotFound</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
            f"<m:ErrorSubscriptionIds>{listed}</m:ErrorSubscriptionIds>"
            "<m:ConnectionStatus>Closed</m:ConnectionStatus></m:GetStreamingEventsResponseMessage>",
        )
    )


def _calendar_item(instance: Instance, mailbox: Mailbox) -> str:
    """One `t:CalendarItem` as FindItem returns it with the provider's AdditionalProperties."""
    event = instance.record.event
    zone_id = WINDOWS_ZONE_IDS[mailbox.timezone]
    item_id = quoteattr(instance.id)
    change_key = quoteattr(instance.record.change_key)
    return (
        f"<t:CalendarItem><t:ItemId Id={item_id} ChangeKey={change_key}/>"
        f"<t:Subject>{escape(event.subject)}</t:Subject>"
        f"<t:Sensitivity>{'Private' if event.private else 'Normal'}</t:Sensitivity>"
        f"<t:Start>{_utc(instance.start)}</t:Start><t:End>{_utc(instance.end)}</t:End>"
        f"<t:IsAllDayEvent>{'true' if event.all_day else 'false'}</t:IsAllDayEvent>"
        f"<t:LegacyFreeBusyStatus>{FREE_BUSY[event.show_as]}</t:LegacyFreeBusyStatus>"
        f"<t:IsCancelled>{'true' if event.cancelled else 'false'}</t:IsCancelled>"
        f"<t:MyResponseType>{RESPONSE_TYPES[event.response]}</t:MyResponseType>"
        f'<t:StartTimeZone Id="{zone_id}"/><t:EndTimeZone Id="{zone_id}"/>'
        "</t:CalendarItem>"
    )


def _encode_sync_state(generation: int, mailbox: str, version: int) -> str:
    """An opaque sync state, base64 as Exchange's are."""
    return base64.b64encode(f"{generation}|{mailbox}|{version}".encode()).decode()


def _decode_sync_state(state: str) -> tuple[int, str, int]:
    try:
        generation, mailbox, version = base64.b64decode(state, validate=True).decode().split("|")
        return int(generation), mailbox, int(version)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("not a sync state") from error


def _peek(body: bytes) -> tuple[str, str | None]:
    """The SOAP operation and impersonated mailbox of a request body, for the operation log."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "(not XML)", None
    operation = root.find(f"{SOAP}Body")
    name = _local(operation[0].tag) if operation is not None and len(operation) else "(no body)"
    mailbox = root.findtext(f"{SOAP}Header/{T}ExchangeImpersonation/{T}ConnectingSID/{T}PrimarySmtpAddress")
    return name, mailbox
