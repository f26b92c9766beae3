"""Microsoft 365 to MBN, end to end: msal and the Graph client against the simulators, the rules engine,
reconcile; the simulated MBN ends up holding exactly the engine's absences, and no subject is stored."""

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.db import models
from django.test.utils import override_settings
from django.utils import timezone

from customers.models import ServiceUser
from devtools import demo
from sync import jobs, pipeline
from sync.errors import SyncErrorCode
from sync.models import CalendarUser, PushedAbsence, SyncRun
from sync.rules import Event, compute_absences
from sync.services import catalogue_from_database, rule_settings_for
from tests.factories import make_customer

simulators = pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db
OSLO = ZoneInfo("Europe/Oslo")
SECRET_SUBJECT = "Hemmelig oppkjøp av Ørnulf AS &For"


@pytest.fixture
def sims():
    with (
        simulators.Simulators.start() as running,
        override_settings(
            MICROSOFT_LOGIN_BASE_URL=running.login_url,
            GRAPH_BASE_URL=running.graph_url,
            MBN_BASE_URL=running.mbn_url,
            MICROSOFT_LOGIN_CA_BUNDLE=running.ca_path,
            GOOGLE_TOKEN_URL=running.google.token_url,
            GOOGLE_CALENDAR_BASE_URL=running.google.calendar_url,
            GOOGLE_DIRECTORY_BASE_URL=running.google.directory_url,
        ),
    ):
        yield running


@pytest.fixture
def world(sims):
    customer = make_customer(name="Fjord Elektro AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@fjord.no", name=f"Ansatt {i}", msisdn=f"+4791{i:06d}"
        )
        for i in range(3)
    ]
    source = demo.wire_customer(
        sims=sims,
        customer=customer,
        users=users,
        tenant_id="11111111-2222-3333",
        enterprise_id="fjord",
        mbn_rate_per_second=1000,
    )
    return customer, users, source


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=OSLO)


def expand(event: Event, days: int) -> list[Event]:
    return [
        Event(
            f"{event.id}_{(event.start + dt.timedelta(days=n)).strftime('%Y%m%d')}",
            event.start + dt.timedelta(days=n),
            event.end + dt.timedelta(days=n),
            subject=event.subject,
            show_as=event.show_as,
        )
        for n in range(days)
    ]


