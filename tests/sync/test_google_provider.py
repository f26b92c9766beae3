"""The Google provider: the real google-auth and google-api-python-client against the loopback Google simulator."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.simulators.events import SimEvent
from devtools.simulators.google import GoogleSimulator
from sync.errors import SyncErrorCode
from sync.providers import google as google_module
from sync.providers.base import (
    AuthError,
    CalendarProvider,
    DirectoryUser,
    NotFound,
    PermissionMissing,
    ProviderError,
    TemporaryError,
    Throttled,
)
from sync.providers.google import CALENDAR_SCOPE, DIRECTORY_SCOPE, USER_SCOPE, GoogleProvider, event_from_google
from sync.rules import DEFAULT_CATALOGUE, RuleSettings
from sync.rules.engine import compute_absences
from sync.rules.model import Event

OSLO = ZoneInfo("Europe/Oslo")
ALICE, BOB, ADMIN = "alice@firma.no", "bob@firma.no", "admin@firma.no"
START = dt.datetime(2026, 10, 19, tzinfo=OSLO)
END = dt.datetime(2026, 11, 2, tzinfo=OSLO)


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def sim() -> Iterator[GoogleSimulator]:
    server = GoogleSimulator()
    server.start()
    server.add_user(ADMIN, "Admin", admin=True)
    server.add_user(ALICE, "Alice")
    server.add_user(BOB, "Bob")
    try:
        yield server
    finally:
        server.stop()


def sa_info(pem: str, sim: GoogleSimulator) -> dict[str, Any]:
    return {
        "type": "service_account",
        "project_id": "kalender-push",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "push@kalender-push.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def make_provider(sim: GoogleSimulator, pem: str, admin: str = ADMIN) -> GoogleProvider:
    return GoogleProvider(
        sa_info(pem, sim),
        admin,
        token_url=sim.token_url,
        calendar_base_url=sim.calendar_url,
        directory_base_url=sim.directory_url,
        timeout=3.0,
    )


@pytest.fixture
def provider(sim: GoogleSimulator, private_key_pem: str) -> GoogleProvider:
    return make_provider(sim, private_key_pem)


def at(day: int, hour: int, minute: int = 0, month: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=OSLO)


def by_id(events: list[Event]) -> dict[str, Event]:
    return {event.id: event for event in events}


def test_it_is_a_calendar_provider(provider: GoogleProvider) -> None:
    assert isinstance(provider, GoogleProvider)
    _typed: CalendarProvider = provider  # mypy checks the Protocol
    assert "key" not in repr(provider).replace("key-1", "")


# --- reading calendars ---


def test_it_reads_events_with_codes_all_day_recurring_cancelled_declined_and_private(
    sim: GoogleSimulator, provider: GoogleProvider
) -> None:
    sim.put_event(ALICE, SimEvent("code", "Kundebesøk &Eks", at(20, 10), at(20, 12)))
    sim.put_event(ALICE, SimEvent("ferie", "Høstferie &Ferie", dt.date(2026, 10, 23), dt.date(2026, 10, 28), True))
    sim.put_event(ALICE, SimEvent("daily", "Standup", at(21, 9), at(21, 9, 15), recurrence_days=3))
    sim.put_event(ALICE, SimEvent("gone", "Avlyst", at(22, 13), at(22, 14), cancelled=True))
    sim.put_event(ALICE, SimEvent("nei", "Takket nei", at(22, 15), at(22, 16), response="declined"))
    sim.put_event(ALICE, SimEvent("hemmelig", "Lege", at(29, 8), at(29, 9), private=True, response="organizer"))
    sim.put_event(ALICE, SimEvent("fri", "Fokustid", at(29, 12), at(29, 13), show_as="free", response="tentative"))
    sim.put_event(ALICE, SimEvent("borte", "Borte", at(30, 8), at(30, 16), show_as="oof", response="none"))
    sim.put_event(ALICE, SimEvent("utenfor", "Etter vinduet", at(3, 9, month=11), at(3, 10, month=11)))
    sim.put_event(BOB, SimEvent("bob1", "Møte &Møt", at(20, 10), at(20, 11)))
    sim.reset_counters()

    result = provider.read_events([ALICE, BOB, "ukjent@firma.no"], START, END)

    assert set(result) == {ALICE, BOB}  # a user Google does not know is left out
    assert ("POST", "/batch/calendar/v3", 200) in sim.request_log()
    alice = by_id(result[ALICE])
    assert alice["code"] == Event("code", at(20, 10), at(20, 12), subject="Kundebesøk &Eks")
    code_start = alice["code"].start
    assert isinstance(code_start, dt.datetime) and code_start.utcoffset() == dt.timedelta(hours=2)
    assert alice["ferie"] == Event("ferie", dt.date(2026, 10, 23), dt.date(2026, 10, 28), True, "Høstferie &Ferie")
    assert sorted(i for i in alice if i.startswith("daily_")) == ["daily_20261021", "daily_20261022", "daily_20261023"]
    assert alice["daily_20261023"].start == at(23, 9)
    assert alice["gone"].cancelled is True
    assert alice["nei"].response == "declined"
    assert alice["hemmelig"].private is True and alice["hemmelig"].response == "organizer"
    assert (alice["fri"].show_as, alice["fri"].response) == ("free", "tentative")
    assert (alice["borte"].show_as, alice["borte"].response) == ("oof", "none")
    assert "utenfor" not in alice
    assert [event.id for event in result[BOB]] == ["bob1"]


def test_it_pages_through_long_calendars_in_batch_rounds(sim: GoogleSimulator, provider: GoogleProvider) -> None:
    for user in (ALICE, BOB):
        for index in range(260):
            sim.put_event(user, SimEvent(f"e{index}", "Slot", at(20, 8) + dt.timedelta(minutes=index), at(20, 14)))
    sim.reset_counters()
    result = provider.read_events([ALICE, BOB], START, END)
    assert len(result[ALICE]) == len(result[BOB]) == 260
    assert [path for _m, path, _s in sim.request_log()].count("/batch/calendar/v3") == 2


def test_the_all_day_event_across_the_dst_change_gives_office_hours_per_day(
    sim: GoogleSimulator, provider: GoogleProvider
) -> None:
    sim.put_event(ALICE, SimEvent("ferie", "Ferie &Ferie", dt.date(2026, 10, 23), dt.date(2026, 10, 28), True))
    events = provider.read_events([ALICE], START, END)[ALICE]
    absences = compute_absences(
        settings=RuleSettings(), window_start=START, window_end=END, events=events, catalogue=DEFAULT_CATALOGUE
    )
    # Friday before the change (+02:00), Monday and Tuesday after it (+01:00); the weekend has no office hours.
    assert [(a.start, a.end) for a in absences] == [
        (at(23, 8), at(23, 16)),
        (at(26, 8), at(26, 16)),
        (at(27, 8), at(27, 16)),
    ]
    assert [a.start.utcoffset() for a in absences] == [
        dt.timedelta(hours=2),
        dt.timedelta(hours=1),
        dt.timedelta(hours=1),
    ]
    assert {a.profile for a in absences} == {"Ferie"}


def test_it_converts_google_json_at_the_edge() -> None:
    item = {
        "id": "x",
        "summary": "Hjemmekontor",
        "start": {"dateTime": "2026-03-29T00:30:00Z"},
        "end": {"dateTime": "2026-03-29T03:30:00+02:00"},
        "eventType": "workingLocation",
        "visibility": "confidential",
        "attendees": [{"email": "a@firma.no", "self": True, "organizer": True, "responseStatus": "accepted"}],
    }
    event = event_from_google(item, "Europe/Oslo")
    assert (event.start, event.end) == (dt.datetime(2026, 3, 29, 1, 30, tzinfo=OSLO), at(29, 3, 30, month=3))
    assert (event.show_as, event.private, event.response) == ("workingElsewhere", True, "organizer")
    with pytest.raises(ValueError, match="x: start"):
        event_from_google({"id": "x", "summary": "Hemmelig", "start": {"date": "nope"}, "end": {}}, "Europe/Oslo")


# --- directory ---


def test_it_lists_group_members_with_nested_groups_once(sim: GoogleSimulator, provider: GoogleProvider) -> None:
    sim.add_user("carol@firma.no", "Carol")
    sim.add_group("team@firma.no", [BOB, "carol@firma.no", ALICE])
    sim.add_group("alle@firma.no", [ALICE, "team@firma.no"])
    users = provider.list_users("alle@firma.no")
    assert [u.email for u in users] == [ALICE, BOB, "carol@firma.no"]
    assert users[0] == DirectoryUser(id=ALICE, email=ALICE, name="Alice")


def test_members_come_without_names_and_the_names_from_one_users_list(
    sim: GoogleSimulator, provider: GoogleProvider
) -> None:
    sim.add_user("carol@firma.no", "Carol Berg")
    sim.add_group("alle@firma.no", [ALICE, BOB, "carol@firma.no"])
    provider.list_users("alle@firma.no")  # tokens first
    sim.reset_counters()
    users = provider.list_users("alle@firma.no")
    assert [(u.email, u.name) for u in users] == [(ALICE, "Alice"), (BOB, "Bob"), ("carol@firma.no", "Carol Berg")]
    assert [path for _method, path, _status in sim.request_log()] == [
        "/admin/directory/v1/groups/alle@firma.no/members",
        "/admin/directory/v1/users",
    ]


def test_without_the_user_scope_members_are_listed_without_names_and_check_says_what_to_delegate(
    sim: GoogleSimulator, private_key_pem: str
) -> None:
    sim.grant_scopes([CALENDAR_SCOPE, DIRECTORY_SCOPE])
    sim.add_group("alle@firma.no", [ALICE])
    provider = make_provider(sim, private_key_pem)
    assert provider.list_users("alle@firma.no") == [DirectoryUser(id=ALICE, email=ALICE, name="")]
    problems = provider.check(group_id="alle@firma.no")
    assert len(problems) == 1 and USER_SCOPE in problems[0] and "Domain-wide delegation" in problems[0]


def test_it_pages_through_big_groups(sim: GoogleSimulator, provider: GoogleProvider) -> None:
    emails = [f"u{index:03d}@firma.no" for index in range(230)]
    for email in emails:
        sim.add_user(email, email)
    sim.add_group("stor@firma.no", emails)
    assert [u.email for u in provider.list_users("stor@firma.no")] == emails


# --- watch channels ---


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []
    handler: type[_Receiver] = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/google", received
    finally:
        server.shutdown()
        server.server_close()


def test_watch_channels_notify_with_the_token_and_can_be_renewed_and_stopped(
    sim: GoogleSimulator, provider: GoogleProvider, receiver: tuple[str, list[dict[str, str]]]
) -> None:
    url, received = receiver
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    subscription_id, expiry = provider.subscribe(ALICE, url, "hemmelig-token", expires, None)
    assert abs((expiry - expires).total_seconds()) < 1
    channel_id, resource_id, user = subscription_id.split("|")
    assert user == ALICE
    assert sim.channels()[0]["id"] == channel_id and sim.channels()[0]["resourceId"] == resource_id

    sim.put_event(ALICE, SimEvent("ny", "Ny", at(20, 10), at(20, 11)))
    sim.put_event(BOB, SimEvent("ikke", "Ikke Alice", at(20, 10), at(20, 11)))  # no channel on Bob
    assert sim.flush_notifications(5)
    assert [h["x-goog-resource-state"] for h in received] == ["sync", "exists"]
    assert {h["x-goog-channel-token"] for h in received} == {"hemmelig-token"}
    assert {h["x-goog-channel-id"] for h in received} == {channel_id}
    assert {h["x-goog-resource-id"] for h in received} == {resource_id}

    later = expires + dt.timedelta(days=1)
    assert abs((provider.renew(subscription_id, later) - later).total_seconds()) < 1
    assert [c["id"] for c in sim.channels()] == [channel_id]

    provider.unsubscribe(subscription_id)
    assert sim.channels() == []
    provider.unsubscribe(subscription_id)  # already gone counts as stopped


def test_a_user_with_a_long_address_gets_a_channel_within_googles_64_characters(
    sim: GoogleSimulator, provider: GoogleProvider, receiver: tuple[str, list[dict[str, str]]]
) -> None:
    url, received = receiver
    long_address = "kari-margrethe.nordmann-hansen@regnskapskontoret-vest.no"
    sim.add_user(long_address, "Kari Margrethe Nordmann-Hansen")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)

    subscription_id, _expiry = provider.subscribe(long_address, url, "hemmelig-token", expires, None)

    (channel,) = sim.channels()
    assert len(channel["id"]) <= 64 and subscription_id.startswith(f"{channel['id']}|")
    sim.put_event(long_address, SimEvent("ny", "Ny", at(20, 10), at(20, 11)))
    assert sim.flush_notifications(5)
    assert [h["x-goog-resource-state"] for h in received] == ["sync", "exists"]
    provider.renew(subscription_id, expires + dt.timedelta(days=1))
    provider.unsubscribe(subscription_id)
    assert sim.channels() == []


def test_a_channel_id_in_the_older_format_is_still_renewed_and_stopped(
    sim: GoogleSimulator, provider: GoogleProvider, receiver: tuple[str, list[dict[str, str]]]
) -> None:
    """Channels made before the user moved out of the channel id ("kp_{hex}_{user in base64url}|{resourceId}")."""
    import base64

    from sync.providers import google

    url, _received = receiver
    encoded = base64.urlsafe_b64encode(ALICE.encode()).decode().rstrip("=")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    new_format, _expiry = provider._watch(ALICE, f"kp_{'a' * 32}_{encoded}", url, "hemmelig-token", expires)
    old_format = new_format.rsplit("|", 1)[0]
    google._WATCHED[old_format] = google._WATCHED.pop(new_format)

    later = expires + dt.timedelta(days=1)
    assert abs((provider.renew(old_format, later) - later).total_seconds()) < 1
    assert [c["id"] for c in sim.channels()] == [f"kp_{'a' * 32}_{encoded}"]
    provider.unsubscribe(old_format)
    assert sim.channels() == []


# --- errors in words ---


def test_errors_come_in_plain_words(sim: GoogleSimulator, provider: GoogleProvider, private_key_pem: str) -> None:
    with pytest.raises(NotFound, match=r"group 'finnes-ikke@firma\.no' was not found"):
        provider.list_users("finnes-ikke@firma.no")
    assert provider.check(group_id="finnes-ikke@firma.no") != []

    sim.add_group("tom@firma.no", [])
    assert "has no users" in provider.check(group_id="tom@firma.no")[0]

    not_admin = make_provider(sim, private_key_pem, admin=BOB)
    with pytest.raises(PermissionMissing, match="administrator"):
        not_admin.list_users("tom@firma.no")

    bad_key = GoogleProvider(
        {"type": "service_account", "private_key": "nope", "client_email": "x@y", "token_uri": "x"},
        ADMIN,
        token_url=sim.token_url,
        calendar_base_url=sim.calendar_url,
        directory_base_url=sim.directory_url,
    )
    assert "service account key cannot be read" in bad_key.check()[0]

    sim.revoke_key("key-1")
    with pytest.raises(AuthError, match="refused the service account key"):
        make_provider(sim, private_key_pem).list_users("tom@firma.no")


def test_missing_domain_wide_delegation_is_named(sim: GoogleSimulator, private_key_pem: str) -> None:
    sim.grant_scopes([CALENDAR_SCOPE])
    problems = make_provider(sim, private_key_pem).check(group_id="alle@firma.no")
    assert len(problems) == 1 and "Domain-wide delegation" in problems[0] and "1234567890" in problems[0]


def test_throttling_outages_and_garbage_become_provider_errors(sim: GoogleSimulator, provider: GoogleProvider) -> None:
    provider.read_events([ALICE, BOB], START, END)  # tokens first: a faulted token endpoint makes google-auth retry 3 s
    sim.set_faults(1.0, kinds=("429",))
    with pytest.raises(Throttled) as throttled:
        provider.read_events([ALICE], START, END)
    assert throttled.value.retry_after == 1.0
    sim.set_faults(1.0, kinds=("503",))
    with pytest.raises(TemporaryError, match="HTTP 503"):
        provider.read_events([ALICE], START, END)
    sim.set_faults(1.0, kinds=("malformed",))
    with pytest.raises(TemporaryError, match="could not read"):
        provider.read_events([ALICE, BOB], START, END)
    sim.set_fault_timeout_seconds(5.0)
    sim.set_faults(1.0, kinds=("timeout",))
    quick = GoogleProvider(
        provider._info,
        ADMIN,
        token_url=sim.token_url,
        calendar_base_url=sim.calendar_url,
        directory_base_url=sim.directory_url,
        timeout=0.3,
    )
    quick._credentials = provider._credentials  # already signed in
    with pytest.raises(TemporaryError, match="did not answer"):
        quick.read_events([ALICE], START, END)


# --- one user's problem stays that user's ---


def test_a_user_without_google_calendar_fails_alone_inside_the_batch_and_says_what_to_do(
    sim: GoogleSimulator, provider: GoogleProvider
) -> None:
    sim.add_user("carl@firma.no", "Carl")
    sim.put_event(ALICE, SimEvent("m1", "Kundemøte &Eks", at(20, 9), at(20, 10)))
    sim.set_calendar_enabled(BOB, False)  # Calendar turned off for Bob's organisational unit

    reads = provider.read_events([ALICE, BOB, "carl@firma.no", "ukjent@firma.no"], START, END)

    assert [event.id for event in reads[ALICE]] == ["m1"] and reads["carl@firma.no"] == []
    assert set(reads) == {ALICE, "carl@firma.no"}
    off, unknown = str(reads.failures[BOB]), reads.failures["ukjent@firma.no"]
    assert BOB in off and "turn Calendar on for the user's organisational unit" in off
    assert "domain-wide delegation" not in off.casefold(), "not the service account's permission"
    assert isinstance(unknown, NotFound) and "ukjent@firma.no" in str(unknown)
    alone = provider.read_events([BOB], START, END)  # a single read (no batch) says the same
    assert alone == {} and str(alone.failures[BOB]) == off


def test_a_rate_limited_user_waits_alone_and_the_batch_is_read(sim: GoogleSimulator, provider: GoogleProvider) -> None:
    sim.put_event(ALICE, SimEvent("m1", "Kundemøte &Eks", at(20, 9), at(20, 10)))
    sim.set_user_rate_limited(BOB, True)  # 403 userRateLimitExceeded on Bob's part of the batch

    reads = provider.read_events([ALICE, BOB], START, END)

    assert [event.id for event in reads[ALICE]] == ["m1"] and BOB not in reads
    assert isinstance(reads.failures[BOB], Throttled)
    with pytest.raises(Throttled):  # nobody could be read: the whole call waits
        provider.read_events([BOB], START, END)


def test_a_user_without_google_calendar_cannot_be_watched_and_that_is_the_users_problem_alone(
    sim: GoogleSimulator, provider: GoogleProvider
) -> None:
    sim.set_calendar_enabled(BOB, False)

    with pytest.raises(ProviderError) as refused:
        provider.subscribe(BOB, "https://kp.example/webhooks/google/", "token", START + dt.timedelta(days=1))

    assert not isinstance(refused.value, PermissionMissing), "not the service account's permission"
    assert refused.value.error_code == SyncErrorCode.CALENDAR_NOT_ENABLED


def test_an_event_google_sends_that_cannot_be_read_fails_only_its_users_calendar(
    sim: GoogleSimulator, provider: GoogleProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.put_event(ALICE, SimEvent("good", "Kundemøte", at(20, 9), at(20, 10)))
    sim.put_event(BOB, SimEvent("broken", "Kundemøte", at(20, 9), at(20, 10)))
    convert = google_module.event_from_google

    def convert_or_refuse(item: Any, zone: Any) -> Event:
        if item.get("id") == "broken":
            raise ValueError("start has no dateTime")
        return convert(item, zone)

    monkeypatch.setattr(google_module, "event_from_google", convert_or_refuse)

    reads = provider.read_events([ALICE, BOB], START, END)

    assert [event.id for event in reads[ALICE]] == ["good"]
    assert BOB not in reads and "could not read" in str(reads.failures[BOB])
