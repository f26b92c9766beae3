"""Billing runs and issuers racing on PostgreSQL with real connections: no duplicate, no gap."""

import datetime as dt
import threading

import pytest
from django.db import connection

from billing import services
from billing.models import DocumentCounter, Invoice
from billing.quarters import Quarter
from tests.billing.factories import live_subscription

pytestmark = pytest.mark.services
D = dt.date


def _in_threads(target, count):
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(index):
        try:
            barrier.wait()
            target(index)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_runs_and_several_issuers_racing_leave_gapless_unique_invoices():
    assert connection.vendor == "postgresql"
    for index in range(8):
        live_subscription(
            term=12,
            go_live=D(2026, 1, 1),
            steps=[(D(2026, 1, 1), 10 + index)],
            last=D(2026, 3, 31),
            name=f"Kappløp {index} AS",
        )
    quarter = Quarter.parse("2026-Q1")

    _in_threads(lambda _i: services.run_billing(quarter=quarter, today=D(2026, 4, 1)), 2)
    assert Invoice.objects.count() == 8
    assert Invoice.objects.values("subscription").distinct().count() == 8

    drafts = list(Invoice.objects.values_list("pk", flat=True))
    # four issuers, each trying to issue every draft (in a different order)
    _in_threads(lambda i: services.issue_drafts(invoice_ids=drafts[i:] + drafts[:i], today=D(2026, 4, 2)), 4)

    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 9))
    assert DocumentCounter.objects.get(series="invoice").last_number == 8
    assert Invoice.objects.filter(status=Invoice.Status.ISSUED).count() == 8
