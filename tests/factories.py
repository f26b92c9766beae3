"""Small builders for test data: real rows in the test database, valid by default."""

import datetime as dt

from customers.models import Customer, ServiceUser, Subscription
from customers.services import ensure_customer_settings
from customers.validators import org_numbers_from
from sync.models import CalendarSource, CalendarUser, MbnConnection

_org_numbers = org_numbers_from(91234560)


def make_customer(**fields: object) -> Customer:
    defaults: dict[str, object] = {
        "name": "Testfirma AS",
        "org_number": next(_org_numbers),
        "address_line": "Testveien 1",
        "postal_code": "0150",
        "city": "Oslo",
        "invoice_email": "faktura@testfirma.no",
    }
    defaults.update(fields)
    while Customer.objects.filter(org_number=defaults["org_number"]).exists() and "org_number" not in fields:
        defaults["org_number"] = next(_org_numbers)
    customer = Customer(**defaults)
    customer.full_clean()
    customer.save()
    ensure_customer_settings(customer=customer)
    return customer


def make_subscription(customer: Customer, **fields: object) -> Subscription:
    defaults: dict[str, object] = {"term_months": 12, "signed_on": dt.date(2026, 1, 1)}
    defaults.update(fields)
    subscription = Subscription(customer=customer, **defaults)
    subscription.full_clean()
    subscription.save()
    return subscription


def make_users(customer: Customer, count: int, *, matched: bool = True) -> list[ServiceUser]:
    start = customer.service_users.count()
    return ServiceUser.objects.bulk_create(
        ServiceUser(
            customer=customer,
            email=f"user{start + i}@{customer.org_number}.example",
            name=f"Bruker {start + i}",
            msisdn=f"+4790{start + i:06d}" if matched else "",
        )
        for i in range(count)
    )


def make_calendar_source(customer: Customer, users: list[ServiceUser]) -> CalendarSource:
    """A Microsoft 365 source with its secret, a calendar for each user, and the customer's MBN connection."""
    source = CalendarSource(
        customer=customer,
        tenant_id=f"tenant-{customer.org_number}",
        client_id="kalender-push-app",
        activation_group="Kalender Push",
    )
    source.set_secret("client-secret")
    source.save()
    connection = MbnConnection(
        customer=customer, enterprise_id=f"ENT-{customer.org_number}", client_id="mbn", username="api"
    )
    connection.set_secrets(client_secret="mbn-secret", password="mbn-password")
    connection.save()
    CalendarUser.objects.bulk_create(
        CalendarUser(service_user=user, source=source, provider_user_id=f"user-{user.pk}") for user in users
    )
    return source
