"""Exchange on-premises calendars through EWS (exchangelib 5.6.0), converted at the edge into the engine's `Event`.

No autodiscover and no version probe: the endpoint and server build come from the settings. A service account
reads every employee's calendar through ApplicationImpersonation, one `FindItem` with a `CalendarView` per
mailbox (recurrences expanded by Exchange). Change notifications come from streaming subscriptions (Subscribe with
a StreamingSubscriptionRequest on the default calendar, GetStreamingEvents over a connection that stays open,
Unsubscribe), which the `stream_ews` listener (sync/streaming.py) holds open; mailboxes are grouped, up to 200 a
connection, with the affinity headers Microsoft's "Maintain affinity between a group of subscriptions and the
Mailbox server" asks for. The webhook-style `subscribe`/`renew`/`unsubscribe` of the other providers do not apply.

Throttling uses exchangelib's default `FailFast` policy: the worker never sleeps; an `ErrorServerBusy` becomes
`Throttled(retry_after=back_off)`, no further mailbox is asked, and the users not yet read are requeued with that
delay. A mailbox that cannot be read (out of the impersonation scope, missing, being moved) fails alone.

Subjects pass into `Event` because the engine reads & codes from them; they are never logged or stored here, and
no error message quotes an event.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from exchangelib import (
    IMPERSONATION,
    Account,
    Build,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    FailFast,
    Version,
)
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorExpiredSubscription,
    ErrorImpersonateUserDenied,
    ErrorImpersonationDenied,
    ErrorImpersonationFailed,
    ErrorInvalidExchangeImpersonationHeaderData,
    ErrorInvalidSubscription,
    ErrorInvalidSyncStateData,
    ErrorMailboxMoveInProgress,
    ErrorMailboxStoreUnavailable,
    ErrorNameResolutionNoResults,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    ErrorSubscriptionNotFound,
    ErrorSubscriptionUnsubsribed,
    ErrorTimeoutExpired,
    EWSError,
    RateLimitError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.folders import Calendar, Root
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import Protocol
from exchangelib.services import GetStreamingEvents, SubscribeToStreaming, Unsubscribe
from exchangelib.transport import BASIC
from exchangelib.util import MNS, get_xml_attrs

from sync.errors import SyncErrorCode
from sync.providers.base import (
    AuthError,
    CalendarChanges,
    CalendarReads,
    ChangeReads,
    DirectoryUser,
    NotFound,
    PermissionMissing,
    ProviderError,
    TemporaryError,
    Throttled,
)
from sync.rules.model import Event

IMPERSONATION_ROLE = "ApplicationImpersonation"
DEFAULT_BACK_OFF_SECONDS = 10.0  # exchangelib's back-off for an HTTP 503 without a hint
VIEW_FIELDS = (
    "subject",
    "start",
    "end",
    "is_all_day",
    "legacy_free_busy_status",
    "my_response_type",
    "is_cancelled",
    "sensitivity",
    "id",
)
GROUP_TYPES = {"PublicDL", "PrivateDL"}
# MailboxType values of members without a calendar of their own (contacts, public folders, Microsoft 365 group
# mailboxes, one-off addresses): not users to activate. "Mailbox" (and an unknown or missing type) is a user.
NOT_USER_TYPES = {"Contact", "PublicFolder", "GroupMailbox", "OneOff", "ImplicitContact"}
NO_PUSH = "EWS pushes through streaming subscriptions (sync/streaming.py), not webhooks"
# The calendar events a streaming subscription asks for: anything that adds, changes or removes an appointment.
STREAM_EVENT_TYPES = ("CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "CopiedEvent")
AFFINITY_COOKIE = "X-BackEndOverrideCookie"
# Errors that say Exchange no longer holds a subscription: subscribe again (and read the calendar in full).
_SUBSCRIPTION_GONE = (
    ErrorSubscriptionNotFound,
    ErrorExpiredSubscription,
    ErrorInvalidSubscription,
    ErrorSubscriptionUnsubsribed,
)
SYNC_PAGE_SIZE = 512  # SyncFolderItems' largest MaxChangesReturned

SHOW_AS = {
    "Free": "free",
    "Tentative": "tentative",
    "Busy": "busy",
    "OOF": "oof",
    "WorkingElsewhere": "workingElsewhere",
    "NoData": "unknown",
}
RESPONSES = {
    "Accept": "accepted",
    "Tentative": "tentative",
    "Decline": "declined",
    "Organizer": "organizer",
    "NoResponseReceived": "none",
    "Unknown": "none",
}
PRIVATE_SENSITIVITIES = {"Private", "Confidential"}

_T = TypeVar("_T")
# Errors about the server, not one mailbox: a busy server is asked nothing more until its back-off has passed;
# a server that does not answer (or refuses the password) fails the whole read at once.
_SERVER_BUSY = (ErrorServerBusy, RateLimitError)
_SERVER_DOWN = (UnauthorizedError, ErrorTimeoutExpired)  # and a bare TransportError (TLS): see _server_down


# --- conversion at the edge -------------------------------------------------------------------------------------


def event_from_ews(item: Any, zone: ZoneInfo) -> Event:
    """The engine's `Event` for one exchangelib `CalendarItem` (from a CalendarView).

    Timed items come back in UTC and are returned aware in `zone`; all-day items come back as `EWSDate`s with
    an INCLUSIVE end, which becomes the engine's exclusive end (+1 day). Raises ValueError naming the field when
    the item is unusable; the message never quotes the subject.
    """
    item_id = getattr(item, "id", None)
    if not isinstance(item_id, str) or not item_id:
        raise ValueError("item without an id")
    all_day = item.is_all_day is True
    start, end = item.start, item.end
    if all_day:
        if not isinstance(start, dt.date) or not isinstance(end, dt.date):
            raise ValueError(f"item {item_id}: all-day item without start and end dates")
        first, last = _plain_date(start), _plain_date(end)
        start_value: dt.datetime | dt.date = first
        end_value: dt.datetime | dt.date = max(last, first) + dt.timedelta(days=1)
    else:
        if not isinstance(start, dt.datetime) or not isinstance(end, dt.datetime):
            raise ValueError(f"item {item_id}: timed item without start and end times")
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError(f"item {item_id}: start or end without a time zone")
        start_value, end_value = _plain_datetime(start, zone), _plain_datetime(end, zone)
    subject = item.subject
    return Event(
        id=item_id,
        start=start_value,
        end=end_value,
        all_day=all_day,
        subject=subject if isinstance(subject, str) else "",
        show_as=SHOW_AS.get(item.legacy_free_busy_status or "Busy", "unknown"),
        response=RESPONSES.get(item.my_response_type or "Unknown", "none"),
        cancelled=item.is_cancelled is True,
        private=item.sensitivity in PRIVATE_SENSITIVITIES,
    )


def _plain_date(value: dt.date) -> dt.date:
    """A `datetime.date` (EWSDate is a subclass; the engine wants the plain type)."""
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date(value.year, value.month, value.day)


def _plain_datetime(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A standard-library datetime in `zone` (EWSDateTime refuses non-EWS zones, so rebuild it from its fields)."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("a time without a time zone")
    naive = dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    return (naive - offset).replace(tzinfo=dt.UTC).astimezone(zone)


def _server_down(cause: BaseException | None) -> bool:
    """True for an error about reaching the server (or signing in to it), which no other mailbox would escape."""
    return isinstance(cause, _SERVER_DOWN) or type(cause) is TransportError


# --- streaming notifications ------------------------------------------------------------------------------------


class SubscriptionsLost(ProviderError):
    """Exchange no longer holds these streaming subscriptions (expired, unknown, unsubscribed): subscribe again."""

    default_code = SyncErrorCode.NOT_FOUND

    def __init__(self, message: str, *, subscription_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.subscription_ids = list(subscription_ids)


class Affinity:
    """A group of mailboxes whose subscriptions share one mailbox server: the anchor mailbox (X-AnchorMailbox on
    every request of the group) and the X-BackEndOverrideCookie the first subscription's answer set."""

    def __init__(self, anchor: str) -> None:
        self.anchor = anchor
        self.cookie: str | None = None


