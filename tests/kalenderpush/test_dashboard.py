"""The staff dashboard and the customer overview in admin: what staff read there, and that it stays cheap."""

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule
from simple_history.utils import bulk_create_with_history

from billing.models import BillingRun, Invoice, UsageSnapshot
from billing.quarters import Quarter
from customers.models import Customer, ServiceUser, Subscription
from kalenderpush import selectors
from sync.models import CalendarSource, CalendarUser, MbnConnection, SyncRun
from tests.factories import make_customer, make_subscription

pytestmark = pytest.mark.django_db

OSLO = ZoneInfo("Europe/Oslo")
NBSP = "\u00a0"
DAY = dt.timedelta(days=1)
SIGNED = dt.date(2025, 1, 1)
GO_LIVE = dt.date(2025, 2, 1)
DASHBOARD_QUERIES = 18
OVERVIEW_QUERIES = 21


@pytest.fixture(autouse=True)
def _no_second_factor(settings):
    settings.OTP_REQUIRED_FOR_STAFF = False


def users(customer: Customer, count: int, *, matched: bool = True) -> list[ServiceUser]:
    """Service users with history (billing counts users from it), active since before go-live."""
    start = customer.service_users.count()
    rows = [
        ServiceUser(
            customer=customer,
            email=f"user{start + i}@{customer.org_number}.example",
            msisdn=f"+479{customer.customer_number % 100:02d}{start + i:05d}" if matched else "",
        )
        for i in range(count)
    ]
    return bulk_create_with_history(rows, ServiceUser, default_date=dt.datetime(2025, 1, 15, 12, tzinfo=OSLO))


def customer_with(status: str | None, *, name: str = "Testfirma AS", **subscription: object) -> Customer:
    customer = make_customer(name=name)
    if status is None:
        return customer
    fields: dict[str, object] = {"term_months": 12, "signed_on": SIGNED, "status": status}
    if status != Subscription.Status.PENDING:
        fields["go_live"] = GO_LIVE
    if status == Subscription.Status.NOTICE_GIVEN:
        fields["notice_received"] = dt.date(2026, 10, 1)
    fields.update(subscription)
    make_subscription(customer, **fields)
    return customer


