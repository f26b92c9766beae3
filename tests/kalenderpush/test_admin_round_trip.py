"""Saving an admin page unchanged changes nothing: every registered model's change page, with its inlines.

The test walks the admin site's registry, so a new admin is covered without editing this file (and
fails until the fixture below holds a row of its model). For each object it GETs the change page as a
superuser, submits the change form exactly as a browser would without touching anything, and compares
every row of every table before and after (tests/round_trip.py says what is left out, and why).
Read-only admins are checked for GET only.
"""

import datetime as dt
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_q.models import OrmQ, Task

from customers.models import Contact
from sync.models import ConnectionEvent, PushedAbsence, SyncRun
from tests.factories import make_calendar_source
from tests.portal.conftest import make_tenant
from tests.round_trip import changed_fields, database_rows, post_back, post_forms, vary_from_the_defaults

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture
def every_admin_table(settings, admin_user):  # type: ignore[no-untyped-def]
    """A customer as the demo has them (live subscription, invoices, a credit note, portal logins), its
    calendars and sync records, and a row for each third-party admin (Django Q, Axes, OTP, groups)."""
    settings.OTP_REQUIRED_FOR_STAFF = False
    tenant = make_tenant("Nordlys Regnskap AS", "nordlys-regnskap.no")
    customer = tenant.customer
    users = list(customer.service_users.order_by("pk"))
    vary_from_the_defaults(customer)
    Contact.objects.create(
        customer=customer, name="Kari Nordmann", email="kari@nordlys-regnskap.no", phone="+4791234567"
    )
    source = make_calendar_source(customer, users)
    source.last_error = "Graph answered 503.\nRetrying in 30 s."
    source.save()
    now = timezone.now()
    SyncRun.objects.create(source=source, service_user=users[0], started_at=now, finished_at=now, events_read=3)
    PushedAbsence.objects.create(
        service_user=users[0],
        mbn_id="mbn-1",
        external_ref=f"kp:{users[0].pk}:1",
        start=now,
        end=now + dt.timedelta(hours=1),
        reason="Møte",
        diversion="none",
    )
    ConnectionEvent.objects.create(
        customer=customer,
        connection=ConnectionEvent.Connection.MBN,
        action=ConnectionEvent.Action.TEST_FAILED,
        error_code="mbn_login_failed",
        params={"username": "api"},
        actor=admin_user,
    )
    accountants, _created = Group.objects.get_or_create(name="Accountants")
    accountants.permissions.set(Permission.objects.filter(codename__in=["view_invoice", "view_creditnote"]))
    admin_user.groups.add(accountants)
    TOTPDevice.objects.create(user=admin_user, name="Telefon")
    StaticDevice.objects.create(user=admin_user, name="Reservekoder").token_set.create(token="abcd1234")
    Task.objects.create(
        id="a" * 32, name="ok", func="billing.tasks.snapshot_usage", started=now, stopped=now, success=True
    )
    Task.objects.create(
        id="b" * 32, name="failed", func="billing.tasks.snapshot_usage", started=now, stopped=now, success=False
    )
    OrmQ.objects.create(key="default", payload="queued", lock=now)
    attempt = {"user_agent": "Firefox", "ip_address": "10.0.0.1", "username": "it@nordlys-regnskap.no"}
    AccessAttempt.objects.create(
        **attempt, http_accept="*/*", path_info="/portal/logg-inn/", get_data="", post_data="", failures_since_start=2
    )
    AccessLog.objects.create(**attempt, http_accept="*/*", path_info="/portal/logg-inn/")
    AccessFailureLog.objects.create(**attempt, http_accept="*/*", path_info="/portal/logg-inn/")


def _objects_to_save(model: Any) -> list[Any]:
    """The first and the last object by primary key (the fixture's customer, a user with overrides and
    one without, a migration's schedule and one of ours, …)."""
    manager = model._default_manager.order_by("pk")
    return list({obj.pk: obj for obj in (manager.first(), manager.last()) if obj is not None}.values())


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_saving_a_change_page_unchanged_changes_nothing(model, every_admin_table, admin_client, admin_user):
    model_admin = admin.site._registry[model]
    objects = _objects_to_save(model)
    assert objects, f"add a {model._meta.label} to the every_admin_table fixture, so its change page is saved back"
    for obj in objects:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[quote(obj.pk)])
        page = admin_client.get(url)
        assert page.status_code == 200, url
        request = RequestFactory().get(url)
        request.user = admin_user
        if not model_admin.has_change_permission(request, obj):
            continue  # read-only: nothing to save
        (form,) = [form for form in post_forms(page) if form.get("id") == f"{model._meta.model_name}_form"]
        before = database_rows()
        response = post_back(admin_client, form, url)
        errors = response.context and [str(error) for error in response.context.get("errors") or []]
        assert response.status_code == 302, f"{url} refused its own values: {errors}"
        assert changed_fields(before, database_rows()) == [], f"saving {url} unchanged changed data"
