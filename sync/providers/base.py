"""The calendar-provider interface: what every calendar source (Graph, EWS, Google) offers the sync, and its errors.

Providers are plain Python over the network (no Django ORM). They convert their source's quirks into the
rules engine's `Event` at the edge, and every failure into one of the `ProviderError` classes below, whose
messages are written for staff (what is wrong and what to do) and whose code (`sync.errors.SyncErrorCode`)
the portal and admin word for the customer.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sync.errors import SyncErrorCode
from sync.rules.model import Event


@dataclass(frozen=True)
class DirectoryUser:
    """A user of the calendar directory (a group member) whose calendar can be read."""

    id: str
    email: str
    name: str


class CalendarReads(dict[str, list[Event]]):
    """What `read_events` may answer: each readable user's events, and in `failures` why the others could not be
    read (one mailbox refused, missing or still throttled), so one user's problem does not fail the rest."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failures: dict[str, ProviderError] = {}


@dataclass(frozen=True)
class CalendarChanges:
    """One user's answer of `read_changes`: what the calendar holds, or what changed in it, and the next cursor.

    `full`: a complete read (no cursor was given, or the service had forgotten it): `events` is every event of the
    window and `removed` is empty. Otherwise `events` holds the events added or changed since the cursor (a moved
    or edited event comes whole) and `removed` the ids that went away (deleted, or moved out of the window).
    `cursor` is what to pass next time (a Graph deltaLink, a Google sync token, an EWS sync state); keep it opaque.
    """

    events: tuple[Event, ...]
    removed: frozenset[str]
    cursor: str
    full: bool


class ChangeReads(dict[str, CalendarChanges]):
    """What `read_changes` answers: each readable user's changes, and in `failures` why the others could not be
    read, as `CalendarReads` does."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failures: dict[str, ProviderError] = {}


class ProviderError(Exception):
    """A calendar source failed; `str(error)` is a plain-words message for staff, `error_code` (a SyncErrorCode)
    and `error_params` what the portal and admin word for the customer (`sync.errors.describe`)."""

    default_code = SyncErrorCode.REQUEST_REFUSED

    def __init__(
        self, message: str, *, code: SyncErrorCode | None = None, params: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.error_code = code or self.default_code
        self.error_params = dict(params or {})


class AuthError(ProviderError):
    """The credentials are wrong (bad or expired secret, unknown tenant or app): staff must fix the settings."""

    default_code = SyncErrorCode.AUTH_FAILED


class PermissionMissing(ProviderError):
    """The app lacks a permission (`permission`, e.g. "Calendars.Read") that an administrator must grant."""

    default_code = SyncErrorCode.PERMISSION_MISSING

    def __init__(self, message: str, *, permission: str, code: SyncErrorCode | None = None) -> None:
        super().__init__(message, code=code, params={"permission": permission})
        self.permission = permission


class NotFound(ProviderError):
    """The group, user, mailbox or subscription does not exist (any more)."""

    default_code = SyncErrorCode.NOT_FOUND


class Throttled(ProviderError):
    """The source asks us to slow down: retry the whole call after `retry_after` seconds."""

    default_code = SyncErrorCode.THROTTLED

    def __init__(self, message: str, *, retry_after: float, code: SyncErrorCode | None = None) -> None:
        super().__init__(message, code=code, params={"retry_after": retry_after})
        self.retry_after = retry_after


class TemporaryError(ProviderError):
    """An outage, a timeout or a malformed answer: retry later (after `retry_after` seconds when the source said)."""

    default_code = SyncErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float | None = None, code: SyncErrorCode | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class CalendarProvider(Protocol):
    """One calendar source of one customer (a Microsoft 365 tenant, an Exchange server, a Google domain)."""

    def list_users(self, group_id: str) -> list[DirectoryUser]:
        """The members of the group, nested groups included, each once."""
        ...

    def read_events(self, user_ids: Sequence[str], start: dt.datetime, end: dt.datetime) -> dict[str, list[Event]]:
        """Every user's events overlapping [start, end), recurrences expanded; the implementation batches.

        A user missing from the answer could not be read; a `CalendarReads` answer says why in `failures`.
        """
        ...

    def read_changes(self, cursors: Mapping[str, str | None], start: dt.datetime, end: dt.datetime) -> ChangeReads:
        """Each user's changes since their cursor (`None`: a full read of [start, end), which also gives the first
        cursor). A cursor the service no longer knows is read in full over [start, end) for that user alone
        (`full=True` in the answer). Batched like `read_events`; a user left out is in `failures`.
        """
        ...

    def subscribe(
        self, user_id: str, notification_url: str, client_state: str, expires: dt.datetime, lifecycle_url: str | None
    ) -> tuple[str, dt.datetime]:
        """Ask for change notifications on the user's calendar: (subscription id, actual expiry)."""
        ...

    def renew(self, subscription_id: str, expires: dt.datetime) -> dt.datetime:
        """Extend a subscription; returns the actual expiry."""
        ...

    def unsubscribe(self, subscription_id: str) -> None:
        """Cancel a subscription (one that is already gone counts as cancelled)."""
        ...

    def check(self) -> list[str]:
        """Problems with the connection in plain words, for the admin's "test connection"; empty means all good."""
        ...


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP `Retry-After` header (delay in seconds or an HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
