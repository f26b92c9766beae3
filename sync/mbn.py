"""Telenor Mobilt Bedriftsnett (MBN): the absence API of shared/spec/mbn-api.md behind one client, and the matching
of calendar users to MBN subscribers.

The wire format is the project's assumption until it is checked against Telenor's partner documentation;
swapping in the real API means changing this module alone. Nothing here sleeps or retries a failed call
(except one token refresh on a 401): 429 and 5xx raise with `retry_after` and the Celery task retries with back-off.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

import requests

from common import metrics
from customers.validators import parse_msisdn
from sync.errors import SyncErrorCode
from sync.providers.base import parse_retry_after
from sync.reconcile import EXTERNAL_REF_PREFIX  # absences we pushed; anything else was set by hand, never touched

Diversion = Literal["voicemail", "none"]
DIVERSIONS: tuple[Diversion, ...] = ("voicemail", "none")
TOKEN_MARGIN_SECONDS = 60.0  # a cached token is replaced this long before it expires
DEFAULT_THROTTLE_SECONDS = 1.0  # when MBN answers 429 without Retry-After
MAX_PAGES = 10_000
CONNECTIONS_PER_ENTERPRISE = 32  # kept open per process: a worker's sync threads (bench: --concurrency 32)


# --- errors -------------------------------------------------------------------------------------------------------


class MbnError(Exception):
    """An MBN call failed; `str(error)` is a plain-words message for staff, `error_code` (a SyncErrorCode) and
    `error_params` what the portal and admin word for the customer (`sync.errors.describe`)."""

    default_code = SyncErrorCode.MBN_REFUSED

    def __init__(self, message: str, *, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error_code = self.default_code
        self.error_params = dict(params or {})


class MbnAuthError(MbnError):
    """MBN refused the credentials (client id/secret or API user/password): staff must fix the settings."""

    default_code = SyncErrorCode.MBN_AUTH_FAILED


class MbnBadRequest(MbnError):
    """MBN rejected the request as malformed (400): `code` and `message` are MBN's."""

    def __init__(self, message: str, *, code: str, server_message: str) -> None:
        super().__init__(message, params={"mbn_code": code})
        self.code = code
        self.server_message = server_message


class MbnNotFound(MbnError):
    """The subscriber or the absence does not exist (404)."""

    default_code = SyncErrorCode.MBN_SUBSCRIBER_NOT_FOUND


class MbnConflict(MbnError):
    """The absence overlaps another one of the subscriber's (409); `server_message` is MBN's."""

    default_code = SyncErrorCode.MBN_CONFLICT_MANUAL_ABSENCE

    def __init__(self, message: str, *, server_message: str) -> None:
        super().__init__(message)
        self.server_message = server_message


class MbnThrottled(MbnError):
    """The enterprise is over its request rate (429): retry after `retry_after` seconds."""

    default_code = SyncErrorCode.MBN_THROTTLED

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, params={"retry_after": retry_after})
        self.retry_after = retry_after


class MbnUnavailable(MbnError):
    """An outage (5xx), a timeout or an unreadable answer: retry later (after `retry_after` when MBN said)."""

    default_code = SyncErrorCode.MBN_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- data ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """A mobile subscription in the enterprise's MBN user catalogue."""

    msisdn: str
    email: str
    name: str


