"""The Google and EWS simulators' documented behaviours at the wire (devtools/simulators/README.md lists the pages)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
import requests
from exchangelib.protocol import close_connections

from devtools.simulators.ews import EwsSimulator
from devtools.simulators.google import GoogleSimulator
from sync.providers.base import Throttled
from sync.providers.ews import EwsProvider

ALICE = "alice@firma.no"
OSLO = ZoneInfo("Europe/Oslo")
WINDOW = (dt.datetime(2026, 10, 19, tzinfo=OSLO), dt.datetime(2026, 11, 2, tzinfo=OSLO))


@pytest.fixture
def google() -> Iterator[GoogleSimulator]:
    server = GoogleSimulator()
    server.start()
    server.add_user(ALICE, "Alice")
    try:
        yield server
    finally:
        server.stop()


def google_token(sim: GoogleSimulator, subject: str) -> str:
    def part(document: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    claims = {"sub": subject, "scope": "https://www.googleapis.com/auth/calendar.readonly"}
    assertion = f"{part({'alg': 'RS256', 'kid': 'key-1'})}.{part(claims)}.c2ln"
    answer = requests.post(
        sim.token_url,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        timeout=5,
    )
    return str(answer.json()["access_token"])


def batch_body(calls: int, token: str) -> tuple[bytes, str]:
    parts = "".join(
        f"--b\r\nContent-Type: application/http\r\nContent-ID: <{index}>\r\n\r\n"
        f"GET /calendar/v3/calendars/primary/events?maxResults=1\r\nAuthorization: Bearer {token}\r\n\r\n"
        for index in range(calls)
    )
    return (parts + "--b--\r\n").encode(), "multipart/mixed; boundary=b"


def test_a_google_batch_holds_at_most_1000_calls_and_each_call_answers_for_itself(google: GoogleSimulator) -> None:
    token = google_token(google, ALICE)
    body, content_type = batch_body(1001, token)
    url = f"{google.base_url}/batch/calendar/v3"
    too_many = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=10)
    assert too_many.status_code == 400

    google.set_calendar_enabled(ALICE, False)
    body, content_type = batch_body(3, token)
    answer = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=10)
    assert answer.status_code == 200  # the batch itself succeeds; each call carries its own error
    assert answer.text.count("HTTP/1.1 403 Forbidden") == 3 and "notACalendarUser" in answer.text
    assert sorted(answer.text.count(f"Content-ID: <response-{i}>") for i in range(3)) == [1, 1, 1]


def test_a_google_channel_id_longer_than_64_characters_is_refused(google: GoogleSimulator) -> None:
    token = google_token(google, ALICE)
    url = f"{google.calendar_url}calendars/primary/events/watch"
    for channel_id, status in (("k" * 65, 400), ("k" * 64, 200), ("bad id", 400)):
        answer = requests.post(
            url,
            json={"id": channel_id, "type": "web_hook", "address": "https://127.0.0.1:9/hook"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert answer.status_code == status, channel_id


@pytest.fixture
def ews() -> Iterator[EwsSimulator]:
    close_connections()
    server = EwsSimulator("svc-ews@firma.no", "secret")
    server.start()
    for address in ("ola@firma.no", "kari@firma.no"):
        server.add_mailbox(address, address)
    try:
        yield server
    finally:
        close_connections()
        server.stop()


def test_a_spent_ews_budget_refuses_everything_until_the_back_off_has_passed(ews: EwsSimulator) -> None:
    provider = EwsProvider(ews.url, "svc-ews@firma.no", "secret", timeout=5.0)
    try:
        ews.set_back_off_ms(300)
        ews.set_busy_after(1)
        reads = provider.read_events(["ola@firma.no", "kari@firma.no"], *WINDOW)
        assert set(reads) == {"ola@firma.no"} and isinstance(reads.failures["kari@firma.no"], Throttled)
        with pytest.raises(Throttled):  # still within the back-off
            provider.read_events(["kari@firma.no"], *WINDOW)
        time.sleep(0.35)
        assert "kari@firma.no" in provider.read_events(["kari@firma.no"], *WINDOW), "a fresh budget after the wait"
    finally:
        provider.close()


def test_each_ews_service_account_has_its_own_password_and_mailboxes(ews: EwsSimulator) -> None:
    from sync.providers.base import AuthError, PermissionMissing

    ews.add_service_account("svc-ews@kunde-b.example", "passord-b", ["kari@firma.no"])
    assert ews.service_accounts() == ["svc-ews@firma.no", "svc-ews@kunde-b.example"]
    assert ews.credentials() == ("svc-ews@firma.no", "secret"), "the first account, as set_credentials made it"
    first = EwsProvider(ews.url, "svc-ews@firma.no", "secret", timeout=5.0)
    second = EwsProvider(ews.url, "svc-ews@kunde-b.example", "passord-b", timeout=5.0)
    wrong = EwsProvider(ews.url, "svc-ews@kunde-b.example", "secret", timeout=5.0)
    try:
        assert set(first.read_events(["ola@firma.no", "kari@firma.no"], *WINDOW)) == {"ola@firma.no", "kari@firma.no"}
        reads = second.read_events(["ola@firma.no", "kari@firma.no"], *WINDOW)
        assert set(reads) == {"kari@firma.no"}, "an account impersonates only the mailboxes it was given"
        assert isinstance(reads.failures["ola@firma.no"], PermissionMissing)
        with pytest.raises(AuthError):  # another account's password is a 401, as on the wire today
            wrong.read_events(["kari@firma.no"], *WINDOW)
        ews.allow_impersonation("svc-ews@kunde-b.example", ["ola@firma.no"])
        assert "ola@firma.no" in second.read_events(["ola@firma.no"], *WINDOW)
        ews.set_credentials("svc-ews@firma.no", "nytt")  # one account again, as before several existed
        assert ews.service_accounts() == ["svc-ews@firma.no"]
        answer = requests.post(ews.url, data=b"<x/>", auth=("svc-ews@kunde-b.example", "passord-b"), timeout=5)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Basic realm="EWS"'
    finally:
        for provider in (first, second, wrong):
            provider.close()
