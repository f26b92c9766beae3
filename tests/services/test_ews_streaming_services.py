"""Exchange on-premises on real services: the `stream_ews` listener's own threads queue on Redis through
PostgreSQL (its production path), and a real Celery worker pushes the change to the MBN simulator."""

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest
from django.test.utils import override_settings
from django.utils import timezone

from customers.models import ServiceUser
from devtools import demo
from sync.models import SyncRun
from sync.rules import Event
from sync.streaming import EwsListener
from tests.factories import make_customer

simulators = pytest.importorskip("devtools.simulators")
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
OSLO = ZoneInfo("Europe/Oslo")


def test_an_exchange_change_reaches_mbn_within_five_seconds_through_the_stream(celery_worker):
    from exchangelib.protocol import close_connections

    with simulators.Simulators.start() as sims, override_settings(MBN_BASE_URL=sims.mbn_url):
        customer = make_customer(name="Lokal Exchange AS")
        users = [
            ServiceUser.objects.create(
                customer=customer, email=f"ansatt{i}@lokal.no", name=f"Ansatt {i}", msisdn=f"+4793{i:06d}"
            )
            for i in range(3)
        ]
        source = demo.wire_ews_customer(sims=sims, customer=customer, users=users, enterprise_id="lokal")
        listener = EwsListener(connection_minutes=1)
        listener.refresh()
        try:
            assert sims.ews.wait_for_streams(1)
            start = (timezone.now() + dt.timedelta(days=1)).astimezone(OSLO).replace(hour=9, minute=0, second=0)
            event = Event("kunde", start.replace(microsecond=0), start + dt.timedelta(hours=2), subject="Møte &Eks")
            changed = time.monotonic()
            demo.put_events(sims, "ews", users[1], [event])
            while not sims.mbn.absences("lokal", users[1].msisdn):
                assert time.monotonic() - changed < 5, "not on MBN within 5 s"
                time.sleep(0.1)
        finally:
            listener.stop()
            close_connections()
        assert [a["reason"] for a in sims.mbn.absences("lokal", users[1].msisdn)] == ["Eksternt Møte"]
        assert not SyncRun.objects.filter(kind=SyncRun.Kind.CYCLE, source=source).exists(), "no sweep"
        assert sims.ews.subscriptions() == [], "the listener ended its subscriptions"
