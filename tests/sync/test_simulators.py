"""The loopback simulators, driven by the real client libraries (msal, requests) over real sockets.

What is asserted is what a sync client would see on the wire and what MBN ends up holding.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import msal
import pytest
import requests

from devtools.simulators import SimEvent, Simulators

OSLO = ZoneInfo("Europe/Oslo")
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "s3cr3t+/= value"
GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
ENTERPRISE = "ent-1"
MBN_CLIENT = ("kp-client", "kp-secret")
MBN_USER = ("api@firma.no", "api-password")
MSISDN = "+4791234567"
MONDAY = dt.date(2026, 1, 5)
ADVANCED = {"ConsistencyLevel": "eventual"}  # with $count=true: what an OData cast on transitiveMembers needs
WEST_EUROPE = 'outlook.timezone="W. Europe Standard Time"'  # Oslo's Windows zone (Europe/Oslo is refused)


def oslo(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=OSLO)


@pytest.fixture
def sims() -> Iterator[Simulators]:
    with Simulators.start() as running:
        running.set_fault_timeout_seconds(1)
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # no proxies, no REQUESTS_CA_BUNDLE
    yield session
    session.close()


def msal_app(
    sims: Simulators, secret: str = SECRET, client_id: str = CLIENT_ID, tenant: str = TENANT
) -> msal.ConfidentialClientApplication:
    session = requests.Session()
    session.trust_env = False
    session.verify = sims.ca_path
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=f"{sims.login_url}/{tenant}",
        instance_discovery=False,
        azure_region=False,
        http_client=session,
    )


def graph_token(sims: Simulators, secret: str = SECRET, client_id: str = CLIENT_ID, tenant: str = TENANT) -> str:
    result = msal_app(sims, secret, client_id, tenant).acquire_token_for_client(scopes=GRAPH_SCOPE)
    return str(result["access_token"])


@pytest.fixture
def graph(sims: Simulators, http: requests.Session) -> requests.Session:
    """A tenant with two mailboxes, and a session holding an msal token for it."""
    sims.graph.add_tenant(TENANT, CLIENT_ID, SECRET)
    sims.graph.add_user(TENANT, "u1", "ola@firma.no", "Ola Nordmann")
    sims.graph.add_user(TENANT, "u2", "kari@firma.no", "Kari Hansen", timezone="America/New_York")
    http.headers["Authorization"] = f"Bearer {graph_token(sims)}"
    return http


def calendar_view(
    sims: Simulators,
    graph: requests.Session,
    user: str,
    start: dt.datetime,
    end: dt.datetime,
    prefer: str | None = None,
    params: dict[str, str] | None = None,
) -> requests.Response:
    headers = {"Prefer": prefer} if prefer else {}
    query = {"startDateTime": start.isoformat(), "endDateTime": end.isoformat(), **(params or {})}
    return graph.get(f"{sims.graph_url}/users/{user}/calendarView", params=query, headers=headers, timeout=5)


def week(user_zone: ZoneInfo = OSLO) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime.combine(MONDAY, dt.time(0), tzinfo=user_zone),
        dt.datetime.combine(MONDAY + dt.timedelta(days=7), dt.time(0), tzinfo=user_zone),
    )


# login (msal)


def test_msal_gets_a_token_with_the_right_secret_and_serves_the_next_from_its_cache(sims: Simulators) -> None:
    sims.graph.add_tenant(TENANT, CLIENT_ID, SECRET)
    app = msal_app(sims)

    first = app.acquire_token_for_client(scopes=GRAPH_SCOPE)
    second = app.acquire_token_for_client(scopes=GRAPH_SCOPE)

    assert first["token_type"] == "Bearer" and first["expires_in"] == 3599
    assert first["token_source"] == "identity_provider" and second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert [entry[:2] for entry in sims.request_log("login")] == [
        ("GET", f"/{TENANT}/v2.0/.well-known/openid-configuration"),
        ("POST", f"/{TENANT}/oauth2/v2.0/token"),
    ]


def test_msal_gets_invalid_client_for_a_wrong_secret(sims: Simulators) -> None:
    sims.graph.add_tenant(TENANT, CLIENT_ID, SECRET)

    result = msal_app(sims, secret="wrong").acquire_token_for_client(scopes=GRAPH_SCOPE)

    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert result["error_codes"] == [7000215]
    assert sims.request_log("login")[-1] == ("POST", f"/{TENANT}/oauth2/v2.0/token", 401)


def test_login_words_an_unknown_app_and_an_unknown_tenant_as_entra_does(sims: Simulators) -> None:
    sims.graph.add_tenant(TENANT, CLIENT_ID, SECRET)

    result = msal_app(sims, client_id="99999999-0000-0000-0000-000000000000").acquire_token_for_client(
        scopes=GRAPH_SCOPE
    )
    assert result["error"] == "unauthorized_client"
    assert result["error_description"].startswith("AADSTS700016: Application with identifier")

    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(sims, tenant="00000000-0000-0000-0000-000000000000")


# Graph: authentication and permissions


def test_graph_answers_401_without_a_valid_or_with_an_expired_token(
    sims: Simulators, graph: requests.Session, http: requests.Session
) -> None:
    url = f"{sims.graph_url}/groups/none/transitiveMembers/microsoft.graph.user"
    anonymous = requests.Session()
    anonymous.trust_env = False
    assert anonymous.get(url, timeout=5).json()["error"]["code"] == "InvalidAuthenticationToken"
    assert anonymous.get(url, headers={"Authorization": "Bearer forged"}, timeout=5).status_code == 401

    sims.login.expire_tokens()
    expired = graph.get(url, timeout=5)

    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "Lifetime validation failed, the token is expired."


def test_graph_answers_403_when_the_tenant_lacks_the_permission(sims: Simulators, http: requests.Session) -> None:
    sims.graph.add_tenant(TENANT, CLIENT_ID, SECRET, permissions=("Calendars.Read",))
    sims.graph.add_user(TENANT, "u1", "ola@firma.no", "Ola Nordmann")
    sims.graph.add_group(TENANT, "g1", "Alle", ["u1"])
    sims.graph.add_tenant("tenant-2", "app-2", "secret-2", permissions=("GroupMember.Read.All",))
    sims.graph.add_user("tenant-2", "t2-user", "per@annet.no", "Per")
    calendars_only = {"Authorization": f"Bearer {graph_token(sims)}"}
    directory_only = {"Authorization": f"Bearer {graph_token(sims, 'secret-2', 'app-2', 'tenant-2')}"}

    members = http.get(f"{sims.graph_url}/groups/g1/transitiveMembers/microsoft.graph.user", headers=calendars_only)
    view = http.get(
        f"{sims.graph_url}/users/t2-user/calendarView",
        headers=directory_only,
        params={"startDateTime": "2026-01-05T00:00:00Z", "endDateTime": "2026-01-06T00:00:00Z"},
    )
    other_tenant = http.get(
        f"{sims.graph_url}/users/t2-user/calendarView",
        headers=calendars_only,
        params={"startDateTime": "2026-01-05T00:00:00Z", "endDateTime": "2026-01-06T00:00:00Z"},
    )

    assert (members.status_code, members.json()["error"]["code"]) == (403, "Authorization_RequestDenied")
    assert (view.status_code, view.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    assert (other_tenant.status_code, other_tenant.json()["error"]["code"]) == (404, "ErrorInvalidUser")


# Graph: group members


def test_transitive_members_resolve_nested_groups_once_each_and_page(sims: Simulators, graph: requests.Session) -> None:
    for n in range(3, 6):
        sims.graph.add_user(TENANT, f"u{n}", f"user{n}@firma.no", f"User {n}")
    sims.graph.add_group(TENANT, "all", "Alle", ["u1", "sales", "u2"])
    sims.graph.add_group(TENANT, "sales", "Salg", ["u3", "oslo", "u1"])
    sims.graph.add_group(TENANT, "oslo", "Salg Oslo", ["u4", "all", "u5"])  # a cycle back to "all"

    url = f"{sims.graph_url}/groups/all/transitiveMembers/microsoft.graph.user"
    query = {"$select": "id,mail,displayName,userPrincipalName", "$top": "2", "$count": "true"}
    pages = [graph.get(url, params=query, headers=ADVANCED, timeout=5)]
    while "@odata.nextLink" in pages[-1].json():
        pages.append(graph.get(pages[-1].json()["@odata.nextLink"], headers=ADVANCED, timeout=5))
    users = [user for page in pages for user in page.json()["value"]]

    assert [len(page.json()["value"]) for page in pages] == [2, 2, 1]
    assert {page.json()["@odata.count"] for page in pages} == {5}
    assert sorted(user["id"] for user in users) == ["u1", "u2", "u3", "u4", "u5"]
    assert users[0] == {
        "id": "u1",
        "displayName": "Ola Nordmann",
        "mail": "ola@firma.no",
        "userPrincipalName": "ola@firma.no",
    }
    direct = graph.get(f"{sims.graph_url}/groups/all/members", timeout=5).json()["value"]
    assert [(member["@odata.type"], member["id"]) for member in direct] == [
        ("#microsoft.graph.user", "u1"),
        ("#microsoft.graph.group", "sales"),
        ("#microsoft.graph.user", "u2"),
    ]


def test_the_user_cast_on_transitive_members_is_an_advanced_query(sims: Simulators, graph: requests.Session) -> None:
    sims.graph.add_group(TENANT, "all", "Alle", ["u1", "u2"])
    url = f"{sims.graph_url}/groups/all/transitiveMembers/microsoft.graph.user"

    without_anything = graph.get(url, timeout=5)
    without_count = graph.get(url, headers=ADVANCED, timeout=5)
    without_header = graph.get(url, params={"$count": "true"}, timeout=5)
    first = graph.get(url, params={"$count": "true", "$top": "1"}, headers=ADVANCED, timeout=5).json()
    next_without_header = graph.get(first["@odata.nextLink"], timeout=5)
    plain = graph.get(f"{sims.graph_url}/groups/all/transitiveMembers", timeout=5)

    for refused in (without_anything, without_count, without_header, next_without_header):
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "Request_UnsupportedQuery"
        assert "ConsistencyLevel:eventual" in error["message"] and "$count=true" in error["message"]
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert "%24count=true" in first["@odata.nextLink"] or "$count=true" in first["@odata.nextLink"]
    assert (first["@odata.count"], [user["id"] for user in first["value"]]) == (2, ["u1"])
    assert plain.status_code == 200  # no cast, no advanced query needed


def test_group_members_can_be_devices_contacts_guests_and_nested_groups(
    sims: Simulators, graph: requests.Session
) -> None:
    sims.graph.add_user(TENANT, "guest", "partner_ext@firma.no", "Partner (gjest)", user_type="Guest")
    sims.graph.add_user(TENANT, "u3", "per@firma.no", "Per")
    sims.graph.add_device(TENANT, "laptop", "OLA-LAPTOP")
    sims.graph.add_org_contact(TENANT, "revisor", "Revisor", "revisor@revisjon.no")
    sims.graph.add_group(TENANT, "inner", "Salg", ["u3", "laptop"])
    sims.graph.add_group(TENANT, "all", "Alle", ["u1", "guest", "revisor", "inner"])

    everything = graph.get(f"{sims.graph_url}/groups/all/transitiveMembers", timeout=5).json()["value"]
    users = graph.get(
        f"{sims.graph_url}/groups/all/transitiveMembers/microsoft.graph.user",
        params={"$count": "true", "$select": "id,userType"},
        headers=ADVANCED,
        timeout=5,
    ).json()["value"]

    assert [(member["@odata.type"], member["id"]) for member in everything] == [
        ("#microsoft.graph.user", "u1"),
        ("#microsoft.graph.user", "guest"),
        ("#microsoft.graph.orgContact", "revisor"),
        ("#microsoft.graph.group", "inner"),
        ("#microsoft.graph.user", "u3"),
        ("#microsoft.graph.device", "laptop"),
    ]
    assert users == [
        {"id": "u1", "userType": "Member"},
        {"id": "guest", "userType": "Guest"},  # guests are users: the cast keeps them
        {"id": "u3", "userType": "Member"},
    ]


def test_an_unknown_group_is_404_request_resource_not_found(sims: Simulators, graph: requests.Session) -> None:
    response = graph.get(
        f"{sims.graph_url}/groups/nope/transitiveMembers/microsoft.graph.user",
        params={"$count": "true"},
        headers=ADVANCED,
        timeout=5,
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "Request_ResourceNotFound"


# Graph: calendarView


@pytest.mark.parametrize(
    ("start", "end", "all_day", "problem"),
    [
        (dt.datetime(2026, 1, 5, 9), dt.datetime(2026, 1, 5, 10), False, "timezone-aware"),
        (MONDAY, MONDAY + dt.timedelta(days=1), False, "timezone-aware"),
        (oslo(MONDAY, 9), oslo(MONDAY, 10), True, "datetime.date"),
        (MONDAY, MONDAY, True, "ends"),
    ],
)
def test_a_sim_event_refuses_times_graph_could_not_hold(
    start: dt.datetime | dt.date, end: dt.datetime | dt.date, all_day: bool, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        SimEvent("e1", "Møte", start, end, all_day=all_day)


def test_calendar_view_gives_utc_without_prefer_and_local_time_with_it(
    sims: Simulators, graph: requests.Session
) -> None:
    sims.graph.put_event("u1", SimEvent("e1", "Kundebesøk &Eks", oslo(MONDAY, 10), oslo(MONDAY, 12)))

    plain = calendar_view(sims, graph, "u1", *week()).json()["value"][0]
    local = calendar_view(sims, graph, "u1", *week(), prefer=WEST_EUROPE)

    assert (plain["start"], plain["end"]) == (
        {"dateTime": "2026-01-05T09:00:00.0000000", "timeZone": "UTC"},
        {"dateTime": "2026-01-05T11:00:00.0000000", "timeZone": "UTC"},
    )
    event = local.json()["value"][0]
    assert event["start"] == {"dateTime": "2026-01-05T10:00:00.0000000", "timeZone": "W. Europe Standard Time"}
    assert local.headers["Preference-Applied"] == WEST_EUROPE
    assert event["originalStartTimeZone"] == "W. Europe Standard Time"  # Exchange keeps Windows names
    assert (event["id"], event["subject"], event["type"], event["seriesMasterId"]) == (
        "e1",
        "Kundebesøk &Eks",
        "singleInstance",
        None,
    )


def test_calendar_view_maps_the_engine_fields_to_graph_and_honours_select(
    sims: Simulators, graph: requests.Session
) -> None:
    sims.graph.put_event(
        "u1",
        SimEvent(
            "e1",
            "Planlegging",
            oslo(MONDAY, 9),
            oslo(MONDAY, 10),
            show_as="tentative",
            response="tentative",
            cancelled=True,
            private=True,
        ),
    )

    event = calendar_view(sims, graph, "u1", *week()).json()["value"][0]
    selected = calendar_view(sims, graph, "u1", *week(), params={"$select": "subject,showAs"}).json()["value"][0]

    assert (
        event["showAs"],
        event["responseStatus"]["response"],
        event["isCancelled"],
        event["sensitivity"],
        event["isAllDay"],
    ) == ("tentative", "tentativelyAccepted", True, "private", False)
    assert set(selected) == {"@odata.etag", "id", "subject", "showAs"}


def test_all_day_events_run_from_midnight_to_midnight_in_the_mailbox_zone(
    sims: Simulators, graph: requests.Session
) -> None:
    thursday = MONDAY + dt.timedelta(days=3)
    holiday = SimEvent("ferie", "&-Ferie", thursday, thursday + dt.timedelta(days=2), all_day=True, show_as="free")
    sims.graph.put_event("u1", holiday)
    sims.graph.put_event("u2", holiday)  # a New York mailbox

    oslo_event = calendar_view(sims, graph, "u1", *week(), prefer=WEST_EUROPE).json()["value"][0]
    utc_event = calendar_view(sims, graph, "u1", *week()).json()["value"][0]
    new_york = calendar_view(sims, graph, "u2", *week(ZoneInfo("America/New_York"))).json()["value"][0]

    assert oslo_event["isAllDay"] is True
    assert (oslo_event["start"]["dateTime"], oslo_event["end"]["dateTime"]) == (
        "2026-01-08T00:00:00.0000000",
        "2026-01-10T00:00:00.0000000",
    )
    assert utc_event["start"]["dateTime"] == "2026-01-07T23:00:00.0000000"
    assert new_york["start"]["dateTime"] == "2026-01-08T05:00:00.0000000"


def test_a_daily_series_comes_back_as_occurrences_at_the_same_local_time_across_dst(
    sims: Simulators, graph: requests.Session
) -> None:
    friday = dt.date(2026, 3, 27)  # summer time starts Sunday 29 March
    sims.graph.put_event("u1", SimEvent("standup", "Standup", oslo(friday, 9), oslo(friday, 9, 15), recurrence_days=5))
    window = (oslo(friday, 0), oslo(friday + dt.timedelta(days=4), 0))  # the fifth occurrence is outside

    occurrences = calendar_view(sims, graph, "u1", *window).json()["value"]

    assert [event["id"] for event in occurrences] == [
        "standup_20260327",
        "standup_20260328",
        "standup_20260329",
        "standup_20260330",
    ]
    assert {(event["type"], event["seriesMasterId"]) for event in occurrences} == {("occurrence", "standup")}
    assert [event["start"]["dateTime"][11:16] for event in occurrences] == ["08:00", "08:00", "07:00", "07:00"]


def test_prefer_takes_windows_names_and_the_documented_iana_names_only(
    sims: Simulators, graph: requests.Session
) -> None:
    sims.graph.put_event("u1", SimEvent("e1", "Møte", oslo(MONDAY, 10), oslo(MONDAY, 11)))

    oslo_iana = calendar_view(sims, graph, "u1", *week(), prefer='outlook.timezone="Europe/Oslo"')
    berlin = calendar_view(sims, graph, "u1", *week(), prefer='outlook.timezone="Europe/Berlin"')
    romance = calendar_view(sims, graph, "u1", *week(), prefer='outlook.timezone="Romance Standard Time"')
    delta = graph.get(
        f"{sims.graph_url}/users/u1/calendarView/delta",
        params={"startDateTime": week()[0].isoformat(), "endDateTime": week()[1].isoformat()},
        headers={"Prefer": 'outlook.timezone="Europe/Oslo"'},
        timeout=5,
    )

    for refused in (oslo_iana, delta):
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "TimeZoneNotSupportedException"
        assert refused.json()["error"]["message"] == (
            "A valid TimeZone value must be specified. The following TimeZone value is not supported: 'Europe/Oslo'."
        )
    assert berlin.json()["value"][0]["start"] == {
        "dateTime": "2026-01-05T10:00:00.0000000",
        "timeZone": "Europe/Berlin",
    }
    assert romance.json()["value"][0]["start"]["timeZone"] == "Romance Standard Time"


def test_a_mailbox_can_be_switched_to_fail_as_graph_does(sims: Simulators, graph: requests.Session) -> None:
    sims.graph.add_user(TENANT, "guest", "partner_ext@firma.no", "Partner", user_type="Guest")
    sims.graph.add_user(TENANT, "u3", "per@firma.no", "Per")
    sims.graph.set_mailbox_error("u1", "ErrorAccessDenied")
    sims.graph.set_mailbox_error("u2", "MailboxNotEnabledForRESTAPI")
    sims.graph.set_mailbox_error("u3", "ErrorInvalidUser")

    answers = {user: calendar_view(sims, graph, user, *week()) for user in ("u1", "u2", "u3", "guest")}
    sims.graph.set_mailbox_error("u1", None)

    assert {user: (answer.status_code, answer.json()["error"]["code"]) for user, answer in answers.items()} == {
        "u1": (403, "ErrorAccessDenied"),
        "u2": (404, "MailboxNotEnabledForRESTAPI"),
        "u3": (404, "ErrorInvalidUser"),
        "guest": (404, "MailboxNotEnabledForRESTAPI"),  # a guest's mailbox is in its home tenant
    }
    assert answers["u1"].json()["error"]["message"] == "Access to OData is disabled."
    assert calendar_view(sims, graph, "u1", *week()).status_code == 200


def test_a_fifth_concurrent_read_of_one_mailbox_is_throttled(sims: Simulators, graph: requests.Session) -> None:
    sims.graph.set_mailbox_seconds(0.5)
    answers: list[requests.Response] = []

    def read() -> None:
        answers.append(calendar_view(sims, graph, "u1", *week()))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 200, 429, 429]
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["error"] == refused.json()["error"] | {
        "code": "ApplicationThrottled",
        "message": "Application is over its MailboxConcurrency limit.",
    }
    assert refused.headers["Retry-After"] == "1"
    assert calendar_view(sims, graph, "u2", *week()).status_code == 200  # another mailbox is not held up


def test_calendar_view_pages_with_next_link(sims: Simulators, graph: requests.Session) -> None:
    for day in range(5):
        start = oslo(MONDAY + dt.timedelta(days=day), 9)
        sims.graph.put_event("u1", SimEvent(f"e{day}", f"Møte {day}", start, start + dt.timedelta(hours=1)))
    prefer = WEST_EUROPE

    pages = [calendar_view(sims, graph, "u1", *week(), prefer=prefer, params={"$top": "2"})]
    while "@odata.nextLink" in pages[-1].json():
        pages.append(graph.get(pages[-1].json()["@odata.nextLink"], headers={"Prefer": prefer}, timeout=5))

    assert [[event["id"] for event in page.json()["value"]] for page in pages] == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    missing_window = graph.get(f"{sims.graph_url}/users/u1/calendarView", timeout=5)
    assert (missing_window.status_code, missing_window.json()["error"]["code"]) == (400, "ErrorInvalidParameter")


# Graph: delta


def delta_round(graph: requests.Session, url: str, params: dict[str, str] | None = None) -> tuple[list[Any], str]:
    """Follow nextLinks to the deltaLink; returns every entry and the deltaLink."""
    page = graph.get(url, params=params, headers={"Prefer": "odata.maxpagesize=2"}, timeout=5).json()
    entries = list(page["value"])
    while "@odata.nextLink" in page:
        page = graph.get(page["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"}, timeout=5).json()
        entries.extend(page["value"])
    return entries, page["@odata.deltaLink"]


def test_delta_gives_the_initial_state_then_only_changes_and_removals(
    sims: Simulators, graph: requests.Session
) -> None:
    for n in range(3):
        sims.graph.put_event("u1", SimEvent(f"e{n}", "Møte", oslo(MONDAY, 9 + n), oslo(MONDAY, 10 + n)))
    start, end = week()
    url = f"{sims.graph_url}/users/u1/calendarView/delta"

    initial, delta_link = delta_round(graph, url, {"startDateTime": start.isoformat(), "endDateTime": end.isoformat()})
    unchanged, delta_link = delta_round(graph, delta_link)
    sims.graph.put_event("u1", SimEvent("e0", "Flyttet", oslo(MONDAY, 14), oslo(MONDAY, 15)))
    sims.graph.put_event("u1", SimEvent("e3", "Ny", oslo(MONDAY, 16), oslo(MONDAY, 17)))
    sims.graph.delete_event("u1", "e1")
    changes, delta_link = delta_round(graph, delta_link)
    after, _ = delta_round(graph, delta_link)
    scripted = sims.graph.events("u1")

    assert sorted(event["id"] for event in initial) == ["e0", "e1", "e2"]
    assert unchanged == []
    assert {event["id"]: event.get("subject") for event in changes if "@removed" not in event} == {
        "e0": "Flyttet",
        "e3": "Ny",
    }
    assert [event for event in changes if "@removed" in event] == [
        {"@odata.type": "#microsoft.graph.event", "id": "e1", "@removed": {"reason": "deleted"}}
    ]
    assert after == []
    assert [(event.id, event.subject) for event in scripted] == [("e0", "Flyttet"), ("e2", "Møte"), ("e3", "Ny")]


def test_an_expired_delta_token_gets_410_sync_state_not_found(sims: Simulators, graph: requests.Session) -> None:
    start, end = week()
    _, delta_link = delta_round(
        graph,
        f"{sims.graph_url}/users/u1/calendarView/delta",
        {"startDateTime": start.isoformat(), "endDateTime": end.isoformat()},
    )

    sims.graph.expire_delta_tokens()
    response = graph.get(delta_link, timeout=5)

    assert (response.status_code, response.json()["error"]["code"]) == (410, "SyncStateNotFound")


# Graph: $batch


def batch_requests(count: int) -> list[dict[str, Any]]:
    window = "startDateTime=2026-01-05T00:00:00Z&endDateTime=2026-01-12T00:00:00Z"
    return [
        {
            "id": str(n),
            "method": "GET",
            "url": f"/users/{'u1' if n % 2 else 'u2'}/calendarView?{window}",
            "headers": {"Prefer": WEST_EUROPE},
        }
        for n in range(count)
    ]


def test_batch_answers_twenty_requests_and_refuses_twenty_one(sims: Simulators, graph: requests.Session) -> None:
    sims.graph.put_event("u1", SimEvent("e1", "Møte", oslo(MONDAY, 9), oslo(MONDAY, 10)))

    twenty = graph.post(f"{sims.graph_url}/$batch", json={"requests": batch_requests(20)}, timeout=5)
    twenty_one = graph.post(f"{sims.graph_url}/$batch", json={"requests": batch_requests(21)}, timeout=5)

    responses = {response["id"]: response for response in twenty.json()["responses"]}
    assert len(responses) == 20 and {response["status"] for response in responses.values()} == {200}
    assert responses["1"]["body"]["value"][0]["start"]["dateTime"] == "2026-01-05T09:00:00.0000000"
    assert responses["0"]["body"]["value"] == []
    assert (twenty_one.status_code, twenty_one.json()["error"]["code"]) == (400, "BadRequest")


def test_batch_inner_responses_can_be_throttled_with_retry_after(sims: Simulators, graph: requests.Session) -> None:
    sims.graph.set_batch_item_faults(1.0, kinds=("429",))

    response = graph.post(f"{sims.graph_url}/$batch", json={"requests": batch_requests(3)}, timeout=5)

    assert response.status_code == 200
    inner = response.json()["responses"]
    assert [(item["status"], item["headers"]["Retry-After"]) for item in inner] == [(429, "1")] * 3
    assert inner[0]["body"]["error"]["code"] == "TooManyRequests"


def test_batch_answers_in_any_order_with_longer_retry_after_and_424_when_throttled(
    sims: Simulators, graph: requests.Session
) -> None:
    orders = [
        [
            item["id"]
            for item in graph.post(f"{sims.graph_url}/$batch", json={"requests": batch_requests(20)}).json()[
                "responses"
            ]
        ]
        for _ in range(3)
    ]
    sims.graph.set_batch_item_faults(1.0, kinds=("429",))
    sims.graph.set_batch_item_retry_after(7)
    sims.graph.set_batch_failed_dependency(True)

    throttled = graph.post(f"{sims.graph_url}/$batch", json={"requests": batch_requests(3)}, timeout=5)

    assert all(sorted(order, key=int) == [str(n) for n in range(20)] for order in orders)
    assert any(order != [str(n) for n in range(20)] for order in orders), "answers are matched by id, not order"
    assert throttled.status_code == 424
    assert (
        sorted((item["status"], item["headers"]["Retry-After"]) for item in throttled.json()["responses"])
        == [(429, "7")] * 3
    )


# Graph: change notifications


class Webhook:
    """A receiving endpoint like the project's: echoes `validationToken` as text/plain, records the rest."""

    def __init__(self, answer_validation: bool = True, delay: float = 0.0) -> None:
        self.answer_validation = answer_validation
        self.delay = delay
        self.validations: list[str] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.condition = threading.Condition()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = dict(parse_qsl(parts.query))
                if "validationToken" in query:
                    webhook.validations.append(query["validationToken"])
                    self._answer(200 if webhook.answer_validation else 403, query["validationToken"].encode())
                    return
                time.sleep(webhook.delay)
                with webhook.condition:
                    webhook.received.append((parts.path, json.loads(body)))
                    webhook.condition.notify_all()
                self._answer(202, b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 5) -> list[tuple[str, dict[str, Any]]]:
        with self.condition:
            self.condition.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def subscribe(
    sims: Simulators, graph: requests.Session, webhook_url: str, minutes: int = 60, **extra: str
) -> requests.Response:
    sims.graph.allow_http_webhooks_on_loopback()  # this plain-http test webhook stands on 127.0.0.1
    expiration = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": f"{webhook_url}/notify",
        "resource": "/users/u1/events",
        "expirationDateTime": expiration.isoformat(),
        "clientState": "hemmelig",
        **extra,
    }
    return graph.post(f"{sims.graph_url}/subscriptions", json=body, timeout=15)


