"""Microsoft 365 calendars through Microsoft Graph: msal client-credentials login, `$batch` calendar reads and
change-notification subscriptions, converted at the edge into the engine's `Event`.

Subjects pass into `Event` because the engine reads & codes from them; they are never logged or stored here,
and no error message quotes an event.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import functools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msal
import requests
from msal.exceptions import MsalServiceError

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
from sync.rules.model import SHOW_AS, Event

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BATCH_LIMIT = 20  # Graph's maximum number of requests in one $batch
PAGE_SIZE = 500
MAX_SUBSCRIPTION_MINUTES = 4230  # Graph's limit for Outlook event subscriptions
VALIDATION_WINDOW_SECONDS = 10.0  # Graph gives the webhook this long to answer the validation request
# Creating a subscription waits for that handshake: wait comfortably longer, or a slow handshake leaves a
# subscription Graph made and we never stored.
SUBSCRIBE_TIMEOUT_SECONDS = 3 * VALIDATION_WINDOW_SECONDS
SHORT_WAIT_SECONDS = 2.0  # the longest Retry-After a worker may sleep through instead of giving the call back
DEFAULT_THROTTLE_SECONDS = 10.0  # when Graph throttles without saying how long
MAILBOX_CONCURRENCY = 4  # Outlook serves an app at most 4 concurrent requests per mailbox (throttling-limits.md)
# aad-advanced-queries.md: an OData cast on transitiveMembers needs this header on every request, and $count=true.
ADVANCED_QUERY_HEADERS = {"ConsistencyLevel": "eventual"}

EVENT_FIELDS = (
    "id,subject,start,end,isAllDay,showAs,responseStatus,isCancelled,sensitivity,"
    "originalStartTimeZone,originalEndTimeZone"
)
USER_FIELDS = "id,mail,displayName,userPrincipalName,userType"

CALENDARS_READ = "Calendars.Read"
GROUP_MEMBERS_READ = "GroupMember.Read.All"
# Application permissions that include the one we ask for (an admin may have granted a broader one).
_SATISFIED_BY = {
    CALENDARS_READ: {"Calendars.Read", "Calendars.ReadWrite"},
    GROUP_MEMBERS_READ: {
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    },
}

_SHOW_AS = {value.casefold(): value for value in SHOW_AS}
_RESPONSES = {
    "accepted": "accepted",
    "organizer": "organizer",
    "none": "none",
    "declined": "declined",
    "tentativelyaccepted": "tentative",
    "notresponded": "none",
}
_PRIVATE_SENSITIVITIES = {"private", "confidential"}

# The delta query's errors for a cursor Graph no longer knows (410 Gone): read that calendar in full again.
_SYNC_STATE_CODES = {"syncstatenotfound", "syncstateinvalid", "resyncrequired"}

_UTC_NAMES = {"utc", "etc/utc", "coordinated universal time", "tzone://microsoft/utc"}


# --- conversion at the edge -------------------------------------------------------------------------------------


def event_from_graph(item: Mapping[str, Any], zone: str) -> Event:
    """The engine's `Event` for one Graph event (a `calendarView` item).

    `zone` is the customer's IANA zone (asked for in the Prefer header by its Windows name): timed events are
    returned aware in it. An all-day event runs from midnight to midnight (end exclusive) in one zone: its dates
    are those midnights where Graph gave them in the zone asked for, else where they are midnight in the event's
    `originalStartTimeZone` / `originalEndTimeZone` (a mailbox in another zone), else rounded in `zone`.
    Raises ValueError naming the field when the item is unusable; the message never quotes the subject.
    """
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("event without an id")
    target = ZoneInfo(zone)
    all_day = item.get("isAllDay") is True
    start = _graph_datetime(item.get("start"), zone, f"event {event_id}: start")
    end = _graph_datetime(item.get("end"), zone, f"event {event_id}: end")
    subject = item.get("subject")
    response_status = item.get("responseStatus")
    response = response_status.get("response") if isinstance(response_status, Mapping) else None
    show_as = item.get("showAs")
    sensitivity = item.get("sensitivity")
    return Event(
        id=event_id,
        start=_all_day_date(start, target, item.get("originalStartTimeZone")) if all_day else start.astimezone(target),
        end=_all_day_date(end, target, item.get("originalEndTimeZone")) if all_day else end.astimezone(target),
        all_day=all_day,
        subject=subject if isinstance(subject, str) else "",
        show_as="busy" if show_as is None else _SHOW_AS.get(str(show_as).casefold(), "unknown"),
        response="accepted" if response is None else _RESPONSES.get(str(response).casefold(), "none"),
        cancelled=item.get("isCancelled") is True,
        private=str(sensitivity).casefold() in _PRIVATE_SENSITIVITIES,
    )


def _graph_datetime(value: Any, default_zone: str, field: str) -> dt.datetime:
    """An aware datetime from Graph's `{"dateTime": "2026-01-05T10:00:00.0000000", "timeZone": "Europe/Oslo"}`."""
    if not isinstance(value, Mapping) or not isinstance(value.get("dateTime"), str):
        raise ValueError(f"{field}: missing dateTime")
    text = value["dateTime"]
    fraction = re.search(r"\.(\d+)", text)
    if fraction and len(fraction.group(1)) > 6:  # Graph sends 7 digits; keep microseconds
        text = text[: fraction.start(1) + 6] + text[fraction.end(1) :]
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"{field}: not an ISO 8601 time") from error
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=_zone(value.get("timeZone") or default_zone, field))


