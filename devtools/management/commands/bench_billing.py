"""`bench_billing --customers N --users M [--json]`: the billing run's speed and queries at scale.

Builds N customers with M active users each and the last finished quarter of daily snapshots, runs the
quarterly billing run and reports wall time and database queries. Everything happens in one transaction
that is rolled back, so the database is left as it was.
"""

import datetime as dt
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing.models import UsageSnapshot
from billing.quarters import Quarter
from billing.services import run_billing
from customers.models import FIRST_CUSTOMER_NUMBER, Customer, PriceList, ServiceUser, Subscription
from customers.validators import org_numbers_from


class _Rollback(Exception):
    pass


class _QueryCounter:
    """Counts every statement sent to the database (no cap, unlike the debug query log)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        self.count += 1
        return execute(sql, params, many, context)


class Command(BaseCommand):
    help = "Measures the quarterly billing run on N synthetic customers with M users (rolled back afterwards)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=200)
        parser.add_argument("--users", type=int, default=50)
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        customers, users = options["customers"], options["users"]
        if customers < 1 or users < 0:
            raise CommandError("--customers must be at least 1 and --users at least 0")
        result: dict[str, Any] = {}
        try:
            with transaction.atomic():
                quarter = Quarter.last_finished(timezone.localdate())
                self._build(customers, users, quarter)
                counter = _QueryCounter()
                with connection.execute_wrapper(counter):
                    started = time.perf_counter()
                    run = run_billing(quarter=quarter, today=timezone.localdate())
                    wall = time.perf_counter() - started
                result = {
                    "customers": customers,
                    "invoices": run.invoices_created,
                    "wall_s": round(wall, 3),
                    "queries": counter.count,
                    "queries_per_invoice": round(counter.count / max(run.invoices_created, 1), 2),
                }
                raise _Rollback
        except _Rollback:
            pass
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"{result['customers']} customers × {users} users: {result['invoices']} invoices in "
                f"{result['wall_s']} s, {result['queries']} queries ({result['queries_per_invoice']} per invoice)"
            )

    def _build(self, count: int, users: int, quarter: Quarter) -> None:
        if not PriceList.objects.exists():
            raise CommandError("no price list: run `python manage.py migrate` first")
        first_number = (Customer.objects.aggregate(n=Max("customer_number"))["n"] or FIRST_CUSTOMER_NUMBER) + 1
        taken = set(Customer.objects.values_list("org_number", flat=True))
        numbers = (number for number in org_numbers_from(80000000) if number not in taken)
        customers = Customer.objects.bulk_create(
            Customer(
                customer_number=first_number + i,
                name=f"Benchmark {i} AS",
                org_number=next(numbers),
                address_line="Testveien 1",
                postal_code="0150",
                city="Oslo",
                invoice_email=f"faktura{i}@bench.example",
                peppol_participant="",
            )
            for i in range(count)
        )
        go_live = quarter.start - dt.timedelta(days=40)
        terms = [0, 12, 24, 36]
        subscriptions = [
            Subscription(
                customer=c,
                term_months=terms[i % 4],
                signed_on=go_live,
                go_live=go_live,
                status=Subscription.Status.LIVE,
            )
            for i, c in enumerate(customers)
        ]
        for subscription in subscriptions:
            subscription.freeze_prices()
        Subscription.objects.bulk_create(subscriptions)
        ServiceUser.objects.bulk_create(
            (
                ServiceUser(customer=c, email=f"u{j}@{c.org_number}.example", msisdn=f"+479{j:07d}")
                for c in customers
                for j in range(users)
            ),
            batch_size=5000,
        )
        days = [quarter.start + dt.timedelta(days=d) for d in range((quarter.end - quarter.start).days + 1)]
        UsageSnapshot.objects.bulk_create(
            (
                UsageSnapshot(customer=c, day=day, active_users=max(users - (day.day % 3), 0))
                for c in customers
                for day in days
            ),
            batch_size=5000,
        )
