"""The customer's IT admin sets or corrects a user's mobile number in the portal: validated, checked against
the customer's MBN enterprise (the loopback MBN simulator), audited, kept by the group refresh, resynced."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.test.utils import override_settings
from django.urls import reverse
from django.utils import timezone

from customers.models import ServiceUser
from devtools import demo
from sync import jobs, pipeline
from sync.models import CalendarUser
from sync.rules import Event

simulators = pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db
OSLO = ZoneInfo("Europe/Oslo")
ENTERPRISE = "fjordkraft"


@pytest.fixture
def sims():
    with (
        simulators.Simulators.start() as running,
        override_settings(
            MICROSOFT_LOGIN_BASE_URL=running.login_url,
            GRAPH_BASE_URL=running.graph_url,
            MBN_BASE_URL=running.mbn_url,
            MICROSOFT_LOGIN_CA_BUNDLE=running.ca_path,
        ),
    ):
        yield running


@pytest.fixture
def wired(sims, ours):
    """`ours` in the Graph and MBN simulators; its first user has no MBN number (unmatched)."""
    ServiceUser.objects.filter(pk=ours.user.pk).update(msisdn="")
    users = list(ours.customer.service_users.order_by("pk"))
    source = demo.wire_customer(
        sims=sims, customer=ours.customer, users=users, tenant_id="t-fjord", enterprise_id=ENTERPRISE
    )
    return users, source


def _set_number(ours, user, typed: str):  # type: ignore[no-untyped-def]
    return ours.admin.post(reverse("portal:user", args=[user.pk]), {"action": "number", "msisdn": typed}, follow=True)


def test_the_it_admin_sets_an_unmatched_users_number_and_the_group_refresh_keeps_it(
    sims, ours, wired, django_capture_on_commit_callbacks
):
    users, source = wired
    unmatched = users[0]
    sims.mbn.add_subscriber(ENTERPRISE, "+4791234567", "kari.jobbmobil@fjordkraft.example", "Kari")

    with django_capture_on_commit_callbacks(execute=False) as queued:
        page = _set_number(ours, unmatched, "912 34 567").content.decode()

    assert "+4791234567 er et abonnement i bedriftens Telenor MBN" in page
    unmatched.refresh_from_db()
    assert (unmatched.msisdn, unmatched.msisdn_set_by_hand) == ("+4791234567", True)
    latest = unmatched.history.first()  # type: ignore[attr-defined]
    assert latest.history_user.email == "it@fjordkraft.example" and latest.msisdn == "+4791234567"
    calendar = CalendarUser.objects.get(service_user=unmatched)
    assert calendar.changed_at is not None and calendar.locked_until is None and len(queued) == 1

    jobs.refresh_group(source=source)  # matching by e-mail finds no subscriber for this user
    unmatched.refresh_from_db()
    assert unmatched.msisdn == "+4791234567"


def test_a_number_that_is_not_in_the_companys_mbn_is_refused_and_nothing_is_saved(sims, ours, wired):
    users, _source = wired
    before = users[0].history.count()  # type: ignore[attr-defined]

    response = _set_number(ours, users[0], "+47 934 56 789")

    page = response.content.decode()
    assert "+4793456789 er ikke et abonnement i bedriftens Telenor MBN (bedrift fjordkraft)" in page
    assert "Ingenting ble lagret" in page
    users[0].refresh_from_db()
    assert (users[0].msisdn, users[0].msisdn_set_by_hand) == ("", False)
    assert users[0].history.count() == before  # type: ignore[attr-defined]


def test_a_number_that_is_not_a_mobile_number_gets_the_validators_words(ours):
    page = _set_number(ours, ours.user, "22 33 44 55").content.decode()
    assert "Norske mobilnumre har 8 sifre og begynner på 4 eller 9" in page
    ours.user.refresh_from_db()
    assert not ours.user.msisdn_set_by_hand


def test_one_number_belongs_to_one_user(ours):
    taken = ours.customer.service_users.exclude(pk=ours.user.pk).first()
    page = _set_number(ours, ours.user, taken.msisdn).content.decode()
    assert "er allerede nummeret til" in page and taken.email in page


def test_a_corrected_number_gets_the_absences_and_the_old_one_loses_them(sims, ours, wired):
    users, _source = wired
    kari = users[1]
    old = kari.msisdn
    tomorrow = timezone.localtime(timezone.now(), OSLO).date() + dt.timedelta(days=1)
    meeting = Event(
        "m",
        dt.datetime.combine(tomorrow, dt.time(10), OSLO),
        dt.datetime.combine(tomorrow, dt.time(11), OSLO),
        subject="Kundemøte &Eks",
    )
    for event in demo.to_sim_events([meeting]):
        sims.graph.put_event(demo.graph_user_id(kari), event)
    calendar = CalendarUser.objects.get(service_user=kari)
    pipeline.sync_users(calendar_user_ids=[calendar.pk])
    pushed = [(a["reason"], a["start"], a["end"], a["diversion"]) for a in sims.mbn.absences(ENTERPRISE, old)]
    assert len(pushed) == 1
    sims.mbn.add_subscriber(ENTERPRISE, "+4798765432", "kari.ny@fjordkraft.example", "Kari")

    page = _set_number(ours, kari, "98765432").content.decode()
    pipeline.sync_users(calendar_user_ids=[calendar.pk])

    assert "+4798765432 er et abonnement" in page
    assert sims.mbn.absences(ENTERPRISE, old) == [], "the old subscriber keeps none of Kari's absences"
    moved = sims.mbn.absences(ENTERPRISE, "+4798765432")
    assert [(a["reason"], a["start"], a["end"], a["diversion"]) for a in moved] == pushed


def test_without_mbn_access_the_number_is_saved_unchecked_and_can_be_removed_again(ours):
    page = _set_number(ours, ours.user, "4791234567").content.decode()
    assert "sjekkes mot Telenor MBN så snart bedriftens MBN-tilgang er satt opp" in page
    ours.user.refresh_from_db()
    assert (ours.user.msisdn, ours.user.msisdn_set_by_hand) == ("+4791234567", True)

    page = _set_number(ours, ours.user, "").content.decode()
    assert "Nummeret er fjernet" in page
    ours.user.refresh_from_db()
    assert (ours.user.msisdn, ours.user.msisdn_set_by_hand) == ("", False)
