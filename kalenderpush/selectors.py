"""Reads for the staff dashboard and the customer overview: aggregated in the database, plain data out.

Every function takes the clock (`today` / `now`) as a keyword, and its number of queries does not grow
with the number of customers, users, invoices or sync runs.
"""

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Avg, Count, F, Q, Sum
from django.utils import timezone
from django_q.models import Schedule

from billing import usage
from billing.core.invoicing import Contract, quarter_invoice
from billing.models import BillingRun, Invoice, UsageSnapshot
from billing.quarters import Quarter
from customers.models import Contact, Customer, ServiceUser, ServiceUserQuerySet, Subscription, UserCounts
from sync.models import CalendarSource, MbnConnection, PushedAbsence, SyncRun

STALE_AFTER = dt.timedelta(minutes=30)
BILLING_TASK = "billing.tasks.run_quarterly_billing"
USAGE_CHART_DAYS = 365
_DAY = dt.timedelta(days=1)


# --- customers by subscription status -------------------------------------------------------------


def customer_counts_by_status() -> dict[str, int]:
    """{status: customers} by `CustomerQuerySet.with_subscription_status`, the definition the admin's
    subscription status filter uses too. Every key of Subscription.Status and NO_SUBSCRIPTION is present."""
    return Customer.objects.counts_by_subscription_status()


# --- active users over time -----------------------------------------------------------------------


def active_users_by_day(*, today: dt.date, days: int = USAGE_CHART_DAYS) -> list[tuple[dt.date, int]]:
    """Σ active users of all customers per day (the daily usage snapshots), the last `days` days up to today."""
    first = today - (days - 1) * _DAY
    return list(
        UsageSnapshot.objects.filter(day__gte=first, day__lte=today)
        .order_by("day")
        .values("day")
        .annotate(users=Sum("active_users"))
        .values_list("day", "users")
    )


# --- monthly recurring revenue --------------------------------------------------------------------


def monthly_charge(*, users: int, monthly_price: Decimal, month: dt.date) -> Decimal:
    """Net charge for a whole month with a steady number of users, minimum included (billing.md).

    Computed by the billing core itself: the invoice of a contract that runs exactly that month, without a
    setup fee, so the rounding and the kr 200 floor are the ones the billing run applies.
    """
    first = month.replace(day=1)
    last = (first + 32 * _DAY).replace(day=1) - _DAY
    contract = Contract(term_months=0, go_live=first, monthly_price=monthly_price, setup_fee=Decimal("0.00"))
    invoice = quarter_invoice(contract=contract, quarter_start=first, users_on=lambda _day: users, until=last)
    assert invoice is not None  # the month is billed from its first day
    return invoice.net


@dataclass(frozen=True)
class CustomerRevenue:
    customer_id: int
    customer_number: int
    name: str
    users: int
    monthly_price: Decimal
    amount: Decimal

    @property
    def minimum_applied(self) -> bool:
        return self.amount > self.users * self.monthly_price


@dataclass(frozen=True)
class RecurringRevenue:
    total: Decimal
    customers: list[CustomerRevenue]  # highest first


def recurring_revenue(*, today: dt.date, customer_ids: Iterable[int] | None = None) -> RecurringRevenue:
    """MRR: for every live subscription (notice given included), today's active users × its monthly price,
    with the monthly minimum per customer."""
    subscriptions = Subscription.objects.filter(
        status__in=[Subscription.Status.LIVE, Subscription.Status.NOTICE_GIVEN], monthly_price__isnull=False
    )
    if customer_ids is not None:
        subscriptions = subscriptions.filter(customer_id__in=list(customer_ids))
    rows = list(
        subscriptions.values_list("customer_id", "customer__customer_number", "customer__name", "monthly_price")
    )
    users = usage.active_users_at_end_of(day=today, customer_ids=[row[0] for row in rows]) if rows else {}
    customers = [
        CustomerRevenue(
            customer_id=customer_id,
            customer_number=number,
            name=name,
            users=users[customer_id],
            monthly_price=price,
            amount=monthly_charge(users=users[customer_id], monthly_price=price, month=today),
        )
        for customer_id, number, name, price in rows
        if price is not None  # frozen on save; the filter above already excludes empty prices
    ]
    customers.sort(key=lambda revenue: (-revenue.amount, revenue.name))
    return RecurringRevenue(sum((c.amount for c in customers), Decimal("0.00")), customers)