@dataclass(frozen=True)
class MbnAbsence:
    """An absence as MBN holds it; `id` is None until MBN has created it. Times are aware."""

    id: str | None
    reason: str
    start: dt.datetime
    end: dt.datetime
    diversion: Diversion
    external_ref: str

    @property
    def is_ours(self) -> bool:
        """Pushed by Kalender Push (as opposed to set by hand by the user or the switchboard)."""
        return self.external_ref.startswith(EXTERNAL_REF_PREFIX)

    def to_json(self) -> dict[str, Any]:
        """The wire form (ISO 8601 with offset); `id` only when there is one."""
        body: dict[str, Any] = {} if self.id is None else {"id": self.id}
        body.update(
            reason=self.reason,
            start=_iso(self.start, "start"),
            end=_iso(self.end, "end"),
            diversion=self.diversion,
            external_ref=self.external_ref,
        )
        return body

    @classmethod
    def from_json(cls, raw: Any) -> MbnAbsence:
        """The absence from MBN's JSON; ValueError naming the field when it is unusable."""
        if not isinstance(raw, Mapping):
            raise ValueError("absence: expected an object")
        absence_id = raw.get("id")
        reason = raw.get("reason")
        if not isinstance(reason, str):
            raise ValueError("absence.reason: missing")
        diversion = raw.get("diversion", "none")
        if diversion not in DIVERSIONS:
            raise ValueError(f"absence.diversion: expected voicemail or none, got {diversion!r}")
        external_ref = raw.get("external_ref")
        return cls(
            id=None if absence_id is None else str(absence_id),
            reason=reason,
            start=_parse_iso(raw.get("start"), "absence.start"),
            end=_parse_iso(raw.get("end"), "absence.end"),
            diversion=diversion,
            external_ref=external_ref if isinstance(external_ref, str) else "",
        )


def _iso(moment: dt.datetime, field: str) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"absence.{field}: must be timezone-aware")
    return moment.isoformat(timespec="seconds")


