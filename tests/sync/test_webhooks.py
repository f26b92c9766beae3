"""Webhooks (Graph change and lifecycle notifications, Google watch channels): the validation handshake,
a valid notification marks the user and queues one sync, and anything malformed or unauthenticated is
refused with 4xx and leaves nothing behind: no sync state changed, no q2 task, no Celery task."""

import json
from dataclasses import dataclass, field

import pytest
from celery.signals import before_task_publish, task_prerun
from django.urls import reverse
from django_q.models import OrmQ

from sync.models import CalendarSource, CalendarUser
from tests.factories import make_customer, make_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def calendar_user():
    from customers.models import ServiceUser

    customer = make_customer()
    make_subscription(customer)  # pending: a customer being set up is served
    source = CalendarSource.objects.create(customer=customer, tenant_id="t", client_id="c", activation_group="g")
    user = ServiceUser.objects.create(customer=customer, email="kari@firma.no", msisdn="+4791234567")
    return CalendarUser.objects.create(
        service_user=user, source=source, provider_user_id="u1", subscription_id="sub-1", client_state="s3cret-state"
    )


@pytest.fixture
def google_user(calendar_user):
    """A second user, on a Google watch channel "chan-1" with its own token."""
    from customers.models import ServiceUser

    customer = calendar_user.source.customer
    source = CalendarSource.objects.create(
        customer=customer, kind=CalendarSource.Kind.GOOGLE, admin_subject="admin@firma.no", activation_group="g"
    )
    user = ServiceUser.objects.create(customer=customer, email="ola@firma.no", msisdn="+4791234568")
    return CalendarUser.objects.create(
        service_user=user,
        source=source,
        provider_user_id="ola@firma.no",
        subscription_id="chan-1|res-9",
        client_state="g00gle-token",
    )


@pytest.fixture(params=["q2", "celery"])
def queue(request):
    """Where syncs go: the q2 cluster (no Celery broker: Celery runs eagerly) or a Celery broker."""
    from sync.tasks import sync_users

    conf = sync_users.app.conf
    eager = conf.task_always_eager
    conf.task_always_eager = request.param == "q2"
    yield request.param
    conf.task_always_eager = eager


@dataclass
class Effects:
    changed_users: dict[int, set[str]] = field(default_factory=dict)  # CalendarUser pk → changed fields
    q2_tasks: list[str] = field(default_factory=list)
    celery_tasks: list[str] = field(default_factory=list)


def _sync_state() -> dict[int, dict[str, object]]:
    return {row["id"]: dict(row) for row in CalendarUser.objects.values()}


@pytest.fixture
def effects_of(django_capture_on_commit_callbacks):
    """Send a request and report what it left behind; callbacks queued "after commit" run, and count."""

    def send(request):  # type: ignore[no-untyped-def]
        before, queued_before = _sync_state(), set(OrmQ.objects.values_list("pk", flat=True))
        celery: list[str] = []

        def published(sender=None, **kwargs):  # type: ignore[no-untyped-def]
            celery.append(str(getattr(sender, "name", sender)))

        before_task_publish.connect(published)  # sent to a broker
        task_prerun.connect(published)  # or run eagerly, in this process
        try:
            with django_capture_on_commit_callbacks(execute=True):
                response = request()
        finally:
            before_task_publish.disconnect(published)
            task_prerun.disconnect(published)
        after = _sync_state()
        effects = Effects(
            changed_users={
                pk: {name for name, value in row.items() if before[pk][name] != value}
                for pk, row in after.items()
                if row != before.get(pk)
            },
            q2_tasks=sorted(task.func() for task in OrmQ.objects.exclude(pk__in=queued_before)),
            celery_tasks=celery,
        )
        return response, effects

    return send


def notify(client, payload, url="sync:graph_webhook"):
    return client.post(reverse(url), json.dumps(payload), content_type="application/json")


def test_the_validation_handshake_echoes_the_token_as_plain_text(client):
    for name in ("sync:graph_webhook", "sync:graph_lifecycle"):
        response = client.post(reverse(name) + "?validationToken=abc%20123")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert response.content == b"abc 123"


def test_a_valid_change_notification_marks_the_user_and_queues_one_sync(client, calendar_user, queue, effects_of):
    item = {"subscriptionId": "sub-1", "clientState": "s3cret-state", "changeType": "updated", "resource": "Users/u1"}
    response, effects = effects_of(lambda: notify(client, {"value": [item]}))
    assert response.status_code == 202
    assert effects.changed_users == {calendar_user.pk: {"changed_at"}}
    if queue == "q2":
        assert (effects.q2_tasks, effects.celery_tasks) == (["sync.jobs.sync_users_job"], [])
    else:
        assert (effects.q2_tasks, effects.celery_tasks) == ([], ["sync.tasks.sync_users"])