def portal_page(customer, name: str, *args) -> str:  # type: ignore[no-untyped-def]
    """A portal page as the customer's IT admin sees it (in Norwegian, the portal's default)."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from portal.models import PortalMembership

    login, _created = get_user_model().objects.get_or_create(username="it@fjord.no", email="it@fjord.no")
    PortalMembership.objects.get_or_create(user=login, customer=customer, role=PortalMembership.Role.ADMIN)
    client = Client()
    client.force_login(login)
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return response.content.decode()


def mbn_state(sims, user):
    return sorted(
        (a["reason"], dt.datetime.fromisoformat(a["start"]), dt.datetime.fromisoformat(a["end"]), a["diversion"])
        for a in sims.mbn.absences("fjord", user.msisdn)
    )


def engine_state(user, events, now):
    start, end = pipeline.sync_window(now)
    rules = rule_settings_for(customer_settings=user.customer.settings, service_user=user)
    absences = compute_absences(
        settings=rules, window_start=start, window_end=end, events=events, catalogue=catalogue_from_database()
    )
    return sorted((a.mbn_reason, a.start, a.end, "voicemail" if a.divert else "none") for a in absences)


def test_graph_calendars_reach_mbn_exactly_as_the_engine_says(sims, world):
    _customer, users, source = world
    now = local(7, 6)  # Monday 7 December 2026
    kari = users[0]
    calendar = [
        Event("trip", local(8, 9), local(8, 17), subject=SECRET_SUBJECT),
        Event("ferie", dt.date(2026, 12, 10), dt.date(2026, 12, 14), all_day=True, subject="&-Ferie", show_as="free"),
        Event("lunsj", local(7, 11), local(7, 11, 30), subject="Lunsj &Ute", show_as="free"),
        Event("avlyst", local(7, 13), local(7, 14), subject="Avlyst: Møte &Møt", cancelled=True),
        Event("nei", local(7, 15), local(7, 16), subject="Styremøte", response="declined"),
        Event("privat", local(9, 8), local(9, 9), subject="Lege", private=True),
    ]
    standup = Event("standup", local(7, 8, 30), local(7, 8, 45), subject="Standup")
    for event in demo.to_sim_events(calendar):
        sims.graph.put_event(demo.graph_user_id(kari), event)
    sims.graph.put_event(
        demo.graph_user_id(kari),
        simulators.SimEvent(id="standup", subject="Standup", start=standup.start, end=standup.end, recurrence_days=5),
    )
    other_events = demo.scripted_events(rng=random.Random(1), start=now, days=14, count=25, prefix="o")
    for event in demo.to_sim_events(other_events):
        sims.graph.put_event(demo.graph_user_id(users[1]), event)

    refreshed = jobs.refresh_group(source=source)
    assert refreshed == {"members": 3, "matched": 3}
    ids = list(CalendarUser.objects.filter(source=source).values_list("pk", flat=True))
    results = pipeline.sync_users(calendar_user_ids=ids, now=now)
    assert not [r.error for r in results if r.error]

    expected_kari = engine_state(kari, calendar + expand(standup, 5), now)
    assert mbn_state(sims, kari) == expected_kari
    assert ("Jobbreise", local(8, 9), local(8, 17), "voicemail") in expected_kari
    assert ("Ferie", local(10, 8), local(10, 16), "none") in expected_kari
    assert not any(start == local(7, 13) for _reason, start, _end, _div in expected_kari)  # cancelled
    assert mbn_state(sims, users[1]) == engine_state(users[1], other_events, now)
    assert mbn_state(sims, users[2]) == []

    # a second cycle with no change makes no MBN call
    before = sims.requests("mbn")
    results = pipeline.sync_users(calendar_user_ids=ids, now=now)
    assert sims.requests("mbn") == before
    assert sum(r.mbn_requests for r in results) == 0

    # a change moves exactly what changed
    sims.graph.put_event(
        demo.graph_user_id(kari),
        simulators.SimEvent(id="trip", subject=SECRET_SUBJECT, start=local(8, 9), end=local(8, 12)),
    )
    moved = [
        e if e.id != "trip" else Event("trip", local(8, 9), local(8, 12), subject=SECRET_SUBJECT) for e in calendar
    ]
    pipeline.sync_users(calendar_user_ids=ids, now=now)
    assert mbn_state(sims, kari) == engine_state(kari, moved + expand(standup, 5), now)
    assert PushedAbsence.objects.filter(service_user=kari).count() == len(mbn_state(sims, kari))
    assert SyncRun.objects.filter(service_user=kari).count() == 2, "a cycle with nothing to push leaves no record"

    assert_not_stored("Ørnulf")


def assert_not_stored(text: str) -> None:
    """Search every text column of every table for `text`."""
    for model in apps.get_models():
        fields = [
            f.name
            for f in model._meta.get_fields()
            if isinstance(f, (models.CharField, models.TextField)) and f.concrete
        ]
        for name in fields:
            assert not model._default_manager.filter(**{f"{name}__icontains": text}).exists(), (model, name)


def test_a_manual_absence_in_mbn_is_recorded_not_overwritten(sims, world):
    _customer, users, _source = world
    now = timezone.now()
    start = (now + dt.timedelta(days=1)).astimezone(OSLO).replace(hour=10, minute=0, second=0, microsecond=0)
    sims.mbn.put_manual_absence(
        "fjord", users[0].msisdn, "Lunch", start.isoformat(), (start + dt.timedelta(hours=1)).isoformat()
    )
    sims.graph.put_event(
        demo.graph_user_id(users[0]),
        simulators.SimEvent(id="m", subject="Møte", start=start, end=start + dt.timedelta(hours=2)),
    )
    user = CalendarUser.objects.get(service_user=users[0])
    (result,) = pipeline.sync_users(calendar_user_ids=[user.pk], now=now)
    assert "manual absence" in result.error
    user.refresh_from_db()
    assert "manual absence" in user.last_error
    assert [a["reason"] for a in sims.mbn.absences("fjord", users[0].msisdn)] == ["Lunch"]
    assert (user.last_error_code, user.last_error_params) == (
        "mbn_conflict_manual_absence",
        {"starts": [start.isoformat()]},
    )
    run = SyncRun.objects.get(service_user=users[0])
    assert (run.error_code, run.error_params) == (user.last_error_code, user.last_error_params)
    page = portal_page(users[0].customer, "portal:user", users[0].pk)
    assert "Et fravær registrert manuelt i MBN overlapper en avtale" in page
    assert "Fjern det manuelle fraværet" in page and "Vi prøver igjen automatisk" not in page


def test_test_connection_says_in_words_what_works_and_what_does_not(sims, world, admin_client):
    from django.urls import reverse

    _customer, _users, source = world
    url = reverse("admin:sync_calendarsource_changelist")

    def messages_after_test() -> list[str]:
        page = admin_client.post(url, {"action": "test_connection", "_selected_action": [source.pk]}, follow=True)
        return [str(message) for message in page.context["messages"]]

    (works,) = messages_after_test()
    assert "3" in works and ("fungerer" in works or "works" in works)
    source.set_secret("wrong-secret")
    source.save()
    (wrong_secret,) = messages_after_test()
    assert "secret" in wrong_secret.lower()
    source.set_secret("secret-11111111-2222-3333")
    source.activation_group = "no-such-group"
    source.save()
    (no_group,) = messages_after_test()
    assert "no-such-group" in no_group


def test_exchange_on_premises_calendars_reach_mbn_exactly_as_the_engine_says(sims):
    from exchangelib.protocol import close_connections

    customer = make_customer(name="Lokal Exchange AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@lokal.no", name=f"Ansatt {i}", msisdn=f"+4793{i:06d}"
        )
        for i in range(2)
    ]
    source = demo.wire_ews_customer(
        sims=sims, customer=customer, users=users, enterprise_id="lokal", mbn_rate_per_second=1000
    )
    now = local(7, 6)
    calendar = [
        Event("kunde", local(7, 10), local(7, 12), subject="Kundebesøk &Eks"),
        Event("ferie", dt.date(2026, 12, 10), dt.date(2026, 12, 12), all_day=True, subject="&-Ferie", show_as="free"),
        Event("avlyst", local(8, 13), local(8, 14), subject="Møte", cancelled=True),
        Event("nei", local(8, 15), local(8, 16), subject="Styremøte", response="declined"),
        Event("privat", local(9, 8), local(9, 9), subject=SECRET_SUBJECT, private=True),
    ]
    for event in demo.to_sim_events(calendar):
        sims.ews.put_event(users[0].email, event)
    try:
        assert jobs.refresh_group(source=source)["members"] == 2
        assert jobs.ensure_subscriptions(source=source) == 0  # EWS: the sweep detects changes
        ids = list(CalendarUser.objects.filter(source=source).values_list("pk", flat=True))
        results = pipeline.sync_users(calendar_user_ids=ids, now=now)
        assert not [r.error for r in results if r.error]
        expected = engine_state(users[0], calendar, now)
        assert ("Ferie", local(10, 8), local(10, 16), "none") in expected
        assert (
            sorted(
                (
                    a["reason"],
                    dt.datetime.fromisoformat(a["start"]),
                    dt.datetime.fromisoformat(a["end"]),
                    a["diversion"],
                )
                for a in sims.mbn.absences("lokal", users[0].msisdn)
            )
            == expected
        )
        assert sims.mbn.absences("lokal", users[1].msisdn) == []
        assert_not_stored("Ørnulf")
    finally:
        close_connections()


def test_an_exchange_mailbox_outside_the_impersonation_scope_fails_alone_and_says_what_to_do(sims):
    from exchangelib.protocol import close_connections

    customer = make_customer(name="Lokal Exchange AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@lokal.no", name=f"Ansatt {i}", msisdn=f"+4793{i:06d}"
        )
        for i in range(3)
    ]
    source = demo.wire_ews_customer(
        sims=sims, customer=customer, users=users, enterprise_id="lokal", mbn_rate_per_second=1000
    )
    now = local(7, 6)
    for user in users:
        for event in demo.to_sim_events([Event("kunde", local(7, 10), local(7, 12), subject="Kundebesøk &Eks")]):
            sims.ews.put_event(user.email, event)
    sims.ews.set_impersonation_scope([users[0].email, users[2].email])
    try:
        jobs.refresh_group(source=source)
        ids = list(CalendarUser.objects.filter(source=source).order_by("service_user").values_list("pk", flat=True))
        results = pipeline.sync_users(calendar_user_ids=ids, now=now)
    finally:
        close_connections()
    errors = {r.calendar_user_id: r.error for r in results}
    assert errors[ids[0]] == errors[ids[2]] == ""
    assert "management scope that includes this mailbox" in errors[ids[1]]
    for user in (users[0], users[2]):
        assert [a["reason"] for a in sims.mbn.absences("lokal", user.msisdn)] == ["Eksternt Møte"]
    assert sims.mbn.absences("lokal", users[1].msisdn) == []
    denied = CalendarUser.objects.get(pk=ids[1])
    assert users[1].email in denied.last_error and "ApplicationImpersonation" in denied.last_error
    source.refresh_from_db()
    assert source.last_error == "", "the source works: one user's mailbox is out of scope"


def test_google_workspace_calendars_reach_mbn_exactly_as_the_engine_says(sims):
    customer = make_customer(name="Sky Regnskap AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@sky.no", name=f"Ansatt {i}", msisdn=f"+4794{i:06d}"
        )
        for i in range(2)
    ]
    source = demo.wire_google_customer(
        sims=sims, customer=customer, users=users, enterprise_id="sky", mbn_rate_per_second=1000
    )
    now = local(7, 6)
    calendar = [
        Event("kunde", local(7, 10), local(7, 12), subject="Kundebesøk &Eks"),
        Event("ferie", dt.date(2026, 12, 10), dt.date(2026, 12, 12), all_day=True, subject="&-Ferie", show_as="free"),
        Event("avlyst", local(8, 13), local(8, 14), subject="Møte", cancelled=True),
        Event("nei", local(8, 15), local(8, 16), subject="Styremøte", response="declined"),
        Event("privat", local(9, 8), local(9, 9), subject=SECRET_SUBJECT, private=True),
    ]
    for event in demo.to_sim_events(calendar):
        sims.google.put_event(users[0].email, event)
    assert jobs.refresh_group(source=source)["members"] == 2
    ids = list(CalendarUser.objects.filter(source=source).values_list("pk", flat=True))
    results = pipeline.sync_users(calendar_user_ids=ids, now=now)
    assert not [r.error for r in results if r.error]
    expected = engine_state(users[0], calendar, now)
    assert ("Ferie", local(10, 8), local(10, 16), "none") in expected
    assert (
        sorted(
            (a["reason"], dt.datetime.fromisoformat(a["start"]), dt.datetime.fromisoformat(a["end"]), a["diversion"])
            for a in sims.mbn.absences("sky", users[0].msisdn)
        )
        == expected
    )
    assert_not_stored("Ørnulf")


def test_a_google_user_without_calendar_fails_alone_and_the_portal_says_what_to_do(sims):
    from django.utils import translation

    from portal.problems import explain

    customer = make_customer(name="Sky Regnskap AS")
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@sky.no", name=f"Ansatt {i}", msisdn=f"+4794{i:06d}"
        )
        for i in range(3)
    ]
    source = demo.wire_google_customer(
        sims=sims, customer=customer, users=users, enterprise_id="sky", mbn_rate_per_second=1000
    )
    now = local(7, 6)
    for user in users:
        for event in demo.to_sim_events([Event("kunde", local(7, 10), local(7, 12), subject="Kundebesøk &Eks")]):
            sims.google.put_event(user.email, event)
    sims.google.set_calendar_enabled(users[1].email, False)
    jobs.refresh_group(source=source)
    ids = list(CalendarUser.objects.filter(source=source).order_by("service_user").values_list("pk", flat=True))

    results = pipeline.sync_users(calendar_user_ids=ids, now=now)

    errors = {r.calendar_user_id: r.error for r in results}
    assert errors[ids[0]] == errors[ids[2]] == ""
    for user in (users[0], users[2]):
        assert [a["reason"] for a in sims.mbn.absences("sky", user.msisdn)] == ["Eksternt Møte"]
    assert sims.mbn.absences("sky", users[1].msisdn) == []
    off = CalendarUser.objects.get(pk=ids[1])
    assert users[1].email in off.last_error and "turn Calendar on" in off.last_error
    assert off.last_error_code == SyncErrorCode.CALENDAR_NOT_ENABLED
    source.refresh_from_db()
    assert source.last_error == ""
    with translation.override("nb"):
        problem = explain(off.last_error_code, detail=off.last_error)
    assert problem.title == "En bruker har ikke Google Kalender"
    assert "Slå på Kalender for brukerens organisasjonsenhet" in problem.advice


def test_a_first_push_costs_one_mbn_request_per_absence(sims, world):
    _customer, users, _source = world
    now = local(7, 6)
    events = demo.scripted_events(rng=random.Random(3), start=now, days=14, count=20, prefix="a")
    for event in demo.to_sim_events(events):
        sims.graph.put_event(demo.graph_user_id(users[0]), event)
    user = CalendarUser.objects.get(service_user=users[0])
    before = sims.requests("mbn")
    (result,) = pipeline.sync_users(calendar_user_ids=[user.pk], now=now)
    absences = len(engine_state(users[0], events, now))
    assert absences > 5 and result.created == absences
    token_requests = 1  # the first call of the process logs in to MBN
    assert sims.requests("mbn") - before - token_requests == absences, "no read of MBN when we know its state"
    user.refresh_from_db()
    assert not user.mbn_unsure


def test_a_push_cut_short_reads_mbn_once_and_adopts_what_it_created(sims, world):
    _customer, users, _source = world
    now = local(7, 6)
    events = demo.scripted_events(rng=random.Random(4), start=now, days=14, count=20, prefix="b")
    for event in demo.to_sim_events(events):
        sims.graph.put_event(demo.graph_user_id(users[0]), event)
    user = CalendarUser.objects.get(service_user=users[0])
    sims.set_faults("mbn", rate=0.3, kinds=["429"], seed=7)
    attempts = 0
    while True:
        attempts += 1
        try:
            pipeline.sync_users(calendar_user_ids=[user.pk], now=now)
            break
        except pipeline.RetryLater:
            user.refresh_from_db()
            assert user.mbn_unsure, "a push cut short leaves MBN's state marked unsure"
            assert attempts < 50
    sims.set_faults("mbn", rate=0)
    held = sims.mbn.absences("fjord", users[0].msisdn)
    assert attempts > 1, "the faults cut at least one push short"
    assert len({a["external_ref"] for a in held}) == len(held), "no absence was created twice"
    assert mbn_state(sims, users[0]) == engine_state(users[0], events, now)
    user.refresh_from_db()
    assert not user.mbn_unsure
    assert PushedAbsence.objects.filter(service_user=users[0]).count() == len(held)


def test_on_q2_an_mbn_outage_is_shown_and_the_sync_retried_after_the_back_off(
    sims, world, django_capture_on_commit_callbacks
):
    import ast

    from django_q.models import Schedule

    _customer, users, _source = world
    start = (timezone.now() + dt.timedelta(days=1)).astimezone(OSLO).replace(hour=10, minute=0, second=0, microsecond=0)
    sims.graph.put_event(
        demo.graph_user_id(users[0]),
        simulators.SimEvent(id="m", subject="Møte", start=start, end=start + dt.timedelta(hours=1)),
    )
    user = CalendarUser.objects.get(service_user=users[0])
    sims.set_faults("mbn", rate=1.0, kinds=["503"])
    with django_capture_on_commit_callbacks(execute=True):  # queued after commit, as every job is
        assert "retrying" in jobs.sync_users_job([user.pk])
    user.refresh_from_db()
    assert user.last_error.startswith("will retry") and user.last_error_at is not None
    assert SyncRun.objects.filter(service_user=users[0]).exclude(error="").exists(), "the failure is in admin"
    retry = Schedule.objects.get(func="sync.jobs.sync_users_job")
    assert retry.schedule_type == Schedule.ONCE and retry.next_run > timezone.now()

    sims.set_faults("mbn", rate=0)
    ids, attempt, at = ast.literal_eval(retry.args)
    assert (ids, attempt, at) == ([user.pk], 1, None)
    assert jobs.sync_users_job(ids, attempt) == "1 users synced"
    user.refresh_from_db()
    assert user.last_error == ""
    assert [a["reason"] for a in sims.mbn.absences("fjord", users[0].msisdn)] == ["Møte"]


def _mbn_down_for(sims, users):
    """One appointment for the first user, MBN answering 503 (no Retry-After) to everything."""
    start = (timezone.now() + dt.timedelta(days=1)).astimezone(OSLO).replace(hour=10, minute=0, second=0, microsecond=0)
    sims.graph.put_event(
        demo.graph_user_id(users[0]),
        simulators.SimEvent(id="m", subject="Møte", start=start, end=start + dt.timedelta(hours=1)),
    )
    sims.set_faults("mbn", rate=1.0, kinds=["503"])
    return CalendarUser.objects.get(service_user=users[0])


@pytest.fixture(params=["low", "high"])
def jitter(request, monkeypatch):
    """The back-off's jitter pinned at either end of its ± 20 %; the expected wait for a retry count."""
    import random

    factor = 0.8 if request.param == "low" else 1.2
    monkeypatch.setattr(random, "uniform", lambda low, high: low if request.param == "low" else high)
    return lambda retry: min(min(2**retry, 30) * factor, 30)