def test_a_subscription_starts_with_the_handshake_and_then_notifies_each_change(
    sims: Simulators, graph: requests.Session, webhook: Webhook
) -> None:
    created = subscribe(sims, graph, webhook.url)
    subscription_id = created.json()["id"]

    sims.graph.put_event("u1", SimEvent("e1", "Møte", oslo(MONDAY, 9), oslo(MONDAY, 10)))
    sims.graph.put_event("u1", SimEvent("e1", "Møte", oslo(MONDAY, 9), oslo(MONDAY, 11)))
    sims.graph.put_event("u2", SimEvent("x1", "Ikke abonnert", oslo(MONDAY, 9), oslo(MONDAY, 10)))
    sims.graph.delete_event("u1", "e1")
    received = webhook.wait_for(3)

    assert created.status_code == 201
    assert webhook.validations[0].startswith("Validation: ")  # URL-decoded by the webhook, echoed back
    assert [path for path, _ in received] == ["/notify"] * 3
    notifications = [document["value"][0] for _, document in received]
    assert [note["changeType"] for note in notifications] == ["created", "updated", "deleted"]
    assert {
        (note["subscriptionId"], note["clientState"], note["tenantId"], note["resource"], note["resourceData"]["id"])
        for note in notifications
    } == {(subscription_id, "hemmelig", TENANT, "Users/u1/Events/e1", "e1")}
    assert len(received) == 3 and sims.graph.flush_notifications()


