"""The Microsoft Graph provider: the conversion of Graph events into the engine's shape, and the real msal and
requests clients against the loopback login and Graph simulators."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from devtools.simulators import SimEvent, Simulators
from sync.providers import graph as graph_module
from sync.providers.base import (
    AuthError,
    CalendarProvider,
    CalendarReads,
    DirectoryUser,
    NotFound,
    PermissionMissing,
    ProviderError,
    TemporaryError,
    Throttled,
    parse_retry_after,
)
from sync.providers.graph import GraphProvider, event_from_graph, parse_graph_time
from tests.sync.webhook_stub import WebhookStub

OSLO = ZoneInfo("Europe/Oslo")


def graph_item(**fields: object) -> dict[str, object]:
    item: dict[str, object] = {
        "id": "AAMk-1",
        "subject": "Kundebesøk &Eks",
        "start": {"dateTime": "2026-01-05T10:00:00.0000000", "timeZone": "Europe/Oslo"},
        "end": {"dateTime": "2026-01-05T12:00:00.0000000", "timeZone": "Europe/Oslo"},
        "isAllDay": False,
        "showAs": "busy",
        "responseStatus": {"response": "accepted", "time": "0001-01-01T00:00:00Z"},
        "isCancelled": False,
        "sensitivity": "normal",
    }
    item.update(fields)
    return item


# --- conversion at the edge ---


def test_it_converts_a_timed_event_with_graphs_seven_digit_fraction() -> None:
    event = event_from_graph(graph_item(), "Europe/Oslo")

    assert event.id == "AAMk-1"
    assert event.start == dt.datetime(2026, 1, 5, 10, tzinfo=OSLO)
    assert event.end == dt.datetime(2026, 1, 5, 12, tzinfo=OSLO)
    assert isinstance(event.start, dt.datetime) and event.start.utcoffset() == dt.timedelta(hours=1)
    assert event.all_day is False
    assert event.subject == "Kundebesøk &Eks"  # the engine reads & codes from it
    assert (event.show_as, event.response, event.cancelled, event.private) == ("busy", "accepted", False, False)


def test_it_reads_a_timed_event_given_in_utc_into_the_asked_zone() -> None:
    item = graph_item(
        start={"dateTime": "2026-07-01T07:30:00.1234567", "timeZone": "UTC"},
        end={"dateTime": "2026-07-01T08:00:00.0000000", "timeZone": "UTC"},
    )

    event = event_from_graph(item, "Europe/Oslo")

    assert event.start == dt.datetime(2026, 7, 1, 9, 30, 0, 123456, tzinfo=OSLO)
    assert isinstance(event.start, dt.datetime)
    assert event.start.tzinfo == OSLO


def test_it_reads_a_windows_zone_name() -> None:
    item = graph_item(start={"dateTime": "2026-01-05T10:00:00", "timeZone": "W. Europe Standard Time"})

    assert event_from_graph(item, "Europe/Oslo").start == dt.datetime(2026, 1, 5, 10, tzinfo=OSLO)


def test_it_turns_an_all_day_event_into_dates_with_the_end_exclusive() -> None:
    item = graph_item(
        isAllDay=True,
        showAs="free",
        start={"dateTime": "2026-01-08T00:00:00.0000000", "timeZone": "Europe/Oslo"},
        end={"dateTime": "2026-01-12T00:00:00.0000000", "timeZone": "Europe/Oslo"},
    )

    event = event_from_graph(item, "Europe/Oslo")

    assert event.all_day is True
    assert (event.start, event.end) == (dt.date(2026, 1, 8), dt.date(2026, 1, 12))
    assert not isinstance(event.start, dt.datetime)
    assert event.show_as == "free"


def test_it_reads_all_day_dates_given_in_another_zone_in_the_asked_zone() -> None:
    # Midnight in Oslo is 23:00 UTC the day before; the dates must not slip a day.
    item = graph_item(
        isAllDay=True,
        start={"dateTime": "2026-01-07T23:00:00.0000000", "timeZone": "UTC"},
        end={"dateTime": "2026-01-08T23:00:00.0000000", "timeZone": "UTC"},
    )

    event = event_from_graph(item, "Europe/Oslo")

    assert (event.start, event.end) == (dt.date(2026, 1, 8), dt.date(2026, 1, 9))


def test_it_reads_all_day_dates_where_they_are_midnight_in_the_events_own_zone() -> None:
    # An all-day event of a Line Islands mailbox (UTC+14), shown in W. Europe time: 11:00 the day before.
    item = graph_item(
        isAllDay=True,
        start={"dateTime": "2026-03-26T11:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        end={"dateTime": "2026-03-27T11:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        originalStartTimeZone="Line Islands Standard Time",
        originalEndTimeZone="Line Islands Standard Time",
    )

    event = event_from_graph(item, "Europe/Oslo")

    assert (event.start, event.end) == (dt.date(2026, 3, 27), dt.date(2026, 3, 28))


@pytest.mark.parametrize(
    ("graph_value", "show_as"),
    [
        ("free", "free"),
        ("tentative", "tentative"),
        ("busy", "busy"),
        ("oof", "oof"),
        ("workingElsewhere", "workingElsewhere"),
        ("unknown", "unknown"),
        ("somethingNew", "unknown"),
    ],
)
def test_it_maps_show_as(graph_value: str, show_as: str) -> None:
    assert event_from_graph(graph_item(showAs=graph_value), "Europe/Oslo").show_as == show_as


@pytest.mark.parametrize(
    ("graph_value", "response"),
    [
        ("accepted", "accepted"),
        ("organizer", "organizer"),
        ("none", "none"),
        ("declined", "declined"),
        ("tentativelyAccepted", "tentative"),
        ("notResponded", "none"),
    ],
)
def test_it_maps_the_response(graph_value: str, response: str) -> None:
    item = graph_item(responseStatus={"response": graph_value, "time": "0001-01-01T00:00:00Z"})

    assert event_from_graph(item, "Europe/Oslo").response == response


@pytest.mark.parametrize(
    ("sensitivity", "private"), [("normal", False), ("personal", False), ("private", True), ("confidential", True)]
)
def test_it_treats_private_and_confidential_as_private(sensitivity: str, private: bool) -> None:
    assert event_from_graph(graph_item(sensitivity=sensitivity), "Europe/Oslo").private is private


def test_it_carries_the_cancelled_flag() -> None:
    assert event_from_graph(graph_item(isCancelled=True), "Europe/Oslo").cancelled is True


def test_it_rejects_an_event_without_a_start_without_quoting_the_subject() -> None:
    item = graph_item(subject="Hemmelig: oppsigelse")
    del item["start"]

    with pytest.raises(ValueError, match="start") as error:
        event_from_graph(item, "Europe/Oslo")

    assert "Hemmelig" not in str(error.value)


def test_it_parses_a_subscription_expiry() -> None:
    assert parse_graph_time("2026-01-07T11:00:00.0000000Z") == dt.datetime(2026, 1, 7, 11, tzinfo=dt.UTC)
    assert parse_graph_time("2026-01-07T12:00:00+01:00") == dt.datetime(2026, 1, 7, 11, tzinfo=dt.UTC)


def test_it_reads_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = dt.datetime(2026, 1, 5, 10, 0, 0, tzinfo=dt.UTC)

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Mon, 05 Jan 2026 10:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Mon, 05 Jan 2026 09:00:00 GMT", now=now) == 0.0  # in the past: go now
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- against the login and Graph simulators ---

SECRET = "s3cr3t+/=value"
MONDAY = dt.datetime(2026, 3, 2, tzinfo=OSLO)  # the read window below: one week from Monday 2 March 2026
WEEK = (MONDAY, MONDAY + dt.timedelta(days=7))


@dataclass
class Tenant:
    """A fresh tenant with the app registered in it, so tests share the running simulators without clashing."""

    sims: Any
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def provider(self, *, secret: str = SECRET, tenant_id: str | None = None, **options: Any) -> GraphProvider:
        return GraphProvider(
            tenant_id or self.tenant_id,
            self.client_id,
            secret,
            login_base_url=self.sims.login_url,
            graph_base_url=self.sims.graph_url,
            ca_path=self.sims.ca_path,
            **options,
        )

    def add_users(self, count: int, *, prefix: str = "user", timezone: str = "Europe/Oslo") -> list[str]:
        ids = [f"{prefix}-{self.tenant_id[:8]}-{number:03d}" for number in range(count)]
        for number, user_id in enumerate(ids):
            self.sims.graph.add_user(
                self.tenant_id, user_id, f"{prefix}{number}@firma.no", f"{prefix.title()} {number}", timezone=timezone
            )
        return ids


@pytest.fixture(scope="module")
def sims() -> Iterator[Any]:
    with Simulators.start() as running:
        yield running


@pytest.fixture
def tenant(sims: Any) -> Iterator[Tenant]:
    tenant = Tenant(sims)
    sims.graph.add_tenant(tenant.tenant_id, tenant.client_id, SECRET)
    sims.reset_counters()
    yield tenant
    for service in ("login", "graph", "mbn"):
        sims.set_faults(service, 0)
        sims.set_latency(service, 0)
    sims.graph.set_batch_item_faults(None)
    sims.graph.set_batch_item_retry_after(1)
    sims.graph.set_batch_failed_dependency(False)
    sims.graph.set_mailbox_seconds(0)


def requests_to(sims: Any, service: str, method: str, path_part: str) -> int:
    return sum(
        1 for logged_method, path, _status in sims.request_log(service) if logged_method == method and path_part in path
    )


def meeting(event_id: str, day: int, hour: int, minutes: int = 60, **fields: Any) -> Any:
    start = dt.datetime(2026, 3, day, hour, tzinfo=OSLO)
    return SimEvent(event_id, fields.pop("subject", "Møte"), start, start + dt.timedelta(minutes=minutes), **fields)


# login


def test_it_logs_in_once_and_serves_every_later_call_from_the_token_cache(tenant: Tenant) -> None:
    users = tenant.add_users(3)
    tenant.sims.graph.add_group(tenant.tenant_id, "g-all", "Alle", users)
    provider = tenant.provider()

    for _ in range(3):
        provider.list_users("g-all")
    provider.read_events(users, *WEEK)

    assert requests_to(tenant.sims, "login", "POST", "/oauth2/v2.0/token") == 1
    assert requests_to(tenant.sims, "login", "GET", "openid-configuration") == 1
    assert tenant.sims.requests("graph") == 4


def test_it_gets_a_new_token_when_graph_says_the_old_one_expired(tenant: Tenant) -> None:
    users = tenant.add_users(2)
    tenant.sims.graph.add_group(tenant.tenant_id, "g-all", "Alle", users)
    provider = tenant.provider()
    provider.list_users("g-all")

    tenant.sims.login.expire_tokens()

    assert [user.id for user in provider.list_users("g-all")] == users
    assert requests_to(tenant.sims, "login", "POST", "/oauth2/v2.0/token") == 2


def test_it_gets_a_new_token_when_batched_reads_say_the_old_one_expired(tenant: Tenant) -> None:
    users = tenant.add_users(2)
    tenant.sims.graph.put_event(users[0], meeting("m", 2, 10))
    provider = tenant.provider()
    provider.read_events(users, *WEEK)

    tenant.sims.login.expire_tokens()

    assert [len(events) for events in provider.read_events(users, *WEEK).values()] == [1, 0]
    assert requests_to(tenant.sims, "login", "POST", "/oauth2/v2.0/token") == 2


def test_it_says_in_plain_words_that_the_secret_is_wrong(tenant: Tenant) -> None:
    tenant.sims.graph.add_group(tenant.tenant_id, "g-all", "Alle", tenant.add_users(1))
    provider = tenant.provider(secret="not-the-secret")

    with pytest.raises(AuthError) as error:
        provider.list_users("g-all")

    message = str(error.value)
    assert message.startswith("The client secret is wrong or expired")
    assert "Entra ID" in message and "not-the-secret" not in message
    assert provider.check() == [message]
    assert tenant.sims.requests("graph") == 0


def test_it_says_in_plain_words_that_the_tenant_is_unknown(tenant: Tenant) -> None:
    provider = tenant.provider(tenant_id=str(uuid.uuid4()))

    problems = provider.check()

    assert len(problems) == 1 and "tenant ID" in problems[0] and "Entra ID → Overview" in problems[0]


def test_it_says_in_plain_words_that_the_client_id_is_unknown(sims: Any, tenant: Tenant) -> None:
    provider = GraphProvider(
        tenant.tenant_id,
        "no-such-app",
        SECRET,
        login_base_url=sims.login_url,
        graph_base_url=sims.graph_url,
        ca_path=sims.ca_path,
    )

    with pytest.raises(AuthError, match="application \\(client\\) ID 'no-such-app' is not known"):
        provider.list_users("g-all")


def test_a_login_outage_is_temporary_not_a_wrong_secret(tenant: Tenant) -> None:
    tenant.sims.set_faults("login", 1.0, kinds=("503",))

    with pytest.raises(TemporaryError, match="Microsoft login is unavailable"):
        tenant.provider().list_users("g-all")


def test_it_refuses_a_plain_http_login_address(tenant: Tenant) -> None:
    provider = GraphProvider(
        tenant.tenant_id,
        tenant.client_id,
        SECRET,
        login_base_url=tenant.sims.login_url.replace("https:", "http:"),
        graph_base_url=tenant.sims.graph_url,
    )

    assert provider.check() == [
        f"The Microsoft login address {tenant.sims.login_url.replace('https:', 'http:')!r} must be an https URL: "
        "fix the login base URL setting."
    ]


# directory


def test_it_lists_group_members_with_nested_groups_each_once(tenant: Tenant) -> None:
    ola, kari, per, liv, ikke_med = tenant.add_users(5)
    graph = tenant.sims.graph
    graph.add_group(tenant.tenant_id, "g-inner", "Salg Bergen", [liv])
    graph.add_group(tenant.tenant_id, "g-sales", "Salg", [kari, per, "g-inner"])
    graph.add_group(tenant.tenant_id, "g-all", "Kalender Push", [ola, "g-sales", kari])

    users = tenant.provider().list_users("g-all")

    assert sorted(user.id for user in users) == sorted([ola, kari, per, liv])
    assert ikke_med not in {user.id for user in users}
    first = next(user for user in users if user.id == ola)
    assert first == DirectoryUser(ola, "user0@firma.no", "User 0")


def test_it_follows_member_pages(tenant: Tenant) -> None:
    users = tenant.add_users(130)
    tenant.sims.graph.add_group(tenant.tenant_id, "g-all", "Alle", users)

    listed = tenant.provider().list_users("g-all")

    assert [user.id for user in listed] == users
    assert requests_to(tenant.sims, "graph", "GET", "/transitiveMembers") == 2  # 100 a page


def test_it_lists_users_with_graphs_advanced_query_on_every_page_and_nothing_but_members(tenant: Tenant) -> None:
    users = tenant.add_users(130)
    graph, prefix = tenant.sims.graph, tenant.tenant_id[:8]
    guest, device, contact = f"guest-{prefix}", f"laptop-{prefix}", f"revisor-{prefix}"
    graph.add_user(tenant.tenant_id, guest, "partner_ext@firma.no", "Partner (gjest)", user_type="Guest")
    graph.add_device(tenant.tenant_id, device, "OLA-LAPTOP")
    graph.add_org_contact(tenant.tenant_id, contact, "Revisor", "revisor@revisjon.no")
    graph.add_group(tenant.tenant_id, "g-inner", "Salg", [*users[100:], device])
    graph.add_group(tenant.tenant_id, "g-all", "Alle", [*users[:100], guest, contact, "g-inner"])

    listed = tenant.provider().list_users("g-all")

    # the nested group's users are members; the guest (no mailbox here), the device and the contact are not
    assert sorted(user.id for user in listed) == sorted(users)
    assert [entry for entry in tenant.sims.request_log("graph") if "/transitiveMembers" in entry[1]] == [
        ("GET", "/v1.0/groups/g-all/transitiveMembers/microsoft.graph.user", 200)
    ] * 2  # 100 a page; the second page was asked for with the advanced query too


def test_it_reports_an_unknown_group(tenant: Tenant) -> None:
    with pytest.raises(NotFound, match="group 'g-missing' was not found"):
        tenant.provider().list_users("g-missing")


def test_it_names_the_missing_permission(sims: Any) -> None:
    tenant = Tenant(sims)
    sims.graph.add_tenant(tenant.tenant_id, tenant.client_id, SECRET, permissions=("Calendars.Read",))
    sims.graph.add_group(tenant.tenant_id, "g-all", "Alle", tenant.add_users(1))
    provider = tenant.provider()

    with pytest.raises(PermissionMissing) as error:
        provider.list_users("g-all")

    assert error.value.permission == "GroupMember.Read.All"
    assert "GroupMember.Read.All" in str(error.value) and "admin consent" in str(error.value)
    assert any("GroupMember.Read.All" in problem for problem in provider.check(group_id="g-all"))


def test_a_healthy_connection_has_no_problems(tenant: Tenant) -> None:
    tenant.sims.graph.add_group(tenant.tenant_id, "g-all", "Alle", tenant.add_users(2))
    provider: CalendarProvider = tenant.provider()  # mypy checks that GraphProvider implements the interface

    assert provider.check() == []
    assert tenant.provider().check(group_id="g-all") == []


# calendars


def test_it_reads_45_calendars_in_three_batches_and_follows_a_long_calendars_pages(tenant: Tenant) -> None:
    users = tenant.add_users(45)
    for number, user_id in enumerate(users):
        tenant.sims.graph.put_event(user_id, meeting(f"m{number}", 3, 9 + number % 7))
    busy = users[0]
    for slot in range(520):  # more than one page of 500
        start = MONDAY + dt.timedelta(minutes=10 * slot)
        tenant.sims.graph.put_event(busy, SimEvent(f"slot{slot}", "Kort", start, start + dt.timedelta(minutes=5)))
    provider = tenant.provider()
    tenant.sims.reset_counters("graph")

    events = provider.read_events(users, *WEEK)

    assert set(events) == set(users)
    assert len(events[busy]) == 521 and len({event.id for event in events[busy]}) == 521
    for number, user_id in enumerate(users[1:], start=1):
        assert [(event.id, event.start) for event in events[user_id]] == [
            (f"m{number}", dt.datetime(2026, 3, 3, 9 + number % 7, tzinfo=OSLO))
        ]
    # 45 first pages + 1 second page = 46 requests: three $batch calls of ≤ 20, nothing else.
    assert tenant.sims.request_log("graph") == [("POST", "/v1.0/$batch", 200)] * 3


def test_it_converts_all_day_recurring_cancelled_declined_and_private_events(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1)
    graph = tenant.sims.graph
    graph.put_event(
        user, SimEvent("ferie", "&-Ferie", dt.date(2026, 3, 5), dt.date(2026, 3, 7), all_day=True, show_as="free")
    )
    graph.put_event(user, meeting("standup", 2, 9, 15, subject="Standup", recurrence_days=3))
    graph.put_event(user, meeting("avlyst", 2, 11, subject="Avlyst: Møte", cancelled=True))
    graph.put_event(user, meeting("nei", 2, 13, response="declined"))
    graph.put_event(user, meeting("kanskje", 2, 14, response="tentative", show_as="tentative"))
    graph.put_event(user, meeting("lege", 4, 8, subject="Lege", private=True, show_as="oof"))

    events = {event.id: event for event in tenant.provider().read_events([user], *WEEK)[user]}

    assert set(events) == {
        "ferie",
        "standup_20260302",
        "standup_20260303",
        "standup_20260304",
        "avlyst",
        "nei",
        "kanskje",
        "lege",
    }
    ferie = events["ferie"]
    assert (ferie.all_day, ferie.start, ferie.end, ferie.show_as) == (
        True,
        dt.date(2026, 3, 5),
        dt.date(2026, 3, 7),
        "free",
    )
    assert ferie.subject == "&-Ferie"
    assert [events[f"standup_2026030{day}"].start for day in (2, 3, 4)] == [
        dt.datetime(2026, 3, day, 9, tzinfo=OSLO) for day in (2, 3, 4)
    ]
    assert events["avlyst"].cancelled is True
    assert events["nei"].response == "declined"
    assert (events["kanskje"].response, events["kanskje"].show_as) == ("tentative", "tentative")
    assert (events["lege"].private, events["lege"].show_as) == (True, "oof")


def test_a_daily_series_stays_at_nine_across_the_change_to_summer_time(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1)
    tenant.sims.graph.put_event(user, meeting("morgen", 27, 9, recurrence_days=4))  # Fri 27 → Mon 30 March

    window = (dt.datetime(2026, 3, 27, tzinfo=OSLO), dt.datetime(2026, 4, 1, tzinfo=OSLO))
    events = tenant.provider().read_events([user], *window)[user]

    starts = [event.start for event in events if isinstance(event.start, dt.datetime)]
    assert [(start.day, start.hour, start.utcoffset()) for start in starts] == [
        (27, 9, dt.timedelta(hours=1)),
        (28, 9, dt.timedelta(hours=1)),
        (29, 9, dt.timedelta(hours=2)),
        (30, 9, dt.timedelta(hours=2)),
    ]


def test_an_all_day_event_in_a_london_mailbox_keeps_its_dates_in_oslo(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1, timezone="Europe/London")
    tenant.sims.graph.put_event(user, SimEvent("kurs", "Kurs", dt.date(2026, 3, 3), dt.date(2026, 3, 4), all_day=True))

    (event,) = tenant.provider(timezone="Europe/Oslo").read_events([user], *WEEK)[user]

    assert (event.start, event.end) == (dt.date(2026, 3, 3), dt.date(2026, 3, 4))


def test_it_leaves_out_a_user_without_a_mailbox(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1)
    tenant.sims.graph.put_event(user, meeting("m", 2, 10))

    events = tenant.provider().read_events([user, "nobody"], *WEEK)

    assert list(events) == [user] and len(events[user]) == 1


def test_a_mailbox_outside_the_apps_access_scope_fails_alone_and_says_what_to_do(tenant: Tenant) -> None:
    users = tenant.add_users(20)
    graph = tenant.sims.graph
    for number, user in enumerate(users):
        graph.put_event(user, meeting(f"m{number}", 3, 9))
    graph.set_mailbox_error(users[3], "ErrorAccessDenied")  # an application access policy leaves it out
    graph.set_mailbox_error(users[7], "MailboxNotEnabledForRESTAPI")  # no Exchange Online licence
    graph.set_mailbox_error(users[11], "ErrorInvalidUser")  # deleted meanwhile
    provider = tenant.provider()
    provider.read_events(users[:1], *WEEK)  # logged in
    tenant.sims.reset_counters("graph")

    events = provider.read_events(users, *WEEK)

    refused = {users[3], users[7], users[11]}
    assert isinstance(events, CalendarReads)
    assert set(events) == set(users) - refused  # the other 17 of the chunk are read
    assert all([event.id for event in events[user]] == [f"m{users.index(user)}"] for user in events)
    assert set(events.failures) == refused
    scope = str(events.failures[users[3]])
    assert scope.startswith(f"Microsoft Graph denied the app access to the mailbox of user {users[3]}")
    assert "outside the app's access scope" in scope and "application access policy" in scope
    assert "Calendars.Read" not in scope, "the app has the permission: it is not a missing permission"
    unlicensed, deleted = events.failures[users[7]], events.failures[users[11]]
    assert isinstance(unlicensed, NotFound) and "Exchange Online licence" in str(unlicensed)
    assert isinstance(deleted, NotFound) and str(deleted).startswith(f"User {users[11]} has no mailbox in the tenant")
    assert tenant.sims.request_log("graph") == [("POST", "/v1.0/$batch", 200)], "answers that will not change"


def test_test_connection_names_a_first_user_outside_the_access_scope(tenant: Tenant) -> None:
    users = tenant.add_users(2)
    tenant.sims.graph.add_group(tenant.tenant_id, "g-all", "Alle", users)
    tenant.sims.graph.set_mailbox_error(users[0], "ErrorAccessDenied")

    (problem,) = tenant.provider().check(group_id="g-all")

    assert f"mailbox of user {users[0]}" in problem and "outside the app's access scope" in problem


def test_a_missing_calendar_permission_still_fails_the_whole_read(sims: Any) -> None:
    tenant = Tenant(sims)
    sims.graph.add_tenant(tenant.tenant_id, tenant.client_id, SECRET, permissions=("GroupMember.Read.All",))
    users = tenant.add_users(2)

    with pytest.raises(PermissionMissing) as error:
        tenant.provider().read_events(users, *WEEK)

    assert error.value.permission == "Calendars.Read"


def test_it_asks_for_a_windows_zone_and_keeps_all_day_dates_across_dst_and_zones(tenant: Tenant) -> None:
    (oslo_user,) = tenant.add_users(1)
    (line_islands,) = tenant.add_users(1, prefix="kiribati", timezone="Pacific/Kiritimati")  # UTC+14
    graph = tenant.sims.graph
    easter = SimEvent("påske", "&-Ferie", dt.date(2026, 3, 28), dt.date(2026, 3, 30), all_day=True)  # over 29 March
    graph.put_event(oslo_user, easter)
    graph.put_event(oslo_user, meeting("søndag", 29, 9))  # the first morning of summer time
    graph.put_event(line_islands, SimEvent("kurs", "Kurs", dt.date(2026, 3, 27), dt.date(2026, 3, 28), all_day=True))
    window = (dt.datetime(2026, 3, 27, tzinfo=OSLO), dt.datetime(2026, 4, 1, tzinfo=OSLO))

    in_oslo = tenant.provider().read_events([oslo_user, line_islands], *window)
    in_new_york = tenant.provider(timezone="America/New_York").read_events([oslo_user], *window)[oslo_user]

    def by_id(events: Any) -> dict[str, tuple[Any, Any]]:
        return {event.id: (event.start, event.end) for event in events}

    oslo_view = by_id(in_oslo[oslo_user])
    assert oslo_view["påske"] == (dt.date(2026, 3, 28), dt.date(2026, 3, 30))
    assert oslo_view["søndag"][0] == dt.datetime(2026, 3, 29, 9, tzinfo=OSLO)
    assert oslo_view["søndag"][0].utcoffset() == dt.timedelta(hours=2)
    # 13 hours ahead of Oslo: its midnight is 11:00 here, so only the event's own zone tells the date
    assert by_id(in_oslo[line_islands]) == {"kurs": (dt.date(2026, 3, 27), dt.date(2026, 3, 28))}
    new_york = by_id(in_new_york)
    assert new_york["påske"] == (dt.date(2026, 3, 28), dt.date(2026, 3, 30))
    assert new_york["søndag"][0] == dt.datetime(2026, 3, 29, 3, tzinfo=ZoneInfo("America/New_York"))


def test_throttled_items_with_a_long_retry_after_leave_the_rest_of_the_chunk_read(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tenant.add_users(20)
    for number, user in enumerate(users):
        tenant.sims.graph.put_event(user, meeting(f"m{number}", 4, 10))
    provider = tenant.provider()
    provider.read_events(users[:1], *WEEK)  # logged in
    tenant.sims.reset_counters("graph")
    tenant.sims.graph.set_batch_item_faults(0.3, kinds=("429",), seed=14)
    tenant.sims.graph.set_batch_item_retry_after(5)  # Outlook asks for more than a worker may sleep
    tenant.sims.graph.set_batch_failed_dependency(True)  # and fails the batch as a whole with 424
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail(f"slept {seconds} s in a worker"))

    events = provider.read_events(users, *WEEK)

    throttled = set(events.failures)
    assert 0 < len(throttled) < 20
    assert set(events) == set(users) - throttled
    assert all(len(events[user]) == 1 for user in events)
    assert {type(error) for error in events.failures.values()} == {Throttled}
    assert {error.retry_after for error in events.failures.values() if isinstance(error, Throttled)} == {5.0}
    assert tenant.sims.request_log("graph") == [("POST", "/v1.0/$batch", 424)]


def test_a_batch_failed_with_424_is_read_item_by_item_and_the_throttled_ones_sent_again(tenant: Tenant) -> None:
    users = tenant.add_users(3)
    for user in users:
        tenant.sims.graph.put_event(user, meeting("m", 2, 10))
    provider = tenant.provider(session=_SwitchingSession(tenant.sims))
    tenant.sims.graph.set_batch_failed_dependency(True)
    tenant.sims.graph.set_batch_item_faults(1.0, kinds=("429",))  # the first batch: every item 429, Retry-After 1

    events = provider.read_events(users, *WEEK)

    assert {user: len(found) for user, found in events.items()} == dict.fromkeys(users, 1)
    assert [status for _method, path, status in tenant.sims.request_log("graph") if "$batch" in path] == [424, 200]


def test_it_keeps_to_four_concurrent_requests_per_mailbox(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1)
    tenant.sims.graph.put_event(user, meeting("m", 2, 10))
    provider = tenant.provider()
    provider.read_events([user], *WEEK)  # logged in
    tenant.sims.reset_counters("graph")
    tenant.sims.graph.set_mailbox_seconds(0.3)  # each read holds one of the mailbox's 4 slots for 0.3 s
    found: list[int] = []

    def read() -> None:
        found.append(len(provider.read_events([user], *WEEK)[user]))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert found == [1] * 8
    assert requests_to(tenant.sims, "graph", "POST", "/$batch") == 8, "no read was refused and sent again"


class _SwitchingSession(requests.Session):
    """Turns the simulator's batch-item faults off once the first $batch has been answered."""

    def __init__(self, sims: Any) -> None:
        super().__init__()
        self.trust_env = False
        self.sims = sims

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        if url.endswith("/$batch"):
            self.sims.graph.set_batch_item_faults(None)
        return response


