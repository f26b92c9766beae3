"""The MBN client: absences to and from MBN's JSON, matching calendar users to subscribers, and the client against
the loopback MBN simulator (tokens, paging, CRUD, conflicts, throttling and faults)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from customers.validators import parse_msisdn
from devtools.simulators import Simulators
from sync.mbn import (
    MbnAbsence,
    MbnAuthError,
    MbnBadRequest,
    MbnClient,
    MbnConflict,
    MbnNotFound,
    MbnThrottled,
    MbnUnavailable,
    Subscriber,
    match_subscribers,
)
from sync.providers.base import DirectoryUser

OSLO = ZoneInfo("Europe/Oslo")


def meeting(start_hour: int = 9, end_hour: int = 10, *, ref: str = "kp:1:2026-03-02T09:00") -> MbnAbsence:
    return MbnAbsence(
        id=None,
        reason="Møte",
        start=dt.datetime(2026, 3, 2, start_hour, tzinfo=OSLO),
        end=dt.datetime(2026, 3, 2, end_hour, tzinfo=OSLO),
        diversion="voicemail",
        external_ref=ref,
    )


# --- the absence's wire form ---


def test_it_writes_an_absence_as_iso_8601_with_offset_and_without_an_id() -> None:
    assert meeting().to_json() == {
        "reason": "Møte",
        "start": "2026-03-02T09:00:00+01:00",
        "end": "2026-03-02T10:00:00+01:00",
        "diversion": "voicemail",
        "external_ref": "kp:1:2026-03-02T09:00",
    }


def test_it_reads_back_what_it_writes() -> None:
    absence = MbnAbsence(**{**meeting().__dict__, "id": "a-17"})

    assert MbnAbsence.from_json(absence.to_json()) == absence


def test_it_reads_a_manual_absence_without_external_ref_as_not_ours() -> None:
    manual = MbnAbsence.from_json(
        {
            "id": "m1",
            "reason": "Fri",
            "start": "2026-03-02T12:00:00+01:00",
            "end": "2026-03-02T16:00:00+01:00",
            "diversion": "none",
        }
    )

    assert manual.external_ref == ""
    assert manual.is_ours is False
    assert meeting().is_ours is True


def test_it_refuses_naive_times() -> None:
    naive = MbnAbsence(None, "Møte", dt.datetime(2026, 3, 2, 9), dt.datetime(2026, 3, 2, 10), "none", "kp:x")

    with pytest.raises(ValueError, match="start"):
        naive.to_json()
    with pytest.raises(ValueError, match="offset"):
        MbnAbsence.from_json({**meeting().to_json(), "start": "2026-03-02T09:00:00"})


# --- matching calendar users to subscribers ---


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("912 34 567", "+4791234567"),
        ("+47 912 34 567", "+4791234567"),
        ("0047-91234567", "+4791234567"),
        ("4791234567", "+4791234567"),
        ("+46 70 123 45 67", "+46701234567"),
        ("(+47) 91.23.45.67", "+4791234567"),
        ("1234", None),
        ("ring meg", None),
        ("", None),
        (None, None),
    ],
)
def test_it_normalises_mobile_numbers_like_the_validator(raw: str | None, normalised: str | None) -> None:
    assert parse_msisdn(raw) == normalised


SUBSCRIBERS = [
    Subscriber("+4791111111", "ola@firma.no", "Ola Nordmann"),
    Subscriber("+4792222222", "Kari.Hansen@Firma.no", "Kari Hansen"),
    Subscriber("+4793333333", "sentralbord@firma.no", "Sentralbord"),
    Subscriber("+4794444444", "", "Per uten e-post"),
]


def test_it_matches_by_email_case_insensitively() -> None:
    users = [DirectoryUser("u-ola", "OLA@firma.no", "Ola"), DirectoryUser("u-kari", "kari.hansen@firma.no", "Kari")]

    assert match_subscribers(users, SUBSCRIBERS) == {"u-ola": "+4791111111", "u-kari": "+4792222222"}


def test_it_falls_back_to_the_directory_mobile_and_leaves_the_unmatched_as_none() -> None:
    users = [DirectoryUser("u-per", "per@firma.no", "Per"), DirectoryUser("u-ny", "ny@firma.no", "Ny")]

    matches = match_subscribers(users, SUBSCRIBERS, directory_mobiles={"u-per": "944 44 444", "u-ny": "955 55 555"})

    assert matches == {"u-per": "+4794444444", "u-ny": None}


def test_it_lets_a_manual_match_win_and_take_the_number_out_of_automatic_matching() -> None:
    users = [DirectoryUser("u-ola", "ola@firma.no", "Ola"), DirectoryUser("u-vikar", "vikar@firma.no", "Vikar")]

    # Staff gave Ola's old number to the temp; Ola's e-mail must not grab it back.
    matches = match_subscribers(users, SUBSCRIBERS, manual={"u-vikar": "911 11 111"})

    assert matches == {"u-vikar": "+4791111111", "u-ola": None}


def test_it_prefers_the_email_over_the_directory_mobile() -> None:
    users = [DirectoryUser("u-kari", "kari.hansen@firma.no", "Kari")]

    matches = match_subscribers(users, SUBSCRIBERS, directory_mobiles={"u-kari": "+47 93 33 33 33"})

    assert matches == {"u-kari": "+4792222222"}


# --- against the MBN simulator ---

CLIENT_ID, CLIENT_SECRET, PASSWORD = "kp-app", "app-secret", "api-pass"  # one app; an API user per enterprise
OLA, KARI = "+4791111111", "+4792222222"


@pytest.fixture(scope="module")
def sims() -> Iterator[Any]:
    with Simulators.start() as running:
        yield running


@dataclass
class Enterprise:
    sims: Any
    enterprise_id: str = field(default_factory=lambda: f"ent-{uuid.uuid4().hex[:8]}")

    @property
    def api_user(self) -> str:
        return f"api-{self.enterprise_id}"

    def client(self, *, password: str = PASSWORD, secret: str = CLIENT_SECRET, **options: Any) -> MbnClient:
        return MbnClient(self.sims.mbn_url, self.enterprise_id, CLIENT_ID, secret, self.api_user, password, **options)

    def holds(self, msisdn: str) -> list[tuple[str, str, str, str | None]]:
        """What MBN ended up holding for the subscriber: (reason, start, end, external_ref)."""
        return [
            (a["reason"], a["start"], a["end"], a["external_ref"])
            for a in self.sims.mbn.absences(self.enterprise_id, msisdn)
        ]


@pytest.fixture
def enterprise(sims: Any) -> Iterator[Enterprise]:
    enterprise = Enterprise(sims)
    sims.mbn.add_enterprise(enterprise.enterprise_id, CLIENT_ID, CLIENT_SECRET, enterprise.api_user, PASSWORD)
    sims.mbn.add_subscriber(enterprise.enterprise_id, OLA, "ola@firma.no", "Ola Nordmann")
    sims.mbn.add_subscriber(enterprise.enterprise_id, KARI, "kari@firma.no", "Kari Hansen")
    sims.reset_counters()
    yield enterprise
    sims.set_faults("mbn", 0)
    sims.set_latency("mbn", 0)


def token_requests(sims: Any) -> int:
    return sum(1 for method, path, _status in sims.request_log("mbn") if (method, path) == ("POST", "/oauth/v2/token"))


def test_it_logs_in_once_for_many_calls(enterprise: Enterprise) -> None:
    client = enterprise.client()

    for _ in range(5):
        client.absences(OLA)

    assert token_requests(enterprise.sims) == 1
    assert enterprise.sims.requests("mbn") == 6


def test_it_logs_in_again_when_mbn_has_expired_the_token(enterprise: Enterprise) -> None:
    client = enterprise.client()
    client.absences(OLA)

    enterprise.sims.mbn.expire_tokens()
    created = client.create(OLA, meeting())

    assert created.id is not None
    assert token_requests(enterprise.sims) == 2
    assert enterprise.holds(OLA) == [
        ("Møte", "2026-03-02T09:00:00+01:00", "2026-03-02T10:00:00+01:00", "kp:1:2026-03-02T09:00")
    ]


def test_it_says_in_plain_words_which_credentials_are_wrong(enterprise: Enterprise) -> None:
    with pytest.raises(MbnAuthError, match=f"API user '{enterprise.api_user}' or its password") as wrong_password:
        enterprise.client(password="feil").subscribers()
    with pytest.raises(MbnAuthError, match="client ID or client secret") as wrong_secret:
        enterprise.client(secret="feil").subscribers()

    assert "feil" not in str(wrong_password.value) + str(wrong_secret.value)
    assert enterprise.client(password="feil").check() == [str(wrong_password.value)]


def test_it_reads_every_page_of_subscribers(enterprise: Enterprise) -> None:
    for number in range(118):  # 120 with the two of the fixture: three pages of 50
        enterprise.sims.mbn.add_subscriber(
            enterprise.enterprise_id, f"+479900{number:04d}", f"u{number}@firma.no", f"Ansatt {number}"
        )

    subscribers = enterprise.client().subscribers()

    assert len(subscribers) == 120 and len({subscriber.msisdn for subscriber in subscribers}) == 120
    assert subscribers[0] == Subscriber(OLA, "ola@firma.no", "Ola Nordmann")
    assert sum(1 for _m, path, _s in enterprise.sims.request_log("mbn") if path.endswith("/users")) == 3


def test_it_creates_updates_lists_and_deletes_absences(enterprise: Enterprise) -> None:
    client = enterprise.client()
    enterprise.sims.mbn.put_manual_absence(
        enterprise.enterprise_id, OLA, "Lunch", "2026-03-02T11:00:00+01:00", "2026-03-02T11:30:00+01:00"
    )

    created = client.create(OLA, meeting())
    assert created.id and created.is_ours and created.start == dt.datetime(2026, 3, 2, 9, tzinfo=OSLO)

    moved = MbnAbsence(
        created.id,
        "Eksternt Møte",
        dt.datetime(2026, 3, 2, 13, tzinfo=OSLO),
        dt.datetime(2026, 3, 2, 15, tzinfo=OSLO),
        "none",
        "kp:1:2026-03-02T13:00",
    )
    updated = client.update(OLA, created.id, moved)
    assert updated == moved

    listed = client.absences(OLA)
    assert [(absence.reason, absence.is_ours) for absence in listed] == [("Lunch", False), ("Eksternt Møte", True)]
    assert enterprise.holds(OLA)[1] == (
        "Eksternt Møte",
        "2026-03-02T13:00:00+01:00",
        "2026-03-02T15:00:00+01:00",
        "kp:1:2026-03-02T13:00",
    )

    client.delete(OLA, created.id)
    assert [reason for reason, *_rest in enterprise.holds(OLA)] == ["Lunch"]
    with pytest.raises(MbnNotFound):
        client.delete(OLA, created.id)


def test_an_overlap_with_a_manual_absence_is_a_conflict_and_changes_nothing(enterprise: Enterprise) -> None:
    enterprise.sims.mbn.put_manual_absence(
        enterprise.enterprise_id, OLA, "Fri", "2026-03-02T09:30:00+01:00", "2026-03-02T16:00:00+01:00"
    )
    before = enterprise.holds(OLA)

    with pytest.raises(MbnConflict) as conflict:
        enterprise.client().create(OLA, meeting())

    assert "overlaps" in conflict.value.server_message
    assert enterprise.holds(OLA) == before


def test_it_reports_an_unknown_subscriber_and_a_bad_reason(enterprise: Enterprise) -> None:
    client = enterprise.client()

    with pytest.raises(MbnNotFound):
        client.absences("+4799999999")
    with pytest.raises(MbnBadRequest) as bad:
        client.create(OLA, MbnAbsence(**{**meeting().__dict__, "reason": "Kaffe"}))
    assert bad.value.code == "invalid_reason"
    assert enterprise.holds(OLA) == []


def test_going_over_the_rate_is_throttled_with_retry_after(enterprise: Enterprise) -> None:
    enterprise.sims.mbn.set_rate(enterprise.enterprise_id, 3)
    client = enterprise.client()

    with pytest.raises(MbnThrottled) as throttled:
        for _ in range(10):
            client.absences(OLA)

    assert throttled.value.retry_after >= 1


@pytest.mark.parametrize(
    ("kind", "error_class"),
    [("503", MbnUnavailable), ("timeout", MbnUnavailable), ("malformed", MbnUnavailable), ("429", MbnThrottled)],
)
def test_a_fault_raises_and_leaves_mbn_as_it_was(enterprise: Enterprise, kind: str, error_class: type) -> None:
    client = enterprise.client(timeout=0.5)
    kept = client.create(KARI, meeting())
    assert kept.id is not None
    before_ola, before_kari = enterprise.holds(OLA), enterprise.holds(KARI)
    enterprise.sims.set_fault_timeout_seconds(1.0, "mbn")
    enterprise.sims.set_faults("mbn", 1.0, kinds=(kind,))

    with pytest.raises(error_class):
        client.create(OLA, meeting())
    with pytest.raises(error_class):
        client.delete(KARI, kept.id)

    enterprise.sims.set_faults("mbn", 0)
    assert (enterprise.holds(OLA), enterprise.holds(KARI)) == (before_ola, before_kari)
    assert len(before_kari) == 1
