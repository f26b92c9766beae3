"""Telenor MBN absence API look-alike, exactly the wire format of shared/spec/mbn-api.md.

OAuth2 password grant (HTTP Basic client credentials + the enterprise's API user), paged subscribers,
absence CRUD with 400/404/409 answers, and a token bucket per enterprise that answers 429 with
`Retry-After` above `rate_per_second`. Tests read what MBN ended up holding with `absences()`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devtools.simulators.base import (
    HttpError,
    Reply,
    Request,
    SimServer,
    empty_reply,
    json_reply,
    parse_datetime,
    route,
)

# The reasons MBN accepts: the MBN column of calendar-rules.md §1.
MBN_REASONS = (
    "Ikke Forstyrr",
    "Fri",
    "Eksternt Møte",
    "Møte",
    "Jobbreise",
    "Lunch",
    "Ferie",
    "Opptatt",
    "Pause",
    "Syk",
    "Permisjon",
)
DIVERSIONS = ("voicemail", "none")
PAGE_SIZE = 50
TOKEN_LIFETIME_SECONDS = 3600

ENTERPRISE = r"/mbn/v1/enterprises/(?P<enterprise>[^/]+)"
ABSENCES = ENTERPRISE + r"/users/(?P<msisdn>[^/]+)/absences"


class MbnError(HttpError, ValueError):
    """An MBN error answer (`{"code", "message"}`); also raised by `put_manual_absence` on bad input."""


class TokenBucket:
    """`rate` requests per second on average, bursts up to `rate`."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate_per_second must be positive")
        self.rate = rate
        self._tokens = float(rate)
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a request may pass (and uses a token), else the seconds until one may."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate


@dataclass(frozen=True)
class Absence:
    """A stored absence; times keep the offset they were given with."""

    id: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    diversion: str
    external_ref: str | None

    def overlaps(self, other: Absence) -> bool:
        return self.start < other.end and other.start < self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reason": self.reason,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "diversion": self.diversion,
            "external_ref": self.external_ref,
        }


@dataclass
class Enterprise:
    id: str
    client_id: str
    client_secret: str
    username: str
    password: str
    bucket: TokenBucket
    subscribers: dict[str, dict[str, str]] = field(default_factory=dict)
    absences: dict[str, dict[str, Absence]] = field(default_factory=dict)


@dataclass
class MbnToken:
    enterprise_id: str
    expires_at: float