def test_it_retries_throttled_batch_items_once_after_a_short_retry_after(tenant: Tenant) -> None:
    users = tenant.add_users(3)
    for user in users:
        tenant.sims.graph.put_event(user, meeting("m", 2, 10))
    provider = tenant.provider(session=_SwitchingSession(tenant.sims))
    tenant.sims.graph.set_batch_item_faults(1.0, kinds=("429",))  # every inner answer of the first batch: 429, 1 s

    started = time.monotonic()
    events = provider.read_events(users, *WEEK)

    assert {user: len(found) for user, found in events.items()} == dict.fromkeys(users, 1)
    assert requests_to(tenant.sims, "graph", "POST", "/$batch") == 2
    assert 1.0 <= time.monotonic() - started < 2.0  # honoured Retry-After: 1


@pytest.mark.parametrize(("kind", "error_class"), [("429", Throttled), ("503", TemporaryError)])
def test_it_gives_up_after_one_retry_of_failing_batch_items(
    tenant: Tenant, kind: str, error_class: type[Throttled | TemporaryError]
) -> None:
    users = tenant.add_users(2)
    tenant.sims.graph.set_batch_item_faults(1.0, kinds=(kind,))

    with pytest.raises(error_class) as error:
        tenant.provider().read_events(users, *WEEK)

    assert requests_to(tenant.sims, "graph", "POST", "/$batch") == 2
    if isinstance(error.value, Throttled):
        assert error.value.retry_after == 1.0  # the simulator's Retry-After, handed back