def _parse_iso(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{field}: missing")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f"{field}: not an ISO 8601 time") from error
    if moment.tzinfo is None:
        raise ValueError(f"{field}: has no UTC offset")
    return moment


# --- the client ---------------------------------------------------------------------------------------------------


class MbnClient:
    """One enterprise's MBN connection: the app's client id/secret and the company's API user."""

    def __init__(
        self,
        base_url: str,
        enterprise_id: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        *,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.enterprise_id = enterprise_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.username = username
        self._password = password
        self.timeout = timeout
        if session is None:
            session = requests.Session()
            session.trust_env = False
            # every sync thread of a process may call one enterprise: keep a connection for each
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=CONNECTIONS_PER_ENTERPRISE)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        self._token: str | None = None
        self._token_renew_at = 0.0  # time.monotonic()
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:  # never the secrets
        return f"MbnClient(base_url={self.base_url!r}, enterprise_id={self.enterprise_id!r})"

    # --- token ---

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_renew_at:
                self._token, lifetime = self._fetch_token()
                self._token_renew_at = time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS)
            return self._token

    def sign_in(self) -> None:
        """Log in now (client credentials + the API user): MbnAuthError when MBN refuses them, MbnUnavailable
        when it cannot be reached. For a connection test, to tell a wrong login from a wrong enterprise."""
        self._access_token()

    def _forget_token(self) -> None:
        with self._token_lock:
            self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        response = self._send(
            "POST",
            f"{self.base_url}/oauth/v2/token",
            auth=(self.client_id, self._client_secret),
            data={"grant_type": "password", "username": self.username, "password": self._password},
        )
        status = response.status_code
        if status == 200:
            body = _json_object(response)
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                raise MbnUnavailable("MBN sent a token answer without an access token.")
            try:
                lifetime = float(body.get("expires_in", 3600))
            except (TypeError, ValueError):
                lifetime = 3600.0
            return token, lifetime
        if status in (400, 401, 403):
            error = _error_code(response)
            if error == "invalid_client":
                raise MbnAuthError(
                    "MBN refused the app's client ID or client secret: check them against what Telenor issued."
                )
            if error == "invalid_grant":
                raise MbnAuthError(
                    f"MBN refused the API user {self.username!r} or its password: check the API user in Min Bedrift "
                    "and type its password again."
                )
            raise MbnAuthError(
                "MBN refused the login: check the client ID and secret from Telenor, and the API user's name and "
                "password from Min Bedrift."
            )
        raise _status_error(response)

    # --- HTTP ---

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as error:
            metrics.count_mbn_answer(None)
            raise MbnUnavailable(f"MBN did not answer within {self.timeout:g} s.") from error
        except requests.RequestException as error:
            metrics.count_mbn_answer(None)
            raise MbnUnavailable(f"MBN ({self.base_url}) could not be reached: check the network.") from error
        metrics.count_mbn_answer(response.status_code)
        return response

    def _call(self, method: str, path: str, *, json_body: Any = None) -> requests.Response:
        """One API call with the bearer token (refreshed once on a 401); a 2xx response or the mapped error."""
        url = f"{self.base_url}/mbn/v1/enterprises/{quote(self.enterprise_id, safe='')}{path}"
        for attempt in (1, 2):
            response = self._send(
                method,
                url,
                json=json_body,
                headers={"Authorization": f"Bearer {self._access_token()}", "Accept": "application/json"},
            )
            if response.status_code == 401 and attempt == 1:
                self._forget_token()
                continue
            break
        if 200 <= response.status_code < 300:
            return response
        if response.status_code in (401, 403):
            raise MbnAuthError(
                f"MBN refused the API user's access to enterprise {self.enterprise_id}: check the enterprise ID and "
                "that the API user in Min Bedrift may manage absences."
            )
        raise _status_error(response)

    @staticmethod
    def _absences_path(msisdn: str, absence_id: str | None = None) -> str:
        path = f"/users/{quote(msisdn, safe='+')}/absences"
        return path if absence_id is None else f"{path}/{quote(absence_id, safe='')}"

    # --- subscribers ---

    def subscribers(self) -> list[Subscriber]:
        """Every subscriber of the enterprise, following `next_page`."""
        subscribers: list[Subscriber] = []
        page: Any = 1
        seen: set[Any] = set()
        while page is not None:
            if page in seen or len(seen) >= MAX_PAGES:
                raise MbnUnavailable("MBN's subscriber pages go round in a circle.")
            seen.add(page)
            body = _json_object(self._call("GET", f"/users?page={quote(str(page), safe='')}"))
            users = body.get("users")
            if not isinstance(users, list):
                raise MbnUnavailable("MBN sent a subscriber page without a list of users.")
            for user in users:
                if not isinstance(user, Mapping) or not isinstance(user.get("msisdn"), str):
                    raise MbnUnavailable("MBN sent a subscriber without a number.")
                subscribers.append(
                    Subscriber(
                        msisdn=user["msisdn"], email=str(user.get("email") or ""), name=str(user.get("name") or "")
                    )
                )
            page = body.get("next_page")
        return subscribers

    # --- absences ---

    def absences(self, msisdn: str) -> list[MbnAbsence]:
        """Every absence MBN holds for the subscriber, ours and those set by hand."""
        body = _json_object(self._call("GET", self._absences_path(msisdn)))
        items = body.get("absences")
        if not isinstance(items, list):
            raise MbnUnavailable("MBN sent an absence list without absences.")
        return [_absence(item) for item in items]

    def create(self, msisdn: str, absence: MbnAbsence) -> MbnAbsence:
        """Create the absence (its `id` is ignored); MBN's copy with the new id."""
        body = dataclasses.replace(absence, id=None).to_json()
        return _absence(_json_object(self._call("POST", self._absences_path(msisdn), json_body=body)))

    def update(self, msisdn: str, absence_id: str, absence: MbnAbsence) -> MbnAbsence:
        """Replace the absence `absence_id` by `absence` (a full replace)."""
        body = dataclasses.replace(absence, id=absence_id).to_json()
        return _absence(_json_object(self._call("PUT", self._absences_path(msisdn, absence_id), json_body=body)))

    def delete(self, msisdn: str, absence_id: str) -> None:
        """Delete the absence; MbnNotFound if MBN does not hold it (any more)."""
        response = self._call("DELETE", self._absences_path(msisdn, absence_id))
        if response.content:  # 204 has none; anything else must at least be JSON, or we cannot trust the 2xx
            try:
                response.json()
            except ValueError as error:
                raise MbnUnavailable(f"MBN sent an answer that is not JSON (HTTP {response.status_code}).") from error

    # --- test connection ---

    def check(self) -> list[str]:
        """Problems in plain words for the admin's "test connection" (login, then the subscriber list)."""
        try:
            subscribers = self.subscribers()
        except MbnError as error:
            return [str(error)]
        if not subscribers:
            return [f"MBN lists no subscribers for enterprise {self.enterprise_id}: check the enterprise ID."]
        return []


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise MbnUnavailable(f"MBN sent an answer that is not JSON (HTTP {response.status_code}).") from error
    if not isinstance(body, dict):
        raise MbnUnavailable(f"MBN sent an answer that is not a JSON object (HTTP {response.status_code}).")
    return body