def test_a_post_mixing_valid_forged_and_orphan_notifications_queues_only_the_valid_ones(
    client, calendar_user, queue, effects_of
):
    """Graph batches several subscriptions' notifications in one POST and retries a non-2xx answer: the
    valid one is accepted (202), the forged one and the orphan (a subscription we do not hold) change nothing."""
    from customers.models import ServiceUser

    other = CalendarUser.objects.create(
        service_user=ServiceUser.objects.create(customer=calendar_user.source.customer, email="per@firma.no"),
        source=calendar_user.source,
        provider_user_id="u2",
        subscription_id="sub-2",
        client_state="other-state",
    )
    items = [
        {"subscriptionId": "sub-1", "clientState": "s3cret-state", "changeType": "updated"},
        {"subscriptionId": "sub-2", "clientState": "s3cret-state", "changeType": "updated"},  # another's state
        {"subscriptionId": "sub-deleted", "clientState": "s3cret-state", "changeType": "updated"},  # orphan
    ]
    response, effects = effects_of(lambda: notify(client, {"value": items}))
    assert response.status_code == 202
    assert effects.changed_users == {calendar_user.pk: {"changed_at"}}
    assert other.pk not in effects.changed_users
    syncs = [*effects.q2_tasks, *effects.celery_tasks]
    assert syncs.count("sync.tasks.sync_users") + syncs.count("sync.jobs.sync_users_job") == 1


def test_a_subscription_removed_notification_forgets_the_subscription_so_a_new_one_is_made(
    client, calendar_user, effects_of
):
    item = {**VALID, "lifecycleEvent": "subscriptionRemoved"}
    response, effects = effects_of(lambda: notify(client, {"value": [item]}, url="sync:graph_lifecycle"))
    assert response.status_code == 202
    calendar_user.refresh_from_db()
    assert (calendar_user.subscription_id, calendar_user.subscription_expires) == ("", None)
    assert "sync.jobs.renew_subscriptions_job" in effects.q2_tasks


def test_a_lifecycle_notification_renews_the_subscription_and_syncs_in_full(client, calendar_user, queue, effects_of):
    item = {"subscriptionId": "sub-1", "clientState": "s3cret-state", "lifecycleEvent": "reauthorizationRequired"}
    response, effects = effects_of(lambda: notify(client, {"value": [item]}, url="sync:graph_lifecycle"))
    assert response.status_code == 202
    assert effects.changed_users == {calendar_user.pk: {"changed_at", "subscription_expires"}}
    assert "sync.jobs.renew_subscriptions_job" in effects.q2_tasks
    syncs = [*effects.q2_tasks, *effects.celery_tasks]
    assert syncs.count("sync.tasks.sync_users") + syncs.count("sync.jobs.sync_users_job") == 1


def test_a_google_notification_with_the_channel_token_queues_one_sync(client, google_user, queue, effects_of):
    headers = {
        "HTTP_X_GOOG_CHANNEL_ID": "chan-1",
        "HTTP_X_GOOG_CHANNEL_TOKEN": "g00gle-token",
        "HTTP_X_GOOG_RESOURCE_STATE": "exists",
    }
    response, effects = effects_of(lambda: client.post(reverse("sync:google_webhook"), **headers))
    assert response.status_code == 200
    assert effects.changed_users == {google_user.pk: {"changed_at"}}
    assert [*effects.q2_tasks, *effects.celery_tasks] in (["sync.tasks.sync_users"], ["sync.jobs.sync_users_job"])


def test_googles_sync_message_only_confirms_the_channel(client, google_user, effects_of):
    headers = {
        "HTTP_X_GOOG_CHANNEL_ID": "chan-1",
        "HTTP_X_GOOG_CHANNEL_TOKEN": "g00gle-token",
        "HTTP_X_GOOG_RESOURCE_STATE": "sync",
    }
    response, effects = effects_of(lambda: client.post(reverse("sync:google_webhook"), **headers))
    assert response.status_code == 200
    assert effects == Effects()


GRAPH, LIFECYCLE, GOOGLE = "sync:graph_webhook", "sync:graph_lifecycle", "sync:google_webhook"
GET = object()  # a GET instead of a POST
VALID = {"subscriptionId": "sub-1", "clientState": "s3cret-state", "lifecycleEvent": "reauthorizationRequired"}
DEEP = "[" * 1000 + "]" * 1000  # 2 KB that Python's JSON parser cannot nest
NESTED_50: object = "sub-1"
for _level in range(50):
    NESTED_50 = [NESTED_50]


def _google(**headers: str) -> dict[str, str]:
    return {f"HTTP_X_GOOG_{name.upper()}": value for name, value in headers.items()}