@pytest.mark.parametrize("kind", ["503", "timeout", "malformed"])
def test_an_outage_of_graph_is_a_temporary_error(tenant: Tenant, kind: str) -> None:
    users = tenant.add_users(2)
    provider = tenant.provider(timeout=0.5)
    provider.read_events(users, *WEEK)  # logged in before the faults start
    tenant.sims.set_fault_timeout_seconds(1.0, "graph")
    tenant.sims.set_faults("graph", 1.0, kinds=(kind,))

    with pytest.raises(TemporaryError):
        provider.read_events(users, *WEEK)


def test_a_long_retry_after_is_handed_back_instead_of_slept(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = tenant.provider()
    monkeypatch.setattr(provider, "_access_token", lambda: "token")
    answers = []

    def batch(method: str, url: str, **kwargs: Any) -> requests.Response:
        answers.append(url)
        response = requests.Response()
        response.status_code = 200
        inner = [
            {
                "id": item["id"],
                "status": 429,
                "headers": {"Retry-After": "30"},
                "body": {"error": {"code": "TooManyRequests", "message": "Slow down"}},
            }
            for item in kwargs["json"]["requests"]
        ]
        response._content = json.dumps({"responses": inner}).encode()
        return response

    monkeypatch.setattr(provider._session, "request", batch)
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail(f"slept {seconds} s in a worker"))

    with pytest.raises(Throttled) as error:
        provider.read_events(["u1", "u2"], *WEEK)

    assert error.value.retry_after == 30.0
    assert len(answers) == 1