# --- sync health ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncHealth:
    stale_since: dt.datetime  # active sources without a success since then are stale
    runs_since: dt.datetime  # the run figures cover the time since then
    sources_with_error: int
    stale_sources: int  # succeeded once, but not since stale_since
    never_synced_sources: int
    failing_sources: list[CalendarSource]  # with customer; the first few, never or longest ago succeeded first
    calendar_users_with_error: int  # active, matched users whose last sync failed (not the unmatched)
    unmatched_users: int  # active service users without an MBN number: not an error
    runs: int
    runs_with_error: int
    latency_average_ms: float | None
    latency_p95_ms: int | None


def sync_health(*, now: dt.datetime, failing_limit: int = 10) -> SyncHealth:
    stale_since, runs_since = now - STALE_AFTER, now - dt.timedelta(hours=24)
    has_error = ~Q(last_error="")
    sources = CalendarSource.objects.filter(active=True)
    source_counts = sources.aggregate(
        with_error=Count("pk", filter=has_error),
        stale=Count("pk", filter=Q(last_success_at__lt=stale_since)),
        never=Count("pk", filter=Q(last_success_at__isnull=True)),
    )
    failing = list(
        sources.filter(has_error)
        .select_related("customer")
        .order_by(F("last_success_at").asc(nulls_first=True), "pk")[:failing_limit]
    )
    recent_runs = SyncRun.objects.filter(started_at__gte=runs_since)
    run_counts = recent_runs.aggregate(
        runs=Count("pk"),
        with_error=Count("pk", filter=~Q(error="")),
        timed=Count("latency_ms"),
        average=Avg("latency_ms"),
    )
    p95 = None
    if run_counts["timed"]:
        rank = math.ceil(0.95 * run_counts["timed"])  # nearest-rank percentile
        p95 = (
            recent_runs.filter(latency_ms__isnull=False)
            .order_by("latency_ms")
            .values_list("latency_ms", flat=True)[rank - 1]
        )
    return SyncHealth(
        stale_since=stale_since,
        runs_since=runs_since,
        sources_with_error=source_counts["with_error"],
        stale_sources=source_counts["stale"],
        never_synced_sources=source_counts["never"],
        failing_sources=failing,
        calendar_users_with_error=ServiceUser.objects.failing().count(),
        unmatched_users=ServiceUser.objects.unmatched().count(),
        runs=run_counts["runs"],
        runs_with_error=run_counts["with_error"],
        latency_average_ms=run_counts["average"],
        latency_p95_ms=p95,
    )


# --- the quarterly billing run --------------------------------------------------------------------


@dataclass(frozen=True)
class BillingOutlook:
    quarter: Quarter  # the quarter the next scheduled run invoices
    run_at: dt.datetime | None  # when the schedule runs next; None without a schedule
    schedule_id: int | None
    overdue: bool  # the schedule's time has passed without the cluster running it
    last_run: BillingRun | None
    unbilled_quarter: Quarter | None  # the last finished quarter, when it has billable days but no finished run


