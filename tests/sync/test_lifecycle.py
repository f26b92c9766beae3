"""Who is served, and what MBN holds when that changes (issue 16), against the simulators: the real Graph, EWS
and Google providers and the real MBN client. A user who leaves the activation group is stopped after one group
refresh: no future absence of ours left on MBN, the subscription or channel gone, a manual absence untouched."""

import ast
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.test.utils import override_settings
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from customers.models import Customer, ServiceUser, StopReason, Subscription, served_customer
from customers.services import end_subscriptions_past_effective_end, set_service_paused
from devtools import demo
from portal.models import PortalMembership
from sync import jobs
from sync.models import CalendarSource, CalendarUser, MbnConnection, PushedAbsence
from sync.reconcile import EXTERNAL_REF_PREFIX
from tests.factories import make_customer, make_subscription
from tests.round_trip import post_forms, submitted_pairs
from tests.sync.webhook_stub import WebhookStub

simulators = pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db
OSLO = ZoneInfo("Europe/Oslo")


@pytest.fixture
def sims() -> Iterator[Any]:
    with simulators.Simulators.start() as running:
        yield running


@pytest.fixture
def webhook(sims: Any) -> Iterator[WebhookStub]:
    hook = WebhookStub(tls=sims.webhook_ssl_context())
    with override_settings(**sims.app_settings(), PUBLIC_BASE_URL=hook.base_url):
        yield hook
    hook.close()


WIRE: dict[str, Any] = {"graph": demo.wire_customer, "ews": demo.wire_ews_customer, "google": demo.wire_google_customer}


def wire(sims: Any, kind: str, prefix: int) -> tuple[CalendarSource, list[ServiceUser]]:
    customer = make_customer(name=f"Firma {kind}")
    make_subscription(customer)
    users = [
        ServiceUser.objects.create(
            customer=customer, email=f"ansatt{i}@{kind}.no", name=f"Ansatt {i}", msisdn=f"+47{prefix}{i:06d}"
        )
        for i in range(2)
    ]
    extra = {"tenant_id": f"tenant-{kind}"} if kind == "graph" else {}
    source = WIRE[kind](sims=sims, customer=customer, users=users, enterprise_id=f"ent-{kind}", **extra)
    return source, users


def portal_users(client: Any, customer: Any, *, show: str) -> str:
    """The portal's user list as the customer's IT admin sees it (Norwegian, the portal's default)."""
    login = get_user_model().objects.create(username=f"it@{customer.pk}.no", email=f"it@{customer.pk}.no")
    PortalMembership.objects.create(user=login, customer=customer, role=PortalMembership.Role.ADMIN)
    client.force_login(login)
    response = client.get(reverse("portal:users"), {"vis": show})
    assert response.status_code == 200
    return response.content.decode()


def tomorrow(hour: int) -> dt.datetime:
    return (
        (timezone.now() + dt.timedelta(days=1)).astimezone(OSLO).replace(hour=hour, minute=0, second=0, microsecond=0)
    )


def ours_ahead(sims: Any, user: ServiceUser) -> list[dict[str, Any]]:
    """The future absences of ours MBN holds for the user, as MBN lists them."""
    enterprise = user.customer.mbn_connection.enterprise_id
    now = timezone.now()
    return [
        a
        for a in sims.mbn.absences(enterprise, user.msisdn)
        if (a.get("external_ref") or "").startswith(EXTERNAL_REF_PREFIX) and dt.datetime.fromisoformat(a["end"]) > now
    ]


def manual(sims: Any, user: ServiceUser) -> list[str]:
    enterprise = user.customer.mbn_connection.enterprise_id
    return [
        a["reason"]
        for a in sims.mbn.absences(enterprise, user.msisdn)
        if not (a.get("external_ref") or "").startswith(EXTERNAL_REF_PREFIX)
    ]


def watched(sims: Any, kind: str) -> set[str]:
    """The subscription or channel ids the simulator holds live."""
    if kind == "graph":
        return {sub["id"] for sub in sims.graph.subscriptions()}
    if kind == "google":
        return {channel["id"] for channel in sims.google.channels()}
    return set()


def remove_from_group(sims: Any, source: CalendarSource, users: list[ServiceUser]) -> None:
    """The customer's IT admin takes the first user out of the activation group."""
    if source.kind == "graph":
        stay = [demo.graph_user_id(u) for u in users[1:]]
        sims.graph.add_group(source.tenant_id, source.activation_group, "Kalender Push", stay)
    else:
        getattr(sims, source.kind).add_group(source.activation_group, [u.email for u in users[1:]])