@pytest.mark.parametrize("attempt", [0, 3, 5])
def test_the_q2_job_retries_after_the_one_back_off_policy(
    sims, world, jitter, attempt, django_capture_on_commit_callbacks
):
    import ast

    from django_q.models import Schedule

    user = _mbn_down_for(sims, world[1])
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        jobs.sync_users_job([user.pk], attempt)
    retry = Schedule.objects.get(func="sync.jobs.sync_users_job")
    assert ast.literal_eval(retry.args) == ([user.pk], attempt + 1, None)
    waited = (retry.next_run - before).total_seconds()
    # 1, 8 and 30 s (32 s capped) ± 20 %, never over 30 s; plus however long the sync took
    assert jitter(attempt) <= waited <= jitter(attempt) + (timezone.now() - before).total_seconds()


@pytest.mark.parametrize("retries", [0, 3, 5])
def test_the_celery_task_retries_after_the_one_back_off_policy(sims, world, jitter, retries):
    from celery.exceptions import Retry

    from sync.tasks import sync_users

    user = _mbn_down_for(sims, world[1])
    sync_users.push_request(id="a-sync", retries=retries, is_eager=True, called_directly=False, args=[[user.pk]])
    try:
        with pytest.raises(Retry) as retried:
            sync_users.run([user.pk])
    finally:
        sync_users.pop_request()
    assert retried.value.when == pytest.approx(jitter(retries))
    assert retried.value.sig.args == ([user.pk], 0, None)
    user.refresh_from_db()
    assert user.last_error.startswith("will retry")


