"""Nettsoft staff in the admin, in a real browser: a customer's notice, then the quarter's invoices."""

import re
import time
from typing import Any

import pytest
from django_q.conf import Conf
from playwright.sync_api import Page, expect

from billing.models import BillingRun, Invoice
from billing.quarters import Quarter
from customers.models import Subscription
from tests.e2e.helpers import admin_sign_in, live_customer, make_staff, shot, today

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def run_action(page: Page, action: str) -> None:
    page.locator("select[name=action]").select_option(action)
    page.locator("button[name=index]").click()


def finished_billing_run(quarter: str, seconds: float = 60) -> BillingRun:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = BillingRun.objects.filter(quarter=quarter).exclude(status=BillingRun.Status.RUNNING).first()
        if run is not None:
            return run
        time.sleep(0.3)
    raise AssertionError(f"the billing run of {quarter} did not finish within {seconds} s")


def test_staff_registers_a_notice_then_bills_and_issues_the_quarter(page: Page, monkeypatch: Any) -> None:
    quarter = Quarter.last_finished(today())
    bygg = live_customer(
        users=25,
        name="Bergen Bygg og Anlegg AS",
        address_line="Strandkaien 4",
        postal_code="5013",
        city="Bergen",
        invoice_email="faktura@bergenbygg.no",
    )
    elektro = live_customer(
        users=9,
        name="Trøndelag Elektro AS",
        address_line="Munkegata 20",
        postal_code="7011",
        city="Trondheim",
        invoice_email="regnskap@trondelag-elektro.no",
    )
    make_staff("line.berg@nettsoft.no")
    page.set_viewport_size({"width": 1280, "height": 800})

    admin_sign_in(page, "line.berg@nettsoft.no")
    expect(page.locator("#dashboard-link")).to_be_visible()
    shot(page, "admin-index", doc="admin-index")

    dashboard = page.goto("/admin/dashboard/")
    assert dashboard is not None and dashboard.status == 200, "the staff dashboard renders"
    shot(page, "admin-dashboard", doc="admin-dashboard")
    overview = page.goto(f"/admin/customers/customer/{bygg.customer_id}/overview/")
    assert overview is not None and overview.status == 200, "the customer overview renders"
    shot(page, "admin-customer-overview", doc="admin-customer-overview")

    # The customer's written notice arrived today: register it through the subscription action.
    page.goto("/admin/customers/subscription/")
    page.locator(f"input.action-select[value='{bygg.pk}']").check()
    run_action(page, "register_notice")
    expect(page.locator("#id_notice_received")).to_have_value(today().isoformat())
    page.locator("input[name=preview]").click()
    expect(page.locator("#termination-preview")).to_be_visible()
    shot(page, "admin-register-notice", doc="admin-register-notice")
    page.locator("input[name=confirm]").click()
    expect(page.locator(".messagelist .success a[href$='termination-letter.pdf']")).to_be_visible()
    bygg.refresh_from_db()
    assert (bygg.status, bygg.notice_received) == (Subscription.Status.NOTICE_GIVEN, today())

    # Billing run for the quarter just finished (the q2 task runs inline here, as a worker would).
    page.goto("/admin/billing/billingrun/")
    page.locator("a[href='/admin/billing/billingrun/run/']").click()
    expect(page.locator("#id_quarter")).to_have_value(quarter.label)
    shot(page, "admin-billing-run", doc="admin-billing-run")
    monkeypatch.setattr(Conf, "SYNC", True)
    page.locator("form input[type=submit].default").click()
    expect(page.locator(".messagelist .success")).to_contain_text(quarter.label)
    monkeypatch.setattr(Conf, "SYNC", False)  # issuing queues the e-mails; they need not run here
    run = finished_billing_run(quarter.label)  # at once here; against a served stack its q2 cluster runs it
    assert (run.status, run.invoices_created) == (BillingRun.Status.FINISHED, 2)
    page.goto("/admin/billing/billingrun/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    shot(page, "admin-billing-runs")

    # Review the drafts and issue them.
    page.goto("/admin/billing/invoice/?status__exact=draft")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.locator("#action-toggle").check()
    run_action(page, "issue_selected")
    expect(page.locator(".messagelist .success")).to_be_visible()
    invoices = list(Invoice.objects.filter(quarter=quarter.label).order_by("number"))
    assert {invoice.subscription_id for invoice in invoices} == {bygg.pk, elektro.pk}
    assert all(invoice.status == Invoice.Status.ISSUED and invoice.number for invoice in invoices)

    page.goto("/admin/billing/invoice/")
    numbers = page.locator("#result_list .field-number_display")
    expect(numbers).to_have_count(2)
    assert sorted(int(text) for text in numbers.all_inner_texts()) == [invoice.number for invoice in invoices]
    expect(page.locator(f"#result_list a[href='/admin/billing/invoice/{invoices[0].pk}/pdf/']")).to_be_visible()
    shot(page, "admin-invoices", doc="admin-invoices")

    # Pages the staff guide shows: the audit history, inviting portal users, lockouts and 2FA devices.
    page.goto(f"/admin/customers/subscription/{bygg.pk}/history/")
    expect(page.locator("#change-history")).to_contain_text(re.compile("line.berg@nettsoft.no|Line Berg"))
    shot(page, "admin-subscription-history", doc="admin-history")
    for url, name in [
        ("/admin/portal/portalmembership/add/", "admin-portal-user-add"),
        ("/admin/axes/accessattempt/", "admin-axes-attempts"),
        ("/admin/otp_totp/totpdevice/add/", "admin-totp-add"),
    ]:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        shot(page, name, doc=name)