# change notifications


@pytest.fixture
def webhook(sims: Any) -> Iterator[WebhookStub]:
    """An https webhook with a certificate the simulators' CA signed: what Graph asks for."""
    hook = WebhookStub(tls=sims.webhook_ssl_context())
    yield hook
    hook.close()


def test_it_subscribes_to_a_calendar_renews_and_unsubscribes(tenant: Tenant, webhook: WebhookStub) -> None:
    (user,) = tenant.add_users(1)
    provider = tenant.provider()
    asked = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)  # more than Graph allows: capped

    subscription_id, expires = provider.subscribe(user, webhook.url, "kp-state-123", asked, None)

    (held,) = tenant.sims.graph.subscriptions()
    assert held["id"] == subscription_id and held["clientState"] == "kp-state-123"
    assert held["resource"] == f"/users/{user}/events" and held["changeType"] == "created,updated,deleted"
    assert expires <= dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4230)
    assert expires > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4200)

    tenant.sims.graph.put_event(user, meeting("m", 2, 10, subject="Hemmelig"))
    assert webhook.arrived.wait(5)
    (notification,) = webhook.notifications[0]["value"]
    assert notification["clientState"] == "kp-state-123" and notification["subscriptionId"] == subscription_id

    wanted = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    renewed = provider.renew(subscription_id, wanted)
    assert abs((renewed - wanted).total_seconds()) < 1
    assert parse_graph_time(tenant.sims.graph.subscriptions()[0]["expirationDateTime"]) == renewed

    provider.unsubscribe(subscription_id)
    assert tenant.sims.graph.subscriptions() == []
    provider.unsubscribe(subscription_id)  # already gone: fine
    with pytest.raises(NotFound, match="subscribe again"):
        provider.renew(subscription_id, wanted)


