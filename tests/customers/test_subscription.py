"""Subscriptions: frozen prices, derived dates, going live, ending."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from customers.models import PriceList, PriceListRow, Subscription
from customers.services import end_subscriptions_past_effective_end, mark_live
from tests.factories import make_customer, make_subscription

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
D = dt.date


@pytest.mark.parametrize(
    ("term", "monthly", "setup"),
    [(0, "15.00", "7500.00"), (12, "12.00", "5000.00"), (24, "11.00", "4000.00"), (36, "10.00", "3000.00")],
)
def test_prices_are_frozen_from_the_2019_price_list_at_signing(term, monthly, setup):
    subscription = make_subscription(make_customer(), term_months=term, signed_on=D(2026, 1, 10))
    subscription.refresh_from_db()
    assert subscription.monthly_price == Decimal(monthly)
    assert subscription.setup_fee == Decimal(setup)
    assert subscription.price_list.effective_from == D(2019, 1, 1)


def test_a_later_price_list_does_not_change_a_signed_subscription():
    subscription = make_subscription(make_customer(), term_months=12, signed_on=D(2026, 1, 10))
    new_list = PriceList.objects.create(name="2027", effective_from=D(2027, 1, 1))
    for term in (0, 12, 24, 36):
        PriceListRow.objects.create(
            price_list=new_list, term_months=term, monthly_price=Decimal("20.00"), setup_fee=Decimal("9000.00")
        )
    subscription.save()
    subscription.refresh_from_db()
    assert subscription.monthly_price == Decimal("12.00")
    later = make_subscription(make_customer(), term_months=12, signed_on=D(2027, 3, 1))
    assert later.monthly_price == Decimal("20.00")
    assert later.setup_fee == Decimal("9000.00")


def test_staff_may_set_a_customer_specific_price():
    subscription = make_subscription(make_customer(), term_months=24, monthly_price=Decimal("9.50"))
    subscription.refresh_from_db()
    assert subscription.monthly_price == Decimal("9.50")
    assert subscription.setup_fee == Decimal("4000.00")


def test_signing_before_any_price_list_asks_for_prices():
    with pytest.raises(ValidationError) as error:
        make_subscription(make_customer(), signed_on=D(2018, 6, 1))
    assert "No price list is in force on 01.06.2018" in error.value.message_dict["monthly_price"][0]


@pytest.mark.parametrize(
    ("term", "go_live", "binding_end"),
    [
        (0, D(2026, 2, 1), None),
        (12, D(2025, 1, 31), D(2026, 1, 30)),
        (24, D(2026, 1, 15), D(2028, 1, 14)),
        (36, D(2024, 2, 29), D(2027, 2, 28)),
        (12, D(2024, 2, 29), D(2025, 2, 28)),
        (36, D(2026, 3, 31), D(2029, 3, 30)),
    ],
)
def test_binding_end_on_the_subscription(term, go_live, binding_end):
    subscription = make_subscription(make_customer(), term_months=term, signed_on=D(2024, 1, 1), go_live=go_live)
    assert subscription.binding_end == binding_end


@pytest.mark.parametrize(
    ("term", "notice", "effective_end"),
    [
        (0, D(2025, 3, 10), D(2025, 7, 31)),
        (12, D(2025, 8, 20), D(2025, 11, 30)),
        (24, D(2026, 1, 31), D(2026, 2, 28)),
        (36, D(2025, 3, 10), D(2025, 3, 31)),
    ],
)
def test_effective_end_on_the_subscription(term, notice, effective_end):
    subscription = make_subscription(
        make_customer(),
        term_months=term,
        signed_on=D(2024, 1, 1),
        go_live=D(2024, 2, 1),
        status=Subscription.Status.LIVE,
        notice_received=notice,
    )
    assert subscription.effective_end == effective_end
    assert subscription.status == Subscription.Status.NOTICE_GIVEN


def test_without_go_live_or_notice_the_dates_are_empty():
    subscription = make_subscription(make_customer())
    assert subscription.binding_end is None
    assert subscription.effective_end is None


def test_mark_live_sets_go_live_and_status():
    subscription = make_subscription(make_customer(), signed_on=D(2026, 1, 1))
    mark_live(subscription=subscription, go_live=D(2026, 2, 1))
    subscription.refresh_from_db()
    assert (subscription.status, subscription.go_live) == (Subscription.Status.LIVE, D(2026, 2, 1))
    assert subscription.binding_end == D(2027, 1, 31)


def test_mark_live_refuses_a_live_subscription_and_a_go_live_before_signing():
    subscription = make_subscription(make_customer(), signed_on=D(2026, 1, 1))
    with pytest.raises(ValidationError, match="before the signing date"):
        mark_live(subscription=subscription, go_live=D(2025, 12, 31))
    mark_live(subscription=subscription, go_live=D(2026, 1, 1))
    with pytest.raises(ValidationError, match="is not pending"):
        mark_live(subscription=subscription, go_live=D(2026, 3, 1))


def test_a_live_subscription_needs_a_go_live():
    with pytest.raises(ValidationError) as error:
        make_subscription(make_customer(), status=Subscription.Status.LIVE)
    assert error.value.message_dict["go_live"] == ["A live subscription needs a go-live date."]


def test_a_customer_has_at_most_one_open_subscription():
    customer = make_customer()
    make_subscription(customer)
    with pytest.raises(ValidationError, match="already has a subscription that has not ended"):
        make_subscription(customer)


def test_subscriptions_past_their_effective_end_are_ended():
    running = make_subscription(
        make_customer(),
        term_months=36,
        signed_on=D(2025, 1, 1),
        go_live=D(2025, 1, 1),
        status=Subscription.Status.LIVE,
    )
    leaving = make_subscription(
        make_customer(),
        term_months=36,
        signed_on=D(2025, 1, 1),
        go_live=D(2025, 1, 1),
        notice_received=D(2026, 10, 12),
    )
    assert end_subscriptions_past_effective_end(today=D(2026, 10, 31)) == 0
    assert end_subscriptions_past_effective_end(today=D(2026, 11, 1)) == 1
    running.refresh_from_db()
    leaving.refresh_from_db()
    assert running.status == Subscription.Status.LIVE
    assert leaving.status == Subscription.Status.ENDED


def test_the_portal_and_the_staff_overview_name_the_same_current_subscription():
    from kalenderpush.selectors import customer_overview
    from portal.selectors import current_subscription

    def both(customer):  # type: ignore[no-untyped-def]
        staff = customer_overview(customer_id=customer.pk, today=D(2026, 6, 1)).current_subscription
        return current_subscription(customer), staff

    nothing = make_customer()
    assert both(nothing) == (None, None)
    returning = make_customer()
    older = make_subscription(returning, term_months=12, signed_on=D(2024, 1, 1), status="ended")
    newer_ended = make_subscription(returning, term_months=12, signed_on=D(2025, 1, 1), status="ended")
    assert both(returning) == (newer_ended, newer_ended), "only ended ones: the newest"
    reopened = make_subscription(returning, term_months=24, signed_on=D(2023, 6, 1), status="pending")
    assert both(returning) == (reopened, reopened), "the open one wins over newer ended ones"
    assert older not in both(returning)