class _Grouped:
    """exchangelib's services with the group's affinity headers instead of the impersonated mailbox's own: the
    anchor's X-AnchorMailbox, X-PreferServerAffinity, and the group's X-BackEndOverrideCookie as a cookie (and as
    exchangelib's header of that name). The cookie is taken out of the HTTP session's jar, which the groups share
    through exchangelib's session pool, so no group's request carries another group's cookie."""

    affinity: Affinity

    def _extra_headers(self) -> dict[str, str]:
        headers: dict[str, str] = super()._extra_headers()  # type: ignore[misc]
        headers["X-AnchorMailbox"] = self.affinity.anchor
        headers["X-PreferServerAffinity"] = "True"
        headers.pop("X-BackEndOverrideCookie", None)
        if self.affinity.cookie:
            headers["X-BackEndOverrideCookie"] = self.affinity.cookie
            headers["Cookie"] = f"{AFFINITY_COOKIE}={self.affinity.cookie}"
        return headers

    def _handle_response_cookies(self, session: Any) -> None:
        super()._handle_response_cookies(session)  # type: ignore[misc]
        for cookie in list(session.cookies):
            if cookie.name == AFFINITY_COOKIE:
                self.affinity.cookie = cookie.value
                session.cookies.clear(cookie.domain, cookie.path, cookie.name)


