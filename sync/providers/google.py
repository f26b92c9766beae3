"""Google Workspace calendars through google-auth + google-api-python-client: a service account with domain-wide
delegation acts as each user (one credential per user), Calendar v3 reads (batched first pages), `events.watch`
channels and the Admin SDK Directory for group members; converted at the edge into the engine's `Event`.

Subjects pass into `Event` because the engine reads & codes from them; they are never logged or stored here,
and no error message quotes an event.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest

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
    parse_retry_after,
)
from sync.rules.model import Event

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.readonly"
DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.group.member.readonly"
USER_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
SCOPES = (CALENDAR_SCOPE, DIRECTORY_SCOPE)  # every user's and the admin's token
# The admin's token for users' names (the member list carries none), asked for on its own: a domain that has not
# delegated it still syncs, and its users keep the names they have.
NAME_SCOPES = (USER_SCOPE,)
ALL_SCOPES = (*SCOPES, *NAME_SCOPES)
BATCH_LIMIT = 50  # Google's maximum number of calls in one Calendar batch
PAGE_SIZE = 250
MEMBER_PAGE_SIZE = 200
USER_PAGE_SIZE = 500  # users.list's maximum
DEFAULT_THROTTLE_SECONDS = 5.0
MIN_THROTTLE_SECONDS, MAX_THROTTLE_SECONDS = 1.0, 30.0
logger = logging.getLogger(__name__)
_LOGIN_OUTAGES = {"internal_failure", "server_error", "temporarily_unavailable"}
_RATE_LIMIT_REASONS = {"ratelimitexceeded", "userratelimitexceeded", "quotaexceeded"}
_RESPONSES = {"accepted": "accepted", "tentative": "tentative", "declined": "declined", "needsaction": "none"}
_DELEGATION = (
    "in the Google Admin console → Security → Access and data control → API controls → Domain-wide delegation, "
    "add the service account's client ID {client_id} with the scopes " + ",".join(ALL_SCOPES)
)

# Address and token of the channels this process watches, for `renew` (Google cannot extend a channel).
_WATCHED: dict[str, tuple[str, str]] = {}
_WATCHED_LOCK = threading.Lock()

_NETWORK_ERRORS = (OSError, socket.timeout, httplib2.HttpLib2Error, auth_exceptions.TransportError)


# --- conversion at the edge -------------------------------------------------------------------------------------


def event_from_google(item: Mapping[str, Any], zone: str) -> Event:
    """The engine's `Event` for one Calendar v3 event resource (a single event or an expanded occurrence).

    All-day events carry `start.date`/`end.date` (end exclusive); timed ones `dateTime` with an offset, returned
    aware in `zone`. Raises ValueError naming the field when unusable; the message never quotes the summary.
    """
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("event without an id")
    start_field, end_field = item.get("start"), item.get("end")
    if not isinstance(start_field, Mapping) or not isinstance(end_field, Mapping):
        raise ValueError(f"event {event_id}: missing start or end")
    all_day = "date" in start_field and "dateTime" not in start_field
    target = ZoneInfo(zone)
    start: dt.date | dt.datetime
    end: dt.date | dt.datetime
    if all_day:
        start = _date(start_field.get("date"), f"event {event_id}: start")
        end = _date(end_field.get("date"), f"event {event_id}: end")
    else:
        start = _moment(start_field, f"event {event_id}: start").astimezone(target)
        end = _moment(end_field, f"event {event_id}: end").astimezone(target)
    event_type = item.get("eventType")
    if event_type == "outOfOffice":
        show_as = "oof"
    elif event_type == "workingLocation":
        show_as = "workingElsewhere"
    elif item.get("transparency") == "transparent":
        show_as = "free"
    else:
        show_as = "busy"
    summary = item.get("summary")
    return Event(
        id=event_id,
        start=start,
        end=end,
        all_day=all_day,
        subject=summary if isinstance(summary, str) else "",
        show_as=show_as,
        response=_response(item),
        cancelled=item.get("status") == "cancelled",
        private=item.get("visibility") in ("private", "confidential"),
    )


def _response(item: Mapping[str, Any]) -> str:
    organizer = item.get("organizer")
    if isinstance(organizer, Mapping) and organizer.get("self") is True:
        return "organizer"
    attendees = item.get("attendees")
    if isinstance(attendees, list):
        for attendee in attendees:
            if isinstance(attendee, Mapping) and attendee.get("self") is True:
                if attendee.get("organizer") is True:
                    return "organizer"
                return _RESPONSES.get(str(attendee.get("responseStatus")).casefold(), "none")
    return "accepted"  # no attendee list: the user's own event


def _date(value: Any, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as error:
        raise ValueError(f"{field}: not a date") from error


def _moment(value: Mapping[str, Any], field: str) -> dt.datetime:
    text = value.get("dateTime")
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError as error:
        raise ValueError(f"{field}: not an RFC 3339 time") from error
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=ZoneInfo(str(value.get("timeZone") or "UTC")))
    return moment


def _rfc3339(moment: dt.datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("Google times must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the provider -------------------------------------------------------------------------------------------------


class GoogleProvider:
    """One Google Workspace domain, read by a service account with domain-wide delegation."""

    def __init__(
        self,
        service_account_info: dict[str, Any],
        admin_subject: str,
        *,
        token_url: str,
        calendar_base_url: str,
        directory_base_url: str,
        timezone: str = "Europe/Oslo",
        timeout: float = 10.0,
    ) -> None:
        ZoneInfo(timezone)  # fail early on a bad setting
        self.admin_subject = admin_subject
        self.token_url = token_url
        self.calendar_base_url = calendar_base_url.rstrip("/") + "/"
        self.directory_base_url = directory_base_url.rstrip("/") + "/"
        self.timezone = timezone
        self.timeout = timeout
        self.client_id = str(service_account_info.get("client_id") or "?")
        self._info = dict(service_account_info, token_uri=token_url)
        self._base: service_account.Credentials | None = None
        self._credentials: dict[tuple[str, tuple[str, ...]], service_account.Credentials] = {}
        self._lock = threading.Lock()
        self._events_resource: Any = None

    def __repr__(self) -> str:  # never the key
        return f"GoogleProvider(client_id={self.client_id!r}, admin_subject={self.admin_subject!r})"

    @property
    def batch_url(self) -> str:
        """`BatchHttpRequest` ignores api_endpoint: the batch address is the calendar root's `batch/calendar/v3`."""
        root = self.calendar_base_url.removesuffix("calendar/v3/")
        return f"{root}batch/calendar/v3"

    # --- credentials and services ---

    def _credentials_for(self, subject: str, scopes: tuple[str, ...] = SCOPES) -> service_account.Credentials:
        with self._lock:
            if self._base is None:
                try:
                    self._base = service_account.Credentials.from_service_account_info(self._info, scopes=SCOPES)
                except (ValueError, KeyError, TypeError) as error:
                    raise AuthError(
                        "The service account key cannot be read: download a new JSON key for the service account in "
                        "Google Cloud console → IAM & Admin → Service accounts → Keys and paste all of it here."
                    ) from error
            credentials = self._credentials.get((subject, scopes))
            if credentials is None:
                base = self._base if scopes == SCOPES else self._base.with_scopes(list(scopes))
                credentials = base.with_subject(subject)
                self._credentials[(subject, scopes)] = credentials
            return credentials

    def _http(self, subject: str, scopes: tuple[str, ...] = SCOPES) -> google_auth_httplib2.AuthorizedHttp:
        # httplib2 is not thread-safe: a fresh connection object per service, sharing the user's cached token.
        return google_auth_httplib2.AuthorizedHttp(
            self._credentials_for(subject, scopes), http=httplib2.Http(timeout=self.timeout)
        )

    def _events_for(self, subject: str, **params: Any) -> tuple[Any, Any]:
        """(events resource, `events.list` request) acting as `subject`. The resource is built once per provider
        (building one parses the discovery document: most of a sweep's CPU when done per user); each request
        carries the user's own authorised connection, which a batch uses for that part's credentials."""
        with self._lock:
            if self._events_resource is None:
                self._events_resource = build(
                    "calendar",
                    "v3",
                    http=httplib2.Http(timeout=self.timeout),
                    static_discovery=True,
                    cache_discovery=False,
                    client_options={"api_endpoint": self.calendar_base_url},
                ).events()
            resource = self._events_resource
        request = resource.list(**params)
        request.http = self._http(subject)
        return resource, request

    def _calendar(self, subject: str) -> Any:
        return build(
            "calendar",
            "v3",
            http=self._http(subject),
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": self.calendar_base_url},
        )

    def _directory(self, scopes: tuple[str, ...] = SCOPES) -> Any:
        return build(
            "admin",
            "directory_v1",
            http=self._http(self.admin_subject, scopes),
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": self.directory_base_url},
        )

    def _refresh(self, subject: str) -> None:
        """Fetch the user's token now (so a batch does not fail as a whole on one user's login)."""
        credentials = self._credentials_for(subject)
        if credentials.valid:
            return
        request = google_auth_httplib2.Request(httplib2.Http(timeout=self.timeout))
        self._call(lambda: credentials.refresh(request), subject=subject, what="sign in")

    def _call(self, action: Callable[[], Any], *, subject: str, what: str, not_found: str = "") -> Any:
        try:
            return action()
        except BatchError as error:
            raise TemporaryError(f"Google sent a batch answer we could not read ({what}).") from error
        except HttpError as error:
            raise self._api_error(error, not_found=not_found) from error
        except auth_exceptions.RefreshError as error:
            raise self._login_error(error, subject) from error
        except _NETWORK_ERRORS as error:
            raise TemporaryError(f"Google did not answer in time or could not be reached ({what}).") from error
        except (ValueError, TypeError, KeyError) as error:  # a body that is not JSON, or JSON of the wrong shape
            raise TemporaryError(f"Google sent an answer we could not read ({what}).") from error

    # --- errors in words ---

    def _login_error(self, error: auth_exceptions.RefreshError, subject: str) -> ProviderError:
        data = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], Mapping) else {}
        code = str(data.get("error") or "")
        description = str(data.get("error_description") or "")
        if getattr(error, "retryable", False) or code in {
            "internal_failure",
            "server_error",
            "temporarily_unavailable",
        }:
            return TemporaryError("Google sign-in is unavailable right now; the sync tries again later.")
        if code == "unauthorized_client":
            return PermissionMissing(
                "The service account is not allowed to act for the domain's users (domain-wide delegation is not "
                "granted): " + _DELEGATION.format(client_id=self.client_id) + ".",
                permission="domain-wide delegation",
            )
        if code == "invalid_grant" and "email" in description.casefold():
            return NotFound(f"Google does not know the user {subject}: check the address in Google Admin → Users.")
        if code in {"invalid_grant", "invalid_client"}:
            return AuthError(
                "Google refused the service account key (it is wrong, deleted or disabled): create a new JSON key in "
                "Google Cloud console → IAM & Admin → Service accounts → Keys and paste it here."
            )
        return AuthError(f"Google sign-in refused the service account ({code or 'no reason given'}).")

    def _api_error(self, error: HttpError, *, not_found: str) -> ProviderError:
        status = int(error.resp.status)
        reasons = _reasons(error)
        if status == 429 or (status == 403 and reasons & _RATE_LIMIT_REASONS):
            value = parse_retry_after(error.resp.get("retry-after"))
            seconds = DEFAULT_THROTTLE_SECONDS if value is None else value
            seconds = min(MAX_THROTTLE_SECONDS, max(MIN_THROTTLE_SECONDS, seconds))
            return Throttled(
                f"Google is throttling the service account; try again in {seconds:g} s.", retry_after=seconds
            )
        if status == 401:
            return AuthError(
                "Google refused the service account's token: check the key and that it belongs to this Workspace "
                "domain's project."
            )
        if status == 403:
            return PermissionMissing(
                "The service account lacks access: " + _DELEGATION.format(client_id=self.client_id) + ", and make "
                f"sure {self.admin_subject} is a Workspace administrator who may read groups and users.",
                permission=",".join(ALL_SCOPES),
            )
        if status == 404:
            return NotFound(not_found or "Google did not find the object.")
        if status >= 500:
            return TemporaryError(
                f"Google is unavailable (HTTP {status}); the sync tries again later.",
                retry_after=parse_retry_after(error.resp.get("retry-after")),
            )
        return ProviderError(f"Google refused the request (HTTP {status} {', '.join(sorted(reasons))}).")

    # --- directory ---

    def list_users(self, group_id: str) -> list[DirectoryUser]:
        """The group's users, nested groups included (`includeDerivedMembership`), each once; read as the admin.

        `members.list` carries no names (only e-mail, id, role, type and status), so the names come from one
        `users.list` of the domain (`user_names`); a user without a known name gets "" (never the address).
        """
        directory = self._directory()
        members = directory.members()
        request = members.list(groupKey=group_id, includeDerivedMembership=True, maxResults=MEMBER_PAGE_SIZE)
        emails: dict[str, None] = {}
        not_found = (
            f"The group {group_id!r} was not found in Google Workspace: check its address in Google Admin → Groups."
        )
        while request is not None:
            page = self._call(request.execute, subject=self.admin_subject, what="group members", not_found=not_found)
            if not isinstance(page, dict):
                raise TemporaryError("Google sent a member list we could not read.")
            for member in page.get("members") or []:
                if not isinstance(member, dict) or member.get("type", "USER") != "USER":
                    continue
                email = str(member.get("email") or "").lower()
                if email:
                    emails.setdefault(email)
            request = members.list_next(request, page)
        names: dict[str, str] = {}
        if emails:
            try:
                names = self.user_names()
            except PermissionMissing as error:  # names stay as they are until the scope is delegated
                logger.warning("Google users' names are not readable: %s", error)
        return [DirectoryUser(id=email, email=email, name=names.get(email, "")) for email in emails]

    def user_names(self) -> dict[str, str]:
        """{address: full name} of the domain's users, primary addresses and aliases, lower-cased: `users.list`
        for the admin's customer, 500 a page, only the address and name fields. Raises PermissionMissing when
        the USER_SCOPE is not delegated or the admin may not read users."""
        users = self._directory(NAME_SCOPES).users()
        request = users.list(
            customer="my_customer",
            viewType="admin_view",
            projection="basic",
            maxResults=USER_PAGE_SIZE,
            fields="nextPageToken,users(primaryEmail,aliases,name/fullName)",
        )
        names: dict[str, str] = {}
        while request is not None:
            page = self._call(request.execute, subject=self.admin_subject, what="user names")
            if not isinstance(page, dict):
                raise TemporaryError("Google sent a user list we could not read.")
            for user in page.get("users") or []:
                if not isinstance(user, dict):
                    continue
                name = user.get("name")
                full_name = str(name.get("fullName") or "").strip() if isinstance(name, dict) else ""
                if not full_name:
                    continue
                addresses = [user.get("primaryEmail"), *(user.get("aliases") or [])]
                for address in addresses:
                    if isinstance(address, str) and address:
                        names.setdefault(address.lower(), full_name)
            request = users.list_next(request, page)
        return names

    # --- calendars ---

    def read_events(self, user_ids: Sequence[str], start: dt.datetime, end: dt.datetime) -> CalendarReads:
        """Every user's events in [start, end), occurrences expanded (`singleEvents`).

        Each user signs in first (tokens are cached per user); then the users' pages go out in batches of up to 50
        (`POST batch/calendar/v3`, each part with its own user's token), round after round until no user has a
        next page. A user whose calendar cannot be read (unknown to Google, Calendar turned off, rate-limited or
        an outage on that part of the batch) is left out of the answer with the reason in `failures`; the others
        are read normally. Only when no user could be read and every failure is a passing one is it raised.
        """
        wanted = list(dict.fromkeys(user_ids))
        reads = CalendarReads()
        pending: list[tuple[str, Any, Any]] = []  # (user, events resource, request)
        for user in wanted:
            try:
                self._refresh(user)
            except NotFound as error:
                reads.failures[user] = error
                continue
            resource, request = self._events_for(
                user,
                calendarId="primary",
                singleEvents=True,
                timeMin=_rfc3339(start),
                timeMax=_rfc3339(end),
                timeZone=self.timezone,
                maxResults=PAGE_SIZE,
            )
            reads[user] = []
            pending.append((user, resource, request))
        while pending:
            chunk, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
            for (user, resource, request), page in zip(chunk, self._batch(chunk), strict=True):
                if isinstance(page, ProviderError):
                    reads.pop(user, None)  # a later page failing drops the pages read before it
                    reads.failures[user] = page
                    continue
                try:
                    reads[user].extend(self._convert(item) for item in _items(page))
                except TemporaryError as error:  # an event we cannot read fails that user's calendar, not the batch
                    reads.pop(user, None)
                    reads.failures[user] = error
                    continue
                next_request = resource.list_next(request, page)
                if next_request is not None:
                    pending.append((user, resource, next_request))
        failures = list(reads.failures.values())
        if wanted and not reads and failures and all(isinstance(e, Throttled | TemporaryError) for e in failures):
            throttled = [error for error in failures if isinstance(error, Throttled)]
            raise max(throttled, key=lambda error: error.retry_after) if throttled else failures[0]
        return reads

    def read_changes(self, cursors: Mapping[str, str | None], start: dt.datetime, end: dt.datetime) -> ChangeReads:
        """`events.list` with `syncToken` for each user, batched like `read_events`.

        A user without a cursor is read in full over [start, end) (`timeMin`/`timeMax`, as Google's sync guide
        limits a full sync to a date range); the last page's `nextSyncToken` is the cursor. With a cursor the
        request carries the `syncToken` and no `timeMin`/`timeMax` (the two cannot be combined): Google answers
        what changed since, deleted events as `status: cancelled`. A 410 GONE (the token expired) reads that
        user in full again in the same call (guides/sync, "Full sync required by server").
        """
        wanted = list(dict.fromkeys(cursors))
        reads = ChangeReads()
        changed: dict[str, dict[str, Event]] = {}
        removed: dict[str, set[str]] = {}
        full: dict[str, bool] = {}
        pending: list[tuple[str, Any, Any]] = []

        def begin(user: str, cursor: str | None) -> None:
            params: dict[str, Any] = {
                "calendarId": "primary",
                "singleEvents": True,
                "timeZone": self.timezone,
                "maxResults": PAGE_SIZE,
            }
            if cursor:
                params["syncToken"] = cursor
            else:
                params |= {"timeMin": _rfc3339(start), "timeMax": _rfc3339(end)}
            changed[user], removed[user], full[user] = {}, set(), not cursor
            resource, request = self._events_for(user, **params)
            pending.append((user, resource, request))

        for user in wanted:
            try:
                self._refresh(user)
            except NotFound as error:
                reads.failures[user] = error
                continue
            begin(user, cursors[user])
        while pending:
            chunk, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
            for (user, resource, request), page in zip(chunk, self._batch(chunk), strict=True):
                if isinstance(page, _SyncTokenGone):
                    if full[user]:
                        reads.failures[user] = TemporaryError(str(page))
                    else:
                        begin(user, None)
                    continue
                if isinstance(page, ProviderError):
                    reads.failures[user] = page
                    continue
                try:
                    for item in _items(page):
                        item_id = item.get("id")
                        if not isinstance(item_id, str) or not item_id:
                            continue
                        if item.get("status") == "cancelled":
                            changed[user].pop(item_id, None)
                            removed[user].add(item_id)
                        else:
                            removed[user].discard(item_id)
                            changed[user][item_id] = self._convert(item)
                except TemporaryError as error:
                    reads.failures[user] = error
                    continue
                next_request = resource.list_next(request, page)
                if next_request is not None:
                    pending.append((user, resource, next_request))
                    continue
                token = page.get("nextSyncToken")
                if not isinstance(token, str) or not token:
                    reads.failures[user] = TemporaryError("Google ended an event list without a sync token.")
                    continue
                reads[user] = CalendarChanges(
                    events=tuple(changed[user].values()),
                    removed=frozenset() if full[user] else frozenset(removed[user]),
                    cursor=token,
                    full=full[user],
                )
        failures = list(reads.failures.values())
        if wanted and not reads and failures and all(isinstance(e, Throttled | TemporaryError) for e in failures):
            throttled = [error for error in failures if isinstance(error, Throttled)]
            raise max(throttled, key=lambda error: error.retry_after) if throttled else failures[0]
        return reads

    def _batch(self, chunk: Sequence[tuple[str, Any, Any]]) -> list[dict[str, Any] | ProviderError]:
        """One batch of list requests: each page, or the error of that one user's calendar.

        Google answers each part of a batch on its own (and counts each against the per-user limits), so a part's
        404, `notACalendarUser`, rate limit or 5xx fails only that user. A 401, a 400 or a 403 that is not one
        user's is the request's or the service account's, and fails the whole call.
        """
        if len(chunk) == 1:  # no batch for a single request
            user, _resource, request = chunk[0]

            def execute() -> dict[str, Any] | ProviderError:
                try:
                    return request.execute()  # type: ignore[no-any-return]
                except HttpError as error:
                    return self._user_error(user, error)

            return [self._call(execute, subject=user, what="calendar read")]
        answers: dict[str, tuple[Any, HttpError | None]] = {}

        def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
            answers[request_id] = (response, exception)

        batch = BatchHttpRequest(callback=collect, batch_uri=self.batch_url)
        for index, (_user, _resource, request) in enumerate(chunk):
            batch.add(request, request_id=str(index))
        first_user = chunk[0][0]
        self._call(lambda: batch.execute(http=self._http(first_user)), subject=first_user, what="calendar batch")
        pages: list[dict[str, Any] | ProviderError] = []
        for index, (user, _resource, _request) in enumerate(chunk):
            response, exception = answers.get(str(index), (None, None))
            if exception is not None:
                pages.append(self._user_error(user, exception))
            elif not isinstance(response, dict):
                pages.append(TemporaryError(f"Google's batch answer left out or garbled the calendar of {user}."))
            else:
                pages.append(response)
        return pages

    def _user_error(self, user: str, exception: HttpError) -> ProviderError:
        """The error of one user's calendar read, in words that say what to do; raised when it is not the user's."""
        reasons = _reasons(exception)
        status = int(exception.resp.status)
        if status == 410:  # events.list: "If the syncToken expires, the server will respond with a 410 GONE"
            return _SyncTokenGone("Google no longer knows the calendar's sync token; a full read is needed.")
        if status == 403 and "notacalendaruser" in reasons:
            return ProviderError(
                f"User {user} does not have Google Calendar (Google answers notACalendarUser): in the Google Admin "
                "console → Apps → Google Workspace → Calendar, turn Calendar on for the user's organisational unit, "
                "or remove the user from the activation group.",
                code=SyncErrorCode.CALENDAR_NOT_ENABLED,
            )
        error = self._api_error(
            exception,
            not_found=f"Google has no calendar for user {user}: check the address in Google Admin → Users, or remove "
            "the user from the activation group.",
        )
        if isinstance(error, NotFound | Throttled | TemporaryError):
            return error
        raise error

    def _convert(self, item: Mapping[str, Any]) -> Event:
        try:
            return event_from_google(item, self.timezone)
        except ValueError as error:
            raise TemporaryError(f"Google sent an event we could not read ({error}).") from error

    # --- change notifications ---

    def subscribe(
        self,
        user_id: str,
        notification_url: str,
        client_state: str,
        expires: dt.datetime,
        lifecycle_url: str | None = None,
    ) -> tuple[str, dt.datetime]:
        """An `events.watch` web_hook channel on the user's primary calendar; `lifecycle_url` is unused by Google.

        The subscription id is `"{channel id}|{resourceId}|{user}"`: what `channels.stop` needs, and the user whose
        credentials stop it. The channel id is `kp_` and a UUID, within Google's 64 characters whatever the address.
        Notifications carry `X-Goog-Channel-Token: client_state`.
        """
        return self._watch(user_id, _channel_id(), notification_url, client_state, expires)

    def _watch(
        self, user_id: str, channel_id: str, notification_url: str, client_state: str, expires: dt.datetime
    ) -> tuple[str, dt.datetime]:
        body = {
            "id": channel_id,
            "type": "web_hook",
            "address": notification_url,
            "token": client_state,
            "expiration": str(_millis(expires)),
        }
        resource = self._calendar(user_id).events()
        try:
            answer = self._call(
                resource.watch(calendarId="primary", body=body).execute,
                subject=user_id,
                what="watch",
                not_found=f"The calendar of user {user_id} was not found.",
            )
        except PermissionMissing as error:  # one user without Google Calendar is that user's problem, not the source's
            if isinstance(error.__cause__, HttpError) and "notacalendaruser" in _reasons(error.__cause__):
                raise self._user_error(user_id, error.__cause__) from error
            raise
        if not isinstance(answer, dict) or not answer.get("resourceId"):
            raise TemporaryError("Google created a channel but sent no resource id.")
        subscription_id = f"{answer.get('id') or channel_id}|{answer['resourceId']}|{user_id}"
        with _WATCHED_LOCK:
            _WATCHED[subscription_id] = (notification_url, client_state)
        return subscription_id, _expiry(answer)

    def renew(self, subscription_id: str, expires: dt.datetime) -> dt.datetime:
        """Google channels cannot be extended: stop the channel and watch again with the same channel id.

        The address and token come from this process's memory of `subscribe` (they are not in the id, the token
        being a secret). Google's resourceId names the calendar, so the subscription id stays the same. When this
        process did not make the channel (e.g. after a restart) the channel is stopped and NotFound says to
        subscribe again.
        """
        channel_id, resource_id, user = _split_subscription(subscription_id)
        with _WATCHED_LOCK:
            remembered = _WATCHED.get(subscription_id)
        self.unsubscribe(subscription_id)
        if remembered is None:
            raise NotFound("This Google channel cannot be renewed from here: it was stopped; subscribe again.")
        new_id, expiry = self._watch(user, channel_id, remembered[0], remembered[1], expires)
        if _split_subscription(new_id)[:2] != (channel_id, resource_id):
            with _WATCHED_LOCK:
                _WATCHED.pop(new_id, None)
            self.unsubscribe(new_id)
            raise NotFound("Google gave the renewed channel another resource id: subscribe again.")
        if new_id != subscription_id:  # an id in the older format: the caller keeps the id it has
            with _WATCHED_LOCK:
                _WATCHED[subscription_id] = _WATCHED.pop(new_id)
        return expiry

    def unsubscribe(self, subscription_id: str) -> None:
        """`channels.stop`; a channel that is already gone counts as stopped."""
        channel_id, resource_id, user = _split_subscription(subscription_id)
        with _WATCHED_LOCK:
            _WATCHED.pop(subscription_id, None)
        service = self._calendar(user)
        try:
            self._call(
                service.channels().stop(body={"id": channel_id, "resourceId": resource_id}).execute,
                subject=user,
                what="stop channel",
            )
        except NotFound:
            return

    # --- test connection ---

    def check(self, *, group_id: str | None = None) -> list[str]:
        """Problems in plain words, for the admin's "test connection"; empty means all good.

        Signs in as the admin subject (bad key, delegation not granted, unknown admin), and with `group_id` lists
        the group and reads one member's calendar for the next hour.
        """
        problems: list[str] = []
        try:
            self._refresh(self.admin_subject)
            if group_id:
                users = self.list_users(group_id)
                if not users:
                    problems.append(
                        f"The group {group_id!r} has no users: add the employees whose calendars should be pushed."
                    )
                else:
                    now = dt.datetime.now(dt.UTC)
                    reads = self.read_events([users[0].id], now, now + dt.timedelta(hours=1))
                    if users[0].id not in reads:
                        failure = reads.failures.get(users[0].id)
                        problems.append(str(failure) if failure else f"Google does not know the user {users[0].id}.")
                    self.user_names()
        except ProviderError as error:
            problems.append(str(error))
        return problems


