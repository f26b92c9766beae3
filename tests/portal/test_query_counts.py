"""List pages cost the same number of queries with few rows as with many (no N+1)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.models import PortalMembership
from tests.factories import make_users
from tests.portal.conftest import make_tenant, portal_client

pytestmark = pytest.mark.django_db
CEILING = 25

PORTAL_LISTS = ["overview", "users", "invoices", "settings", "subscription", "codes", "connections"]
ADMIN_LISTS = [
    "admin:customers_customer_changelist",
    "admin:customers_subscription_changelist",
    "admin:customers_serviceuser_changelist",
    "admin:billing_invoice_changelist",
    "admin:billing_creditnote_changelist",
    "admin:portal_portalmembership_changelist",
    "admin:sync_calendarsource_changelist",
]


def _queries(client, url: str) -> int:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured.captured_queries)


def _grow(tenant, index: int) -> None:  # type: ignore[no-untyped-def]
    """More users, more portal logins, and another customer with invoices."""
    make_users(tenant.customer, 30)
    for n in range(5):
        portal_client(tenant.customer, f"ekstra{index}-{n}@fjordkraft.example", PortalMembership.Role.ACCOUNTANT)
    make_tenant(f"Vekst {index} AS", f"vekst{index}.example")


@pytest.mark.parametrize("name", PORTAL_LISTS)
def test_portal_pages_have_a_ceiling_that_does_not_grow_with_rows(ours, name):
    url = reverse(f"portal:{name}")
    _queries(ours.admin, url)  # warm the per-process caches (content types, sessions)
    small = _queries(ours.admin, url)
    for index in range(2):
        _grow(ours, index)
    large = _queries(ours.admin, url)
    assert small <= CEILING
    assert large == small, f"{name}: {small} queries with few rows, {large} with many"


@pytest.mark.parametrize("name", ADMIN_LISTS)
def test_admin_lists_have_a_ceiling_that_does_not_grow_with_rows(ours, admin_client, name):
    url = reverse(name)
    _queries(admin_client, url)
    small = _queries(admin_client, url)
    for index in range(2):
        _grow(ours, index)
    large = _queries(admin_client, url)
    assert small <= CEILING
    assert large == small, f"{name}: {small} queries with few rows, {large} with many"
