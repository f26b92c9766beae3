"""`seed_demo`: the demo customers, idempotent, and an admin only when DEBUG is on."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from customers.models import Customer, CustomerSettings, ServiceUser, Subscription

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _demo_state(settings, tmp_path):
    settings.DEMO_STATE_DIR = tmp_path
    settings.DEBUG = True


def test_it_creates_three_live_customers_with_terms_none_12_and_36():
    _seed()
    subscriptions = Subscription.objects.select_related("customer").filter(go_live__isnull=False)
    subscriptions = subscriptions.order_by("term_months")
    assert [s.term_months for s in subscriptions] == [0, 12, 36]
    for subscription in subscriptions:
        assert subscription.status == Subscription.Status.LIVE
        assert subscription.go_live is not None
        users = subscription.customer.service_users.count()
        assert 5 <= users <= 40
        assert CustomerSettings.objects.filter(customer=subscription.customer).exists()
    assert ServiceUser.objects.filter(msisdn="").exists(), "the demo shows unmatched users too"


def test_one_customer_has_signed_but_connected_nothing_for_trying_the_connections_page():
    _seed()
    customer = Customer.objects.get(name="Fjellheim Konsult AS")
    [subscription] = customer.subscriptions.all()
    assert (subscription.status, subscription.go_live) == (Subscription.Status.PENDING, None)
    assert not customer.service_users.exists()
    assert not customer.calendar_sources.exists()
    assert not hasattr(customer, "mbn_connection")
    assert get_user_model().objects.filter(username="it@fjellheim-konsult.no").exists()


def test_running_it_twice_creates_nothing_new():
    _seed()
    counts = (Customer.objects.count(), Subscription.objects.count(), ServiceUser.objects.count())
    second = _seed()
    assert (Customer.objects.count(), Subscription.objects.count(), ServiceUser.objects.count()) == counts
    assert "(0 new)" in second


def test_the_printed_admin_password_logs_in(client):
    output = _seed()
    password = re.search(r"user: admin\s+password: (\S+)", output).group(1)
    response = client.post("/admin/login/", {"username": "admin", "password": password, "next": "/admin/"})
    assert response.status_code == 302, "the admin login form accepts the printed password"
    assert client.get("/admin/customers/customer/").status_code == 200
    assert f"password: {password}" in _seed(), "a second run prints the same login"


def test_every_demo_customer_gets_a_portal_admin_and_accountant_whose_printed_logins_work(client):
    output = _seed()
    logins = re.findall(r"\s((it|regnskap)@\S+)\s+(\S+)", output)
    assert len(logins) == 8
    for email, role, password in logins:
        client.logout()
        response = client.post("/portal/logg-inn/", {"username": email, "password": password})
        assert response.status_code == 302, f"{email} logs in"
        landing = client.get("/portal/")
        if role == "it":
            assert landing.status_code == 200
        else:
            assert landing.status_code == 302
            assert landing["Location"] == "/portal/fakturaer/", "an accountant sees invoices only"
    again = re.findall(r"\s((it|regnskap)@\S+)\s+(\S+)", _seed())
    assert again == logins, "a second run prints the same logins"


def test_no_admin_is_created_when_debug_is_off(settings):
    settings.DEBUG = False
    output = _seed()
    assert not get_user_model().objects.filter(username="admin").exists()
    assert not get_user_model().objects.filter(username__startswith="it@").exists()
    assert "DEBUG is off" in output
    assert "password" not in output


def test_the_printed_links_follow_the_sites_public_address(settings):
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8050/"

    out = _seed()

    assert "Admin: http://127.0.0.1:8050/admin/" in out
    assert "Portal: http://127.0.0.1:8050/portal/" in out
    assert ":8000" not in out
