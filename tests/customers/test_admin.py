"""Admin for Nettsoft staff: every page renders with a bounded number of queries, and the forms and
actions do what staff expect, with clear errors."""

import datetime as dt
import io

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from customers.models import Customer, PriceList, ServiceUser, Subscription
from tests.factories import make_customer, make_subscription, make_users

pytestmark = pytest.mark.django_db

MAX_QUERIES = 25


@pytest.fixture
def demo(settings, tmp_path):
    """The demo, with its last finished quarter billed and issued and one invoice credited."""
    from billing.models import Invoice
    from billing.quarters import Quarter
    from billing.services import credit_invoice

    settings.DEMO_STATE_DIR = tmp_path
    call_command("seed_demo", stdout=io.StringIO())
    label = Quarter.last_finished(timezone.localdate()).label
    call_command("billing_run", "--quarter", label, "--issue", stdout=io.StringIO(), stderr=io.StringIO())
    credit_invoice(invoice_id=Invoice.objects.order_by("number").first().pk, reason="Test")


def _registered():
    return [(model._meta.app_label, model._meta.model_name) for model in admin.site._registry]


@pytest.mark.parametrize(("app", "model"), _registered())
def test_every_changelist_renders_with_bounded_queries(admin_client, demo, app, model):
    url = reverse(f"admin:{app}_{model}_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(queries) <= MAX_QUERIES, f"{url}: {len(queries)} queries"


@pytest.mark.parametrize(("app", "model"), _registered())
def test_every_change_and_add_page_renders_with_bounded_queries(admin_client, demo, app, model):
    model_class = next(m for m in admin.site._registry if (m._meta.app_label, m._meta.model_name) == (app, model))
    obj = model_class._default_manager.order_by("pk").last()
    urls = [reverse(f"admin:{app}_{model}_add")]
    if obj is not None:
        urls.append(reverse(f"admin:{app}_{model}_change", args=[obj.pk]))
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url)
        assert response.status_code in (200, 403), url  # 403: add is not allowed (e.g. q2 task results)
        assert len(queries) <= MAX_QUERIES, f"{url}: {len(queries)} queries"


def test_customer_page_queries_do_not_grow_with_the_number_of_users(admin_client):
    customer = make_customer()
    make_subscription(customer)
    make_users(customer, 3)
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    make_users(customer, 37)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert response.content.decode().count('name="service_users-') >= 40
    assert len(many) == len(few)


def test_changelists_search_and_filter(admin_client, demo):
    url = reverse("admin:customers_customer_changelist")
    response = admin_client.get(url, {"q": "Bergen"})
    assert "Bergen Byggteknikk AS" in response.content.decode()
    assert "Nordlys Regnskap AS" not in response.content.decode()
    number = Customer.objects.get(name="Nordlys Regnskap AS").customer_number
    response = admin_client.get(url, {"q": str(number)})
    assert [c.name for c in response.context["cl"].result_list] == ["Nordlys Regnskap AS"]
    assert f">{number}<" in response.content.decode(), "customer numbers are shown without a thousands separator"
    response = admin_client.get(reverse("admin:customers_serviceuser_changelist"), {"matched": "no"})
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == ServiceUser.objects.filter(msisdn="").count() > 0
    response = admin_client.get(reverse("admin:customers_subscription_changelist"), {"status__exact": "live"})
    assert len(response.context["cl"].result_list) == 3


def test_admin_is_in_norwegian(admin_client, demo):
    customer = Customer.objects.get(org_number="923765433")
    page = admin_client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    for label in ("Organisasjonsnummer", "Fakturaadresse", "Kontortid", "Tjenestebrukere", "Standardprofil"):
        assert label in page


