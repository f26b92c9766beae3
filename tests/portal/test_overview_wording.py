"""The portal overview's small words: how long ago the last sync was, and what the activation group is."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from sync.models import CalendarSource

pytestmark = pytest.mark.django_db


def overview(tenant) -> str:  # type: ignore[no-untyped-def]
    response = tenant.admin.get(reverse("portal:overview"))
    assert response.status_code == 200
    return response.content.decode()


def test_a_sync_seconds_ago_reads_just_now_not_zero_minutes(ours):
    CalendarSource.objects.create(
        customer=ours.customer, tenant_id="t", client_id="c", activation_group="g", last_success_at=timezone.now()
    )

    html = overview(ours)

    assert "akkurat nå" in html
    assert "0 minutter" not in html


def test_a_sync_minutes_ago_reads_minutes_ago(ours):
    CalendarSource.objects.create(
        customer=ours.customer,
        tenant_id="t",
        client_id="c",
        activation_group="g",
        last_success_at=timezone.now() - dt.timedelta(minutes=5, seconds=10),
    )

    assert "5\u00a0minutter siden" in overview(ours)


GROUPS = [
    ("graph", {"tenant_id": "t", "client_id": "c"}, "Entra ID-gruppe"),
    (
        "ews",
        {"endpoint": "https://mail.fjord.no/EWS/Exchange.asmx", "username": "svc@fjord.no"},
        "Exchange-distribusjonsgruppe",
    ),
    ("google", {"admin_subject": "admin@fjord.no"}, "Google-gruppe"),
]


@pytest.mark.parametrize(("kind", "fields", "label"), GROUPS)
def test_the_activation_group_is_named_as_the_group_it_is_in_each_calendar_system(ours, kind, fields, label):
    CalendarSource.objects.create(customer=ours.customer, kind=kind, activation_group="alle-ansatte@fjord.no", **fields)

    html = overview(ours)

    connections = html[html.index("Aktiveringsgruppe") :]
    assert "alle-ansatte@fjord.no" in connections and label in connections
    assert "svc@fjord.no" not in connections and "admin@fjord.no" not in connections
