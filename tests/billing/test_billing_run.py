"""The quarterly billing run on the database: same numbers as billing_quote, idempotent, robust."""

import datetime as dt
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from billing import services
from billing.models import BillingRun, Invoice, UsageSnapshot
from billing.quarters import Quarter
from customers.models import ServiceUser
from tests.billing.factories import live_subscription
from tests.factories import make_customer, make_subscription

pytestmark = pytest.mark.django_db
D = dt.date


def quote(payload, tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps(payload))
    out = io.StringIO()
    call_command("billing_quote", str(path), stdout=out)
    return json.loads(out.getvalue())


def as_quote_json(invoice: Invoice) -> dict:
    return {
        "period_start": invoice.period_start.isoformat(),
        "period_end": invoice.period_end.isoformat(),
        "lines": [
            {
                "kind": line.kind,
                "month": line.month.strftime("%Y-%m") if line.month else None,
                "quantity": f"{line.quantity:.2f}",
                "unit_price": f"{line.unit_price:.2f}",
                "amount": f"{line.amount:.2f}",
            }
            for line in invoice.lines.order_by("position")
        ],
        "net": f"{invoice.net:.2f}",
        "vat": f"{invoice.vat:.2f}",
        "total": f"{invoice.total:.2f}",
    }


def test_the_run_makes_the_same_invoices_as_billing_quote(tmp_path):
    # billing.md example C, with the customer's history as daily snapshots in the database
    steps = [(D(2025, 2, 10), 40), (D(2025, 3, 15), 45), (D(2025, 6, 1), 12)]
    subscription = live_subscription(
        term=12, go_live=D(2025, 2, 10), steps=steps, last=D(2025, 12, 31), notice=D(2025, 8, 20)
    )
    for label in ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4"):
        services.run_billing(quarter=Quarter.parse(label), today=D(2026, 1, 5))
    invoices = [as_quote_json(i) for i in subscription.invoices.order_by("period_start")]
    expected = quote(
        {
            "term_months": 12,
            "go_live": "2025-02-10",
            "notice_received": "2025-08-20",
            "users": [[d.isoformat(), n] for d, n in steps],
        },
        tmp_path,
    )
    assert invoices == expected["invoices"]
    assert invoices[-1]["lines"][-1] == {
        "kind": "termination_fee",
        "month": None,
        "quantity": "1.00",
        "unit_price": "506.68",
        "amount": "506.68",
    }


def test_running_twice_creates_nothing_new():
    live_subscription(term=24, go_live=D(2026, 1, 15), steps=[(D(2026, 1, 15), 20)], last=D(2026, 3, 31))
    first = services.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 1))
    second = services.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 1))
    assert (first.invoices_created, second.invoices_created) == (1, 0)
    assert Invoice.objects.count() == 1
    assert second.status == BillingRun.Status.FINISHED


def test_one_broken_customer_does_not_stop_the_run(monkeypatch):
    good = live_subscription(
        term=12, go_live=D(2026, 1, 1), steps=[(D(2026, 1, 1), 30)], last=D(2026, 3, 31), name="Frisk AS"
    )
    broken = live_subscription(
        term=12, go_live=D(2026, 1, 1), steps=[(D(2026, 1, 1), 30)], last=D(2026, 3, 31), name="Skakk AS"
    )
    real = services._bill_subscription

    def bill(subscription, quarter, run):
        if subscription.pk == broken.pk:
            raise RuntimeError("simulated database hiccup")
        return real(subscription, quarter, run)

    monkeypatch.setattr(services, "_bill_subscription", bill)
    run = services.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 1))
    assert run.status == BillingRun.Status.FINISHED_WITH_ERRORS
    assert run.errors == [
        {
            "customer": "Skakk AS",
            "customer_number": broken.customer.customer_number,
            "error": "simulated database hiccup",
        }
    ]
    assert list(Invoice.objects.values_list("subscription_id", flat=True)) == [good.pk]
    assert (run.subscriptions_done, run.invoices_created) == (2, 1)


def test_an_unfinished_quarter_is_refused():
    with pytest.raises(ValidationError, match="in arrears"):
        services.run_billing(quarter=Quarter.parse("2026-Q4"), today=D(2026, 11, 25))


def test_missing_snapshots_are_back_filled_from_the_users_history():
    from zoneinfo import ZoneInfo

    from simple_history.utils import bulk_create_with_history

    customer = make_customer()
    make_subscription(customer, term_months=36, signed_on=D(2026, 1, 1), go_live=D(2026, 4, 1), status="live")
    oslo = ZoneInfo("Europe/Oslo")
    users = [ServiceUser(customer=customer, email=f"u{i}@firma.no", msisdn=f"+479000000{i}") for i in range(30)]
    bulk_create_with_history(users[:20], ServiceUser, default_date=dt.datetime(2026, 4, 1, 9, tzinfo=oslo))
    bulk_create_with_history(users[20:], ServiceUser, default_date=dt.datetime(2026, 5, 1, 9, tzinfo=oslo))
    services.run_billing(quarter=Quarter.parse("2026-Q2"), today=D(2026, 7, 2))
    assert UsageSnapshot.objects.get(customer=customer, day=D(2026, 4, 30)).active_users == 20
    assert UsageSnapshot.objects.get(customer=customer, day=D(2026, 5, 1)).active_users == 30
    invoice = Invoice.objects.get()
    months = {line.month.month: line.quantity for line in invoice.lines.filter(kind="subscription")}
    assert months == {4: 20, 5: 30, 6: 30}
    assert invoice.lines.order_by("position").first().kind == "setup"


def test_pending_subscriptions_and_ended_ones_are_not_billed():
    make_subscription(make_customer(), term_months=12, signed_on=D(2026, 1, 1))  # pending, no go-live
    live_subscription(
        term=36, go_live=D(2025, 1, 1), steps=[(D(2025, 1, 1), 9)], last=D(2026, 6, 30), notice=D(2025, 12, 3)
    )  # effective end 2025-12-31
    run = services.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 1))
    assert run.subscriptions_total == 0 and not Invoice.objects.exists()