def _zone(name: Any, field: str) -> ZoneInfo:
    """A zone Graph named: a Windows name (what Exchange keeps and echoes for our Prefer header) or an IANA one."""
    text = str(name).strip()
    if text.casefold() in _UTC_NAMES:
        return ZoneInfo("UTC")
    iana = _windows_to_iana().get(text.casefold())
    try:
        return ZoneInfo(iana or text)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{field}: unknown time zone {text!r}") from error


def _all_day_date(moment: dt.datetime, zone: ZoneInfo, original_zone: Any) -> dt.date:
    """The date an all-day event's boundary stands for; `moment` is in the zone Graph named."""
    if moment.time() == dt.time(0, 0):  # midnight where Graph says: that date
        return moment.date()
    if original_zone:  # the mailbox's midnight shown in another zone: read it where it is midnight
        with contextlib.suppress(ValueError):
            original = moment.astimezone(_zone(original_zone, "originalStartTimeZone"))
            if original.time() == dt.time(0, 0):
                return original.date()
    # No zone in which it is midnight is known: round to the nearest midnight in ours.
    return (moment.astimezone(zone) + dt.timedelta(hours=12)).date()


@functools.cache
def _windows_to_iana() -> dict[str, str]:
    """Windows zone name (case-folded) → IANA key, from exchangelib's copy of CLDR's windowsZones table."""
    from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

    return {windows.casefold(): iana for windows, iana in MS_TIMEZONE_TO_IANA_MAP.items()}


def windows_zone_name(iana_key: str) -> str:
    """The Windows name of an IANA zone, for `Prefer: outlook.timezone`.

    Graph takes every Windows zone name but only a short list of IANA names (datetimetimezone.md; Europe/Oslo is
    not on it and is refused with TimeZoneNotSupportedException). The mapping is CLDR's, as exchangelib ships it;
    a zone it does not know is asked for in UTC and converted here.
    """
    from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP

    known = IANA_TO_MS_TIMEZONE_MAP.get(iana_key)
    return str(known[0]) if known else "UTC"


def parse_graph_time(value: Any) -> dt.datetime:
    """An aware UTC datetime from Graph's `expirationDateTime` style (`2026-01-07T11:00:00.0000000Z`)."""
    moment = _graph_datetime({"dateTime": value, "timeZone": "UTC"}, "UTC", "expirationDateTime")
    return moment.astimezone(dt.UTC)


