"""Graph webhooks: the validation handshake, and nothing happens without the right clientState."""

import json

import pytest
from django.urls import reverse

from sync.models import CalendarSource, CalendarUser
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def calendar_user():
    from customers.models import ServiceUser

    customer = make_customer()
    source = CalendarSource.objects.create(customer=customer, tenant_id="t", client_id="c", activation_group="g")
    user = ServiceUser.objects.create(customer=customer, email="kari@firma.no", msisdn="+4791234567")
    return CalendarUser.objects.create(
        service_user=user, source=source, provider_user_id="u1", subscription_id="sub-1", client_state="s3cret-state"
    )


def notify(client, payload, url="sync:graph_webhook"):
    return client.post(reverse(url), json.dumps(payload), content_type="application/json")


def test_the_validation_handshake_echoes_the_token_as_plain_text(client):
    for name in ("sync:graph_webhook", "sync:graph_lifecycle"):
        response = client.post(reverse(name) + "?validationToken=abc%20123")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert response.content == b"abc 123"


def test_a_valid_notification_marks_the_user_and_queues_a_sync(
    client, calendar_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = notify(
            client,
            {
                "value": [
                    {
                        "subscriptionId": "sub-1",
                        "clientState": "s3cret-state",
                        "changeType": "updated",
                        "resource": "Users/u1/Events/e1",
                    }
                ]
            },
        )
    assert response.status_code == 202
    assert len(callbacks) == 1  # the sync runs after commit, on a worker, never inline
    calendar_user.refresh_from_db()
    assert calendar_user.changed_at is not None


@pytest.mark.parametrize(
    "payload",
    [
        {"value": [{"subscriptionId": "sub-1", "clientState": "wrong"}]},
        {"value": [{"subscriptionId": "sub-unknown", "clientState": "s3cret-state"}]},
        {"value": [{"subscriptionId": "sub-1"}]},
    ],
)
def test_a_notification_without_the_right_client_state_is_refused_without_side_effect(
    client, calendar_user, payload, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = notify(client, payload)
    assert response.status_code == 403
    assert callbacks == []
    calendar_user.refresh_from_db()
    assert calendar_user.changed_at is None


def test_garbage_is_a_bad_request(client):
    assert client.post(reverse("sync:graph_webhook"), "nonsense", content_type="application/json").status_code == 400
    assert client.get(reverse("sync:graph_webhook")).status_code == 405


def test_google_notifications_need_the_channel_token(client, calendar_user, django_capture_on_commit_callbacks):
    CalendarUser.objects.filter(pk=calendar_user.pk).update(subscription_id="chan-1|res-9")
    url = reverse("sync:google_webhook")
    headers = {"HTTP_X_GOOG_CHANNEL_ID": "chan-1", "HTTP_X_GOOG_RESOURCE_STATE": "exists"}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.post(url, **headers, HTTP_X_GOOG_CHANNEL_TOKEN="wrong").status_code == 403
    assert callbacks == []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.post(url, **headers, HTTP_X_GOOG_CHANNEL_TOKEN="s3cret-state").status_code == 200
    assert len(callbacks) == 1
    assert client.post(url).status_code == 400
