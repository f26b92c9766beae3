"""The staff customer overview stays short and says what each field is: one line per recent sync run, the
activation group named per calendar system."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from kalenderpush.dashboard import RECENT_SYNC_RUNS
from sync.models import CalendarSource, SyncRun
from tests.factories import make_customer, make_users

pytestmark = pytest.mark.django_db

LONG_ERROR = "MBN refused the absence: " + "a manual absence overlaps the one we would create, " * 6


@pytest.fixture(autouse=True)
def _no_second_factor(settings):  # type: ignore[no-untyped-def]
    settings.OTP_REQUIRED_FOR_STAFF = False


def test_the_overview_lists_only_the_last_sync_runs_one_line_each(admin_client):
    customer = make_customer(name="Bergen Byggteknikk AS")
    (user,) = make_users(customer, 1)
    source = CalendarSource.objects.create(
        customer=customer,
        kind="ews",
        endpoint="https://mail.bb.no/EWS/Exchange.asmx",
        username="svc@bb.no",
        activation_group="alle@bb.no",
    )
    for _ in range(RECENT_SYNC_RUNS + 7):
        SyncRun.objects.create(source=source, service_user=user, started_at=timezone.now(), error=LONG_ERROR)

    page = admin_client.get(reverse("admin:customers_customer_overview", args=[customer.pk])).content.decode()

    runs = page[page.index('id="sync-runs"') :]
    assert len(re.findall(r"<tr data-sync-run=", runs)) == RECENT_SYNC_RUNS
    assert 'class="kp-runs"' in runs and "text-overflow: ellipsis" in page  # long cells are cut, not wrapped
    assert f'title="{LONG_ERROR}"' in runs  # the whole error stays one hover away
    assert "Exchange-distribusjonsgruppe: alle@bb.no" in page
    assert "svc@bb.no" not in page[page.index('id="calendar-sources"') : page.index('id="mbn-connection"')]
