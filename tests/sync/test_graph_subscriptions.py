"""Change-notification subscriptions kept alive against the Graph simulator, as Microsoft documents it:
a subscription Graph removed or let expire is made again (change-notifications-lifecycle-events), one
user's or one source's failure stops no other, leavers' subscriptions are deleted (subscription-delete),
and a POST carrying several subscriptions' notifications, orphans among them, is judged item by item
(change-notifications-delivery-webhooks). The webhooks are https, as Graph requires."""

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test.utils import override_settings
from django.urls import reverse
from django_q.models import OrmQ

from customers.models import ServiceUser
from devtools import demo
from sync import jobs
from sync.errors import SyncErrorCode
from sync.models import CalendarSource, CalendarUser
from tests.factories import make_customer
from tests.sync.webhook_stub import WebhookStub

simulators = pytest.importorskip("devtools.simulators")
pytestmark = pytest.mark.django_db


@pytest.fixture
def sims() -> Iterator[Any]:
    with simulators.Simulators.start() as running:
        yield running


@pytest.fixture
def webhook(sims: Any) -> Iterator[WebhookStub]:
    """Stands in for our public https address: answers Graph's handshake, keeps what Graph posts."""
    hook = WebhookStub(tls=sims.webhook_ssl_context())
    with override_settings(**sims.app_settings(), PUBLIC_BASE_URL=hook.base_url):
        yield hook
    hook.close()


def wire(sims: Any, name: str, count: int = 3) -> tuple[CalendarSource, list[CalendarUser]]:
    customer = make_customer(name=name)
    users = [
        ServiceUser.objects.create(customer=customer, email=f"ansatt{i}@{name.lower()}.no", name=f"Ansatt {i}")
        for i in range(count)
    ]
    source = demo.wire_customer(
        sims=sims, customer=customer, users=users, tenant_id=f"tenant-{name}", enterprise_id=f"ent-{name}"
    )
    return source, list(CalendarUser.objects.filter(source=source).order_by("pk"))


def at_graph(sims: Any) -> dict[str, str]:
    """Graph's live subscriptions: id → the user whose events it watches."""
    return {sub["id"]: sub["resource"].split("/")[2] for sub in sims.graph.subscriptions()}


def fresh(users: list[CalendarUser]) -> list[CalendarUser]:
    return [CalendarUser.objects.get(pk=user.pk) for user in users]


def post(client: Any, document: dict[str, Any], url: str) -> Any:
    return client.post(reverse(url), json.dumps(document), content_type="application/json")


# --- point 2: subscriptions are made again, and one failure stops nothing else ---