class _SyncTokenGone(TemporaryError):
    """A sync token Google no longer knows (410 GONE): the calendar is read in full again."""


# --- helpers ------------------------------------------------------------------------------------------------------


def _items(page: Any) -> list[dict[str, Any]]:
    if not isinstance(page, dict):
        raise TemporaryError("Google sent an event list we could not read.")
    items = page.get("items") or []
    if not isinstance(items, list):
        raise TemporaryError("Google sent an event list whose items are not a list.")
    return [item for item in items if isinstance(item, dict)]


def _reasons(error: HttpError) -> set[str]:
    details = getattr(error, "error_details", None)
    reasons = set()
    if isinstance(details, list):
        reasons = {str(d.get("reason")).casefold() for d in details if isinstance(d, dict) and d.get("reason")}
    if not reasons:
        try:
            body = json.loads(error.content)
            for item in body["error"]["errors"]:
                reasons.add(str(item.get("reason")).casefold())
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return reasons


def _millis(moment: dt.datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expires must be timezone-aware")
    return int(moment.timestamp() * 1000)


def _expiry(answer: Mapping[str, Any]) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(int(answer["expiration"]) / 1000, dt.UTC)
    except (KeyError, TypeError, ValueError) as error:
        raise TemporaryError("Google sent a channel without a readable expiration.") from error


def _channel_id() -> str:
    """A fresh channel id: Google allows [A-Za-z0-9-_+/=], at most 64 characters."""
    return f"kp_{uuid.uuid4().hex}"


def _split_subscription(subscription_id: str) -> tuple[str, str, str]:
    """(channel id, resourceId, user) of a subscription id made by `subscribe`.

    Ids made before the user moved out of the channel id (`"kp_{hex}_{user in base64url}|{resourceId}"`) are read
    too, so their channels can still be renewed and stopped.
    """
    channel_id, _, rest = subscription_id.partition("|")
    resource_id, _, user = rest.partition("|")
    prefix, _, tail = channel_id.partition("_")
    _hex, _, encoded = tail.partition("_")
    if not user and encoded:
        try:
            user = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            user = ""
    if prefix != "kp" or not resource_id or "@" not in user:
        raise NotFound(f"{subscription_id!r} is not a Google channel made by this provider: subscribe again.")
    return channel_id, resource_id, user