def test_after_ten_retries_the_q2_job_and_the_celery_task_give_up_until_the_next_sweep(
    sims, world, django_capture_on_commit_callbacks
):
    from django_q.models import Schedule

    from sync.pipeline import RetryLater
    from sync.tasks import sync_users

    user = _mbn_down_for(sims, world[1])
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.sync_users_job([user.pk], 9).endswith("retrying")  # the tenth retry is still made
        assert jobs.sync_users_job([user.pk], 10).startswith("gave up after 11 attempts")
    assert Schedule.objects.filter(func="sync.jobs.sync_users_job").count() == 1
    sync_users.push_request(id="a-sync", retries=10, is_eager=True, called_directly=False, args=[[user.pk]])
    try:
        with pytest.raises(RetryLater):  # the task fails, visibly
            sync_users.run([user.pk])
    finally:
        sync_users.pop_request()


def test_google_users_keep_their_names_and_new_members_get_theirs_at_the_directory_sync(sims):
    customer = make_customer(name="Sky Regnskap AS")
    users = [
        ServiceUser.objects.create(customer=customer, email="kari@sky.no", name="Kari Nordmann", msisdn="+4794000001"),
        ServiceUser.objects.create(customer=customer, email="per@sky.no", name="Per Hansen", msisdn="+4794000002"),
    ]
    source = demo.wire_google_customer(
        sims=sims, customer=customer, users=users, enterprise_id="sky", mbn_rate_per_second=1000
    )
    sims.google.add_user("ola@sky.no", "Ola Berg")
    sims.google.add_group(source.activation_group, ["kari@sky.no", "per@sky.no", "ola@sky.no"])

    assert jobs.refresh_group(source=source)["members"] == 3

    names = dict(ServiceUser.objects.filter(customer=customer).values_list("email", "name"))
    assert names == {"kari@sky.no": "Kari Nordmann", "per@sky.no": "Per Hansen", "ola@sky.no": "Ola Berg"}