def test_it_explains_a_webhook_that_fails_the_handshake(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1)
    hook = WebhookStub(tls=tenant.sims.webhook_ssl_context(), echo=False)
    try:
        with pytest.raises(ProviderError, match="answers Microsoft Graph's validation request"):
            tenant.provider().subscribe(user, hook.url, "state", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), None)
    finally:
        hook.close()
    assert tenant.sims.graph.subscriptions() == []


def test_graph_refuses_a_plain_http_notification_url_as_microsoft_graph_does(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1)
    hook = WebhookStub()  # http: Graph wants https (subscription resource: "must make use of the HTTPS protocol")
    try:
        with pytest.raises(ProviderError, match=r"scheme='http' is not supported.*over HTTPS"):
            tenant.provider().subscribe(user, hook.url, "state", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), None)
    finally:
        hook.close()
    assert not [sub for sub in tenant.sims.graph.subscriptions() if sub["resource"] == f"/users/{user}/events"]


def test_a_handshake_slower_than_the_usual_timeout_still_gives_one_stored_subscription(tenant: Tenant) -> None:
    (user,) = tenant.add_users(1)
    hook = WebhookStub(tls=tenant.sims.webhook_ssl_context(), handshake_delay=1.5)  # inside Graph's 10 s window
    try:
        subscription_id, _expires = tenant.provider(timeout=1.0).subscribe(
            user, hook.url, "state", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), None
        )
    finally:
        hook.close()
    held = [sub["id"] for sub in tenant.sims.graph.subscriptions() if sub["resource"] == f"/users/{user}/events"]
    assert held == [subscription_id]