class MbnSimulator(SimServer):
    """`http://127.0.0.1:PORT`: `/oauth/v2/token` and `/mbn/v1/enterprises/…`."""

    name = "mbn"
    status_codes = {
        404: "not_found",
        405: "method_not_allowed",
        429: "rate_limited",
        500: "internal_error",
        503: "service_unavailable",
        504: "gateway_timeout",
    }

    def __init__(self) -> None:
        super().__init__()
        self._enterprises: dict[str, Enterprise] = {}
        self._tokens: dict[str, MbnToken] = {}
        self._stored_at: dict[str, float] = {}  # absence id → when it was last written (time.time())
        self.routes = [
            route("POST", r"/oauth/v2/token", self._token),
            route("GET", ENTERPRISE + r"/users", self._list_subscribers),
            route("GET", ABSENCES, self._list_absences),
            route("POST", ABSENCES, self._create_absence),
            route("PUT", ABSENCES + r"/(?P<absence>[^/]+)", self._replace_absence),
            route("DELETE", ABSENCES + r"/(?P<absence>[^/]+)", self._delete_absence),
        ]

    # scripting

    def add_enterprise(
        self,
        enterprise_id: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        rate_per_second: float = 20,
    ) -> None:
        enterprise = Enterprise(
            enterprise_id, client_id, client_secret, username, password, TokenBucket(rate_per_second)
        )
        with self.lock:
            self._enterprises[enterprise_id] = enterprise

    def set_rate(self, enterprise_id: str, rate_per_second: float) -> None:
        with self.lock:
            self._enterprise(enterprise_id).bucket = TokenBucket(rate_per_second)

    def add_subscriber(self, enterprise_id: str, msisdn: str, email: str, name: str) -> None:
        with self.lock:
            enterprise = self._enterprise(enterprise_id)
            enterprise.subscribers[msisdn] = {"msisdn": msisdn, "email": email, "name": name}
            enterprise.absences.setdefault(msisdn, {})

    def absences(self, enterprise_id: str, msisdn: str) -> list[dict[str, Any]]:
        """What MBN holds for a subscriber, sorted by start."""
        with self.lock:
            stored = self._subscriber_absences(self._enterprise(enterprise_id), msisdn)
            return [absence.to_json() for absence in _by_start(stored.values())]

    def held_since(self, enterprise_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every subscriber's absences (as `absences` gives them) with `stored_at`: when MBN last wrote each
        (seconds since the epoch); what a benchmark reads to see when an absence arrived, from MBN's side."""
        with self.lock:
            enterprise = self._enterprise(enterprise_id)
            return {
                msisdn: [
                    {**absence.to_json(), "stored_at": self._stored_at.get(absence.id, 0.0)}
                    for absence in _by_start(held.values())
                ]
                for msisdn, held in enterprise.absences.items()
            }

    def put_manual_absence(
        self,
        enterprise_id: str,
        msisdn: str,
        reason: str,
        start: dt.datetime | str,
        end: dt.datetime | str,
        diversion: str = "none",
    ) -> dict[str, Any]:
        """An absence set by hand on the switchboard (no `kp:` external_ref). Raises MbnError like the API."""
        body = {"reason": reason, "start": _iso(start), "end": _iso(end), "diversion": diversion}
        with self.lock:
            return self._store(self._enterprise(enterprise_id), msisdn, _parse_absence(body, str(uuid.uuid4())))

    def expire_tokens(self) -> None:
        """Every issued token is expired from now on (API calls answer 401)."""
        with self.lock:
            for token in self._tokens.values():
                token.expires_at = 0

    def _enterprise(self, enterprise_id: str) -> Enterprise:
        enterprise = self._enterprises.get(enterprise_id)
        if enterprise is None:
            raise MbnError(404, "not_found", f"Unknown enterprise {enterprise_id}.")
        return enterprise

    def _subscriber_absences(self, enterprise: Enterprise, msisdn: str) -> dict[str, Absence]:
        if msisdn not in enterprise.subscribers:
            raise MbnError(404, "not_found", f"No subscriber {msisdn} in enterprise {enterprise.id}.")
        return enterprise.absences[msisdn]

    def _store(self, enterprise: Enterprise, msisdn: str, absence: Absence) -> dict[str, Any]:
        """Insert or replace (by id) unless it overlaps another absence of the same subscriber."""
        stored = self._subscriber_absences(enterprise, msisdn)
        for other in stored.values():
            if other.id != absence.id and other.overlaps(absence):
                raise MbnError(
                    409,
                    "overlap",
                    (
                        f"The absence overlaps absence {other.id} ({other.start.isoformat()} to "
                        f"{other.end.isoformat()}); a subscriber's absences may not overlap."
                    ),
                )
        stored[absence.id] = absence
        self._stored_at[absence.id] = time.time()
        return absence.to_json()

    # token

    def _token(self, request: Request, match: re.Match[str]) -> Reply:
        form = request.form()
        client = request.basic_credentials()
        if client is None:
            return _oauth_error(401, "invalid_client", "Client authentication (HTTP Basic) is required.")
        if form.get("grant_type") != "password":
            return _oauth_error(400, "unsupported_grant_type", "Only grant_type=password is supported.")
        with self.lock:
            candidates = [e for e in self._enterprises.values() if e.client_id == client[0]]
            if not any(secrets.compare_digest(e.client_secret, client[1]) for e in candidates):
                return _oauth_error(401, "invalid_client", "Unknown client id or wrong client secret.")
            enterprise = next(
                (
                    e
                    for e in candidates
                    if e.username == form.get("username", "")
                    and secrets.compare_digest(e.password, form.get("password", ""))
                ),
                None,
            )
            if enterprise is None:
                return _oauth_error(400, "invalid_grant", "Wrong API user name or password.")
            token = secrets.token_urlsafe(32)
            self._tokens[token] = MbnToken(enterprise.id, time.monotonic() + TOKEN_LIFETIME_SECONDS)
        return json_reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS})

    # API calls

    def _admit(self, request: Request, enterprise_id: str) -> Enterprise:
        """Authorize a call and charge it to the enterprise's rate: 401, 403, 404 or 429, else the enterprise."""
        with self.lock:
            issued = self._tokens.get(request.bearer_token() or "")
            if issued is None or issued.expires_at <= time.monotonic():
                raise MbnError(
                    401,
                    "invalid_token",
                    "The access token is missing, invalid or expired.",
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            if issued.enterprise_id != enterprise_id:
                raise MbnError(403, "forbidden", f"The access token is not for enterprise {enterprise_id}.")
            enterprise = self._enterprise(enterprise_id)
        wait = enterprise.bucket.take()
        if wait > 0:
            raise MbnError(
                429,
                "rate_limited",
                f"Enterprise {enterprise_id} is over its rate of {enterprise.bucket.rate:g} requests/s.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return enterprise

    def _list_subscribers(self, request: Request, match: re.Match[str]) -> Reply:
        enterprise = self._admit(request, match["enterprise"])
        raw_page = request.query.get("page", "1")
        if not raw_page.isdigit() or int(raw_page) < 1:
            raise MbnError(400, "invalid_page", f"page must be a positive integer, not {raw_page!r}.")
        page = int(raw_page)
        with self.lock:
            subscribers = [dict(subscriber) for subscriber in enterprise.subscribers.values()]
        users = subscribers[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        next_page = page + 1 if page * PAGE_SIZE < len(subscribers) else None
        return json_reply(200, {"users": users, "next_page": next_page})

    def _list_absences(self, request: Request, match: re.Match[str]) -> Reply:
        enterprise = self._admit(request, match["enterprise"])
        with self.lock:
            stored = self._subscriber_absences(enterprise, match["msisdn"])
            absences = [absence.to_json() for absence in _by_start(stored.values())]
        return json_reply(200, {"absences": absences})

    def _create_absence(self, request: Request, match: re.Match[str]) -> Reply:
        enterprise = self._admit(request, match["enterprise"])
        absence = _parse_absence(_json_body(request), str(uuid.uuid4()))
        with self.lock:
            return json_reply(201, self._store(enterprise, match["msisdn"], absence))

    def _replace_absence(self, request: Request, match: re.Match[str]) -> Reply:
        enterprise = self._admit(request, match["enterprise"])
        absence = _parse_absence(_json_body(request), match["absence"])
        with self.lock:
            self._existing(enterprise, match)
            return json_reply(200, self._store(enterprise, match["msisdn"], absence))

    def _delete_absence(self, request: Request, match: re.Match[str]) -> Reply:
        enterprise = self._admit(request, match["enterprise"])
        with self.lock:
            self._existing(enterprise, match)
            del enterprise.absences[match["msisdn"]][match["absence"]]
        return empty_reply(204)

    def _existing(self, enterprise: Enterprise, match: re.Match[str]) -> Absence:
        stored = self._subscriber_absences(enterprise, match["msisdn"])
        absence = stored.get(match["absence"])
        if absence is None:
            raise MbnError(404, "not_found", f"No absence {match['absence']} for subscriber {match['msisdn']}.")
        return absence

    def error_reply(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        return json_reply(status, {"code": code, "message": message}, headers)


def _oauth_error(status: int, error: str, description: str) -> Reply:
    """Token endpoint errors follow OAuth 2.0 (RFC 6749 §5.2), not the API's `{code, message}`."""
    headers = {"WWW-Authenticate": 'Basic realm="mbn"'} if status == 401 else {}
    return json_reply(status, {"error": error, "error_description": description}, headers)


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as error:
        raise MbnError(400, "invalid_json", str(error)) from error
    if not isinstance(body, dict):
        raise MbnError(400, "invalid_body", "The body must be a JSON object (an ABSENCE).")
    return body


def _parse_absence(body: Mapping[str, Any], absence_id: str) -> Absence:
    """Validate an ABSENCE body (its `id`, if any, is ignored) into an Absence with `absence_id`."""
    reason = body.get("reason")
    if reason not in MBN_REASONS:
        raise MbnError(400, "invalid_reason", f"reason must be one of {', '.join(MBN_REASONS)}; got {reason!r}.")
    start, end = _absence_time(body, "start"), _absence_time(body, "end")
    if start >= end:
        raise MbnError(400, "invalid_interval", "start must be before end.")
    diversion = body.get("diversion")
    if diversion not in DIVERSIONS:
        raise MbnError(400, "invalid_diversion", f"diversion must be 'voicemail' or 'none'; got {diversion!r}.")
    external_ref = body.get("external_ref")
    if external_ref is not None and not isinstance(external_ref, str):
        raise MbnError(400, "invalid_external_ref", "external_ref must be a string or null.")
    return Absence(absence_id, reason, start, end, diversion, external_ref)


def _absence_time(body: Mapping[str, Any], name: str) -> dt.datetime:
    value = parse_datetime(body.get(name))
    if value is None or value.utcoffset() is None:
        raise MbnError(
            400,
            "invalid_time",
            f"{name} must be an ISO 8601 date-time with an offset, e.g. 2026-03-02T09:00:00+01:00; "
            f"got {body.get(name)!r}.",
        )
    return value


def _iso(value: dt.datetime | str) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _by_start(absences: Iterable[Absence]) -> list[Absence]:
    return sorted(absences, key=lambda absence: (absence.start, absence.id))