def test_an_unmatched_user_or_a_customer_without_mbn_is_not_a_failed_sync(sims, world):
    customer, users, source = world
    now = local(7, 6)
    for user in users[:2]:
        for event in demo.to_sim_events([Event("m", local(8, 9), local(8, 10), subject="Kundemøte &Eks")]):
            sims.graph.put_event(demo.graph_user_id(user), event)
    ServiceUser.objects.filter(pk=users[0].pk).update(msisdn="")
    ids = list(
        CalendarUser.objects.filter(service_user__in=users[:2]).order_by("service_user").values_list("pk", flat=True)
    )
    CalendarUser.objects.filter(pk__in=ids).update(changed_at=timezone.now())

    results = pipeline.sync_users(calendar_user_ids=ids[:1], now=now)
    customer.mbn_connection.delete()
    results += pipeline.sync_users(calendar_user_ids=ids[1:], now=now)

    assert [(r.error, r.not_pushed) for r in results] == [
        ("", pipeline.NOT_MATCHED),
        ("", pipeline.NO_MBN_CONNECTION),
    ]
    assert not SyncRun.objects.filter(source=source).exists(), "nothing was pushed, and nothing failed"
    assert list(CalendarUser.objects.filter(pk__in=ids).values_list("last_error", "changed_at")) == [("", None)] * 2
    assert sims.requests("mbn") == 0