def _absence(raw: Any) -> MbnAbsence:
    try:
        return MbnAbsence.from_json(raw)
    except ValueError as error:
        raise MbnUnavailable(f"MBN sent an absence we could not read ({error}).") from error


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(response: requests.Response) -> str:
    body = _error_body(response)
    return str(body.get("error") or body.get("code") or "")


def _status_error(response: requests.Response) -> MbnError:
    """The MbnError for a non-2xx answer other than 401/403."""
    status = response.status_code
    body = _error_body(response)
    server_message = str(body.get("message") or body.get("error_description") or "")
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 400:
        code = str(body.get("code") or body.get("error") or "bad_request")
        return MbnBadRequest(
            f"MBN rejected the request ({code}): {server_message or 'no reason given'}.",
            code=code,
            server_message=server_message,
        )
    if status == 404:
        return MbnNotFound(
            f"MBN does not know this subscriber or absence{': ' + server_message if server_message else ''}."
        )
    if status == 409:
        return MbnConflict(
            f"MBN refused an overlapping absence: {server_message or 'the subscriber already has an absence then'}.",
            server_message=server_message,
        )
    if status == 429:
        seconds = DEFAULT_THROTTLE_SECONDS if retry_after is None else retry_after
        return MbnThrottled(f"MBN is throttling the enterprise; try again in {seconds:g} s.", retry_after=seconds)
    if status >= 500:
        return MbnUnavailable(
            f"MBN is unavailable (HTTP {status}); the sync tries again later.", retry_after=retry_after
        )
    return MbnError(f"MBN answered HTTP {status}{': ' + server_message if server_message else ''}.")


# --- matching calendar users to subscribers -----------------------------------------------------------------------


class DirectoryPerson(Protocol):
    """What matching needs of a calendar user (`sync.providers.DirectoryUser` fits)."""

    @property
    def id(self) -> str: ...

    @property
    def email(self) -> str: ...

    @property
    def name(self) -> str: ...


def match_subscribers(
    users: Iterable[DirectoryPerson],
    subscribers: Sequence[Subscriber],
    directory_mobiles: Mapping[str, str] | None = None,
    manual: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Each calendar user's MBN number: staff's manual match first, then the e-mail (case-insensitive), then the
    mobile number in the calendar directory; None where nothing matches (shown to staff, never dropped).

    A number goes to one user only: a manual match takes it out of the automatic matching.
    """
    directory_mobiles = directory_mobiles or {}
    manual = manual or {}
    by_email: dict[str, str] = {}
    by_number: dict[str, str] = {}
    for subscriber in subscribers:
        email = subscriber.email.strip().casefold()
        if email:
            by_email.setdefault(email, subscriber.msisdn)
        number = parse_msisdn(subscriber.msisdn)
        if number:
            by_number.setdefault(number, subscriber.msisdn)
    people = list(users)
    matches: dict[str, str | None] = {person.id: None for person in people}
    taken: set[str] = set()
    for person in people:
        chosen = (manual.get(person.id) or "").strip()
        if chosen:
            number = parse_msisdn(chosen)
            manual_msisdn = by_number.get(number, number) if number else chosen
            matches[person.id] = manual_msisdn
            taken.add(manual_msisdn)
    for person in people:
        msisdn = by_email.get(person.email.strip().casefold()) if matches[person.id] is None else None
        if msisdn and msisdn not in taken:
            matches[person.id] = msisdn
            taken.add(msisdn)
    for person in people:
        number = parse_msisdn(directory_mobiles.get(person.id)) if matches[person.id] is None else None
        msisdn = by_number.get(number) if number else None
        if msisdn and msisdn not in taken:
            matches[person.id] = msisdn
            taken.add(msisdn)
    return matches
