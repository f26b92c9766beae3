"""Daily usage snapshots: from the users' history, idempotent per day, back-filling missed days."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django_q.models import Schedule
from simple_history.utils import bulk_create_with_history

from billing import tasks, usage
from billing.models import UsageSnapshot
from customers.models import ServiceUser
from tests.factories import make_customer, make_subscription

pytestmark = pytest.mark.django_db
D = dt.date
OSLO = ZoneInfo("Europe/Oslo")


@pytest.fixture
def customer():
    customer = make_customer()
    make_subscription(customer, term_months=12, signed_on=D(2026, 1, 1), go_live=D(2026, 3, 1), status="live")
    users = [ServiceUser(customer=customer, email=f"u{i}@firma.no", msisdn=f"+4791{i:06d}") for i in range(12)]
    bulk_create_with_history(users[:10], ServiceUser, default_date=dt.datetime(2026, 3, 1, 8, tzinfo=OSLO))
    bulk_create_with_history(users[10:], ServiceUser, default_date=dt.datetime(2026, 3, 10, 23, 30, tzinfo=OSLO))
    return customer


def test_a_user_counts_from_the_end_of_the_day_they_joined(customer):
    counts = [
        usage.active_users_at_end_of(day=day, customer_ids=[customer.pk])[customer.pk]
        for day in (D(2026, 2, 28), D(2026, 3, 1), D(2026, 3, 9), D(2026, 3, 10))
    ]
    assert counts == [0, 10, 10, 12]


def test_deactivated_and_unmatched_users_do_not_count(customer):
    user = ServiceUser.objects.get(email="u0@firma.no")
    user.active = False
    user.save()
    other = ServiceUser.objects.get(email="u1@firma.no")
    other.msisdn = ""
    other.save()
    today = timezone.localdate()
    assert usage.active_users_at_end_of(day=today, customer_ids=[customer.pk])[customer.pk] == 10
    assert usage.active_users_at_end_of(day=D(2026, 3, 10), customer_ids=[customer.pk])[customer.pk] == 12


def test_snapshots_are_idempotent_and_back_fill_missed_days(customer):
    assert usage.ensure_snapshots(first=D(2026, 2, 25), last=D(2026, 3, 12)) == 12  # from go-live only
    assert usage.ensure_snapshots(first=D(2026, 2, 25), last=D(2026, 3, 12)) == 0
    UsageSnapshot.objects.filter(day=D(2026, 3, 10)).delete()  # a day the job missed
    assert usage.ensure_snapshots(first=D(2026, 3, 1), last=D(2026, 3, 12)) == 1
    assert UsageSnapshot.objects.get(day=D(2026, 3, 10)).active_users == 12
    assert UsageSnapshot.objects.get(day=D(2026, 3, 9)).active_users == 10


def test_the_daily_job_is_a_schedule_staff_can_see(customer):
    schedule = Schedule.objects.get(func="billing.tasks.snapshot_usage")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1
    assert Schedule.objects.get(func="billing.tasks.run_quarterly_billing").schedule_type == Schedule.QUARTERLY
    message = tasks.snapshot_usage()
    assert "snapshot(s) stored" in message
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    assert UsageSnapshot.objects.filter(customer=customer, day=yesterday, active_users=12).exists()