def test_a_mailbox_outside_the_apps_access_scope_fails_alone_with_advice_that_fits(sims, world):
    from django.utils import translation

    from portal.problems import explain

    _customer, users, _source = world
    now = local(7, 6)
    for user in users:
        sims.graph.put_event(
            demo.graph_user_id(user), simulators.SimEvent(id="m", subject="Møte", start=local(8, 9), end=local(8, 10))
        )
    sims.graph.set_mailbox_error(demo.graph_user_id(users[1]), "ErrorAccessDenied")
    ids = list(CalendarUser.objects.filter(service_user__in=users).values_list("pk", flat=True))

    results = pipeline.sync_users(calendar_user_ids=ids, now=now)  # no RetryLater: nothing to wait for

    errors = {result.calendar_user_id: result.error for result in results}
    denied = CalendarUser.objects.get(service_user=users[1])
    assert "outside the app's access scope" in errors[denied.pk]
    assert [pk for pk, error in errors.items() if error] == [denied.pk]
    for user in (users[0], users[2]):
        assert [reason for reason, *_ in mbn_state(sims, user)] == ["Møte"]
    assert mbn_state(sims, users[1]) == []
    denied.refresh_from_db()
    assert denied.last_error == errors[denied.pk] and "Calendars.Read" not in denied.last_error
    assert denied.last_error_code == "mailbox_out_of_scope"
    assert denied.last_error_params == {"mailbox": demo.graph_user_id(users[1])}
    with translation.override("en"):
        problem = explain(denied.last_error_code, detail=denied.last_error)
    assert problem.title == "A mailbox is outside Kalender Push's access in Exchange"
    assert "application access policy" in problem.advice
    page = portal_page(users[1].customer, "portal:user", users[1].pk)
    assert "En postboks er utenfor Kalender Push sin tilgang i Exchange" in page
    assert "programtilgangspolicy" in page and "mangler en tillatelse" not in page


