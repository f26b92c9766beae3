"""Two customers with portal logins, and an issued invoice and credit note each, for the portal tests."""

import datetime as dt
import functools
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing import services as billing
from billing.models import CreditNote, Invoice
from billing.quarters import Quarter
from customers.models import Customer, ServiceUser
from portal.models import PortalMembership
from sync.models import CalendarSource
from tests.billing.factories import live_subscription
from tests.factories import make_users

D = dt.date


@dataclass
class Tenant:
    customer: Customer
    admin: Client
    accountant: Client
    user: ServiceUser
    invoice: Invoice
    credit_note: CreditNote

    @functools.cached_property
    def graph_source(self) -> CalendarSource:
        """A Microsoft 365 source made by admin consent, waiting for its group (made when a test asks)."""
        return CalendarSource.objects.create(
            customer=self.customer, tenant_id=f"tenant-{self.customer.pk}", uses_nettsoft_app=True, active=False
        )


def portal_client(customer: Customer, email: str, role: str) -> Client:
    user = get_user_model().objects.create_user(username=email, email=email, password="Riktig-passord-1")
    PortalMembership.objects.create(user=user, customer=customer, role=role)
    client = Client()
    client.force_login(user)
    return client


def make_tenant(name: str, domain: str) -> Tenant:
    subscription = live_subscription(
        term=12, go_live=D(2026, 1, 5), steps=[(D(2026, 1, 5), 8)], last=D(2026, 6, 30), name=name
    )
    customer = subscription.customer
    make_users(customer, 3)
    billing.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 1))
    billing.run_billing(quarter=Quarter.parse("2026-Q2"), today=D(2026, 7, 1))
    drafts = list(Invoice.objects.filter(customer=customer).order_by("period_start"))
    issued = billing.issue_drafts(invoice_ids=[i.pk for i in drafts], today=D(2026, 7, 2)).issued
    note = billing.credit_invoice(invoice_id=issued[0].pk, reason="Feil antall brukere", today=D(2026, 7, 3))
    return Tenant(
        customer=customer,
        admin=portal_client(customer, f"it@{domain}", PortalMembership.Role.ADMIN),
        accountant=portal_client(customer, f"regnskap@{domain}", PortalMembership.Role.ACCOUNTANT),
        user=customer.service_users.first(),  # type: ignore[arg-type]
        invoice=issued[-1],
        credit_note=note,
    )


@pytest.fixture
def ours(db) -> Tenant:  # type: ignore[no-untyped-def]
    return make_tenant("Fjordkraft Regnskap AS", "fjordkraft.example")


@pytest.fixture
def theirs(db) -> Tenant:  # type: ignore[no-untyped-def]
    return make_tenant("Konkurrent Bygg AS", "konkurrent.example")