def test_a_removed_subscription_is_made_again_and_the_user_read_in_full(
    sims: Any, webhook: WebhookStub, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    source, users = wire(sims, "Fjord")
    assert jobs.ensure_subscriptions(source=source) == 3
    removed = fresh(users)[0].subscription_id

    sims.graph.send_lifecycle(removed, "subscriptionRemoved")  # Graph removed it and says so
    assert sims.graph.flush_notifications()
    (lifecycle,) = webhook.notifications
    with django_capture_on_commit_callbacks(execute=True):
        answer = post(client, lifecycle, "sync:graph_lifecycle")  # what Graph posted reaches our view
    message = jobs.renew_subscriptions_job()  # queued by the view; run here

    assert answer.status_code == 202
    assert "renew_subscriptions_job" in [task.func().rsplit(".", 1)[-1] for task in OrmQ.objects.all()]
    kari = fresh(users)[0]
    assert kari.subscription_id and kari.subscription_id != removed
    assert at_graph(sims)[kari.subscription_id] == kari.provider_user_id
    assert sorted(at_graph(sims).values()) == sorted(user.provider_user_id for user in users)
    assert kari.changed_at is not None  # read in full: changes made while unsubscribed are not lost
    assert message == "1 subscription(s) made or renewed"


def test_an_expired_subscription_is_made_again_and_later_users_are_still_renewed(
    sims: Any, webhook: WebhookStub
) -> None:
    source, users = wire(sims, "Fjord")
    jobs.ensure_subscriptions(source=source)
    first = fresh(users)[0].subscription_id
    sims.graph.expire_subscription(first)  # not renewed in time: Graph deletes it without a word
    CalendarUser.objects.update(subscription_expires=dt_now_plus(hours=2))  # all due for renewal

    assert jobs.ensure_subscriptions(source=source) == 3

    renewed = fresh(users)
    assert renewed[0].subscription_id != first
    assert set(at_graph(sims)) == {user.subscription_id for user in renewed}
    assert all((user.subscription_expires or dt_now_plus()) > dt_now_plus(hours=48) for user in renewed)
    assert renewed[0].changed_at is not None and renewed[1].changed_at is None


def test_one_users_failure_is_recorded_and_the_others_are_subscribed(sims: Any, webhook: WebhookStub) -> None:
    source, users = wire(sims, "Fjord")
    CalendarUser.objects.filter(pk=users[0].pk).update(provider_user_id="no-such-user")  # no mailbox at Graph

    assert jobs.ensure_subscriptions(source=source) == 2

    broken, *others = fresh(users)
    assert broken.subscription_id == "" and "Change notifications could not be set up" in broken.last_error
    assert all(user.subscription_id in at_graph(sims) for user in others)
    source.refresh_from_db()
    assert "for 1 user(s)" in source.last_error


def test_one_broken_source_does_not_stop_the_renewal_of_the_others(sims: Any, webhook: WebhookStub) -> None:
    wire(sims, "Fjord")
    wire(sims, "Bre")
    broken, working = jobs._active_sources()
    broken.set_secret("wrong secret")
    broken.save()

    jobs.renew_subscriptions_job()

    broken.refresh_from_db()
    assert "secret" in broken.last_error
    assert all(user.subscription_id in at_graph(sims) for user in CalendarUser.objects.filter(source=working))
    assert len(at_graph(sims)) == 3


def test_a_user_who_leaves_the_group_has_the_subscription_deleted(sims: Any, webhook: WebhookStub) -> None:
    source, users = wire(sims, "Fjord")
    jobs.refresh_group(source=source)
    jobs.ensure_subscriptions(source=source)
    leaver = fresh(users)[0]
    stayers = [user.provider_user_id for user in users[1:]]
    sims.graph.add_group(source.tenant_id, source.activation_group, "Kalender Push", stayers)

    jobs.refresh_group(source=source)

    leaver.refresh_from_db()
    assert leaver.service_user.active is False
    assert leaver.subscription_id == ""
    assert sorted(at_graph(sims).values()) == sorted(stayers)


def test_deleting_a_user_deletes_the_subscription_at_graph(
    sims: Any, webhook: WebhookStub, django_capture_on_commit_callbacks: Any
) -> None:
    source, users = wire(sims, "Fjord")
    jobs.ensure_subscriptions(source=source)
    gone = fresh(users)[0]

    with django_capture_on_commit_callbacks(execute=True):
        gone.service_user.delete()
    (task,) = [task.task for task in OrmQ.objects.all() if task.func() == "sync.jobs.unsubscribe_job"]
    jobs.unsubscribe_job(*task["args"])  # what the q2 cluster runs

    assert gone.subscription_id not in at_graph(sims)
    assert sorted(at_graph(sims).values()) == sorted(user.provider_user_id for user in users[1:])


# --- point 5: several subscriptions' notifications in one POST, orphans among them ---


def test_a_post_with_several_subscriptions_and_an_orphan_queues_the_valid_ones(
    sims: Any, webhook: WebhookStub, client: Any
) -> None:
    source, users = wire(sims, "Fjord")
    jobs.ensure_subscriptions(source=source)
    kari, ola, per = fresh(users)
    # An orphan: a subscription Graph holds and we do not (made by an earlier attempt we never stored).
    orphan, _expires = jobs.pipeline.provider_for(source).subscribe(
        per.provider_user_id, webhook.base_url + reverse("sync:graph_webhook"), "forgotten", dt_now_plus(hours=2), None
    )
    CalendarUser.objects.update(changed_at=None)
    sims.graph.hold_notifications()
    for user in (kari, ola):
        sims.graph.put_event(user.provider_user_id, meeting("m1"))
    sims.graph.put_event(per.provider_user_id, meeting("m2"))
    sims.graph.release_notifications()
    assert sims.graph.flush_notifications()

    (document,) = webhook.notifications  # Graph batched them: one POST
    assert {item["subscriptionId"] for item in document["value"]} == {
        kari.subscription_id,
        ola.subscription_id,
        per.subscription_id,
        orphan,
    }
    answer = post(client, document, "sync:graph_webhook")

    assert answer.status_code == 202
    assert all(user.changed_at is not None for user in fresh([kari, ola, per]))
    forged = {"value": [{**item, "clientState": "guess"} for item in document["value"]]}
    CalendarUser.objects.update(changed_at=None)
    assert post(client, forged, "sync:graph_webhook").status_code == 403
    assert all(user.changed_at is None for user in fresh([kari, ola, per]))


def test_graph_posts_again_what_the_webhook_did_not_accept(sims: Any, webhook: WebhookStub) -> None:
    source, users = wire(sims, "Fjord", count=1)
    jobs.ensure_subscriptions(source=source)
    webhook_statuses = iter([503, 500])
    webhook._statuses = webhook_statuses  # the first two POSTs fail
    sims.graph.set_notification_retries([0.05, 0.05, 0.05])

    sims.graph.put_event(users[0].provider_user_id, meeting("m1"))
    assert sims.graph.flush_notifications()

    log = sims.graph.notification_log()
    assert [(delivery.attempt, delivery.status) for delivery in log] == [(1, 503), (2, 500), (3, 202)]
    assert len({json.dumps(delivery.document) for delivery in log}) == 1  # the same notification each time


def dt_now_plus(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(**delta)


def meeting(event_id: str) -> Any:
    start = dt_now_plus(days=1)
    return simulators.SimEvent(event_id, "Møte", start, start + dt.timedelta(hours=1))


def test_a_mailbox_outside_the_apps_scope_fails_alone_and_the_others_are_still_subscribed(
    sims: Any, webhook: WebhookStub
) -> None:
    source, users = wire(sims, "Fjord")
    sims.graph.set_mailbox_error(users[0].provider_user_id, "ErrorAccessDenied")

    assert jobs.ensure_subscriptions(source=source) == 2

    denied, *others = fresh(users)
    assert denied.subscription_id == ""
    assert denied.last_error_code == SyncErrorCode.MAILBOX_OUT_OF_SCOPE
    assert all(user.subscription_id in at_graph(sims) for user in others)