def test_put_event_does_not_wait_for_a_slow_webhook(sims: Simulators, graph: requests.Session) -> None:
    slow = Webhook(delay=0.5)
    try:
        subscribe(sims, graph, slow.url)
        began = time.monotonic()
        sims.graph.put_event("u1", SimEvent("e1", "Møte", oslo(MONDAY, 9), oslo(MONDAY, 10)))
        elapsed = time.monotonic() - began
        assert elapsed < 0.2
        assert len(slow.wait_for(1)) == 1
    finally:
        slow.close()


def test_a_subscription_fails_when_the_endpoint_does_not_echo_the_token(
    sims: Simulators, graph: requests.Session
) -> None:
    refusing = Webhook(answer_validation=False)
    try:
        response = subscribe(sims, graph, refusing.url)
    finally:
        refusing.close()

    assert (response.status_code, response.json()["error"]["code"]) == (400, "ValidationError")
    assert sims.graph.subscriptions() == []


def test_subscriptions_renew_within_4230_minutes_and_can_be_deleted(
    sims: Simulators, graph: requests.Session, webhook: Webhook
) -> None:
    too_long = subscribe(sims, graph, webhook.url, minutes=4231)
    subscription_id = subscribe(sims, graph, webhook.url).json()["id"]
    url = f"{sims.graph_url}/subscriptions/{subscription_id}"
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4200)).isoformat()

    renewed = graph.patch(url, json={"expirationDateTime": later}, timeout=5)
    listed = sims.graph.subscriptions()
    deleted = graph.delete(url, timeout=5)

    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "ValidationError")
    assert renewed.status_code == 200
    assert [entry["expirationDateTime"][:16] for entry in listed] == [later[:16]]
    assert deleted.status_code == 204 and sims.graph.subscriptions() == []
    assert graph.patch(url, json={"expirationDateTime": later}, timeout=5).status_code == 404