class _LostAnswerSession(requests.Session):
    """Sends every request, but loses the answer to the creation of a subscription, as a timeout would."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        if method == "POST" and url.endswith("/subscriptions"):
            raise requests.Timeout("read timed out")
        return response


def test_a_subscription_whose_creation_timed_out_is_not_left_behind(tenant: Tenant, webhook: WebhookStub) -> None:
    (user,) = tenant.add_users(1)
    other = tenant.provider()
    kept, _expires = other.subscribe(
        user, webhook.url + "?kept", "other", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), None
    )
    provider = tenant.provider(session=_LostAnswerSession())

    with pytest.raises(TemporaryError, match="did not confirm the subscription"):
        provider.subscribe(user, webhook.url, "state", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), None)

    held = [sub["id"] for sub in tenant.sims.graph.subscriptions() if sub["resource"] == f"/users/{user}/events"]
    assert held == [kept]  # the one made in time, to another URL, is left


def test_the_subscription_call_waits_well_beyond_graphs_validation_window() -> None:
    assert graph_module.SUBSCRIBE_TIMEOUT_SECONDS >= 2 * graph_module.VALIDATION_WINDOW_SECONDS


# incremental reads (calendarView/delta)


def test_delta_reads_page_through_to_the_delta_link_and_then_return_only_changes(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_module, "PAGE_SIZE", 3)  # Prefer: odata.maxpagesize=3, so 7 events take 3 pages
    (user,) = tenant.add_users(1)
    for number in range(7):
        tenant.sims.graph.put_event(user, meeting(f"m{number}", 3, 8 + number))
    provider = tenant.provider()
    tenant.sims.graph.reset_calendar_reads()
    first = provider.read_changes({user: None}, *WEEK)[user]
    assert first.full and sorted(e.id for e in first.events) == [f"m{n}" for n in range(7)]
    assert tenant.sims.graph.calendar_reads() == {"delta_initial": 1, "delta_page": 2}
    assert "$deltatoken=" in first.cursor

    tenant.sims.graph.put_event(user, meeting("m1", 3, 9, subject="Flyttet"))
    tenant.sims.graph.delete_event(user, "m2")
    tenant.sims.graph.put_event(user, meeting("ny", 4, 10))
    second = provider.read_changes({user: first.cursor}, *WEEK)[user]
    assert not second.full
    assert sorted(e.id for e in second.events) == ["m1", "ny"]
    assert second.removed == frozenset({"m2"})

    tenant.sims.graph.expire_delta_tokens()  # 410 SyncStateNotFound: that user is read in full again
    third = provider.read_changes({user: second.cursor}, *WEEK)[user]
    assert third.full and len(third.events) == 7