@pytest.mark.parametrize(
    ("url", "body", "headers", "status"),
    [
        pytest.param(GRAPH, {"value": [{**VALID, "clientState": "wrong"}]}, {}, 403, id="graph-wrong-client-state"),
        pytest.param(GRAPH, {"value": [{**VALID, "subscriptionId": "sub-x"}]}, {}, 403, id="graph-unknown-sub"),
        pytest.param(GRAPH, {"value": [{"subscriptionId": "sub-1"}]}, {}, 403, id="graph-no-client-state"),
        pytest.param(
            GRAPH,
            {"value": [{**VALID, "clientState": "x"}, {**VALID, "subscriptionId": "sub-x"}, "sub-1"]},
            {},
            403,
            id="graph-forged-orphan-and-junk-only",
        ),
        pytest.param(GRAPH, {"value": ["sub-1"]}, {}, 403, id="graph-item-not-an-object"),
        pytest.param(GRAPH, "nonsense", {}, 400, id="graph-bad-json"),
        pytest.param(GRAPH, "", {}, 400, id="graph-empty-body"),
        pytest.param(GRAPH, {"items": [VALID]}, {}, 400, id="graph-no-value"),
        pytest.param(GRAPH, {"value": VALID}, {}, 400, id="graph-value-not-a-list"),
        pytest.param(GRAPH, GET, {}, 405, id="graph-get"),
        pytest.param(GRAPH, DEEP, {}, 400, id="graph-nested-1000-deep"),
        pytest.param(GRAPH, '{"value": ' + DEEP + "}", {}, 400, id="graph-value-nested-1000-deep"),
        pytest.param(GRAPH, {"value": [{**VALID, "subscriptionId": NESTED_50}]}, {}, 403, id="graph-nested-id"),
        pytest.param(GRAPH, [VALID], {}, 400, id="graph-top-level-list"),
        pytest.param(GRAPH, 42, {}, 400, id="graph-top-level-number"),
        pytest.param(GRAPH, b'{"value": ["\xff\xfe"]}', {}, 400, id="graph-not-utf8"),
        pytest.param(GRAPH, {"value": [{**VALID, "subscriptionId": "sub-1\x00"}]}, {}, 403, id="graph-nul-in-id"),
        pytest.param(GRAPH, {"value": [{**VALID, "subscriptionId": "\ud800"}]}, {}, 403, id="graph-surrogate-id"),
        pytest.param(GRAPH, {"value": [{**VALID, "clientState": "hemmelig-ø"}]}, {}, 403, id="graph-non-ascii-state"),
        pytest.param(GRAPH, {"value": [{**VALID, "clientState": ["s3cret-state"]}]}, {}, 403, id="graph-state-list"),
        pytest.param(LIFECYCLE, {"value": [{**VALID, "clientState": "wrong"}]}, {}, 403, id="lifecycle-wrong-state"),
        pytest.param(LIFECYCLE, {"value": [{**VALID, "subscriptionId": "x"}]}, {}, 403, id="lifecycle-unknown-sub"),
        pytest.param(LIFECYCLE, "nonsense", {}, 400, id="lifecycle-bad-json"),
        pytest.param(LIFECYCLE, "", {}, 400, id="lifecycle-empty-body"),
        pytest.param(LIFECYCLE, GET, {}, 405, id="lifecycle-get"),
        pytest.param(LIFECYCLE, DEEP, {}, 400, id="lifecycle-nested-1000-deep"),
        pytest.param(LIFECYCLE, '{"value": [' + DEEP + "]}", {}, 400, id="lifecycle-item-nested-1000-deep"),
        pytest.param(GOOGLE, "", _google(channel_token="g00gle-token"), 400, id="google-no-channel-id"),
        pytest.param(GOOGLE, "", _google(channel_id="chan-1", channel_token="wrong"), 403, id="google-wrong-token"),
        pytest.param(GOOGLE, "", _google(channel_id="chan-1", resource_state="exists"), 403, id="google-no-token"),
        pytest.param(GOOGLE, "", _google(channel_id="chan-9", channel_token="g00gle-token"), 403, id="google-unknown"),
        pytest.param(GOOGLE, "", _google(channel_id="chan", channel_token="g00gle-token"), 403, id="google-id-prefix"),
        pytest.param(GOOGLE, GET, _google(channel_id="chan-1", channel_token="g00gle-token"), 405, id="google-get"),
        pytest.param(
            GOOGLE, "", _google(channel_id="chan-1", channel_token="g00gle-tøken"), 403, id="google-non-ascii"
        ),
        pytest.param(GOOGLE, "", _google(channel_id="chan-1\x00", channel_token="g00gle-token"), 403, id="google-nul"),
        pytest.param(GOOGLE, DEEP, _google(channel_id="chan-1", channel_token="x"), 403, id="google-nested-body"),
    ],
)
def test_a_malformed_or_unauthenticated_request_is_refused_and_leaves_nothing_behind(
    client, calendar_user, google_user, queue, effects_of, url, body, headers, status
):
    if body is GET:
        response, effects = effects_of(lambda: client.get(reverse(url), **headers))
    else:
        content = body if isinstance(body, str | bytes) else json.dumps(body)
        response, effects = effects_of(
            lambda: client.post(reverse(url), content, content_type="application/json", **headers)
        )
    assert response.status_code == status
    assert effects == Effects(), effects