def _graph_instant(moment: dt.datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("Graph times must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _query(params: Mapping[str, Any]) -> str:
    return urlencode(params, safe="$,:", quote_via=quote)


def _path_segment(value: str) -> str:
    return quote(value, safe="")


# --- the provider -------------------------------------------------------------------------------------------------


class _LoginSession(requests.Session):
    """The HTTP client handed to msal: no environment settings, our CA, and a timeout on every call."""

    def __init__(self, *, ca_path: str | None, timeout: float) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = ca_path or True
        self._timeout = timeout

    def request(  # type: ignore[override]  # same call, with a default timeout
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True)
class GroupChoice:
    """A group of the tenant, as the group picker shows it: its object id, display name and address."""

    id: str
    name: str
    mail: str


class GraphProvider:
    """One Microsoft 365 tenant, read with an app registration's client credentials (app-only permissions).

    `client_credential` is the app's client secret, or its certificate as msal takes it:
    `{"private_key": <PEM>, "thumbprint": <SHA-1 hex>}` (msal then signs an RFC 7523 client assertion).
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_credential: str | Mapping[str, str],
        *,
        login_base_url: str,
        graph_base_url: str,
        ca_path: str | None = None,
        timezone: str = "Europe/Oslo",
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        ZoneInfo(timezone)  # fail early on a bad setting
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._client_credential = (
            dict(client_credential) if isinstance(client_credential, Mapping) else client_credential
        )
        self.login_base_url = login_base_url.rstrip("/")
        self.graph_base_url = graph_base_url.rstrip("/")
        self.timezone = timezone
        self.timeout = timeout
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = ca_path or True
        self._session = session
        self._login_session = _LoginSession(ca_path=ca_path, timeout=timeout)
        self._prefer = f'outlook.timezone="{windows_zone_name(timezone)}"'
        self._delta_prefer = f"{self._prefer}, odata.maxpagesize={PAGE_SIZE}"
        self._app: msal.ConfidentialClientApplication | None = None
        self._app_lock = threading.Lock()
        self._mailboxes_busy: dict[str, int] = {}  # this provider's requests in flight per mailbox
        self._mailboxes_free = threading.Condition()

    def __repr__(self) -> str:  # never the secret
        return f"GraphProvider(tenant_id={self.tenant_id!r}, client_id={self.client_id!r})"

    # --- login ---

    def _msal_app(self) -> msal.ConfidentialClientApplication:
        with self._app_lock:
            if self._app is None:
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self.client_id,
                        client_credential=self._client_credential,
                        authority=f"{self.login_base_url}/{self.tenant_id}",
                        instance_discovery=False,
                        azure_region=False,
                        http_client=self._login_session,
                    )
                except requests.RequestException as error:
                    raise self._login_unreachable(error) from error
                except MsalServiceError as error:
                    raise self._login_outage(error) from error
                except ValueError as error:
                    if "https url" in str(error):
                        raise AuthError(
                            f"The Microsoft login address {self.login_base_url!r} must be an https URL: fix the "
                            "login base URL setting."
                        ) from error
                    if "HTTP status: 4" in str(error.__context__ or ""):  # discovery refused: no such tenant
                        raise self._unknown_tenant() from error
                    raise TemporaryError("Microsoft login sent a discovery answer we could not read.") from error
            return self._app

    def _access_token(self) -> str:
        app = self._msal_app()
        try:
            result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except requests.RequestException as error:
            raise self._login_unreachable(error) from error
        except MsalServiceError as error:
            raise self._login_outage(error) from error
        except ValueError as error:
            raise TemporaryError("Microsoft login sent a token answer that is not JSON.") from error
        token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(token, str) and token:
            return token
        raise self._login_refused(result if isinstance(result, dict) else {})

    def _forget_tokens(self) -> None:
        if self._app is None:
            return
        cache = self._app.token_cache
        for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(item)

    def _login_unreachable(self, error: requests.RequestException) -> TemporaryError:
        if isinstance(error, requests.Timeout):
            return TemporaryError(
                f"Microsoft login ({self.login_base_url}) did not answer within {self.timeout:g} s.",
                code=SyncErrorCode.TIMEOUT,
            )
        return TemporaryError(f"Microsoft login ({self.login_base_url}) could not be reached: check the network.")

    def _login_outage(self, error: MsalServiceError) -> ProviderError:
        status = re.search(r"\b(\d{3})\b", str(error))
        code = int(status.group(1)) if status else 500
        if code == 429:
            return Throttled("Microsoft login is throttling the app; the sync tries again later.", retry_after=5.0)
        if code >= 500:
            return TemporaryError(f"Microsoft login is unavailable (HTTP {code}); the sync tries again later.")
        return AuthError(
            f"Microsoft login refused the app (HTTP {code}): check the tenant ID, the application (client) ID and "
            "the client secret in Entra ID → App registrations."
        )

    def _unknown_tenant(self) -> AuthError:
        return AuthError(
            f"The tenant ID {self.tenant_id!r} is not known to Microsoft: copy the Directory (tenant) ID from "
            "Entra ID → Overview and paste it here."
        )

    def _login_refused(self, result: Mapping[str, Any]) -> ProviderError:
        error = str(result.get("error") or "no access token")
        description = str(result.get("error_description") or "")
        codes = {int(code) for code in result.get("error_codes") or () if str(code).isdigit()}
        codes |= {int(code) for code in re.findall(r"AADSTS(\d+)", description)}
        if error in {"temporarily_unavailable", "server_error"}:
            return TemporaryError("Microsoft login is unavailable right now; the sync tries again later.")
        if codes & {90002, 900023, 90023}:
            return self._unknown_tenant()
        if codes & {700016}:
            return AuthError(
                f"The application (client) ID {self.client_id!r} is not known in this tenant: copy it from Entra ID → "
                "App registrations → Overview, and make sure an administrator of this tenant has consented to the app."
            )
        if codes & {7000222}:
            return AuthError(
                "The client secret has expired: create a new secret in Entra ID → App registrations → Certificates & "
                "secrets and paste it here."
            )
        if codes & {700027, 7000274, 700024, 700023}:  # certificate-credentials.md: the client assertion
            return AuthError(
                "Microsoft login refused the app's certificate (AADSTS"
                f"{min(codes & {700027, 7000274, 700024, 700023})}): the certificate whose thumbprint is configured "
                "is not registered on the app, or the private key does not belong to it. Upload the certificate under "
                "Entra ID → App registrations → Certificates & secrets, and set its SHA-1 thumbprint and key file."
            )
        if codes & {7000215, 7000216} or error == "invalid_client":
            return AuthError(
                "The client secret is wrong or expired: create a new secret in Entra ID → App registrations and "
                "paste it here."
            )
        if codes & {7000229} or error == "unauthorized_client":
            return AuthError(
                "The app is not allowed to sign in to this tenant: an administrator must grant admin consent for it "
                "in Entra ID → Enterprise applications."
            )
        aadsts = f", AADSTS{min(codes)}" if codes else ""
        return AuthError(
            f"Microsoft login refused the app ({error}{aadsts}): check the tenant ID, the application (client) ID "
            "and the client secret in Entra ID → App registrations."
        )

    # --- HTTP ---

    def _request(
        self,
        method: str,
        url: str,
        *,
        permission: str,
        not_found: str,
        json_body: Any = None,
        bad_request_hint: str = "",
        timeout: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        also_ok: frozenset[int] = frozenset(),
    ) -> dict[str, Any]:
        """One Graph call; the JSON body of a 2xx answer ({} for 204) or of a status in `also_ok`, else the mapped
        error is raised.

        `timeout` (seconds) replaces the provider's for this call; a timeout raises `_GraphTimeout`."""
        timeout = timeout or self.timeout
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._access_token()}", "Accept": "application/json"}
            headers.update(extra_headers or {})
            try:
                response = self._session.request(method, url, json=json_body, headers=headers, timeout=timeout)
            except requests.Timeout as error:
                raise _GraphTimeout(f"Microsoft Graph did not answer within {timeout:g} s.") from error
            except requests.RequestException as error:
                raise TemporaryError(
                    f"Microsoft Graph ({self.graph_base_url}) could not be reached: check the network."
                ) from error
            if response.status_code == 401 and attempt == 1:
                self._forget_tokens()  # revoked or expired early: one fresh token, then give up
                continue
            break
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = _MALFORMED
        if 200 <= response.status_code < 300 or (response.status_code in also_ok and isinstance(body, dict)):
            if body is _MALFORMED or (body is not None and not isinstance(body, dict)):
                raise TemporaryError(f"Microsoft Graph sent an answer that is not JSON (HTTP {response.status_code}).")
            return body or {}
        raise _graph_error(
            response.status_code,
            {key.lower(): value for key, value in response.headers.items()},
            body,
            permission=permission,
            not_found=not_found,
            bad_request_hint=bad_request_hint,
        )

    def _pages(
        self,
        url: str,
        *,
        permission: str,
        not_found: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following `@odata.nextLink` (which carries the query, not the headers:
        `extra_headers` go with every page)."""
        while True:
            page = self._request("GET", url, permission=permission, not_found=not_found, extra_headers=extra_headers)
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            url = self._own_link(next_link)

    def _own_link(self, link: Any) -> str:
        """A link Graph handed us, checked to point at Graph (the bearer token goes nowhere else)."""
        if not isinstance(link, str) or not link.startswith(self.graph_base_url + "/"):
            raise TemporaryError("Microsoft Graph sent a paging link outside its own address.")
        return link

    # --- directory ---

    def list_users(self, group_id: str) -> list[DirectoryUser]:
        """The group's users, members of nested groups included (`transitiveMembers`), each once.

        The `microsoft.graph.user` cast leaves out devices, org contacts and groups; it is an advanced query
        (ConsistencyLevel: eventual on every page, $count=true, which the nextLink keeps). Guests (userType
        Guest) are users too, but their mailbox is in their home tenant, so no calendar of theirs can be read
        here: they are left out rather than activated (and billed) with a calendar that always fails.
        """
        url = (
            f"{self.graph_base_url}/groups/{_path_segment(group_id)}/transitiveMembers/microsoft.graph.user?"
            + _query({"$select": USER_FIELDS, "$count": "true"})
        )
        users: dict[str, DirectoryUser] = {}
        not_found = (
            f"The group {group_id!r} was not found in the tenant: copy the group's Object ID from Entra ID → Groups."
        )
        pages = self._pages(
            url, permission=GROUP_MEMBERS_READ, not_found=not_found, extra_headers=ADVANCED_QUERY_HEADERS
        )
        for page in pages:
            for item in _values(page):
                user_id = item.get("id")
                if not isinstance(user_id, str) or not user_id or user_id in users:
                    continue
                if str(item.get("userType") or "").casefold() == "guest":
                    continue
                email = item.get("mail") or item.get("userPrincipalName") or ""
                users[user_id] = DirectoryUser(id=user_id, email=str(email), name=str(item.get("displayName") or email))
        return list(users.values())

    def search_groups(self, query: str, *, limit: int = 25) -> list[GroupChoice]:
        """Groups whose display name (or a word of it) starts with `query`, or the first `limit` by name when it
        is blank. `$search` on displayName tokenises words and needs ConsistencyLevel: eventual (search-query-
        parameter.md, aad-advanced-queries.md); a blank query lists with `$orderby=displayName`."""
        select = "id,displayName,mail"
        if query:
            quoted = query.replace('"', "").replace("\\", "")
            params = {"$search": f'"displayName:{quoted}"', "$select": select, "$top": limit, "$count": "true"}
            headers: Mapping[str, str] | None = ADVANCED_QUERY_HEADERS
        else:
            params = {"$select": select, "$top": limit, "$orderby": "displayName"}
            headers = None
        page = self._request(
            "GET",
            f"{self.graph_base_url}/groups?" + _query(params),
            permission=GROUP_MEMBERS_READ,
            not_found="",
            extra_headers=headers,
        )
        groups = [
            GroupChoice(id=str(item["id"]), name=str(item.get("displayName") or ""), mail=str(item.get("mail") or ""))
            for item in _values(page)
            if isinstance(item.get("id"), str)
        ]
        return sorted(groups, key=lambda group: group.name.casefold())[:limit]

    def group(self, group_id: str) -> GroupChoice | None:
        """The group with this object id, or None when the tenant has none (or the id is not a group id)."""
        if not group_id.strip():
            return None
        try:
            item = self._request(
                "GET",
                f"{self.graph_base_url}/groups/{_path_segment(group_id)}?" + _query({"$select": "id,displayName,mail"}),
                permission=GROUP_MEMBERS_READ,
                not_found="",
            )
        except NotFound:
            return None
        except ProviderError as error:
            if error.error_code == SyncErrorCode.REQUEST_REFUSED and "HTTP 400" in str(error):
                return None  # Graph answers 400 Request_BadRequest for an id that is not a GUID
            raise
        return GroupChoice(
            id=str(item.get("id") or group_id),
            name=str(item.get("displayName") or ""),
            mail=str(item.get("mail") or ""),
        )

    # --- calendars ---

    def read_events(self, user_ids: Sequence[str], start: dt.datetime, end: dt.datetime) -> CalendarReads:
        """Every user's events in [start, end), recurrences expanded, read with `$batch` (≤ 20 requests each).

        A user whose mailbox cannot be read (outside the app's access scope, missing, not enabled for REST, or
        still throttled after the short retry) is left out of the answer, with the reason in `failures`; the
        other users are read normally. Only when every user failed for a passing reason (throttled, an outage)
        is that raised, for the task to retry the whole call.
        """
        query = _query(
            {
                "startDateTime": _graph_instant(start),
                "endDateTime": _graph_instant(end),
                "$select": EVENT_FIELDS,
                "$top": PAGE_SIZE,
            }
        )
        wanted = list(dict.fromkeys(user_ids))
        events = CalendarReads({user_id: [] for user_id in wanted})
        pending = deque((user_id, f"/users/{_path_segment(user_id)}/calendarView?{query}") for user_id in wanted)
        while pending:
            chunk = [pending.popleft() for _ in range(min(BATCH_LIMIT, len(pending)))]
            for (user_id, _url), outcome in zip(chunk, self._batch_round(chunk), strict=True):
                if isinstance(outcome, ProviderError):
                    events.pop(user_id, None)  # a later page failing drops the pages read before it
                    events.failures[user_id] = outcome
                    continue
                try:
                    events[user_id].extend(self._convert(item) for item in _values(outcome))
                    next_link = outcome.get("@odata.nextLink")
                    if next_link:
                        pending.append((user_id, self._own_link(next_link)[len(self.graph_base_url) :]))
                except TemporaryError as error:
                    events.pop(user_id, None)
                    events.failures[user_id] = error
        if wanted and not events and all(_passing(error) for error in events.failures.values()):
            raise _worst_failure(list(events.failures.values()))
        return events

    def read_changes(self, cursors: Mapping[str, str | None], start: dt.datetime, end: dt.datetime) -> ChangeReads:
        """`calendarView/delta` for each user, in `$batch` rounds like `read_events`.

        A user without a cursor starts a delta round over [start, end): every event, then a deltaLink (the cursor),
        which fixes that window for every later call (delta-query-events.md). With a cursor only what changed
        since comes back: changed events whole, deleted ones (or moved out of the window) as `@removed`. Pages are
        asked for with `Prefer: odata.maxpagesize` and followed through `@odata.nextLink` to the
        `@odata.deltaLink`. A cursor Graph no longer knows (410 `SyncStateNotFound`) starts that user's round
        afresh, in full, in the same call.
        """
        first = "/users/{}/calendarView/delta?" + _query(
            {"startDateTime": _graph_instant(start), "endDateTime": _graph_instant(end)}
        )
        wanted = list(dict.fromkeys(cursors))
        reads = ChangeReads()
        changed: dict[str, dict[str, Event]] = {}
        removed: dict[str, set[str]] = {}
        full: dict[str, bool] = {}
        pending: deque[tuple[str, str]] = deque()

        def begin(user_id: str, cursor: str | None) -> None:
            changed[user_id], removed[user_id] = {}, set()
            if cursor and cursor.startswith(self.graph_base_url + "/"):
                full[user_id] = False
                pending.append((user_id, cursor[len(self.graph_base_url) :]))
            else:  # no cursor, or one made for another Graph address: a new round
                full[user_id] = True
                pending.append((user_id, first.format(_path_segment(user_id))))

        for user_id in wanted:
            begin(user_id, cursors[user_id])
        while pending:
            chunk = [pending.popleft() for _ in range(min(BATCH_LIMIT, len(pending)))]
            for (user_id, _url), outcome in zip(
                chunk, self._batch_round(chunk, prefer=self._delta_prefer), strict=True
            ):
                if isinstance(outcome, _SyncStateGone):
                    if full[user_id]:  # a round started afresh is refused too: that is Graph's fault
                        reads.failures[user_id] = TemporaryError(str(outcome))
                        continue
                    begin(user_id, None)
                    continue
                if isinstance(outcome, ProviderError):
                    reads.failures[user_id] = outcome
                    continue
                try:
                    for item in _values(outcome):
                        item_id = item.get("id")
                        if not isinstance(item_id, str) or not item_id:
                            continue
                        if "@removed" in item:
                            changed[user_id].pop(item_id, None)
                            removed[user_id].add(item_id)
                        else:
                            removed[user_id].discard(item_id)
                            changed[user_id][item_id] = self._convert(item)
                    next_link = outcome.get("@odata.nextLink")
                    delta_link = outcome.get("@odata.deltaLink")
                    if next_link:
                        pending.append((user_id, self._own_link(next_link)[len(self.graph_base_url) :]))
                    elif delta_link:
                        reads[user_id] = CalendarChanges(
                            events=tuple(changed[user_id].values()),
                            removed=frozenset() if full[user_id] else frozenset(removed[user_id]),
                            cursor=self._own_link(delta_link),
                            full=full[user_id],
                        )
                    else:
                        raise TemporaryError("Microsoft Graph ended a delta query without a deltaLink.")
                except TemporaryError as error:
                    reads.failures[user_id] = error
        if wanted and not reads and all(_passing(error) for error in reads.failures.values()):
            raise _worst_failure(list(reads.failures.values()))
        return reads

    def _convert(self, item: Mapping[str, Any]) -> Event:
        try:
            return event_from_graph(item, self.timezone)
        except ValueError as error:
            raise TemporaryError(f"Microsoft Graph sent an event we could not read ({error}).") from error

    def _batch_round(
        self, chunk: Sequence[tuple[str, str]], *, prefer: str | None = None
    ) -> list[dict[str, Any] | ProviderError]:
        """One `$batch` of calendar reads: each request's page, or the error of that one mailbox.

        Answers are matched to requests by id (Graph answers in any order). Inner 401s are sent once more with a
        fresh token. Inner 429/5xx answers are sent once more, alone, in a new batch after the longest Retry-After
        among them (throttling.md, "Throttling and batching"), but only when that is at most SHORT_WAIT_SECONDS;
        whatever still fails is that user's Throttled / TemporaryError carrying the server's value, for the task
        to retry later. A 403 fails the whole call when the token lacks Calendars.Read, else only that mailbox
        (outside the app's access scope); 404s say what is missing. Any other refusal (400, a 401 with a fresh
        token) is the request's, not the mailbox's, and fails the whole call.
        """
        users_by_id = {str(index): user_id for index, (user_id, _url) in enumerate(chunk)}
        urls_by_id = {str(index): url for index, (_user, url) in enumerate(chunk)}

        def send(ids: Iterable[str]) -> dict[str, tuple[int, dict[str, str], Any]]:
            ids = list(ids)
            with self._mailbox_turns(users_by_id[rid] for rid in ids):
                return self._send_batch({rid: urls_by_id[rid] for rid in ids}, prefer=prefer or self._prefer)

        answers = send(urls_by_id)
        unauthorised = [rid for rid, (status, _h, _b) in answers.items() if status == 401]
        if unauthorised:  # the token expired early: once more with a fresh one
            self._forget_tokens()
            answers.update(send(unauthorised))
        retry_ids = [rid for rid, (status, _h, _b) in answers.items() if _retryable(status)]
        if retry_ids:
            waits = [parse_retry_after(answers[rid][1].get("retry-after")) for rid in retry_ids]
            wait = max((1.0 if value is None else value) for value in waits)
            if wait <= SHORT_WAIT_SECONDS:
                time.sleep(wait)
                answers.update(send(retry_ids))
        if any(status == 403 for status, _h, _b in answers.values()) and not self._token_may_read_calendars():
            raise PermissionMissing(_permission_message(CALENDARS_READ), permission=CALENDARS_READ)
        outcomes: list[dict[str, Any] | ProviderError] = []
        for rid, user_id in users_by_id.items():
            status, headers, body = answers[rid]
            if 200 <= status < 300 and isinstance(body, dict):
                outcomes.append(body)
            elif 200 <= status < 300:
                outcomes.append(TemporaryError("Microsoft Graph sent a batch answer that is not JSON."))
            elif status in (403, 404) or _retryable(status):
                outcomes.append(_mailbox_error(user_id, status, headers, body))
            elif status == 410 or (status == 400 and _error_code(body)[0].casefold() in _SYNC_STATE_CODES):
                outcomes.append(_SyncStateGone("Microsoft Graph no longer knows the calendar's delta cursor."))
            else:  # the request itself was refused (a 400, a 401 with a fresh token): every user would fail alike
                raise _graph_error(
                    status,
                    headers,
                    body,
                    permission=CALENDARS_READ,
                    not_found=f"The mailbox of user {user_id} was not found.",
                )
        return outcomes

    def _token_may_read_calendars(self) -> bool:
        """False only when the token is a JWT whose application permissions lack Calendars.Read(Write)."""
        roles = _token_roles(self._access_token())
        return roles is None or bool(roles & _SATISFIED_BY[CALENDARS_READ])

    @contextlib.contextmanager
    def _mailbox_turns(self, user_ids: Iterable[str]) -> Iterator[None]:
        """Wait until each mailbox has fewer than MAILBOX_CONCURRENCY of this provider's requests in flight, and
        hold one slot of each for the block: Outlook throttles an app's fifth concurrent request to a mailbox."""
        users = sorted(set(user_ids))
        with self._mailboxes_free:
            self._mailboxes_free.wait_for(
                lambda: all(self._mailboxes_busy.get(user, 0) < MAILBOX_CONCURRENCY for user in users)
            )
            for user in users:
                self._mailboxes_busy[user] = self._mailboxes_busy.get(user, 0) + 1
        try:
            yield
        finally:
            with self._mailboxes_free:
                for user in users:
                    left = self._mailboxes_busy[user] - 1
                    if left:
                        self._mailboxes_busy[user] = left
                    else:
                        del self._mailboxes_busy[user]
                self._mailboxes_free.notify_all()

    def _send_batch(self, urls_by_id: Mapping[str, str], *, prefer: str) -> dict[str, tuple[int, dict[str, str], Any]]:
        """POST /$batch; the (status, lower-cased headers, body) of every inner response by id.

        An outer 424 Failed Dependency (Graph's answer to a batch with throttled items) is read like a 200: the
        items carry their own status and Retry-After. Without item answers it is a passing failure.
        """
        answer = self._request(
            "POST",
            f"{self.graph_base_url}/$batch",
            json_body={
                "requests": [
                    {"id": rid, "method": "GET", "url": url, "headers": {"Prefer": prefer}}
                    for rid, url in urls_by_id.items()
                ]
            },
            permission=CALENDARS_READ,
            not_found="Microsoft Graph's $batch address was not found: check the Graph base URL.",
            also_ok=frozenset({424}),
        )
        responses = answer.get("responses")
        if not isinstance(responses, list):
            raise TemporaryError("Microsoft Graph sent a batch answer without responses; the sync tries again later.")
        results: dict[str, tuple[int, dict[str, str], Any]] = {}
        for response in responses:
            if not isinstance(response, dict) or str(response.get("id")) not in urls_by_id:
                continue
            headers = response.get("headers")
            if not isinstance(headers, dict):
                headers = {}
            try:
                status = int(response.get("status"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                status = 502
            results[str(response["id"])] = (
                status,
                {str(key).lower(): str(value) for key, value in headers.items()},
                response.get("body"),
            )
        if set(results) != set(urls_by_id):
            raise TemporaryError("Microsoft Graph's batch answer left out some of the requests.")
        return results

    # --- change notifications ---

    def subscribe(
        self,
        user_id: str,
        notification_url: str,
        client_state: str,
        expires: dt.datetime,
        lifecycle_url: str | None = None,
    ) -> tuple[str, dt.datetime]:
        """A subscription to the user's events (created, updated, deleted); expiry capped at Graph's 4230 minutes.

        Graph checks `notification_url` (and `lifecycle_url`) before answering: each must echo `validationToken`
        within 10 s, so this call waits SUBSCRIBE_TIMEOUT_SECONDS. Should even that run out, Graph may still have
        made the subscription: it is looked up (our resource, URL and clientState) and deleted, and the call
        raises TemporaryError, so no subscription is left that nobody renews or deletes.
        """
        resource = f"/users/{user_id}/events"
        body: dict[str, Any] = {
            "changeType": "created,updated,deleted",
            "notificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": _graph_instant(_capped_expiry(expires)),
            "clientState": client_state,
        }
        if lifecycle_url:
            body["lifecycleNotificationUrl"] = lifecycle_url
        try:
            answer = self._request(
                "POST",
                f"{self.graph_base_url}/subscriptions",
                json_body=body,
                permission=CALENDARS_READ,
                not_found=f"The mailbox of user {user_id} was not found.",
                bad_request_hint=(
                    f" Check that {notification_url} is reachable from the internet over HTTPS and answers "
                    "Microsoft Graph's validation request."
                ),
                timeout=max(self.timeout, SUBSCRIBE_TIMEOUT_SECONDS),
            )
        except PermissionMissing as error:
            if self._token_may_read_calendars():  # the app may read calendars: this mailbox is outside its scope
                raise _mailbox_error(
                    user_id, 403, {}, {"error": {"code": "ErrorAccessDenied", "message": str(error)}}
                ) from error
            raise
        except _GraphTimeout as error:
            try:
                self._delete_unconfirmed(resource, notification_url, client_state)
                cleaned = "any subscription it made was deleted"
            except ProviderError:  # its notifications carry a clientState we never stored: refused until it expires
                cleaned = "a subscription it may have made could not be looked up and runs out within 3 days"
            raise TemporaryError(
                f"{error} Microsoft Graph did not confirm the subscription for user {user_id} in time ({cleaned}); "
                "the next renewal round subscribes again."
            ) from error
        subscription_id = answer.get("id")
        if not isinstance(subscription_id, str) or not subscription_id:
            raise TemporaryError("Microsoft Graph created a subscription but sent no id.")
        return subscription_id, self._expiry(answer)

    def _delete_unconfirmed(self, resource: str, notification_url: str, client_state: str) -> None:
        """Delete the app's subscriptions on `resource` to `notification_url` with our clientState (Graph may leave
        clientState out of the list; then resource and URL decide: the caller holds no subscription for it)."""
        wanted = resource.strip("/").casefold()
        for page in self._pages(f"{self.graph_base_url}/subscriptions", permission=CALENDARS_READ, not_found=""):
            for item in _values(page):
                shown_state = item.get("clientState")
                if (
                    str(item.get("resource") or "").strip("/").casefold() == wanted
                    and item.get("notificationUrl") == notification_url
                    and shown_state in (None, client_state)
                    and isinstance(item.get("id"), str)
                ):
                    self.unsubscribe(item["id"])

    def renew(self, subscription_id: str, expires: dt.datetime) -> dt.datetime:
        """Move the subscription's expiry (capped at 4230 minutes from now); NotFound means subscribe again."""
        answer = self._request(
            "PATCH",
            f"{self.graph_base_url}/subscriptions/{_path_segment(subscription_id)}",
            json_body={"expirationDateTime": _graph_instant(_capped_expiry(expires))},
            permission=CALENDARS_READ,
            not_found=f"The subscription {subscription_id} no longer exists at Microsoft Graph: subscribe again.",
        )
        return self._expiry(answer)

    def unsubscribe(self, subscription_id: str) -> None:
        """Delete the subscription; one that is already gone counts as deleted."""
        try:
            self._request(
                "DELETE",
                f"{self.graph_base_url}/subscriptions/{_path_segment(subscription_id)}",
                permission=CALENDARS_READ,
                not_found="",
            )
        except NotFound:
            return

    @staticmethod
    def _expiry(answer: Mapping[str, Any]) -> dt.datetime:
        try:
            return parse_graph_time(answer.get("expirationDateTime"))
        except ValueError as error:
            raise TemporaryError("Microsoft Graph sent a subscription without a readable expiry.") from error

    # --- test connection ---

    def check(self, *, group_id: str | None = None) -> list[str]:
        """Problems in plain words, for the admin's "test connection"; empty means all good.

        Signs in, reads the granted permissions from the token where it is a JWT, and with `group_id` lists the
        group and reads one member's calendar for the next hour.
        """
        try:
            token = self._access_token()
        except ProviderError as error:
            return [str(error)]
        problems: list[str] = []
        roles = _token_roles(token)
        if roles is not None:
            for permission, satisfied_by in _SATISFIED_BY.items():
                if not roles & satisfied_by:
                    problems.append(_permission_message(permission))
        if group_id:
            try:
                users = self.list_users(group_id)
                if not users:
                    problems.append(
                        f"The group {group_id!r} has no users: add the employees whose calendars should be pushed."
                    )
                else:
                    now = dt.datetime.now(dt.UTC)
                    reads = self.read_events([users[0].id], now, now + dt.timedelta(hours=1))
                    problems.extend(str(failure) for failure in reads.failures.values())
            except ProviderError as error:
                problems.append(str(error))
        return list(dict.fromkeys(problems))


# --- helpers ------------------------------------------------------------------------------------------------------

_MALFORMED = object()


class _SyncStateGone(TemporaryError):
    """A delta cursor Graph no longer knows (410 `SyncStateNotFound`): the calendar is read in full again."""


class _GraphTimeout(TemporaryError):
    """Graph did not answer within the client's timeout (the request may still have been carried out)."""

    default_code = SyncErrorCode.TIMEOUT


def _values(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    values = page.get("value", [])
    if not isinstance(values, list):
        raise TemporaryError("Microsoft Graph sent a collection whose value is not a list.")
    return [value for value in values if isinstance(value, dict)]


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _passing(error: ProviderError) -> bool:
    """A failure that goes away by waiting (throttling, an outage), as opposed to one a person must fix."""
    return isinstance(error, Throttled | TemporaryError)


def _worst_failure(errors: Sequence[ProviderError]) -> ProviderError:
    """Throttled if any was, with the longest Retry-After; else the first outage."""
    throttled = [error for error in errors if isinstance(error, Throttled)]
    if throttled:
        return max(throttled, key=lambda error: error.retry_after)
    return errors[0]


def _error_code(body: Any) -> tuple[str, str]:
    """Graph's error code and message from an error body (`{"error": {"code": …, "message": …}}`)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")


def _mailbox_error(user_id: str, status: int, headers: Mapping[str, str], body: Any) -> ProviderError:
    """The error of one mailbox's read inside a `$batch`, in words that say what is wrong and what to do."""
    code, message = _error_code(body)
    detail = f"{code}: {message}" if code and message else code or message or f"HTTP {status}"
    if status == 403:
        # auth-limit-mailbox-access.md: an application access policy (or RBAC for Applications) leaves it out
        return ProviderError(
            f"Microsoft Graph denied the app access to the mailbox of user {user_id} ({detail}): the mailbox is "
            "outside the app's access scope. An Exchange Online administrator has limited the app to some "
            "mailboxes (an application access policy or RBAC for Applications): add the user to the group the app "
            "may read, or remove the user from the activation group.",
            code=SyncErrorCode.MAILBOX_OUT_OF_SCOPE,
            params={"mailbox": user_id},
        )
    if status == 404 and code.casefold() == "mailboxnotenabledforrestapi":
        return NotFound(
            f"User {user_id} has no mailbox in Exchange Online that Microsoft Graph can read ({detail}): give the "
            "user an Exchange Online licence, or remove the user from the activation group.",
            code=SyncErrorCode.MAILBOX_NOT_ENABLED,
            params={"mailbox": user_id},
        )
    if status == 404:
        return NotFound(
            f"User {user_id} has no mailbox in the tenant ({detail}): the user was deleted or the id is wrong. Check "
            "the address, or remove the user from the activation group.",
            code=SyncErrorCode.MAILBOX_NOT_FOUND,
            params={"mailbox": user_id},
        )
    return _graph_error(status, headers, body, permission=CALENDARS_READ, not_found="")  # throttled or an outage


def _throttled(retry_after: float | None) -> Throttled:
    seconds = DEFAULT_THROTTLE_SECONDS if retry_after is None else retry_after
    return Throttled(f"Microsoft Graph is throttling the app; try again in {seconds:g} s.", retry_after=seconds)


def _permission_message(permission: str) -> str:
    return (
        f"The app lacks the Microsoft Graph application permission {permission}: add it in Entra ID → App "
        "registrations → API permissions, then grant admin consent."
    )


def _graph_error(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    permission: str,
    not_found: str,
    bad_request_hint: str = "",
) -> ProviderError:
    """The ProviderError for a Graph error answer (outer or inside a batch); `headers` keys lower-cased."""
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 401:
        return AuthError(
            "Microsoft Graph refused the app's token: check that the tenant ID, the application (client) ID and the "
            "secret belong to the same app registration, and that admin consent has been granted."
        )
    if status == 403:
        return PermissionMissing(_permission_message(permission), permission=permission)
    if status == 404:
        return NotFound(not_found or "Microsoft Graph did not find the object.")
    if status == 429:
        return _throttled(retry_after)
    if status >= 500:
        return TemporaryError(
            f"Microsoft Graph is unavailable (HTTP {status}); the sync tries again later.", retry_after=retry_after
        )
    detail = f": {message}" if message else ""
    return ProviderError(f"Microsoft Graph refused the request (HTTP {status} {code}){detail}.{bad_request_hint}")


def _capped_expiry(expires: dt.datetime) -> dt.datetime:
    if expires.tzinfo is None or expires.utcoffset() is None:
        raise ValueError("expires must be timezone-aware")
    latest = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=MAX_SUBSCRIPTION_MINUTES) - dt.timedelta(minutes=1)
    return min(expires, latest)


def _token_roles(token: str) -> set[str] | None:
    """The application permissions (`roles`) in an access token that is a JWT; None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    roles = claims.get("roles") if isinstance(claims, dict) else None
    if not isinstance(roles, list):
        return None
    return {str(role) for role in roles}