def billing_outlook(*, today: dt.date, now: dt.datetime) -> BillingOutlook:
    schedule = Schedule.objects.filter(func=BILLING_TASK).exclude(repeats=0).order_by("next_run").first()
    run_at = schedule.next_run if schedule is not None else None
    # Without a schedule the current quarter is next, invoiced by hand from the day after it ends.
    quarter = Quarter.last_finished(timezone.localdate(run_at)) if run_at is not None else Quarter.containing(today)
    last_finished = Quarter.last_finished(today)
    billed = BillingRun.objects.filter(
        quarter=last_finished.label, status__in=[BillingRun.Status.FINISHED, BillingRun.Status.FINISHED_WITH_ERRORS]
    ).exists()
    billable = (
        Subscription.objects.exclude(status=Subscription.Status.PENDING).filter(go_live__lte=last_finished.end).exists()
    )
    return BillingOutlook(
        quarter=quarter,
        run_at=run_at,
        schedule_id=schedule.pk if schedule is not None else None,
        overdue=run_at is not None and run_at < now,
        last_run=BillingRun.objects.order_by("-started_at").first(),
        unbilled_quarter=last_finished if billable and not billed and last_finished != quarter else None,
    )


# --- one customer ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerOverview:
    customer: Customer
    mbn_connection: MbnConnection | None
    subscriptions: list[Subscription]  # newest first
    contacts: list[Contact]
    sources: list[CalendarSource]
    users: UserCounts
    latest_snapshot: UsageSnapshot | None
    revenue: CustomerRevenue | None  # None without a live subscription
    invoices: list[Invoice]  # the most recent
    invoice_count: int
    sync_runs: list[SyncRun]  # the most recent
    service: "ServiceLifecycle"

    @property
    def current_subscription(self) -> Subscription | None:
        """The open subscription, else the newest ended one (`Subscription.current_among`)."""
        return Subscription.current_among(self.subscriptions)


@dataclass(frozen=True)
class ServiceLifecycle:
    """Whether the customer is served, and what of ours is left on MBN for the users no longer served."""

    paused: bool
    ended_at: dt.datetime | None
    stopped: int  # users stopped: their absences on MBN deleted, subscription or channel ended
    stopping: int  # users still being stopped (MBN or the calendar service is retried)
    absences_left: int  # future absences of ours on MBN for users no longer served, as last pushed

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


def service_lifecycle(*, customer: Customer, now: dt.datetime) -> ServiceLifecycle:
    """The customer's service state for the staff pages: two queries."""
    users = ServiceUser.objects.filter(customer=customer).aggregate(
        n_stopped=Count("pk", filter=Q(stopped_at__isnull=False)),
        n_stopping=Count("pk", filter=ServiceUserQuerySet.STOPPING),
    )
    left = PushedAbsence.objects.filter(service_user__customer=customer, end__gt=now).exclude(
        service_user__stop_reason=""
    )
    return ServiceLifecycle(
        paused=customer.service_paused,
        ended_at=customer.ended_at,
        stopped=users["n_stopped"],
        stopping=users["n_stopping"],
        absences_left=left.count(),
    )


def customer_overview(*, customer_id: int, today: dt.date, invoices: int = 10, sync_runs: int = 15) -> CustomerOverview:
    """Everything staff need about one customer. Raises Customer.DoesNotExist for an unknown id."""
    customer = Customer.objects.get(pk=customer_id)
    mbn_connection = MbnConnection.objects.filter(customer=customer).first()
    revenue = recurring_revenue(today=today, customer_ids=[customer.pk]).customers
    return CustomerOverview(
        customer=customer,
        mbn_connection=mbn_connection,
        subscriptions=list(customer.subscriptions.select_related("price_list").order_by("-signed_on", "-id")),
        contacts=list(customer.contacts.all()),
        sources=list(customer.calendar_sources.all()),
        users=ServiceUser.objects.filter(customer=customer).state_counts(),
        latest_snapshot=customer.usage_snapshots.order_by("-day").first(),
        revenue=revenue[0] if revenue else None,
        invoices=list(customer.invoices.order_by("-period_start", "-id")[:invoices]),
        invoice_count=customer.invoices.count(),
        sync_runs=list(
            SyncRun.objects.filter(source__customer=customer)
            .select_related("source", "service_user")
            .order_by("-started_at")[:sync_runs]
        ),
        service=service_lifecycle(customer=customer, now=timezone.now()),
    )