def started(sims: Any, kind: str, prefix: int, captured: Any) -> tuple[CalendarSource, list[ServiceUser]]:
    """A customer whose users are pushed: subscriptions made, one appointment each, a manual absence."""
    source, users = wire(sims, kind, prefix)
    jobs.refresh_group(source=source)
    jobs.ensure_subscriptions(source=source)
    for user in users:
        demo.put_events(sims, kind, user, [demo.Event("m", tomorrow(10), tomorrow(11), subject="Møte")])
    sims.mbn.put_manual_absence(
        f"ent-{kind}", users[0].msisdn, "Lunch", tomorrow(12).isoformat(), tomorrow(13).isoformat()
    )
    with captured(execute=True):
        jobs.sweep(source=source)
    demo.run_queued_jobs()
    assert all(ours_ahead(sims, user) for user in users), "pushed before the user leaves"
    return source, users


@pytest.mark.parametrize("kind", ["graph", "ews", "google"])
def test_a_user_who_leaves_the_group_is_stopped_after_one_group_refresh(
    sims: Any, webhook: WebhookStub, kind: str, django_capture_on_commit_callbacks: Any, client: Any
) -> None:
    source, users = started(sims, kind, 91, django_capture_on_commit_callbacks)
    leaver, stayer = users
    leaver_watch = CalendarUser.objects.get(service_user=leaver).subscription_id
    assert kind == "ews" or leaver_watch.split("|")[0] in watched(sims, kind)

    remove_from_group(sims, source, users)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.refresh_group(source=source)
    demo.run_queued_jobs()

    assert ours_ahead(sims, leaver) == []
    assert manual(sims, leaver) == ["Lunch"]
    assert ours_ahead(sims, stayer), "the user who stays keeps their absences"
    if kind != "ews":
        assert leaver_watch.split("|")[0] not in watched(sims, kind)
        assert len(watched(sims, kind)) == 1
    leaver.refresh_from_db()
    assert (leaver.stop_reason, leaver.stopped_at is not None) == (StopReason.LEFT_GROUP, True)
    assert PushedAbsence.objects.filter(service_user=leaver).count() == 0
    assert str(leaver.service_state) == f"Stoppet {timezone.localdate():%d.%m.%Y} fordi gikk ut av aktiveringsgruppen"
    page = portal_users(client, leaver.customer, show="inaktive")
    assert f"Stoppet {timezone.localdate():%d.%m.%Y} fordi gikk ut av aktiveringsgruppen" in page


def test_a_user_who_comes_back_is_synced_in_full(
    sims: Any, webhook: WebhookStub, django_capture_on_commit_callbacks: Any
) -> None:
    source, users = started(sims, "graph", 91, django_capture_on_commit_callbacks)
    remove_from_group(sims, source, users)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.refresh_group(source=source)
    demo.run_queued_jobs()
    assert ours_ahead(sims, users[0]) == []

    sims.graph.add_group(source.tenant_id, source.activation_group, "Kalender Push", map(demo.graph_user_id, users))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.refresh_group(source=source)
    demo.run_queued_jobs()

    users[0].refresh_from_db()
    assert (users[0].stop_reason, users[0].stopped_at) == ("", None)
    assert [a["reason"] for a in ours_ahead(sims, users[0])] == ["Møte"]


