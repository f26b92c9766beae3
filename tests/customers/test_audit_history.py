"""Audit history: every change to a customer, subscription, calendar settings, calendar source or invoice
leaves a history row naming who made it and what changed, shown in admin; secrets never enter it."""

import datetime as dt
from decimal import Decimal

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from billing import services as billing_services
from billing.models import Invoice
from billing.quarters import Quarter
from customers import services
from customers.models import Customer, CustomerSettings, Subscription
from sync.models import CalendarSource
from tests.billing.factories import live_subscription
from tests.factories import make_customer, make_subscription

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.fixture
def staff_user():
    from common.staff_groups import ensure_groups

    # The test database's post_migrate gives "Staff" the permissions that exist by then, which is before
    # sync's; a later migrate (as in production) completes the group. Do that here.
    ensure_groups()
    user = get_user_model().objects.create_user("kari.staff", password="pw-for-tests-only", is_staff=True)
    user.groups.add(Group.objects.get(name="Staff"))
    return user


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def accountant(client):
    user = get_user_model().objects.create_user("regnskap", password="pw-for-tests-only", is_staff=True)
    user.groups.add(Group.objects.get(name="Accountants"))
    client.force_login(user)
    return client


def _as_submitted(page) -> dict[str, object]:
    """What a browser posts back from an admin change page when nobody touches a field."""
    all_forms = [page.context["adminform"].form]
    for inline in page.context.get("inline_admin_formsets", []):
        all_forms += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, object] = {}
    for form in all_forms:
        for field in form:
            value = field.value()
            if isinstance(field.field.widget, forms.CheckboxInput):
                if value:
                    data[field.html_name] = "on"
            elif value is not None:
                data[field.html_name] = value
    return data


def _last_change(obj):
    """The newest history row of `obj` and the names of the fields it changed."""
    record = obj.history.first()
    previous = record.prev_record
    return record, sorted(record.diff_against(previous).changed_fields) if previous else []


