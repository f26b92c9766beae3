"""Data minimisation (issue 16, point 4): PURGE_AFTER_DAYS after a customer's service ended, its secrets and
personal data go; the customer, its subscriptions and the audit trail stay. `--dry-run` only says what would go."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from customers.models import ServiceUser, Subscription
from sync.models import CalendarSource, CalendarUser, MbnConnection, PushedAbsence, SyncRun
from tests.factories import make_calendar_source, make_customer, make_subscription, make_users

pytestmark = pytest.mark.django_db


def ended_customer(name: str, *, days_ago: int):  # type: ignore[no-untyped-def]
    customer = make_customer(name=name)
    make_subscription(customer, status=Subscription.Status.ENDED)
    users = make_users(customer, 2)
    for user in users:
        user.save()  # an audit-history row with the name and address
    source = make_calendar_source(customer, users)
    now = timezone.now()
    for user in users:
        PushedAbsence.objects.create(
            service_user=user,
            mbn_id="1",
            external_ref=f"kp:{user.pk}:x",
            start=now,
            end=now,
            reason="Møte",
            diversion="none",
        )
        SyncRun.objects.create(source=source, service_user=user, started_at=now)
    type(customer).objects.filter(pk=customer.pk).update(ended_at=now - dt.timedelta(days=days_ago))
    return customer


def personal_data(customer) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "names": sorted(ServiceUser.objects.filter(customer=customer).values_list("name", flat=True)),
        "history names": sorted(
            set(ServiceUser.history.filter(customer_id=customer.pk).values_list("name", flat=True))
        ),
        "addresses": any(
            "example" in e for e in ServiceUser.objects.filter(customer=customer).values_list("email", flat=True)
        ),
        "calendar secrets": CalendarSource.objects.filter(customer=customer).exclude(secret_encrypted="").count(),
        "mbn secrets": MbnConnection.objects.filter(customer=customer).exclude(password_encrypted="").count(),
        "calendar users": CalendarUser.objects.filter(source__customer=customer).count(),
        "absences": PushedAbsence.objects.filter(service_user__customer=customer).count(),
        "sync runs": SyncRun.objects.filter(source__customer=customer).count(),
    }


def test_the_purge_deletes_secrets_and_personal_data_90_days_after_the_end_and_keeps_the_records() -> None:
    old = ended_customer("Gammel AS", days_ago=91)
    recent = ended_customer("Nylig AS", days_ago=89)
    before_recent = personal_data(recent)
    history_rows = ServiceUser.history.filter(customer_id=old.pk).count()

    out = StringIO()
    call_command("purge_ended_customers", stdout=out)

    assert personal_data(old) == {
        "names": ["", ""],
        "history names": [""],
        "addresses": False,
        "calendar secrets": 0,
        "mbn secrets": 0,
        "calendar users": 0,
        "absences": 0,
        "sync runs": 0,
    }
    assert personal_data(recent) == before_recent
    assert Subscription.objects.filter(customer=old).exists()  # invoices hang on it: bookkeeping keeps them
    assert ServiceUser.history.filter(customer_id=old.pk).count() == history_rows  # who was active when
    old.refresh_from_db()
    assert old.purged_at is not None
    assert "1 customer(s) ended 90 days ago or more: purged" in out.getvalue()


def test_a_dry_run_prints_what_would_go_and_deletes_nothing() -> None:
    old = ended_customer("Gammel AS", days_ago=120)
    before = personal_data(old)

    out = StringIO()
    call_command("purge_ended_customers", "--dry-run", stdout=out)

    assert personal_data(old) == before
    assert "would delete: Gammel AS" in out.getvalue()
    assert "names and e-mail addresses of 2 user(s)" in out.getvalue() and "2 sync record(s)" in out.getvalue()


def test_the_purge_runs_daily_on_the_q2_cluster() -> None:
    schedule = Schedule.objects.get(func="sync.jobs.purge_ended_customers_job")
    assert schedule.schedule_type == Schedule.DAILY