def test_a_webhook_for_a_stopped_user_queues_nothing(
    sims: Any, webhook: WebhookStub, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    source, users = started(sims, "graph", 91, django_capture_on_commit_callbacks)
    calendar = CalendarUser.objects.get(service_user=users[0])
    subscription, client_state = calendar.subscription_id, calendar.client_state
    remove_from_group(sims, source, users)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.refresh_group(source=source)
    demo.run_queued_jobs()
    OrmQ.objects.all().delete()

    # a notification that was on its way when the user was stopped
    document = {"value": [{"subscriptionId": subscription, "clientState": client_state, "changeType": "updated"}]}
    CalendarUser.objects.filter(pk=calendar.pk).update(subscription_id=subscription, client_state=client_state)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(reverse("sync:graph_webhook"), json.dumps(document), content_type="application/json")

    assert answer.status_code == 202
    assert OrmQ.objects.count() == 0


def test_a_sync_queued_before_the_user_stopped_being_served_pushes_nothing_for_them(
    sims: Any, webhook: WebhookStub, django_capture_on_commit_callbacks: Any
) -> None:
    _source, users = wire(sims, "graph", 91)
    calendar = CalendarUser.objects.get(service_user=users[0])
    demo.put_events(sims, "graph", users[0], [demo.Event("m", tomorrow(10), tomorrow(11), subject="Møte")])
    ServiceUser.objects.filter(pk=users[0].pk).update(
        active=False, stop_reason=StopReason.LEFT_GROUP, stopped_at=timezone.now()
    )

    assert jobs.sync_users_job([calendar.pk]) == "0 users synced"
    assert ours_ahead(sims, users[0]) == []


def test_mbn_down_while_stopping_is_retried_and_the_user_shown_stopping_until_clean(
    sims: Any, webhook: WebhookStub, django_capture_on_commit_callbacks: Any
) -> None:
    source, users = started(sims, "graph", 91, django_capture_on_commit_callbacks)
    remove_from_group(sims, source, users)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.refresh_group(source=source)
    sims.set_faults("mbn", rate=1.0, kinds=["503"])
    with django_capture_on_commit_callbacks(execute=True):
        assert any("retrying" in answer for answer in demo.run_queued_jobs())
    leaver = ServiceUser.objects.get(pk=users[0].pk)
    assert (leaver.stop_reason, leaver.stopped_at) == (StopReason.LEFT_GROUP, None)
    assert str(leaver.service_state) == "Stoppes: fjerner våre fravær fra MBN"
    assert ours_ahead(sims, leaver), "MBN was down: nothing deleted yet"

    sims.set_faults("mbn", rate=0)
    retry = Schedule.objects.get(func="sync.jobs.sync_users_job")  # after the back-off
    ids, attempt, _at = ast.literal_eval(retry.args)
    assert jobs.sync_users_job(ids, attempt) == "1 users synced"
    leaver.refresh_from_db()
    assert leaver.stopped_at is not None
    assert ours_ahead(sims, leaver) == [] and manual(sims, leaver) == ["Lunch"]


def test_ending_a_customer_stops_every_user_the_same_night(
    sims: Any, webhook: WebhookStub, django_capture_on_commit_callbacks: Any, admin_client: Any
) -> None:
    source, users = started(sims, "google", 94, django_capture_on_commit_callbacks)
    Subscription.objects.filter(customer=source.customer).update(
        status=Subscription.Status.NOTICE_GIVEN, notice_received=dt.date(2025, 1, 1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert end_subscriptions_past_effective_end(today=timezone.localdate()) == 1
    demo.run_queued_jobs()

    assert [ours_ahead(sims, user) for user in users] == [[], []]
    assert manual(sims, users[0]) == ["Lunch"]
    assert watched(sims, "google") == set()
    assert set(ServiceUser.objects.values_list("stop_reason", flat=True)) == {StopReason.CUSTOMER_ENDED}
    assert not ServiceUser.objects.filter(stopped_at__isnull=True).exists()
    assert not CalendarSource.objects.filter(active=True).exists()
    assert not MbnConnection.objects.filter(active=True).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.sweep_job() == "0 user(s) queued"  # no schedule touches them again
        jobs.refresh_groups_job()
    assert OrmQ.objects.count() == 0
    overview = admin_client.get(reverse("admin:customers_customer_overview", args=[source.customer.pk]))
    assert f"Avsluttet {timezone.localdate():%d.%m.%Y}</strong>:" in overview.content.decode()
    assert "0 fravær fra oss igjen i MBN" in overview.content.decode()


def test_pausing_a_customer_stops_its_users_and_resuming_syncs_them_in_full(
    sims: Any, webhook: WebhookStub, django_capture_on_commit_callbacks: Any, admin_user: Any
) -> None:
    source, users = started(sims, "ews", 93, django_capture_on_commit_callbacks)
    customer = source.customer

    with django_capture_on_commit_callbacks(execute=True):
        set_service_paused(customer=customer, paused=True, by=admin_user)
    demo.run_queued_jobs()
    assert [ours_ahead(sims, user) for user in users] == [[], []]
    assert set(ServiceUser.objects.values_list("stop_reason", flat=True)) == {StopReason.CUSTOMER_PAUSED}
    assert customer.history.first().history_user == admin_user

    with django_capture_on_commit_callbacks(execute=True):
        set_service_paused(customer=customer, paused=False, by=admin_user)
    demo.run_queued_jobs()
    assert [len(ours_ahead(sims, user)) for user in users] == [1, 1]
    assert set(ServiceUser.objects.values_list("stop_reason", flat=True)) == {""}


def test_a_user_staff_disable_in_admin_is_stopped_and_shown_so(
    sims: Any, webhook: WebhookStub, django_capture_on_commit_callbacks: Any, admin_client: Any
) -> None:
    _source, users = started(sims, "graph", 91, django_capture_on_commit_callbacks)
    url = reverse("admin:customers_serviceuser_change", args=[users[0].pk])
    (form,) = [f for f in post_forms(admin_client.get(url)) if "disabled_by_staff" in f.inputs]
    pairs = [*submitted_pairs(form), ("disabled_by_staff", "on")]

    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(url, urlencode(pairs), content_type="application/x-www-form-urlencoded")
    demo.run_queued_jobs()

    assert answer.status_code == 302
    assert ours_ahead(sims, users[0]) == [] and manual(sims, users[0]) == ["Lunch"]
    assert ours_ahead(sims, users[1]), "only the disabled user is stopped"
    listing = admin_client.get(reverse("admin:customers_serviceuser_changelist")).content.decode()
    assert f"Stoppet {timezone.localdate():%d.%m.%Y} fordi deaktivert av Nettsoft" in listing


def test_a_customer_without_an_open_subscription_is_not_served() -> None:
    make_customer(name="Uten avtale AS")
    make_subscription(make_customer(name="Under oppstart AS"))  # pending

    served = set(Customer.objects.filter(served_customer()).values_list("name", flat=True))

    assert "Under oppstart AS" in served and "Uten avtale AS" not in served
