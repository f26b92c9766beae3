"""The staff's connections page of a customer in admin: the same four cards and states as the portal, "Test
again" (recorded with the staff member as the actor), the audit list; no secret shown; the links to it."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from portal.models import PortalMembership
from sync.models import ConnectionEvent, MbnConnection
from tests.factories import make_calendar_source, make_customer, make_users

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_second_factor(settings):  # type: ignore[no-untyped-def]
    settings.OTP_REQUIRED_FOR_STAFF = False


@pytest.fixture
def customer():  # type: ignore[no-untyped-def]
    customer = make_customer(name="Fjellbekk Regnskap AS")
    make_calendar_source(customer, make_users(customer, 2))
    return customer


def _url(customer, name: str = "customers_customer_connections") -> str:  # type: ignore[no-untyped-def]
    return reverse(f"admin:{name}", args=[customer.pk])


def test_staff_see_the_four_connections_and_no_secret(admin_client, customer):
    response = admin_client.get(_url(customer))
    html = response.content.decode()
    assert response.status_code == 200
    cards = re.findall(r'<div class="module connection" id="(\w+)" data-state="(\w+)"', html)
    assert cards == [
        ("microsoft365", "untested"),
        ("google", "not_connected"),
        ("ews", "not_connected"),
        ("mbn", "untested"),
    ]
    for secret in ("client-secret", "mbn-secret", "mbn-password"):
        assert secret not in html
    assert html.count('class="test-again"') == 2


def test_the_customer_page_and_the_overview_link_to_it(admin_client, customer):
    for page in ("customers_customer_change", "customers_customer_overview"):
        html = admin_client.get(_url(customer, page)).content.decode()
        assert f'href="{_url(customer)}"' in html, page


def test_test_again_records_the_result_and_the_staff_member(admin_client, admin_user, customer, settings):
    settings.MBN_PARTNER_CLIENT_ID = ""
    MbnConnection.objects.filter(customer=customer).update(client_id="")  # Nettsoft's partner client, not set
    response = admin_client.post(_url(customer, "customers_customer_connections_test"), {"connection": "mbn"})
    assert response.status_code == 302 and response["Location"] == _url(customer)
    event = ConnectionEvent.objects.get(customer=customer)
    assert (event.connection, event.action, event.actor) == ("mbn", "test_failed", admin_user)
    page = admin_client.get(_url(customer)).content.decode()
    assert re.search(r'id="mbn" data-state="failing"', page)
    assert event.describe() in page
    assert MbnConnection.objects.get(customer=customer).test_error_code == event.error_code


def test_test_again_is_a_post_and_needs_the_change_permission(client, customer):
    viewer = get_user_model().objects.create_user("les", "les@nettsoft.example", "Riktig-passord-1", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Accountants"))
    client.force_login(viewer)
    assert client.get(_url(customer)).status_code == 403, "accountants do not see customers' connections"
    staff = get_user_model().objects.create_user("drift", "drift@nettsoft.example", "Riktig-passord-1", is_staff=True)
    staff.groups.add(Group.objects.get(name="Staff"))
    client.force_login(staff)
    assert client.get(_url(customer)).status_code == 200
    assert client.get(_url(customer, "customers_customer_connections_test")).status_code == 405
    assert not ConnectionEvent.objects.exists()


def test_a_portal_login_cannot_open_the_staff_page(customer):
    user = get_user_model().objects.create_user("it@fjellbekk.example", "it@fjellbekk.example", "Riktig-passord-1")
    PortalMembership.objects.create(user=user, customer=customer, role=PortalMembership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    response = client.post(_url(customer, "customers_customer_connections_test"), {"connection": "mbn"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not ConnectionEvent.objects.exists()


def test_an_unknown_customer_is_not_found(admin_client):
    assert admin_client.get(reverse("admin:customers_customer_connections", args=[999999])).status_code == 404


def test_staff_disconnect_a_connection_after_a_confirmation(admin_client, admin_user, customer):
    html = admin_client.get(_url(customer)).content.decode()
    assert html.count('<details class="disconnect">') == 2  # Microsoft 365 and MBN are connected
    assert f'action="{_url(customer, "customers_customer_connections_remove")}"' in html

    response = admin_client.post(_url(customer, "customers_customer_connections_remove"), {"connection": "mbn"})

    assert response.status_code == 302
    assert MbnConnection.objects.get(customer=customer).removed_at is not None
    event = ConnectionEvent.objects.get(customer=customer, action="removed")
    assert (event.connection, event.actor) == ("mbn", admin_user)
    html = admin_client.get(_url(customer)).content.decode()
    assert 'id="mbn" data-state="not_connected"' in html


def test_disconnecting_needs_the_change_permission(client, customer):
    viewer = get_user_model().objects.create_user(username="les", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_customer"))
    client.force_login(viewer)
    client.post(_url(customer, "customers_customer_connections_remove"), {"connection": "mbn"})
    assert MbnConnection.objects.get(customer=customer).removed_at is None