class _Subscribe(_Grouped, SubscribeToStreaming):
    def __init__(self, *, account: Account, affinity: Affinity) -> None:
        self.affinity = affinity
        super().__init__(account=account)


class _Unsubscribe(_Grouped, Unsubscribe):
    def __init__(self, *, account: Account, affinity: Affinity) -> None:
        self.affinity = affinity
        super().__init__(account=account)


class _StreamingEvents(_Grouped, GetStreamingEvents):
    """GetStreamingEvents that also keeps the ErrorSubscriptionIds of an error answer."""

    def __init__(self, *, account: Account, affinity: Affinity) -> None:
        self.affinity = affinity
        self.failed_subscription_ids: list[str] = []
        self.closing = False
        super().__init__(account=account)

    def _get_response(self, payload: Any, api_version: Any) -> Any:
        response = super()._get_response(payload, api_version)
        if self.closing:  # closed while the request was on its way: do not wait for the first message
            self.stop_streaming()
        return response

    def _get_element_container(self, message: Any, name: Any = None) -> Any:
        errors = message.find(f"{{{MNS}}}ErrorSubscriptionIds")
        if errors is not None:
            self.failed_subscription_ids = list(get_xml_attrs(errors, f"{{{MNS}}}SubscriptionId"))
        return super()._get_element_container(message, name)


class NotificationStream:
    """One open GetStreamingEvents connection. Iterating yields the subscription id of each notification as it
    arrives, and ends when Exchange closes the connection at its timeout (ConnectionStatus Closed); `close()`,
    from another thread, ends it early (the iteration then ends without an error)."""

    def __init__(self, provider: EwsProvider, service: _StreamingEvents, subscription_ids: list[str], minutes: int):
        self._provider = provider
        self._service = service
        self._ids = subscription_ids
        self._minutes = minutes
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        subject = f"the streaming notifications of {len(self._ids)} calendar(s)"
        if self._closed.is_set():
            return
        try:
            for notification in self._service.call(subscription_ids=self._ids, connection_timeout=self._minutes):
                if self._closed.is_set():
                    return
                if isinstance(notification, Exception):
                    raise notification
                if notification.events:
                    yield notification.subscription_id
        except Exception as error:
            if self._closed.is_set():
                return
            if isinstance(error, _SUBSCRIPTION_GONE):
                lost = self._service.failed_subscription_ids or self._ids
                raise SubscriptionsLost(
                    f"Exchange no longer holds {len(lost)} streaming subscription(s) ({type(error).__name__}).",
                    subscription_ids=lost,
                ) from error
            raise self._provider._translate(error, subject) from error
        finally:
            with suppress(Exception):
                self._service.stop_streaming()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """End the connection now (safe from any thread; the iterating thread sees the end of the stream and gives
        the HTTP session back). The socket is shut down rather than closed: closing the response from here waited
        for the reading thread's buffer lock, that is for Exchange's next message or keep-alive, so stopping N
        streams one after the other took N keep-alive periods."""
        self._closed.set()
        self._service.closing = True
        _interrupt(getattr(self._service, "_streaming_response", None))


def _interrupt(response: Any) -> None:
    """Wake a thread blocked reading this streamed HTTP response: shut its socket down (no lock taken)."""
    raw = getattr(response, "raw", None)
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is None:  # urllib3 hands the connection over to the response body's file object
        buffered = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(buffered, "raw", None), "_sock", None)
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# --- the provider -------------------------------------------------------------------------------------------------