def status_counts(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-status="(\w+)">([^<]+)</a>', page))


def admin_links(page: str) -> list[str]:
    return sorted({href.replace("&amp;", "&") for href in re.findall(r'href="(/admin/[^"]*)"', page)})


# --- the dashboard --------------------------------------------------------------------------------


def test_it_counts_customers_by_the_status_of_their_subscription(admin_client):
    for status, count in [("pending", 1), ("live", 2), ("notice_given", 1), ("ended", 3), (None, 2)]:
        for _index in range(count):
            customer_with(status)
    returning = customer_with("ended")  # ended once, signed again: counts by its open subscription
    make_subscription(returning, term_months=24, signed_on=dt.date(2026, 6, 1), status="pending")

    page = admin_client.get(reverse("admin:dashboard")).content.decode()

    assert status_counts(page) == {"pending": "2", "live": "2", "notice_given": "1", "ended": "3", "none": "2"}
    live = admin_client.get(reverse("admin:customers_customer_changelist"), {"subscription_status": "live"})
    assert live.status_code == 200 and live.context["cl"].result_count == 2


def test_each_status_count_is_the_number_of_customers_its_link_lists(admin_client):
    for status in ["pending", "live", "live", "notice_given", "ended", "ended", None]:
        customer_with(status)
    returning = customer_with("ended")  # ended once, signed again: pending, not ended
    make_subscription(returning, term_months=24, signed_on=dt.date(2026, 6, 1), status="pending")
    renewed = customer_with("ended")  # ended once, live again: live only
    make_subscription(
        renewed, term_months=12, signed_on=dt.date(2026, 3, 1), status="live", go_live=dt.date(2026, 4, 1)
    )

    page = admin_client.get(reverse("admin:dashboard")).content.decode()
    links = dict(re.findall(r'<a href="([^"]+)"[^>]*data-status="(\w+)">', page))

    shown = status_counts(page)
    assert shown == {"pending": "2", "live": "3", "notice_given": "1", "ended": "2", "none": "1"}
    for url, status in links.items():
        listed = admin_client.get(url.replace("&amp;", "&"))
        assert listed.context["cl"].result_count == int(shown[status]), status
    assert sorted(links.values()) == sorted(shown)


def test_it_shows_monthly_recurring_revenue_with_the_monthly_minimum_per_customer(admin_client):
    big = customer_with("live", name="Stor Kunde AS", monthly_price=Decimal("11.00"))
    users(big, 120)
    users(big, 7, matched=False)  # not matched to MBN: not billed
    small = customer_with("live", name="Liten Kunde AS", monthly_price=Decimal("15.00"))
    users(small, 10)  # 150.00, below the minimum: 200.00
    leaving = customer_with("notice_given", name="Oppsagt AS", monthly_price=Decimal("10.00"))
    users(leaving, 25)  # 250.00
    waiting = customer_with("pending", name="Venter AS", monthly_price=Decimal("12.00"))
    users(waiting, 50)  # not live: no revenue yet

    page = admin_client.get(reverse("admin:dashboard")).content.decode()

    total = re.search(r'id="mrr-total">([^<]+)<', page)
    assert total is not None and total[1] == f"kr{NBSP}1{NBSP}770,00"  # 1 320 + 200 + 250
    rows = re.findall(r'<td><a href="[^"]+">([^<]+)</a></td>\s*<td class="kp-number">(\d+)</td>', page)
    assert rows == [("Stor Kunde AS", "120"), ("Oppsagt AS", "25"), ("Liten Kunde AS", "10")]
    assert f"kr{NBSP}1{NBSP}320,00" in page and f"kr{NBSP}200,00" in page
    assert "Venter AS" not in page


def test_the_revenue_of_a_month_is_the_billing_cores_own_number():
    assert selectors.monthly_charge(users=0, monthly_price=Decimal("12.00"), month=dt.date(2026, 2, 10)) == Decimal(
        "200.00"
    )
    assert selectors.monthly_charge(users=17, monthly_price=Decimal("11.00"), month=dt.date(2026, 2, 10)) == Decimal(
        "200.00"
    )
    assert selectors.monthly_charge(users=19, monthly_price=Decimal("11.00"), month=dt.date(2026, 3, 1)) == Decimal(
        "209.00"
    )


def test_it_lists_failing_and_stale_sources_and_sync_problems(admin_client):
    now = timezone.now()
    broken = customer_with("live", name="Feilende AS")
    source = CalendarSource.objects.create(
        customer=broken,
        activation_group="kalenderpush",
        last_success_at=now - dt.timedelta(hours=3),
        last_error="AADSTS7000215: Invalid client secret provided.",
    )
    healthy = customer_with("live", name="Frisk AS")
    CalendarSource.objects.create(customer=healthy, activation_group="alle", last_success_at=now)
    failing_user, *_rest = users(broken, 3)
    users(broken, 2, matched=False)
    CalendarUser.objects.create(service_user=failing_user, source=source, provider_user_id="x", last_error="410 Gone")
    for minutes, latency, error in [(5, 1000, ""), (10, 2000, ""), (15, 9000, "MBN 503"), (60 * 30, 99999, "old")]:
        SyncRun.objects.create(
            source=source, started_at=now - dt.timedelta(minutes=minutes), latency_ms=latency, error=error
        )

    health = selectors.sync_health(now=now)
    page = admin_client.get(reverse("admin:dashboard")).content.decode()

    assert (health.sources_with_error, health.stale_sources, health.calendar_users_with_error) == (1, 1, 1)
    assert (health.unmatched_users, health.runs, health.runs_with_error) == (2, 3, 1)
    assert (health.latency_average_ms, health.latency_p95_ms) == (4000, 9000)
    failing = page[page.index('id="failing-sources"') :]
    assert "Feilende AS" in failing and "AADSTS7000215: Invalid client secret provided." in failing
    assert "Frisk AS" not in failing
    assert f"4{NBSP}000 ms" in page and f"9{NBSP}000 ms" in page
    sources = admin_client.get(
        reverse("admin:sync_calendarsource_changelist"), {"active__exact": 1, "last_error__gt": ""}
    )
    assert [s.pk for s in sources.context["cl"].result_list] == [source.pk]


def test_it_names_the_quarter_the_next_billing_run_invoices(admin_client):
    schedule = Schedule.objects.get(func="billing.tasks.run_quarterly_billing")
    schedule.next_run = timezone.now() + dt.timedelta(days=40)
    schedule.save()
    BillingRun.objects.create(quarter="2026-Q2", status=BillingRun.Status.FINISHED_WITH_ERRORS, invoices_created=4)
    expected = Quarter.last_finished(timezone.localdate(schedule.next_run)).label

    page = admin_client.get(reverse("admin:dashboard")).content.decode()

    assert f'id="next-quarter"><strong>{expected}</strong>' in page
    assert reverse("admin:billing_billingrun_run") in page
    assert reverse("admin:django_q_schedule_change", args=[schedule.pk]) in page
    assert "2026-Q2" in page


def test_the_next_quarter_follows_the_schedule():
    schedule = Schedule.objects.get(func="billing.tasks.run_quarterly_billing")
    schedule.next_run = dt.datetime(2027, 4, 1, 3, 0, tzinfo=OSLO)
    schedule.save()
    outlook = selectors.billing_outlook(today=dt.date(2027, 2, 10), now=dt.datetime(2027, 2, 10, 12, tzinfo=OSLO))
    assert outlook.quarter.label == "2027-Q1" and not outlook.overdue

    customer_with("live")  # live since 2025: 2026-Q4 should have been invoiced
    Schedule.objects.all().delete()
    outlook = selectors.billing_outlook(today=dt.date(2027, 2, 10), now=dt.datetime(2027, 2, 10, 12, tzinfo=OSLO))
    assert outlook.quarter.label == "2027-Q1" and outlook.run_at is None
    assert outlook.unbilled_quarter is not None and outlook.unbilled_quarter.label == "2026-Q4"


def test_it_charts_the_active_users_of_all_customers_per_day(admin_client):
    today = timezone.localdate()
    first, second = customer_with("live"), customer_with("live")
    UsageSnapshot.objects.bulk_create(
        [UsageSnapshot(customer=first, day=today - days * DAY, active_users=100 + days) for days in range(1, 41)]
        + [UsageSnapshot(customer=second, day=today - days * DAY, active_users=7) for days in range(30, 41)]
        + [UsageSnapshot(customer=second, day=today - 400 * DAY, active_users=5000)]  # older than 12 months
    )

    page = admin_client.get(reverse("admin:dashboard")).content.decode()

    start = page.index('<svg class="kp-chart"')
    chart = page[start : page.index("</svg>", start)]
    assert 'role="img"' in chart and "<title" in chart
    points = re.search(r'<polyline class="kp-line" points="([^"]+)"', chart)
    assert points is not None and len(points[1].split()) == 40
    assert "highest 147" in chart or "høyeste 147" in chart  # 140 + 7, forty days ago
    assert "5000" not in chart and f"5{NBSP}000" not in chart
    assert "<table>" in page[page.index("<details") :]  # the text alternative


def test_every_link_on_the_dashboard_opens(admin_client):
    customer = customer_with("live")
    CalendarSource.objects.create(customer=customer, activation_group="g", last_error="boom")
    users(customer, 2)
    BillingRun.objects.create(quarter="2026-Q3", status=BillingRun.Status.FINISHED)

    page = admin_client.get(reverse("admin:dashboard")).content.decode()

    links = [link for link in admin_links(page) if "/logout/" not in link]
    assert len(links) > 15
    for link in links:
        assert admin_client.get(link).status_code == 200, link


# --- the customer overview ------------------------------------------------------------------------


def invoice_for(customer: Customer, *, number: int | None, quarter: str = "2026-Q1") -> Invoice:
    year, q = int(quarter[:4]), int(quarter[-1])
    start = dt.date(year, 3 * q - 2, 1)
    return Invoice.objects.create(
        customer=customer,
        subscription=customer.subscriptions.get(),
        quarter=quarter,
        period_start=start,
        period_end=Quarter(year, q).end,
        status=Invoice.Status.ISSUED if number else Invoice.Status.DRAFT,
        number=number,
        issue_date=start + dt.timedelta(days=92) if number else None,
        net=Decimal("1000.00"),
        vat=Decimal("250.00"),
        total=Decimal("1250.00"),
    )


def test_the_overview_shows_the_customers_invoices_and_not_anothers(admin_client):
    customer = customer_with("live", name="Kunde AS", monthly_price=Decimal("12.00"))
    other = customer_with("live", name="Annen AS")
    issued = invoice_for(customer, number=1001, quarter="2026-Q1")
    draft = invoice_for(customer, number=None, quarter="2026-Q2")
    foreign = invoice_for(other, number=1002)

    page = admin_client.get(reverse("admin:customers_customer_overview", args=[customer.pk])).content.decode()

    assert f'data-invoice="{issued.pk}"' in page and f'data-invoice="{draft.pk}"' in page
    assert f'data-invoice="{foreign.pk}"' not in page and "1002" not in page
    assert reverse("admin:billing_invoice_pdf", args=[issued.pk]) in page
    assert reverse("admin:billing_invoice_pdf", args=[draft.pk]) not in page  # drafts have no PDF yet
    assert reverse("admin:billing_invoice_change", args=[issued.pk]) in page
    assert f"kr{NBSP}1{NBSP}250,00" in page


def test_the_overview_shows_subscription_users_sources_and_mbn_without_secrets(admin_client):
    customer = customer_with("notice_given", name="Kunde AS", monthly_price=Decimal("12.00"), term_months=12)
    failing, *_rest = users(customer, 20)
    users(customer, 3, matched=False)
    source = CalendarSource.objects.create(
        customer=customer, activation_group="kalender-push", last_error="The service account lost impersonation."
    )
    CalendarUser.objects.create(service_user=failing, source=source, provider_user_id="1", last_error="403")
    connection = MbnConnection(customer=customer, enterprise_id="ENT-42", client_id="mbn-client", username="api")
    connection.set_secrets(client_secret="very-secret-value", password="hunter2-password")
    connection.save()
    SyncRun.objects.create(source=source, service_user=failing, started_at=timezone.now(), latency_ms=1234)

    page = admin_client.get(reverse("admin:customers_customer_overview", args=[customer.pk])).content.decode()

    assert "31.01.2026" in page  # binding end: go-live 01.02.2025 + 12 months − 1 day
    assert "31.01.2027" in page  # effective end: notice 01.10.2026 + 3 months
    assert f"kr{NBSP}12,00" in page and f"kr{NBSP}240,00" in page  # 20 users × 12.00
    counts = re.findall(r'<td class="kp-number"><a href="[^"]+">(\d+)</a></td>', page)
    assert counts[:5] == ["23", "23", "20", "3", "1"]  # total, active, matched, unmatched, failing
    assert "The service account lost impersonation." in page and "ENT-42" in page
    assert "very-secret-value" not in page and "hunter2-password" not in page
    assert connection.client_secret_encrypted not in page
    assert "<svg" in page  # the sync-health chart
    runs = page[page.index('id="sync-runs"') :]
    assert f"1{NBSP}234 ms" in runs and failing.email in runs


def test_every_link_on_the_overview_opens(admin_client):
    customer = customer_with("live")
    users(customer, 2)
    source = CalendarSource.objects.create(customer=customer, activation_group="g")
    SyncRun.objects.create(source=source, started_at=timezone.now())
    invoice_for(customer, number=None)

    page = admin_client.get(reverse("admin:customers_customer_overview", args=[customer.pk])).content.decode()

    links = [link for link in admin_links(page) if "/logout/" not in link and "/pdf/" not in link]
    assert len(links) > 10
    for link in links:
        assert admin_client.get(link).status_code == 200, link


def test_an_unknown_customer_is_404(admin_client):
    assert admin_client.get(reverse("admin:customers_customer_overview", args=[999999])).status_code == 404


@pytest.mark.parametrize("name", ["admin:dashboard", "admin:customers_customer_overview"])
def test_non_staff_are_sent_to_the_login(client, name):
    customer = customer_with("live")
    url = reverse(name, args=[customer.pk] if "overview" in name else [])
    user = get_user_model().objects.create_user("kunde", password="pw-for-tests-only", is_staff=False)

    anonymous = client.get(url)
    client.force_login(user)
    logged_in = client.get(url)

    for response in (anonymous, logged_in):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_the_customer_page_links_to_the_overview(admin_client):
    customer = customer_with("live")
    page = admin_client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    overview = reverse("admin:customers_customer_overview", args=[customer.pk])
    assert f'<a href="{overview}"' in page
    assert 'class="object-tools"' in page[: page.index(overview)]


def test_the_admin_index_links_to_the_dashboard(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:dashboard")}"' in page
    assert "app-customers" in page  # the app list is still there


# --- query counts ---------------------------------------------------------------------------------


def populate(count: int) -> list[Customer]:
    """`count` customers with everything the pages read: users, sources, runs, snapshots and invoices."""
    now, today = timezone.now(), timezone.localdate()
    customers = []
    for index in range(count):
        customer = customer_with(["live", "notice_given", "pending", "ended"][index % 4], name=f"Kunde {index:03d} AS")
        people = users(customer, 4 + index % 3) + users(customer, 1, matched=False)
        source = CalendarSource.objects.create(
            customer=customer,
            activation_group="g",
            last_success_at=now - dt.timedelta(minutes=index * 7),
            last_error="boom" if index % 2 else "",
        )
        CalendarUser.objects.create(service_user=people[0], source=source, provider_user_id="p", last_error="e")
        MbnConnection.objects.create(customer=customer, enterprise_id=f"E{index}", client_id="c", username="u")
        SyncRun.objects.bulk_create(
            SyncRun(
                source=source,
                service_user=people[run % len(people)],
                started_at=now - dt.timedelta(minutes=run * 20),
                latency_ms=500 + run * 10,
                error="x" if run == 2 else "",
            )
            for run in range(5)
        )
        UsageSnapshot.objects.bulk_create(
            UsageSnapshot(customer=customer, day=today - days * DAY, active_users=4 + index % 3) for days in range(1, 8)
        )
        customer.contacts.create(name=f"Kontakt {index}", email=f"k{index}@example.no")
        if index % 4 != 2:  # pending subscriptions are not billed
            invoice_for(customer, number=5000 + index, quarter="2026-Q1")
            invoice_for(customer, number=None, quarter="2026-Q2")
        customers.append(customer)
    return customers


@pytest.mark.parametrize("count", [3, 30])
def test_the_dashboard_queries_do_not_grow_with_customers(admin_client, django_assert_max_num_queries, count):
    populate(count)
    with django_assert_max_num_queries(DASHBOARD_QUERIES):
        response = admin_client.get(reverse("admin:dashboard"))
    assert response.status_code == 200
    assert sum(int(n) for n in status_counts(response.content.decode()).values()) == count


@pytest.mark.parametrize("count", [3, 30])
def test_the_overview_queries_do_not_grow_with_users_or_invoices(admin_client, django_assert_max_num_queries, count):
    customer = populate(1)[0]
    users(customer, count * 3)
    for quarter in range(count):
        source = customer.calendar_sources.get()
        SyncRun.objects.create(source=source, started_at=timezone.now() - quarter * DAY)
    for year_quarter in range(min(count, 20)):
        year, q = 2020 + year_quarter // 4, year_quarter % 4 + 1
        invoice_for(customer, number=8000 + year_quarter, quarter=f"{year}-Q{q}")
    with django_assert_max_num_queries(OVERVIEW_QUERIES):
        response = admin_client.get(reverse("admin:customers_customer_overview", args=[customer.pk]))
    assert response.status_code == 200