def test_only_the_throttled_mailboxes_wait_for_the_back_off(sims, world):
    _customer, users, _source = world
    now = local(7, 6)
    for user in users:
        sims.graph.put_event(
            demo.graph_user_id(user), simulators.SimEvent(id="m", subject="Møte", start=local(8, 9), end=local(8, 10))
        )
    ids = list(CalendarUser.objects.filter(service_user__in=users).values_list("pk", flat=True))
    sims.graph.set_batch_item_faults(0.5, kinds=("429",), seed=0)  # one of the three items is throttled
    sims.graph.set_batch_item_retry_after(5)

    with pytest.raises(pipeline.RetryLater) as held_up:
        pipeline.sync_users(calendar_user_ids=ids, now=now)
    sims.graph.set_batch_item_faults(None)

    (throttled,) = held_up.value.user_ids
    assert held_up.value.retry_after == 5.0
    waiting = CalendarUser.objects.get(pk=throttled)
    assert waiting.last_error.startswith("will retry: Microsoft Graph is throttling")
    assert waiting.last_error_code == "throttled" and waiting.last_error_params == {"retry_after": 5.0}
    synced = [user for user in users if user.pk != waiting.service_user_id]
    assert all([reason for reason, *_ in mbn_state(sims, user)] == ["Møte"] for user in synced)
    pipeline.sync_users(calendar_user_ids=held_up.value.user_ids, now=now)
    assert all([reason for reason, *_ in mbn_state(sims, user)] == ["Møte"] for user in users)


def test_a_wrong_client_secret_is_stored_as_a_failed_sign_in_and_the_portal_says_what_to_do(sims, world):
    customer, users, source = world
    source.set_secret("not-the-secret")
    source.save()
    ids = list(CalendarUser.objects.filter(service_user__in=users).values_list("pk", flat=True))

    results = pipeline.sync_users(calendar_user_ids=ids, now=local(7, 6))

    assert {result.error_code for result in results} == {"auth_failed"}
    assert set(CalendarUser.objects.filter(pk__in=ids).values_list("last_error_code", flat=True)) == {"auth_failed"}
    source.refresh_from_db()
    assert source.last_error_code == "auth_failed" and "secret" in source.last_error
    page = portal_page(customer, "portal:overview")
    assert "Kalender Push får ikke logget inn i kalendersystemet deres" in page
    assert "Send Nettsoft den nye hemmeligheten" in page
    assert "Siste synkronisering feilet" not in page


def test_a_refused_mbn_login_is_recorded_on_the_user_and_the_others_are_pushed(sims, world):
    from sync.models import MbnConnection

    customer, users, _source = world
    for user in users:
        sims.graph.put_event(
            demo.graph_user_id(user), simulators.SimEvent(id="m", subject="Møte", start=local(8, 9), end=local(8, 10))
        )
    connection = MbnConnection.objects.get(customer=customer)
    connection.set_secrets(client_secret=None, password="not-the-password")
    connection.save()
    ids = list(CalendarUser.objects.filter(service_user__in=users).values_list("pk", flat=True))

    results = pipeline.sync_users(calendar_user_ids=ids, now=local(7, 6))  # recorded, not raised

    assert {result.error_code for result in results} == {"mbn_auth_failed"}
    refused = CalendarUser.objects.get(service_user=users[0])
    assert refused.last_error_code == "mbn_auth_failed" and "MBN refused" in refused.last_error
    assert SyncRun.objects.filter(service_user=users[0], error_code="mbn_auth_failed").exists()
    page = portal_page(customer, "portal:user", users[0].pk)
    assert "Telenor MBN avviser innloggingen til Kalender Push" in page
    assert "Min Bedrift" in page and "Vi prøver igjen automatisk" not in page