def _default_calendar(account: Account, smtp: str) -> Calendar:
    """The mailbox's default calendar by its distinguished id: FindItem names it directly, so no GetFolder
    round trips discover the folder tree first (exchangelib's `account.calendar` costs two per mailbox)."""
    mailbox = Mailbox(email_address=smtp)
    root = Root(
        account=account, _distinguished_id=DistinguishedFolderId(id=Root.DISTINGUISHED_FOLDER_ID, mailbox=mailbox)
    )
    return Calendar(
        root=root, _distinguished_id=DistinguishedFolderId(id=Calendar.DISTINGUISHED_FOLDER_ID, mailbox=mailbox)
    )


class EwsProvider:
    """One Exchange organisation reached through its EWS endpoint with a Basic-auth service account."""

    supports_push = False

    def __init__(
        self,
        endpoint: str,
        username: str,
        password: str,
        *,
        version_build: str = "15.1.2507.0",
        timezone: str = "Europe/Oslo",
        timeout: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        """`max_connections`: mailboxes read at the same time through this service account (exchangelib's
        default of one would serialise every reader thread; Exchange's EWSMaxConcurrency default is 10)."""
        self.endpoint = endpoint
        self.username = username
        self.timezone = timezone
        self.timeout = timeout
        self._zone = ZoneInfo(timezone)
        self._ews_zone = EWSTimeZone(timezone)
        try:
            parts = [int(part) for part in version_build.split(".")]
            build = Build(*parts)
        except (TypeError, ValueError) as error:
            raise ValueError(f"version_build must look like 15.1.2507.0, not {version_build!r}") from error
        self._config = Configuration(
            service_endpoint=endpoint,
            credentials=Credentials(username, password),
            auth_type=BASIC,
            version=Version(build=build),
            retry_policy=FailFast(),
            max_connections=max_connections,
        )
        self._accounts: dict[str, Account] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the password
        return f"EwsProvider(endpoint={self.endpoint!r}, username={self.username!r})"

    def close(self) -> None:
        """Close this provider's HTTP sessions and forget its cached exchangelib Protocol (others untouched)."""
        with self._lock:
            self._accounts.clear()
        try:
            protocol = Protocol[self._config]  # type: ignore[misc]  # CachingProtocol.__getitem__
        except KeyError:
            return
        if isinstance(protocol, tuple):
            protocol = protocol[0]
        if not isinstance(protocol, Exception):
            protocol.close()
        with suppress(KeyError):
            del Protocol[self._config]  # type: ignore[attr-defined]

    def reserve_sessions(self, sessions: int) -> None:
        """Let exchangelib's session pool for this server and account grow to at least `sessions` HTTP sessions.
        exchangelib keeps one pool per server and account, shared by every provider with them, capped at the size
        its first user asked for (`max_connections`); a request that finds no session waits for one without end.
        Never lowers the cap; sessions are still made only when needed."""
        protocol = Protocol(config=self._config)
        if protocol.max_connections < sessions:
            protocol.max_connections = sessions

    def _account(self, smtp: str) -> Account:
        key = smtp.casefold()
        with self._lock:
            account = self._accounts.get(key)
            if account is None:
                account = Account(
                    primary_smtp_address=smtp,
                    config=self._config,
                    autodiscover=False,
                    access_type=IMPERSONATION,
                    default_timezone=self._ews_zone,
                )
                self._accounts[key] = account
        account.protocol.TIMEOUT = self.timeout  # the instance's own limit (exchangelib's class default is 120 s)
        return account

    @contextmanager
    def _errors(self, subject: str) -> Iterator[None]:
        """Turn exchangelib's errors into the provider errors, in plain words; `subject` names what was asked."""
        try:
            yield
        except ProviderError:
            raise
        except Exception as error:  # exchangelib raises many kinds (EWSError, ValueError from parsing, …)
            raise self._translate(error, subject) from error

    def _translate(self, error: Exception, subject: str) -> ProviderError:
        server = f"the Exchange server ({self.endpoint})"
        if isinstance(error, UnauthorizedError):
            return AuthError(
                f"{server} refused the service account {self.username!r}: the user name or password is wrong, "
                "or the account is locked. Check the EWS user name and password in the settings."
            )
        if isinstance(error, ErrorServerBusy):
            back_off = float(error.back_off) if error.back_off else DEFAULT_BACK_OFF_SECONDS
            if "503" in str(error):
                return TemporaryError(
                    f"{server} is unavailable (HTTP 503); the sync tries again in {back_off:g} s.", retry_after=back_off
                )
            return Throttled(
                f"{server} is busy and asked us to wait {back_off:g} s; the sync tries again then.",
                retry_after=back_off,
            )
        if isinstance(error, RateLimitError):
            return Throttled(f"{server} is busy; the sync tries again later.", retry_after=DEFAULT_BACK_OFF_SECONDS)
        if isinstance(
            error,
            ErrorImpersonateUserDenied
            | ErrorImpersonationDenied
            | ErrorImpersonationFailed
            | ErrorInvalidExchangeImpersonationHeaderData,
        ):
            return PermissionMissing(
                f"Exchange does not let the service account {self.username!r} impersonate the owner of {subject} "
                f"({type(error).__name__}): an Exchange administrator must give it the {IMPERSONATION_ROLE} role "
                f"(New-ManagementRoleAssignment -Role {IMPERSONATION_ROLE} -User {self.username}) with a management "
                "scope that includes this mailbox, or remove the user from the activation group.",
                permission=IMPERSONATION_ROLE,
            )
        if isinstance(error, ErrorAccessDenied):
            return PermissionMissing(
                f"Exchange denied the service account {self.username!r} access to {subject}: check its "
                f"{IMPERSONATION_ROLE} role and scope.",
                permission=IMPERSONATION_ROLE,
            )
        if isinstance(error, ErrorNonExistentMailbox):
            return NotFound(
                f"Exchange does not know {subject}: check the address.", code=SyncErrorCode.MAILBOX_NOT_FOUND
            )
        if isinstance(error, ErrorNameResolutionNoResults):
            return NotFound(f"Exchange does not know {subject}: check the address.")
        if isinstance(error, ErrorTimeoutExpired):
            return TemporaryError(
                f"{server} could not be reached or did not answer within {self.timeout:g} s: check the address "
                "and the network; the sync tries again later."
            )
        if isinstance(error, ErrorMailboxMoveInProgress):
            return TemporaryError(
                f"Exchange is moving the mailbox to another database, so {subject} is unavailable until the move "
                "ends; the sync tries again."
            )
        if isinstance(error, ErrorMailboxStoreUnavailable):
            return TemporaryError(f"Exchange's mailbox database for {subject} is unavailable; the sync tries again.")
        if isinstance(error, EWSError):
            return TemporaryError(
                f"{server} answered with an error ({type(error).__name__}) while reading {subject}; "
                "the sync tries again later."
            )
        return TemporaryError(
            f"{server} sent an answer we could not read ({type(error).__name__}) while reading {subject}; "
            "the sync tries again later."
        )

    def _call(self, subject: str, call: Callable[[], _T]) -> _T:
        with self._errors(subject):
            return call()

    # --- directory ---

    def list_users(self, group_id: str) -> list[DirectoryUser]:
        """The members of the distribution group (its SMTP address), nested groups expanded, each once."""
        users: dict[str, DirectoryUser] = {}
        seen_groups: set[str] = set()
        pending = [group_id]
        while pending:
            group = pending.pop(0)
            if group.casefold() in seen_groups:
                continue
            seen_groups.add(group.casefold())
            members = self._expand(group)
            for member in members:
                email = getattr(member, "email_address", None)
                if not email:
                    continue
                kind = getattr(member, "mailbox_type", None)
                if kind in GROUP_TYPES:
                    pending.append(email)
                elif kind not in NOT_USER_TYPES and email.casefold() not in users:
                    users[email.casefold()] = DirectoryUser(id=email, email=email, name=member.name or email)
        return list(users.values())

    def _expand(self, group: str) -> list[Any]:
        protocol = self._account(self.username).protocol
        return self._call(f"the distribution group {group!r}", lambda: list(protocol.expand_dl(group)))

    # --- calendars ---

    def read_events(self, user_ids: Sequence[str], start: dt.datetime, end: dt.datetime) -> CalendarReads:
        """Every mailbox's events in [start, end), recurrences expanded: one FindItem per mailbox.

        A mailbox that cannot be read (missing, outside the impersonation role's scope, being moved, its database
        down) is left out of the answer with the reason in `failures`; the other mailboxes are read normally. When
        Exchange answers ErrorServerBusy, nothing more is asked: the mailboxes not yet read wait for its back-off
        (in `failures`, as Throttled). A wrong password or an unreachable server fails the whole call at once.
        When no mailbox could be read, the failure is raised instead if every one was passing (busy, an outage)
        or every one was an impersonation refusal (then the role is missing, not just out of scope for one).
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("read_events needs timezone-aware start and end")
        view_start, view_end = self._ews_time(start), self._ews_time(end)
        reads = CalendarReads()
        self._each_mailbox(user_ids, reads, lambda smtp: self._read_mailbox(smtp, view_start, view_end))
        return reads

    def read_changes(self, cursors: Mapping[str, str | None], start: dt.datetime, end: dt.datetime) -> ChangeReads:
        """What changed in each mailbox's calendar since its cursor (a SyncFolderItems sync state).

        SyncFolderItems reports items of the calendar folder (recurring masters, not their occurrences), IdOnly:
        when it reports nothing, nothing changed and that is the whole answer (one request per mailbox); when it
        reports any change, or there is no cursor yet, the window is read in full with a CalendarView FindItem
        (occurrences expanded) and the user's answer is a full read. A sync state Exchange refuses
        (ErrorInvalidSyncStateData) is dropped and the mailbox read in full. Failures as `read_events`.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("read_changes needs timezone-aware start and end")
        view_start, view_end = self._ews_time(start), self._ews_time(end)
        reads = ChangeReads()
        self._each_mailbox(
            list(cursors), reads, lambda smtp: self._mailbox_changes(smtp, cursors[smtp], view_start, view_end)
        )
        return reads

    def _mailbox_changes(self, smtp: str, cursor: str | None, start: EWSDateTime, end: EWSDateTime) -> CalendarChanges:
        subject = f"the calendar of {smtp}"
        account = self._account(smtp)

        def sync(state: str | None) -> tuple[int, str]:
            folder = _default_calendar(account, smtp)
            changes = 0
            for change in folder.sync_items(sync_state=state, only_fields=[], max_changes_returned=SYNC_PAGE_SIZE):
                if isinstance(change, Exception):
                    raise change
                changes += 1
            return changes, str(folder.item_sync_state or "")

        try:
            changes, state = self._call(subject, lambda: sync(cursor))
        except ProviderError as error:
            if not cursor or not isinstance(error.__cause__, ErrorInvalidSyncStateData):
                raise
            cursor = None  # Exchange no longer knows it: start again
            changes, state = self._call(subject, lambda: sync(None))
        if not state:
            raise TemporaryError(f"Exchange ended a SyncFolderItems of {subject} without a sync state.")
        if cursor and not changes:
            return CalendarChanges(events=(), removed=frozenset(), cursor=state, full=False)
        events = self._read_mailbox(smtp, start, end)
        return CalendarChanges(events=tuple(events), removed=frozenset(), cursor=state, full=True)

    def _each_mailbox(
        self, user_ids: Iterable[str], reads: CalendarReads | ChangeReads, read: Callable[[str], Any]
    ) -> None:
        """Read each mailbox into `reads` (one mailbox's failure in `reads.failures`); see `read_events`."""
        wanted = list(dict.fromkeys(user_ids))
        for index, smtp in enumerate(wanted):
            try:
                reads[smtp] = read(smtp)
            except ProviderError as error:
                cause = error.__cause__
                if isinstance(error, AuthError) or _server_down(cause):
                    raise
                if isinstance(cause, _SERVER_BUSY):  # ask no more until the back-off has passed
                    for waiting in wanted[index:]:
                        reads.failures[waiting] = error
                    break
                reads.failures[smtp] = error
        failures = list(reads.failures.values())
        if wanted and not reads and failures:
            if all(isinstance(error, Throttled | TemporaryError) for error in failures):
                throttled = [error for error in failures if isinstance(error, Throttled)]
                raise max(throttled, key=lambda error: error.retry_after) if throttled else failures[0]
            if all(isinstance(error, PermissionMissing) for error in failures):
                raise failures[0]

    def _ews_time(self, moment: dt.datetime) -> EWSDateTime:
        """An aware datetime as an EWSDateTime in the customer's zone (the CalendarView carries its offset)."""
        return EWSDateTime.from_datetime(_plain_datetime(moment, self._zone)).astimezone(self._ews_zone)

    def _read_mailbox(self, smtp: str, start: EWSDateTime, end: EWSDateTime) -> list[Event]:
        account = self._account(smtp)
        subject = f"the calendar of {smtp}"

        def fetch() -> list[Any]:
            return list(_default_calendar(account, smtp).view(start=start, end=end).only(*VIEW_FIELDS))

        items = self._call(subject, fetch)
        converted = []
        for item in items:
            if isinstance(item, Exception):  # exchangelib yields per-item errors instead of raising
                raise self._translate(item, subject) from item
            try:
                converted.append(event_from_ews(item, self._zone))
            except ValueError as error:
                raise TemporaryError(f"Exchange sent an event we could not read ({error}).") from error
        return converted

    # --- streaming notifications ---

    def subscribe_streaming(self, smtp: str, *, affinity: Affinity) -> str:
        """A streaming subscription to the mailbox's default calendar, impersonating its owner, in the group of
        `affinity`; returns its id. A mailbox that cannot be subscribed raises the same errors as a read."""
        account = self._account(smtp)
        calendar = _default_calendar(account, smtp)

        def subscribe() -> str:
            return str(
                _Subscribe(account=account, affinity=affinity).get(folders=[calendar], event_types=STREAM_EVENT_TYPES)
            )

        return self._call(f"the calendar of {smtp}", subscribe)

    def open_stream(self, subscription_ids: Sequence[str], *, affinity: Affinity, minutes: int) -> NotificationStream:
        """A GetStreamingEvents connection for the group's subscriptions (at most 200), impersonating the anchor,
        that Exchange keeps open for `minutes` (1–30) and then closes; nothing is sent until it is iterated."""
        if not 1 <= minutes <= 30:
            raise ValueError("a streaming connection lasts 1 to 30 minutes")
        service = _StreamingEvents(account=self._account(affinity.anchor), affinity=affinity)
        return NotificationStream(self, service, list(subscription_ids), minutes)

    def unsubscribe_streaming(self, smtp: str, subscription_id: str, *, affinity: Affinity) -> None:
        """End a streaming subscription; one Exchange no longer holds counts as ended."""
        account = self._account(smtp)
        try:
            self._call(
                f"the subscription of {smtp}",
                lambda: _Unsubscribe(account=account, affinity=affinity).get(
                    expect_result=None, subscription_id=subscription_id
                ),
            )
        except ProviderError as error:
            if not isinstance(error.__cause__, _SUBSCRIPTION_GONE):
                raise

    @staticmethod
    def fails_every_mailbox(error: ProviderError) -> bool:
        """True for an error about the server or the service account (wrong password, unreachable, busy), which
        no other mailbox would escape; False for one mailbox's own problem (out of scope, missing, being moved)."""
        cause = error.__cause__
        return isinstance(error, AuthError) or _server_down(cause) or isinstance(cause, _SERVER_BUSY)

    def subscribe(
        self, user_id: str, notification_url: str, client_state: str, expires: dt.datetime, lifecycle_url: str | None
    ) -> tuple[str, dt.datetime]:
        raise NotImplementedError(NO_PUSH)

    def renew(self, subscription_id: str, expires: dt.datetime) -> dt.datetime:
        raise NotImplementedError(NO_PUSH)

    def unsubscribe(self, subscription_id: str) -> None:
        raise NotImplementedError(NO_PUSH)

    # --- test connection ---

    def check(self, *, group_id: str | None = None, mailbox: str | None = None) -> list[str]:
        """Problems in plain words, for the admin's "test connection"; empty means all good.

        Lists the group (when given) and reads one calendar for the next hour through impersonation: `mailbox`,
        else the group's first member, else the service account's own mailbox.
        """
        problems: list[str] = []
        target = mailbox
        if group_id:
            try:
                users = self.list_users(group_id)
            except AuthError as error:
                return [str(error)]
            except ProviderError as error:
                problems.append(str(error))
            else:
                if not users:
                    problems.append(
                        f"The group {group_id!r} has no members: add the employees whose calendars should be pushed."
                    )
                elif target is None:
                    target = users[0].email
        now = dt.datetime.now(dt.UTC)
        try:
            self._read_mailbox(
                target or self.username,
                self._ews_time(now),
                self._ews_time(now + dt.timedelta(hours=1)),
            )
        except ProviderError as error:
            problems.append(str(error))
        return list(dict.fromkeys(problems))