def test_lifecycle_notifications_go_to_the_lifecycle_url(
    sims: Simulators, graph: requests.Session, webhook: Webhook
) -> None:
    subscription_id = subscribe(sims, graph, webhook.url, lifecycleNotificationUrl=f"{webhook.url}/lifecycle").json()[
        "id"
    ]

    sims.graph.send_lifecycle(subscription_id, "reauthorizationRequired")
    sims.graph.send_lifecycle(subscription_id, "subscriptionRemoved")
    received = webhook.wait_for(2)

    assert len(webhook.validations) == 2  # both URLs were validated
    assert [(path, document["value"][0]["lifecycleEvent"]) for path, document in received] == [
        ("/lifecycle", "reauthorizationRequired"),
        ("/lifecycle", "subscriptionRemoved"),
    ]
    assert received[0][1]["value"][0]["clientState"] == "hemmelig"
    assert sims.graph.subscriptions() == []


# MBN


@pytest.fixture
def mbn(sims: Simulators, http: requests.Session) -> requests.Session:
    """An enterprise with one subscriber, and a session holding a token for it."""
    sims.mbn.add_enterprise(ENTERPRISE, *MBN_CLIENT, *MBN_USER, rate_per_second=1000)
    sims.mbn.add_subscriber(ENTERPRISE, MSISDN, "ola@firma.no", "Ola Nordmann")
    http.headers["Authorization"] = f"Bearer {mbn_token(sims, http)}"
    return http