def test_a_source_whose_every_user_failed_alone_is_not_shown_as_a_recent_success(sims, world):
    _customer, users, source = world
    for user in users:
        sims.graph.set_mailbox_error(demo.graph_user_id(user), "ErrorAccessDenied")
    ids = list(CalendarUser.objects.filter(service_user__in=users).values_list("pk", flat=True))

    pipeline.sync_users(calendar_user_ids=ids, now=local(7, 6))

    source.refresh_from_db()
    assert source.last_success_at is None, "no calendar reached MBN"
    assert source.last_error == "", "each user's own error is on that user, not the connection's"
    codes = set(CalendarUser.objects.filter(pk__in=ids).values_list("last_error_code", flat=True))
    assert codes == {SyncErrorCode.MAILBOX_OUT_OF_SCOPE}


def test_a_sync_task_queued_by_the_older_signature_still_runs(sims, world):
    from sync.tasks import sync_users

    _customer, users, _source = world
    ids = list(CalendarUser.objects.filter(service_user__in=users).values_list("pk", flat=True))
    sync_users.push_request(id="old", retries=0, is_eager=True, called_directly=False, args=[ids, None])
    try:
        summary = sync_users.run(ids, None)  # queued as sync_users(ids, at) before the upgrade
    finally:
        sync_users.pop_request()

    assert summary["users"] == 3 and summary["errors"] == 0


def test_when_the_group_refresh_finds_a_new_number_our_absences_move_off_the_old_one(sims, world):
    _customer, users, source = world
    now = local(7, 6)
    kari = users[0]
    for event in demo.to_sim_events([Event("m", local(8, 9), local(8, 10), subject="Kundemøte &Eks")]):
        sims.graph.put_event(demo.graph_user_id(kari), event)
    calendar = CalendarUser.objects.get(service_user=kari)
    pipeline.sync_users(calendar_user_ids=[calendar.pk], now=now)
    old_number, new_number = kari.msisdn, "+4799887766"
    assert [a["reason"] for a in sims.mbn.absences("fjord", old_number)] == ["Eksternt Møte"]
    sims.mbn.add_subscriber("fjord", old_number, "ny.ansatt@fjord.no", "Ny ansatt")  # the old number changed hands
    sims.mbn.add_subscriber("fjord", new_number, kari.email, kari.name)

    jobs.refresh_group(source=source)
    pipeline.sync_users(calendar_user_ids=[calendar.pk], now=now)

    kari.refresh_from_db()
    assert kari.msisdn == new_number
    assert sims.mbn.absences("fjord", old_number) == [], "the new holder of the old number gets none of Kari's"
    assert [a["reason"] for a in sims.mbn.absences("fjord", new_number)] == ["Eksternt Møte"]


def test_a_first_sync_pushes_every_users_next_24_hours_before_anyones_later_absences(sims, world):
    _customer, users, _source = world
    now = local(7, 6)
    for user in users:
        for event_id, start in (("soon", local(7, 13)), ("later", local(10, 9))):
            sims.graph.put_event(
                demo.graph_user_id(user),
                simulators.SimEvent(id=event_id, subject="Møte", start=start, end=start + dt.timedelta(hours=1)),
            )
    ids = list(CalendarUser.objects.filter(service_user__in=users).order_by("pk").values_list("pk", flat=True))

    results = pipeline.sync_users(calendar_user_ids=ids, now=now)  # a full sync of users never synced

    stored = sorted(
        (absence["stored_at"], dt.datetime.fromisoformat(absence["start"]))
        for held in sims.mbn.held_since("fjord").values()
        for absence in held
    )
    assert [start for _at, start in stored] == [local(7, 13)] * 3 + [local(10, 9)] * 3
    assert [(r.created, r.mbn_requests, r.error) for r in results] == [(2, 2, "")] * 3  # one result per user
    assert [SyncRun.objects.filter(service_user=user).count() for user in users] == [1, 1, 1]  # one record each
    assert all(mbn_state(sims, user) == engine_state(user, _two_meetings(), now) for user in users)

    again = pipeline.sync_users(calendar_user_ids=ids, now=now)  # synced once: nothing left, one part
    assert sum(r.mbn_requests for r in again) == 0


def _two_meetings() -> list[Event]:
    return [
        Event(event_id, start, start + dt.timedelta(hours=1), subject="Møte")
        for event_id, start in (("soon", local(7, 13)), ("later", local(10, 9)))
    ]
