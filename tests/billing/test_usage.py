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


def test_counting_days_in_memory_gives_what_the_daily_job_stores(customer):
    other = make_customer(name="Annen AS")
    user = ServiceUser.objects.get(email="u0@firma.no")
    changes = [
        (dt.datetime(2026, 3, 3, 12, tzinfo=OSLO), {"active": False}),
        (dt.datetime(2026, 3, 5, 9, tzinfo=OSLO), {"active": True, "msisdn": ""}),
        (dt.datetime(2026, 3, 5, 10, tzinfo=OSLO), {"msisdn": "+4791000000"}),
        (dt.datetime(2026, 3, 7, 23, 59, tzinfo=OSLO), {"customer": other}),
        (dt.datetime(2026, 3, 8, 8, tzinfo=OSLO), {"customer": customer}),
    ]
    for when, fields in changes:
        for name, value in fields.items():
            setattr(user, name, value)
        user._history_date = when  # type: ignore[attr-defined]
        user.save()
    gone = ServiceUser.objects.get(email="u1@firma.no")
    gone._history_date = dt.datetime(2026, 3, 6, 15, tzinfo=OSLO)  # type: ignore[attr-defined]
    gone.delete()
    days = [D(2026, 2, 28) + dt.timedelta(days=n) for n in range(14)]

    in_memory = usage.active_users_on_days(customer_id=customer.pk, days=days)
    usage.ensure_snapshots(first=days[0], last=days[-1])
    stored = dict(UsageSnapshot.objects.filter(customer=customer).values_list("day", "active_users"))

    assert in_memory == {day: stored.get(day, in_memory[day]) for day in days}
    assert [in_memory[day] for day in days] == [0, 10, 10, 9, 9, 10, 9, 8, 9, 9, 11, 11, 11, 11]
