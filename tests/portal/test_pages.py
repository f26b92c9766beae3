"""The portal pages an IT admin uses: what they show, what saving does, and what each role may open."""

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from billing.services import termination_for
from common.formatting import format_nok
from customers.models import CustomerSettings, ServiceUser, Subscription
from sync.models import CalendarSource, CalendarUser, PushedAbsence
from tests.round_trip import post_forms, submitted_pairs

pytestmark = pytest.mark.django_db


def _page(client, name, *args, **params) -> str:  # type: ignore[no-untyped-def]
    response = client.get(reverse(f"portal:{name}", args=args), params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def _source_with_calendars(tenant, error: str = "", code: str = "") -> CalendarSource:  # type: ignore[no-untyped-def]
    source = CalendarSource.objects.create(
        customer=tenant.customer,
        kind="graph",
        tenant_id="t",
        client_id="c",
        activation_group="KalenderPush",
        last_success_at=timezone.now() - dt.timedelta(minutes=3),
        last_error=error,
        last_error_code=code,
    )
    for user in tenant.customer.service_users.all():
        CalendarUser.objects.create(service_user=user, source=source, provider_user_id=user.email)
    return source


def test_overview_shows_users_last_sync_problems_in_plain_words_and_the_invoice_estimate(ours):
    ours.customer.service_users.filter(pk=ours.user.pk).update(msisdn="")
    _source_with_calendars(
        ours, error="Microsoft login refused the client secret (AADSTS7000215): renew it.", code="auth_failed"
    )
    html = _page(ours.admin, "overview")
    assert "3" in html and "Fjordkraft Regnskap AS" in html
    assert "1 ikke koblet" in html, "one active user has no MBN number"
    assert "AADSTS7000215" in html, "the technical detail is kept"
    assert "Kalender Push får ikke logget inn i kalendersystemet" in html, "the error is explained in plain words"
    assert "kr\u00a0" in html, "the next invoice is estimated, in Norwegian format"


def test_users_list_filters_unmatched_and_searches(ours):
    ours.customer.service_users.filter(pk=ours.user.pk).update(msisdn="")
    unmatched = _page(ours.admin, "users", vis="umatchet")
    assert ours.user.email in unmatched
    others = ours.customer.service_users.exclude(pk=ours.user.pk)
    assert not any(u.email in unmatched for u in others)
    found = _page(ours.admin, "users", q=others[0].name)
    assert others[0].email in found and ours.user.email not in found


def test_user_page_draws_the_next_days_absences_with_back_at_times(ours):
    now = timezone.localtime()
    start = now.replace(hour=13, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    PushedAbsence.objects.create(
        service_user=ours.user,
        mbn_id="m1",
        external_ref="kp:1",
        start=start,
        end=start + dt.timedelta(hours=2, minutes=30),
        reason="Jobbreise",
        diversion="voicemail",
    )
    html = _page(ours.admin, "user", ours.user.pk)
    assert "<svg" in html and "Forretningsreise" in html, "the bar is named by its profile, not MBN's reason"
    assert "15:30" in html, "the back-at time is shown"


def test_saving_a_users_overrides_stores_them_and_queues_a_resync(ours, django_capture_on_commit_callbacks):
    source = _source_with_calendars(ours)
    with django_capture_on_commit_callbacks(execute=False):
        response = ours.admin.post(
            reverse("portal:user", args=[ours.user.pk]), {"default_profile": "", "divert_by_default": "false"}
        )
    assert response.status_code == 302
    ours.user.refresh_from_db()
    assert ours.user.divert_by_default is False
    assert CalendarUser.objects.get(service_user=ours.user, source=source).changed_at is not None


def test_settings_reject_an_end_before_the_start_and_keep_the_old_hours(ours):
    form = _settings_form(ours)
    form.update({"mon_start": "16:00", "mon_end": "08:00"})
    response = ours.admin.post(reverse("portal:settings"), form)
    assert response.status_code == 200
    html = response.content.decode()
    assert "16:00" in html and "08:00" in html and 'class="errorlist"' in html
    assert CustomerSettings.objects.get(customer=ours.customer).mon_end == dt.time(16, 0)


def test_saving_settings_stores_them_audits_who_and_resyncs_every_calendar(ours, django_capture_on_commit_callbacks):
    source = _source_with_calendars(ours)
    form = _settings_form(ours)
    form.update({"mon_start": "09:00", "mon_end": "17:00", "include_tentative": "on"})
    with django_capture_on_commit_callbacks(execute=False):
        assert ours.admin.post(reverse("portal:settings"), form).status_code == 302
    saved = CustomerSettings.objects.get(customer=ours.customer)
    assert (saved.mon_start, saved.mon_end, saved.include_tentative) == (dt.time(9), dt.time(17), True)
    assert CalendarUser.objects.filter(source=source, changed_at__isnull=True).count() == 0
    latest = saved.history.first()  # type: ignore[attr-defined]
    assert latest.history_user.email == "it@fjordkraft.example"
    html = _page(ours.admin, "settings")
    assert "it@fjordkraft.example" in html and "17:00" in html, "the change is listed on the page"


def _settings_form(tenant) -> dict[str, str]:  # type: ignore[no-untyped-def]
    current = CustomerSettings.objects.get(customer=tenant.customer)
    form = {}
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        for which in ("start", "end"):
            value = getattr(current, f"{day}_{which}")
            form[f"{day}_{which}"] = value.strftime("%H:%M") if value else ""
    form["default_profile"] = str(current.default_profile_id)
    form["out_of_office_profile"] = str(current.out_of_office_profile_id)
    for flag in ("office_hours_only", "public_holidays", "divert_by_default", "include_tentative"):
        if getattr(current, flag):
            form[flag] = "on"
    return form


def test_try_a_subject_runs_the_rules_engine_with_the_customers_settings(ours):
    html = _page(
        ours.admin, "codes", subject="Kundemøte &For", start="2026-12-02T10:00", end="2026-12-02T11:30", show_as="busy"
    )
    assert "Forretningsreise" in html and "11:30" in html
    assert html.count('class="absence"') == 1
    fragment = ours.admin.get(
        reverse("portal:codes"),
        {"subject": "Planlegging", "start": "2026-12-02T10:00", "end": "2026-12-02T11:30", "show_as": "tentative"},
        headers={"X-Requested-With": "fetch"},
    ).content.decode()
    assert "<html" not in fragment, "the live preview gets only the result"
    assert 'class="absence"' not in fragment, "tentative without the setting gives nothing"


def test_try_a_subject_explains_bad_input(ours):
    html = _page(ours.admin, "codes", subject="Møte", start="2026-12-02T12:00", end="2026-12-02T11:00", show_as="busy")
    assert 'class="errorlist"' in html and 'class="absence"' not in html


def test_termination_calculator_gives_the_end_and_the_fee(ours):
    subscription = ours.customer.subscriptions.get()
    notice = timezone.localdate() + dt.timedelta(days=1)
    html = _page(ours.admin, "subscription", notice=notice.isoformat())
    expected = termination_for(subscription, notice_received=notice)
    assert expected is not None
    assert format_nok(expected.fee).replace("\u00a0", "&nbsp;") in html or format_nok(expected.fee) in html


def test_a_termination_request_records_the_notice_tells_staff_and_reminds_about_telenor(ours, settings):
    settings.STAFF_NOTIFICATION_EMAIL = "kundeservice@nettsoft.example"
    refused = ours.admin.post(reverse("portal:terminate"), {})
    assert refused.status_code == 200 and 'class="errorlist"' in refused.content.decode()
    assert ours.customer.subscriptions.get().notice_received is None
    response = ours.admin.post(reverse("portal:terminate"), {"confirm": "on"})
    html = response.content.decode()
    subscription = ours.customer.subscriptions.get()
    assert subscription.status == Subscription.Status.NOTICE_GIVEN
    assert subscription.notice_received == timezone.localdate()
    assert "Tilknytning Nettsoft Calendar Push" in html
    assert subscription.effective_end.strftime("%d.%m.%Y") in html
    recipients = [m.to for m in mail.outbox]
    assert ["kundeservice@nettsoft.example"] in recipients and ["it@fjordkraft.example"] in recipients
    assert subscription.history.first().history_user.email == "it@fjordkraft.example"  # type: ignore[attr-defined]
    again = ours.admin.get(reverse("portal:terminate"))
    assert again.status_code == 302, "a second notice is not offered"


def test_invoices_page_lists_issued_invoices_with_norwegian_amounts(ours):
    html = _page(ours.accountant, "invoices")
    assert str(ours.invoice.number) in html
    assert format_nok(ours.invoice.total) in html.replace("&nbsp;", "\u00a0")
    pdf = ours.accountant.get(reverse("portal:invoice_pdf", args=[ours.invoice.pk]))
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    ehf = ours.accountant.get(reverse("portal:invoice_ehf", args=[ours.invoice.pk]))
    assert b"<Invoice" in ehf.content and str(ours.invoice.number).encode() in ehf.content


@pytest.mark.parametrize("name", ["users", "settings", "codes", "subscription", "terminate"])
def test_an_accountant_sees_invoices_only(ours, name):
    response = ours.accountant.get(reverse(f"portal:{name}"))
    assert response.status_code == 403
    html = response.content.decode()
    assert f'href="{reverse("portal:settings")}"' not in html, "the menu shows invoices only"
    assert f'href="{reverse("portal:invoices")}"' in html


def test_the_accountant_lands_on_invoices(ours):
    response = ours.accountant.get(reverse("portal:overview"))
    assert response.status_code == 302 and response["Location"] == reverse("portal:invoices")


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(reverse("portal:users"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("portal:login"))


def test_the_login_refuses_a_login_without_portal_access_as_if_the_password_were_wrong(client, django_user_model):
    django_user_model.objects.create_user("tidligere@kunde.example", "tidligere@kunde.example", "Riktig-passord-1")
    url = reverse("portal:login")
    right = client.post(url, {"username": "tidligere@kunde.example", "password": "Riktig-passord-1"})
    wrong = client.post(url, {"username": "tidligere@kunde.example", "password": "Feil-passord-1"})
    assert right.status_code == wrong.status_code == 200
    assert right.context["form"].errors == wrong.context["form"].errors
    assert "/admin/" not in right.content.decode() and "_auth_user_id" not in client.session


def test_password_reset_mails_a_link_that_sets_the_password(client, ours):
    client.post(reverse("portal:password_reset"), {"email": "it@fjordkraft.example"})
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/portal/passord/" in line).strip()
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    url = form_page.redirect_chain[-1][0]
    response = client.post(url, {"new_password1": "Et-nytt-passord-9", "new_password2": "Et-nytt-passord-9"})
    assert response.status_code == 302
    assert (
        client.post(
            reverse("portal:login"), {"username": "it@fjordkraft.example", "password": "Et-nytt-passord-9"}
        ).status_code
        == 302
    )


def test_money_on_the_subscription_page_is_norwegian(ours):
    html = _page(ours.admin, "subscription").replace("&nbsp;", "\u00a0")
    price = ours.customer.subscriptions.get().monthly_price
    assert format_nok(price) in html
    assert Decimal(price) > 0


@pytest.mark.parametrize(("stored", "shown"), [(None, "unknown"), (True, "true"), (False, "false")])
def test_the_user_page_shows_the_users_own_divert_choice(ours, stored, shown):
    ServiceUser.objects.filter(pk=ours.user.pk).update(divert_by_default=stored)
    page = ours.admin.get(reverse("portal:user", args=[ours.user.pk]))
    (form,) = [form for form in post_forms(page) if form.xpath('.//select[@name="divert_by_default"]')]
    assert dict(submitted_pairs(form))["divert_by_default"] == shown, "the choice the browser shows and sends"


RANGE_MESSAGE = "Skriv inn en dato mellom 01.01.2000 og 31.12.2100."


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-31T10:00", "9999-12-31T11:00"),
        ("0001-01-01T10:00", "0001-01-01T11:00"),
        ("2026-12-02T10:00", "2101-01-01T11:00"),
    ],
)
def test_try_a_subject_with_a_date_outside_2000_to_2100_says_which_dates_are_allowed(ours, start, end):
    html = _page(ours.admin, "codes", subject="Møte &For", start=start, end=end, show_as="busy")
    assert RANGE_MESSAGE in html
    assert 'class="absence"' not in html


@pytest.mark.parametrize("notice", ["9999-12-31", "9999-08-01", "2101-01-01"])
def test_the_notice_calculator_refuses_a_date_after_2100_at_once(ours, notice):
    _page(ours.admin, "subscription")  # templates and translations loaded: what is left is the input's work
    started = time.perf_counter()
    html = _page(ours.admin, "subscription", notice=notice)
    assert time.perf_counter() - started < 1
    assert RANGE_MESSAGE in html


def test_the_notice_calculator_answers_the_last_allowed_date_in_well_under_a_second(ours):
    _page(ours.admin, "subscription")
    started = time.perf_counter()
    html = _page(ours.admin, "subscription", notice="2100-12-31")
    assert time.perf_counter() - started < 1
    assert "31. mars 2101" in html