def _history_page(client, obj) -> str:
    opts = obj._meta
    response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[obj.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_customer_changed_in_admin_is_in_its_history_with_who_changed_it(staff, staff_user):
    customer = make_customer()
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    data = {**_as_submitted(staff.get(url)), "invoice_email": "regnskap@testfirma.no"}
    assert staff.post(url, data).status_code == 302

    record, changed = _last_change(customer)
    assert (record.history_user, record.history_type, changed) == (staff_user, "~", ["invoice_email"])
    page = _history_page(staff, customer)
    assert "E-post for faktura" in page  # the field, by its label
    assert "faktura@testfirma.no" in page and "regnskap@testfirma.no" in page
    assert "kari.staff" in page


def test_office_hours_changed_on_the_customer_page_are_in_the_settings_history(staff, staff_user):
    customer = make_customer()
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    page = staff.get(url)
    settings_history = reverse("admin:customers_customersettings_history", args=[customer.settings.pk])
    assert settings_history in page.content.decode()  # reachable from the page where settings are edited
    data = {**_as_submitted(page), "settings-0-mon_start": "09:00"}
    assert staff.post(url, data).status_code == 302

    settings = CustomerSettings.objects.get(customer=customer)
    assert settings.mon_start == dt.time(9)
    record, changed = _last_change(settings)
    assert (record.history_user, changed) == (staff_user, ["mon_start"])
    page = _history_page(staff, settings)
    assert "Mandag fra" in page and "08:00" in page and "09:00" in page
    assert "kari.staff" in page


def test_calendar_settings_cannot_be_changed_outside_the_customer_page(staff):
    customer = make_customer()
    url = reverse("admin:customers_customersettings_change", args=[customer.settings.pk])
    assert staff.get(url).status_code == 200  # read-only view
    staff.post(url, {"timezone": "Europe/London"})
    assert CustomerSettings.objects.get(customer=customer).timezone == "Europe/Oslo"


def test_a_notice_registered_in_admin_is_in_the_subscription_history(staff, staff_user):
    subscription = live_subscription(term=36, go_live=D(2026, 3, 1), steps=[(D(2026, 3, 1), 8)], last=D(2026, 11, 24))
    payload = {
        "action": "register_notice",
        "_selected_action": [subscription.pk],
        "notice_received": "2026-10-12",
        "confirm": "1",
    }
    staff.post(reverse("admin:customers_subscription_changelist"), payload)

    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.NOTICE_GIVEN
    record, changed = _last_change(subscription)
    assert record.history_user == staff_user
    assert {"notice_received", "status"} <= set(changed)
    page = _history_page(staff, subscription)
    assert "I drift" in page and "Oppsagt" in page  # the status by its label, not "notice_given"
    assert "notice_given" not in page
    assert "12. oktober 2026" in page


def test_a_notice_registered_by_a_service_call_names_the_user_outside_a_request(staff_user):
    subscription = live_subscription(term=12, go_live=D(2026, 3, 1), steps=[(D(2026, 3, 1), 8)], last=D(2026, 11, 24))
    billing_services.register_notice(subscription_id=subscription.pk, notice_received=D(2026, 10, 12), by=staff_user)
    record, changed = _last_change(subscription)
    assert record.history_user == staff_user
    assert {"notice_received", "status"} <= set(changed)


def test_marking_live_in_admin_is_in_the_subscription_history(staff, staff_user):
    subscription = make_subscription(make_customer(), signed_on=D(2026, 1, 1))
    payload = {"action": "mark_live", "_selected_action": [subscription.pk], "apply": "1", "go_live": "2026-02-02"}
    staff.post(reverse("admin:customers_subscription_changelist"), payload)

    record, changed = _last_change(subscription)
    assert (record.history_user, record.status, record.go_live) == (staff_user, "live", D(2026, 2, 2))
    assert {"go_live", "status"} <= set(changed)
    assert subscription.history.count() == 2  # created, then marked live: one row per change


def test_staff_revert_a_subscription_to_an_old_version_and_the_revert_is_audited(staff, staff_user):
    subscription = make_subscription(make_customer(), monthly_price=Decimal("12.00"))
    subscription.monthly_price = Decimal("15.00")
    subscription.save()
    version = subscription.history.order_by("history_id").first()
    url = reverse("admin:customers_subscription_simple_history", args=[subscription.pk, version.pk])
    assert staff.post(url, _as_submitted(staff.get(url))).status_code == 302

    subscription.refresh_from_db()
    assert subscription.monthly_price == Decimal("12.00")
    record, changed = _last_change(subscription)
    assert (record.history_user, changed) == (staff_user, ["monthly_price"])


def test_who_may_only_view_subscriptions_reads_their_history_but_cannot_revert(client):
    user = get_user_model().objects.create_user("leser", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_subscription"))
    client.force_login(user)
    subscription = make_subscription(make_customer(), monthly_price=Decimal("12.00"))
    subscription.monthly_price = Decimal("15.00")
    subscription.save()
    assert "12,00" in _history_page(client, subscription)
    version = subscription.history.order_by("history_id").first()
    url = reverse("admin:customers_subscription_simple_history", args=[subscription.pk, version.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, _as_submitted(client.get(url))).status_code == 403
    subscription.refresh_from_db()
    assert subscription.monthly_price == Decimal("15.00")


def test_the_scheduler_ending_a_subscription_leaves_a_history_row_without_a_user():
    subscription = live_subscription(
        term=0, go_live=D(2026, 1, 1), steps=[(D(2026, 1, 1), 3)], last=D(2026, 1, 31), notice=D(2026, 1, 10)
    )
    assert services.end_subscriptions_past_effective_end(today=D(2026, 6, 1)) == 1

    record = subscription.history.first()
    assert (record.status, record.history_user) == (Subscription.Status.ENDED, None)


def test_a_calendar_source_changed_in_admin_is_in_its_history_without_any_secret(staff, staff_user):
    customer = make_customer()
    source = CalendarSource(customer=customer, tenant_id="tenant-1", client_id="client-1", activation_group="Alle")
    source.set_secret("old-secret")
    source.save()
    old_ciphertext = source.secret_encrypted
    url = reverse("admin:sync_calendarsource_change", args=[source.pk])
    data = {**_as_submitted(staff.get(url)), "activation_group": "Kalender Push", "secret": "new-secret"}
    assert staff.post(url, data).status_code == 302

    source.refresh_from_db()
    assert source.secret() == "new-secret"
    record, changed = _last_change(source)
    assert (record.history_user, changed) == (staff_user, ["activation_group"])
    stored = {field.name for field in CalendarSource.history.model._meta.get_fields()}
    assert {"secret_encrypted", "last_success_at", "last_error"}.isdisjoint(stored)
    page = _history_page(staff, source)
    assert "Alle" in page and "Kalender Push" in page and "kari.staff" in page
    for secret in (old_ciphertext, source.secret_encrypted, "old-secret", "new-secret"):
        assert secret not in page


def test_reverting_a_calendar_source_is_refused_so_no_old_version_wipes_its_secret(staff):
    source = CalendarSource(customer=make_customer(), tenant_id="t", client_id="c", activation_group="Alle")
    source.set_secret("the-secret")
    source.save()
    CalendarSource.objects.filter(pk=source.pk).update(activation_group="Ny")
    version = source.history.first()
    url = reverse("admin:sync_calendarsource_simple_history", args=[source.pk, version.pk])
    data = {"customer": source.customer_id, "kind": "graph", "tenant_id": "t", "client_id": "c", "secret": ""}
    assert staff.post(url, {**data, "activation_group": "Alle", "sweep_minutes": "5"}).status_code == 403
    source.refresh_from_db()
    assert (source.activation_group, source.secret()) == ("Ny", "the-secret")


@pytest.fixture
def draft():
    live_subscription(term=12, go_live=D(2026, 1, 1), steps=[(D(2026, 1, 1), 30)], last=D(2026, 3, 31))
    billing_services.run_billing(quarter=Quarter.parse("2026-Q1"), today=D(2026, 4, 1))
    return Invoice.objects.get()


def test_issuing_paying_and_crediting_an_invoice_are_in_its_history_with_who_did_it(draft, staff_user):
    billing_services.issue_invoice(invoice_id=draft.pk, issued_by=staff_user, today=D(2026, 4, 2))
    record, changed = _last_change(draft)
    assert (record.history_user, record.status, record.number) == (staff_user, Invoice.Status.ISSUED, 1)
    assert {"status", "number", "kid", "issue_date", "issued_by"} <= set(changed)

    billing_services.mark_paid(invoice_id=draft.pk, paid_on=D(2026, 4, 10), by=staff_user)
    record, changed = _last_change(draft)
    assert (record.history_user, record.status, changed) == (staff_user, Invoice.Status.PAID, ["paid_on", "status"])

    billing_services.credit_invoice(invoice_id=draft.pk, reason="Feil antall brukere", by=staff_user)
    record, changed = _last_change(draft)
    assert (record.history_user, record.status, changed) == (staff_user, Invoice.Status.CREDITED, ["status"])
    assert [row.history_type for row in draft.history.order_by("history_id")] == ["+", "~", "~", "~"]


def test_an_accountant_reads_an_invoice_history_but_nobody_reverts_an_invoice(draft, staff_user, accountant, staff):
    billing_services.issue_invoice(invoice_id=draft.pk, issued_by=staff_user, today=D(2026, 4, 2))
    version = draft.history.order_by("history_id").first()  # the draft, before it was issued
    url = reverse("admin:billing_invoice_simple_history", args=[draft.pk, version.pk])
    for client in (accountant, staff):
        page = _history_page(client, draft)
        assert "Utstedt" in page and "kari.staff" in page
        assert "tilbakestill" not in page.lower()  # no "Revert" offered (simple_history's words, in Norwegian)
        response = client.get(url)
        assert response.status_code == 200
        assert "tilbakestill" not in response.content.decode().lower()
        assert client.post(url, {}).status_code == 403
    draft.refresh_from_db()
    assert (draft.status, draft.number) == (Invoice.Status.ISSUED, 1)
    assert draft.history.count() == 2


def test_an_accountant_cannot_see_customer_history(accountant):
    customer = make_customer()
    response = accountant.get(reverse("admin:customers_customer_history", args=[customer.pk]))
    assert response.status_code == 403
    assert Customer.objects.filter(pk=customer.pk).exists()
