"""Data minimisation: `PURGE_AFTER_DAYS` after a customer's service ended, its calendar and MBN secrets, its
service users' names and e-mail addresses (also in their audit history, whose active flags billing keeps), its
calendar users, stored absences and sync records are deleted. Invoices, subscriptions and the audit trail that
bookkeeping needs stay (bokføringsloven: 5 years)."""

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from customers.models import Customer, ServiceUser
from sync.models import CalendarSource, CalendarUser, MbnConnection, PushedAbsence, SyncRun

PURGED_DOMAIN = "slettet.invalid"  # e-mail addresses are replaced by slettet-<id>@slettet.invalid


@dataclass(frozen=True)
class Purge:
    """What is (or would be) deleted for one customer."""

    customer: Customer
    sources: int  # calendar sources whose secret goes
    mbn_connections: int
    service_users: int  # names and e-mail addresses
    calendar_users: int
    absences: int
    sync_runs: int

    def describe(self) -> str:
        return (
            f"{self.customer} (ended {self.customer.ended_at:%d.%m.%Y}): secrets of {self.sources} calendar "
            f"source(s) and {self.mbn_connections} MBN connection(s), names and e-mail addresses of "
            f"{self.service_users} user(s), {self.calendar_users} calendar user(s), {self.absences} stored "
            f"absence(s), {self.sync_runs} sync record(s)"
        )


def due_for_purge(*, now: dt.datetime) -> list[Customer]:
    """Customers whose service ended `PURGE_AFTER_DAYS` ago or more and that are not purged yet."""
    cutoff = now - dt.timedelta(days=settings.PURGE_AFTER_DAYS)
    due = Customer.objects.filter(ended_at__lte=cutoff, purged_at__isnull=True)
    return list(due.exclude(pk__in=Customer.objects.served().values("pk")).order_by("pk"))


def plan_purge(*, customer: Customer) -> Purge:
    """What purging the customer deletes (reads only)."""
    return Purge(
        customer=customer,
        sources=CalendarSource.objects.filter(customer=customer).exclude(secret_encrypted="").count(),
        mbn_connections=MbnConnection.objects.filter(customer=customer)
        .exclude(client_secret_encrypted="", password_encrypted="")
        .count(),
        service_users=ServiceUser.objects.filter(customer=customer)
        .exclude(email__endswith=f"@{PURGED_DOMAIN}")
        .count(),
        calendar_users=CalendarUser.objects.filter(source__customer=customer).count(),
        absences=PushedAbsence.objects.filter(service_user__customer=customer).count(),
        sync_runs=SyncRun.objects.filter(source__customer=customer).count(),
    )


@transaction.atomic
def purge_customer(*, customer: Customer, now: dt.datetime) -> Purge:
    """Delete the customer's secrets and personal data (one transaction); returns what went."""
    done = plan_purge(customer=customer)
    CalendarSource.objects.filter(customer=customer).update(secret_encrypted="", active=False)
    MbnConnection.objects.filter(customer=customer).update(
        client_secret_encrypted="", password_encrypted="", active=False
    )
    anonymous = Concat(Value("slettet-"), Cast("id", CharField()), Value(f"@{PURGED_DOMAIN}"))
    ServiceUser.objects.filter(customer=customer).update(email=anonymous, name="")
    ServiceUser.history.filter(customer_id=customer.pk).update(email=anonymous, name="")
    PushedAbsence.objects.filter(service_user__customer=customer).delete()
    SyncRun.objects.filter(source__customer=customer).delete()
    CalendarUser.objects.filter(source__customer=customer).delete()
    Customer.objects.filter(pk=customer.pk).update(purged_at=now)
    return done


def purge_ended_customers(*, now: dt.datetime | None = None, dry_run: bool = False) -> list[Purge]:
    """Purge every customer due (`due_for_purge`); with `dry_run`, only say what would go."""
    now = now or timezone.now()
    customers = due_for_purge(now=now)
    if dry_run:
        return [plan_purge(customer=customer) for customer in customers]
    return [purge_customer(customer=customer, now=now) for customer in customers]