def _customer_form(**overrides):
    data = {
        "name": "Fjellvann Elektro AS",
        "org_number": "923 609 016",
        "address_line": "Elveveien 2",
        "postal_code": "3510",
        "city": "Hønefoss",
        "country_code": "NO",
        "invoice_email": "faktura@fjellvann.no",
        "buyer_reference": "",
        "peppol_participant": "",
        # inline management forms: settings (1 form), subscriptions, contacts, users (none)
        "settings-TOTAL_FORMS": "1",
        "settings-INITIAL_FORMS": "0",
        "settings-MIN_NUM_FORMS": "1",
        "settings-MAX_NUM_FORMS": "1",
        "settings-0-timezone": "Europe/Oslo",
        "settings-0-default_profile": "",
        "settings-0-out_of_office_profile": "",
        "settings-0-divert_by_default": "on",
        "settings-0-public_holidays": "on",
    }
    from sync.models import AbsenceProfile

    data["settings-0-default_profile"] = str(AbsenceProfile.objects.get(short_code="Møt").pk)
    data["settings-0-out_of_office_profile"] = str(AbsenceProfile.objects.get(short_code="Ikt").pk)
    for day in ("mon", "tue", "wed", "thu", "fri"):
        data[f"settings-0-{day}_start"] = "08:00"
        data[f"settings-0-{day}_end"] = "16:00"
    for prefix in ("subscriptions", "contacts", "service_users"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    data.update(overrides)
    return data


def test_staff_can_add_a_customer_with_settings(admin_client):
    response = admin_client.post(reverse("admin:customers_customer_add"), _customer_form())
    assert response.status_code == 302, response.context["errors"] if response.context else response
    customer = Customer.objects.get(org_number="923609016")
    assert customer.peppol_participant == "0192:923609016"
    assert customer.settings.office_hours()["mon"] == (dt.time(8), dt.time(16))
    assert customer.settings.default_profile.profile == "Møte"


def test_a_bad_org_number_in_admin_gives_a_clear_error_and_saves_nothing(admin_client):
    response = admin_client.post(reverse("admin:customers_customer_add"), _customer_form(org_number="923609017"))
    assert response.status_code == 200
    assert "er ikke et gyldig organisasjonsnummer" in response.content.decode()
    assert not Customer.objects.exists()


def test_office_hours_ending_before_they_start_are_refused(admin_client):
    response = admin_client.post(
        reverse("admin:customers_customer_add"),
        _customer_form(**{"settings-0-tue_start": "16:00", "settings-0-tue_end": "08:00"}),
    )
    assert response.status_code == 200
    assert "Tirsdag: slutten (08:00) må være etter starten (16:00)." in response.content.decode()
    assert not Customer.objects.exists()


def test_mark_as_live_asks_for_the_date_then_sets_it(admin_client):
    subscription = make_subscription(make_customer(), signed_on=dt.date(2026, 1, 1))
    url = reverse("admin:customers_subscription_changelist")
    payload = {"action": "mark_live", "_selected_action": [subscription.pk]}
    response = admin_client.post(url, payload)
    assert response.status_code == 200
    assert 'name="go_live"' in response.content.decode()
    assert response.context["form"].initial["go_live"] == timezone.localdate()
    response = admin_client.post(url, {**payload, "apply": "1", "go_live": "2026-02-02"}, follow=True)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.LIVE
    assert subscription.go_live == dt.date(2026, 2, 2)
    assert "i drift fra 02.02.2026" in response.content.decode()


def test_mark_as_live_reports_a_go_live_before_signing(admin_client):
    subscription = make_subscription(make_customer(), signed_on=dt.date(2026, 3, 1))
    url = reverse("admin:customers_subscription_changelist")
    payload = {"action": "mark_live", "_selected_action": [subscription.pk], "apply": "1", "go_live": "2026-02-01"}
    response = admin_client.post(url, payload, follow=True)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PENDING
    assert "før signeringsdatoen" in response.content.decode()


def test_a_price_list_without_every_term_is_refused(admin_client):
    data = {
        "name": "2027",
        "effective_from": "2027-01-01",
        "rows-TOTAL_FORMS": "4",
        "rows-INITIAL_FORMS": "0",
        "rows-MIN_NUM_FORMS": "4",
        "rows-MAX_NUM_FORMS": "4",
    }
    for i, term in enumerate((0, 12, 24, 12)):
        data.update(
            {f"rows-{i}-term_months": str(term), f"rows-{i}-monthly_price": "13.00", f"rows-{i}-setup_fee": "5000.00"}
        )
    response = admin_client.post(reverse("admin:customers_pricelist_add"), data)
    assert response.status_code == 200
    assert not PriceList.objects.filter(effective_from=dt.date(2027, 1, 1)).exists()


def test_saving_a_customer_unchanged_leaves_its_users_on_the_company_default(admin_client):
    from sync.models import AbsenceProfile
    from tests.round_trip import post_back, post_forms

    customer = make_customer()
    make_subscription(customer)
    users = make_users(customer, 3)
    chosen = AbsenceProfile.objects.order_by("-position").first()
    ServiceUser.objects.filter(pk=users[0].pk).update(default_profile=chosen, divert_by_default=False)
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    page = admin_client.get(url)
    (form,) = [form for form in post_forms(page) if form.get("id") == "customer_form"]
    first_option = {select.get("name"): select.find("option").get("value") for select in form.iter("select")}
    assert first_option["service_users-1-default_profile"] == "", "a user's override can be left empty"
    assert first_option["settings-0-default_profile"] != "", "the company's default is required"
    response = post_back(admin_client, form, url)
    assert response.status_code == 302, response.context and response.context["errors"]
    overrides = dict(ServiceUser.objects.filter(customer=customer).values_list("email", "default_profile"))
    assert overrides == {users[0].email: chosen.pk, users[1].email: None, users[2].email: None}


RANGE_MESSAGE = "Skriv inn en dato mellom 01.01.2000 og 31.12.2100."


def test_mark_as_live_refuses_a_go_live_outside_2000_to_2100(admin_client):
    subscription = make_subscription(make_customer(), signed_on=dt.date(2026, 1, 1))
    url = reverse("admin:customers_subscription_changelist")
    payload = {"action": "mark_live", "_selected_action": [subscription.pk], "apply": "1", "go_live": "9999-12-31"}
    response = admin_client.post(url, payload)
    assert response.status_code == 200
    assert RANGE_MESSAGE in response.content.decode()
    subscription.refresh_from_db()
    assert (subscription.status, subscription.go_live) == (Subscription.Status.PENDING, None)


@pytest.mark.parametrize("field", ["signed_on", "go_live", "notice_received"])
def test_a_subscriptions_dates_in_admin_are_bounded_to_2000_to_2100(admin_client, field):
    subscription = make_subscription(make_customer(), signed_on=dt.date(2026, 1, 1))
    url = reverse("admin:customers_subscription_change", args=[subscription.pk])
    data = {
        "customer": subscription.customer_id,
        "term_months": subscription.term_months,
        "signed_on": "2026-01-01",
        "status": subscription.status,
        "monthly_price": subscription.monthly_price,
        "setup_fee": subscription.setup_fee,
        "go_live": "",
        "notice_received": "",
        field: "0001-01-01",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert RANGE_MESSAGE in response.content.decode()
    subscription.refresh_from_db()
    assert (subscription.signed_on, subscription.go_live, subscription.notice_received) == (
        dt.date(2026, 1, 1),
        None,
        None,
    )


def test_a_price_list_from_year_9999_is_refused_with_the_allowed_range(admin_client):
    data = {
        "name": "Langt fram",
        "effective_from": "9999-01-01",
        "rows-TOTAL_FORMS": "0",
        "rows-INITIAL_FORMS": "0",
        "rows-MIN_NUM_FORMS": "4",
        "rows-MAX_NUM_FORMS": "4",
    }
    response = admin_client.post(reverse("admin:customers_pricelist_add"), data)
    assert response.status_code == 200
    assert RANGE_MESSAGE in response.content.decode()
    assert not PriceList.objects.filter(name="Langt fram").exists()