def mbn_token(sims: Simulators, http: requests.Session) -> str:
    response = http.post(
        f"{sims.mbn_url}/oauth/v2/token",
        auth=MBN_CLIENT,
        timeout=5,
        data={"grant_type": "password", "username": MBN_USER[0], "password": MBN_USER[1]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer" and response.json()["expires_in"] == 3600
    return str(response.json()["access_token"])


def absences_url(sims: Simulators, msisdn: str = MSISDN) -> str:
    return f"{sims.mbn_url}/mbn/v1/enterprises/{ENTERPRISE}/users/{msisdn}/absences"


def absence(start_hour: int, end_hour: int, reason: str = "Møte", **extra: Any) -> dict[str, Any]:
    return {
        "reason": reason,
        "start": f"2026-03-02T{start_hour:02d}:00:00+01:00",
        "end": f"2026-03-02T{end_hour:02d}:00:00+01:00",
        "diversion": "voicemail",
        "external_ref": "kp:e1",
        **extra,
    }


def test_mbn_token_needs_the_client_secret_and_the_api_user(sims: Simulators, http: requests.Session) -> None:
    sims.mbn.add_enterprise(ENTERPRISE, *MBN_CLIENT, *MBN_USER)
    url = f"{sims.mbn_url}/oauth/v2/token"
    form = {"grant_type": "password", "username": MBN_USER[0], "password": MBN_USER[1]}

    assert mbn_token(sims, http)
    wrong_secret = http.post(url, auth=(MBN_CLIENT[0], "wrong"), data=form, timeout=5)
    wrong_password = http.post(url, auth=MBN_CLIENT, data={**form, "password": "wrong"}, timeout=5)

    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    assert (wrong_password.status_code, wrong_password.json()["error"]) == (400, "invalid_grant")


def test_mbn_subscribers_come_fifty_to_a_page(sims: Simulators, mbn: requests.Session) -> None:
    for n in range(1, 120):
        sims.mbn.add_subscriber(ENTERPRISE, f"+479{n:07d}", f"user{n}@firma.no", f"User {n}")
    url = f"{sims.mbn_url}/mbn/v1/enterprises/{ENTERPRISE}/users"

    pages = [mbn.get(url, params={"page": 1}, timeout=5).json()]
    while pages[-1]["next_page"] is not None:
        pages.append(mbn.get(url, params={"page": pages[-1]["next_page"]}, timeout=5).json())

    assert [len(page["users"]) for page in pages] == [50, 50, 20]
    assert [page["next_page"] for page in pages] == [2, 3, None]
    assert pages[0]["users"][0] == {"msisdn": MSISDN, "email": "ola@firma.no", "name": "Ola Nordmann"}
    assert len({user["msisdn"] for page in pages for user in page["users"]}) == 120


def test_mbn_absences_can_be_created_listed_replaced_and_deleted(sims: Simulators, mbn: requests.Session) -> None:
    created = mbn.post(absences_url(sims), json=absence(9, 10), timeout=5)
    absence_id = created.json()["id"]
    listed = mbn.get(absences_url(sims), timeout=5).json()["absences"]
    replaced = mbn.put(f"{absences_url(sims)}/{absence_id}", json=absence(9, 11, "Jobbreise"), timeout=5)
    held_after_replace = sims.mbn.absences(ENTERPRISE, MSISDN)
    deleted = mbn.delete(f"{absences_url(sims)}/{absence_id}", timeout=5)

    assert created.status_code == 201
    assert listed == [
        {
            "id": absence_id,
            "reason": "Møte",
            "start": "2026-03-02T09:00:00+01:00",
            "end": "2026-03-02T10:00:00+01:00",
            "diversion": "voicemail",
            "external_ref": "kp:e1",
        }
    ]
    assert replaced.status_code == 200
    assert [(item["id"], item["reason"], item["end"]) for item in held_after_replace] == [
        (absence_id, "Jobbreise", "2026-03-02T11:00:00+01:00")
    ]
    assert deleted.status_code == 204 and sims.mbn.absences(ENTERPRISE, MSISDN) == []
    assert mbn.delete(f"{absences_url(sims)}/{absence_id}", timeout=5).status_code == 404
    assert mbn.get(absences_url(sims, "+4700000000"), timeout=5).json()["code"] == "not_found"


def test_mbn_refuses_an_overlap_with_409_also_against_a_manual_absence(sims: Simulators, mbn: requests.Session) -> None:
    manual = sims.mbn.put_manual_absence(
        ENTERPRISE, MSISDN, "Lunch", "2026-03-02T11:00:00+01:00", "2026-03-02T11:30:00+01:00"
    )

    overlapping = mbn.post(absences_url(sims), json=absence(10, 12), timeout=5)
    touching = mbn.post(absences_url(sims), json=absence(10, 11), timeout=5)

    assert (overlapping.status_code, overlapping.json()["code"]) == (409, "overlap")
    assert touching.status_code == 201
    assert [(item["reason"], item["external_ref"]) for item in sims.mbn.absences(ENTERPRISE, MSISDN)] == [
        ("Møte", "kp:e1"),
        ("Lunch", None),
    ]
    assert manual["external_ref"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (absence(9, 10, reason="Kaffe"), "invalid_reason"),
        (absence(10, 9), "invalid_interval"),
        (absence(9, 10, diversion="mobil"), "invalid_diversion"),
        (absence(9, 10, start="2026-03-02T09:00:00"), "invalid_time"),
    ],
)
def test_mbn_rejects_a_bad_absence_with_400(
    sims: Simulators, mbn: requests.Session, body: dict[str, Any], code: str
) -> None:
    response = mbn.post(absences_url(sims), json=body, timeout=5)

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert response.json()["message"]
    assert sims.mbn.absences(ENTERPRISE, MSISDN) == []


def test_mbn_answers_401_once_the_token_expired(sims: Simulators, mbn: requests.Session) -> None:
    assert mbn.get(absences_url(sims), timeout=5).status_code == 200

    sims.mbn.expire_tokens()

    assert mbn.get(absences_url(sims), timeout=5).status_code == 401
    assert mbn.get(absences_url(sims), headers={"Authorization": ""}, timeout=5).status_code == 401


def test_mbn_answers_429_with_retry_after_above_the_enterprise_rate(sims: Simulators, mbn: requests.Session) -> None:
    sims.mbn.set_rate(ENTERPRISE, 5)

    statuses = [mbn.get(absences_url(sims), timeout=5) for _ in range(10)]

    throttled = [response for response in statuses if response.status_code == 429]
    assert 1 <= len(throttled) <= 5
    assert throttled[0].headers["Retry-After"] == "1" and throttled[0].json()["code"] == "rate_limited"


# faults and switches


@pytest.mark.parametrize("kind", ["429", "503", "malformed", "timeout"])
def test_a_faulted_post_stores_nothing(sims: Simulators, mbn: requests.Session, kind: str) -> None:
    sims.set_faults("mbn", rate=1.0, kinds=(kind,))

    if kind == "timeout":
        with pytest.raises(requests.Timeout):
            mbn.post(absences_url(sims), json=absence(9, 10), timeout=0.5)
    else:
        response = mbn.post(absences_url(sims), json=absence(9, 10), timeout=5)
        if kind == "malformed":
            assert response.status_code == 200
            with pytest.raises(ValueError):
                response.json()
        else:
            assert response.status_code == int(kind)
        if kind == "429":
            assert response.headers["Retry-After"] == "1"

    sims.set_faults("mbn", rate=0)
    assert sims.mbn.absences(ENTERPRISE, MSISDN) == []
    assert mbn.get(absences_url(sims), timeout=5).json() == {"absences": []}


def test_faults_reach_token_requests_and_graph(sims: Simulators, graph: requests.Session) -> None:
    sims.set_faults("login", rate=1.0, kinds=("503",))
    sims.set_faults("graph", rate=1.0, kinds=("malformed",))

    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        msal_app(sims).acquire_token_for_client(scopes=GRAPH_SCOPE)
    broken = calendar_view(sims, graph, "u1", *week())

    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()


def test_a_fault_rate_faults_about_that_share_of_requests(sims: Simulators, mbn: requests.Session) -> None:
    sims.set_faults("mbn", rate=0.5, kinds=("503",), seed=7)

    statuses = [mbn.get(absences_url(sims), timeout=5).status_code for _ in range(40)]

    assert 10 <= statuses.count(503) <= 30
    assert statuses.count(503) + statuses.count(200) == 40


def test_latency_and_request_counters(sims: Simulators, mbn: requests.Session) -> None:
    sims.reset_counters()
    sims.set_latency("mbn", 150)

    began = time.monotonic()
    mbn.get(absences_url(sims), timeout=5)
    elapsed = time.monotonic() - began
    mbn.post(absences_url(sims), json=absence(10, 9), timeout=5)

    assert elapsed >= 0.15
    assert sims.requests("mbn") == 2 and sims.requests("graph") == 0
    path = f"/mbn/v1/enterprises/{ENTERPRISE}/users/{MSISDN}/absences"
    assert sims.request_log("mbn") == [("GET", path, 200), ("POST", path, 400)]
    sims.reset_counters()
    assert sims.requests("mbn") == 0 and sims.request_log("mbn") == []
    with pytest.raises(ValueError, match="unknown service"):
        sims.requests("exchange-2003")


def test_the_demo_command_prints_working_urls_as_json() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.simulators", "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "}\n":
            lines.append(process.stdout.readline())
            assert lines[-1], f"the demo exited early after printing {''.join(lines)!r}"
        described = json.loads("".join(lines))
        session = requests.Session()
        session.trust_env = False
        credentials = described["mbn"]
        token = session.post(
            f"{described['mbn_url']}/oauth/v2/token",
            timeout=5,
            auth=(credentials["client_id"], credentials["client_secret"]),
            data={"grant_type": "password", "username": credentials["username"], "password": credentials["password"]},
        )
        assert token.status_code == 200
        assert described["graph"]["authority"].startswith(described["login_url"])
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
