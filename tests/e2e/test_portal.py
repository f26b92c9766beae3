"""The customer portal in a real browser: an IT admin and an accountant at their daily tasks."""

import datetime as dt
import io
import re
from urllib.parse import parse_qs, urlsplit

import holidays
import pytest
from django.utils import translation
from playwright.sync_api import Page, Response, expect
from pypdf import PdfReader

from billing.models import DocumentCounter
from customers.models import Customer, CustomerSettings, ServiceUser
from portal.models import PortalMembership
from sync.models import AbsenceProfile
from sync.rules.catalogue import DEFAULT_PROFILES
from tests.e2e.helpers import (
    DESKTOP,
    PHONE,
    issued_invoice,
    live_customer,
    make_portal_login,
    portal_sign_in,
    shot,
    today,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

NORDLYS = {
    "name": "Nordlys Rørleggerservice AS",
    "address_line": "Storgata 12",
    "postal_code": "9008",
    "city": "Tromsø",
    "invoice_email": "faktura@nordlys-ror.no",
}
EMPLOYEES = [
    ("Kari Nordmann", "+4791234501"),
    ("Ola Hansen", "+4791234502"),
    ("Ingrid Johansen", "+4791234503"),
    ("Per Olsen", ""),
    ("Sigrid Larsen", "+4791234505"),
    ("Lars Pedersen", "+4791234506"),
]


def nordlys(*, users: int = 6) -> Customer:
    """Nordlys Rørleggerservice in Tromsø: live, with employees (one not yet matched in MBN)."""
    subscription = live_customer(users=users, **NORDLYS)
    customer = subscription.customer
    ServiceUser.objects.bulk_create(
        ServiceUser(customer=customer, email=_email(name, "nordlys-ror.no"), name=name, msisdn=msisdn)
        for name, msisdn in EMPLOYEES
    )
    return customer


def _email(name: str, domain: str) -> str:
    return name.lower().replace(" ", ".").replace("ø", "o").replace("å", "a").replace("æ", "ae") + "@" + domain


def nb(msgid: str) -> str:
    """The text the portal shows for msgid (Norwegian once `make messages` compiled it, else English)."""
    with translation.override("nb"):
        return translation.gettext(msgid)


def next_working_day(after: dt.date) -> dt.date:
    day = after + dt.timedelta(days=1)
    norwegian = holidays.country_holidays("NO", years=[day.year, day.year + 1])
    while day.weekday() >= 5 or day in norwegian:
        day += dt.timedelta(days=1)
    return day


# --- 1. settings ----------------------------------------------------------------------------------


def test_admin_corrects_office_hours_and_sees_the_change_logged(page: Page) -> None:
    customer = nordlys()
    make_portal_login(customer, email="kari.nordmann@nordlys-ror.no", name="Kari Nordmann")

    portal_sign_in(page, "kari.nordmann@nordlys-ror.no", screenshot="portal-login")
    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.locator("h1")).to_have_text(customer.name)
    shot(page, "portal-overview", doc="portal-overview")
    page.set_viewport_size(PHONE)
    shot(page, "portal-overview-phone", doc="portal-overview-phone")
    page.set_viewport_size(DESKTOP)

    page.locator("nav.main a[href='/portal/brukere/']").click()
    expect(page.locator("main table tbody tr")).to_have_count(len(EMPLOYEES))
    shot(page, "portal-users", doc="portal-users")
    page.locator("main table a", has_text="Kari Nordmann").click()
    expect(page.locator("h1")).to_have_text("Kari Nordmann")
    shot(page, "portal-user-detail", doc="portal-user-detail")

    page.locator("nav.main a[href='/portal/innstillinger/']").click()
    page.fill("#id_mon_start", "10:00")
    page.fill("#id_mon_end", "09:00")
    page.locator("main form.stacked button[type=submit]").click()

    monday_error = page.locator("tr:has(#id_mon_end) + tr .errorlist")
    expect(monday_error).to_contain_text("09:00")
    expect(monday_error).to_contain_text("10:00")
    expect(page.locator("#id_mon_end")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".messages li.error")).to_be_visible()
    shot(page, "portal-settings-error", doc="portal-settings-error")
    page.set_viewport_size(PHONE)
    shot(page, "portal-settings-phone")
    page.set_viewport_size(DESKTOP)
    saved = CustomerSettings.objects.get(customer=customer)
    assert (saved.mon_start, saved.mon_end) == (dt.time(8), dt.time(16)), "nothing is saved on an error"

    page.fill("#id_mon_start", "09:00")
    page.fill("#id_mon_end", "17:00")
    page.locator("main form.stacked button[type=submit]").click()

    expect(page.locator(".messages li.success")).to_be_visible()
    expect(page.locator(".errorlist")).to_have_count(0)
    saved.refresh_from_db()
    assert (saved.mon_start, saved.mon_end) == (dt.time(9), dt.time(17))
    latest_change = page.locator("#changes tbody tr").first
    expect(latest_change).to_contain_text("Kari Nordmann")
    expect(latest_change).to_contain_text("09:00")
    expect(latest_change).to_contain_text("17:00")
    shot(page, "portal-settings-saved", doc="portal-settings")


# --- 2. codes -------------------------------------------------------------------------------------


def test_admin_tries_a_subject_and_sees_the_live_preview(page: Page) -> None:
    customer = nordlys()
    make_portal_login(customer, email="kari.nordmann@nordlys-ror.no", name="Kari Nordmann")
    (default,) = [p for p in DEFAULT_PROFILES if p.short_code == "For"]
    profile = AbsenceProfile.objects.get(short_code__iexact="For").profile
    assert profile == default.profile
    day = next_working_day(today())
    start, end = f"{day:%Y-%m-%d}T10:00", f"{day:%Y-%m-%d}T11:30"
    portal_sign_in(page, "kari.nordmann@nordlys-ror.no")

    page.goto("/portal/koder/")

    def the_preview(response: Response) -> bool:
        query = parse_qs(urlsplit(response.url).query)
        return (
            response.request.headers.get("x-requested-with") == "fetch"
            and query.get("subject") == ["Kundemøte &For"]
            and query.get("start") == [start]
            and query.get("end") == [end]
        )

    with page.expect_response(the_preview) as fetched:
        page.fill("#id_subject", "Kundemøte &For")
        page.fill("#id_start", start)
        page.fill("#id_end", end)
    assert fetched.value.ok

    absences = page.locator("#preview tr.absence")
    expect(absences).to_have_count(1)
    cells = absences.first.locator("td")
    expect(cells.nth(2)).to_have_text(profile)
    expect(cells.last).to_have_text("11:30")
    expect(page.locator("#preview")).to_contain_text(profile)
    expect(page).to_have_url(re.compile(r"subject=Kundem"))  # the address keeps the tried subject
    shot(page, "portal-codes-preview", doc="portal-codes")


# --- 3. invoices ----------------------------------------------------------------------------------


def test_admin_downloads_an_invoice_as_pdf(page: Page) -> None:
    DocumentCounter.objects.filter(series=DocumentCounter.Series.INVOICE).update(last_number=20260)
    customer = nordlys()
    invoice = issued_invoice(customer.subscriptions.get())
    assert invoice.number == 20261
    make_portal_login(customer, email="kari.nordmann@nordlys-ror.no", name="Kari Nordmann")
    portal_sign_in(page, "kari.nordmann@nordlys-ror.no")

    page.locator("nav.main a[href='/portal/abonnement/']").click()
    expect(page.locator("#calculation")).to_be_visible()
    shot(page, "portal-subscription", doc="portal-subscription")

    page.locator("nav.main a[href='/portal/fakturaer/']").click()
    row = page.locator("main table tbody tr", has_text=str(invoice.number))
    expect(row).to_be_visible()
    shot(page, "portal-invoices", doc="portal-invoices")
    with page.expect_download() as download_info:
        row.locator(f"a[href='/portal/fakturaer/{invoice.pk}/pdf/']").click()
    download = download_info.value

    assert download.suggested_filename == f"faktura-{invoice.number}.pdf"
    content = open(download.path(), "rb").read()  # noqa: SIM115 - Playwright owns the temporary file
    assert content.startswith(b"%PDF")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages)
    assert str(invoice.number) in text
    assert invoice.kid in text.replace(" ", "")


# --- 4. the accountant ----------------------------------------------------------------------------


def test_accountant_sees_only_invoices_and_is_refused_settings(page: Page) -> None:
    customer = nordlys()
    issued_invoice(customer.subscriptions.get())
    make_portal_login(
        customer, email="regnskap@nordlys-ror.no", name="Bente Regnskap", role=PortalMembership.Role.ACCOUNTANT
    )

    portal_sign_in(page, "regnskap@nordlys-ror.no")

    expect(page).to_have_url(re.compile(r"/portal/fakturaer/$"))
    navigation = page.locator("nav.main a")
    expect(navigation).to_have_count(1)
    expect(navigation).to_have_attribute("href", "/portal/fakturaer/")
    expect(page.locator("main table tbody tr")).to_have_count(1)
    shot(page, "portal-accountant-invoices", doc="portal-accountant")

    response = page.goto("/portal/innstillinger/")
    assert response is not None and response.status == 403
    expect(page.locator("main [role=alert]")).to_have_text(nb("Your role (accountant) gives access to invoices only."))
    expect(page.locator("main a[href='/portal/fakturaer/']")).to_be_visible()
    shot(page, "portal-403")


# --- 6. another customer's invoice ----------------------------------------------------------------


def test_another_customers_invoice_is_not_found(page: Page) -> None:
    own = nordlys()
    other = live_customer(
        users=40,
        name="Vestland Trafikkskole AS",
        address_line="Kong Oscars gate 5",
        postal_code="5017",
        city="Bergen",
        invoice_email="post@vestland-trafikk.no",
    )
    own_invoice = issued_invoice(own.subscriptions.get())
    other_invoice = issued_invoice(other)
    make_portal_login(own, email="kari.nordmann@nordlys-ror.no", name="Kari Nordmann")
    portal_sign_in(page, "kari.nordmann@nordlys-ror.no")

    mine = page.request.get(f"/portal/fakturaer/{own_invoice.pk}/pdf/")
    assert mine.status == 200 and mine.headers["content-type"] == "application/pdf"
    for url in (f"/portal/fakturaer/{other_invoice.pk}/pdf/", f"/portal/fakturaer/{other_invoice.pk}/ehf/"):
        response = page.goto(url)
        assert response is not None and response.status == 404, url
    page.goto("/portal/fakturaer/")
    expect(page.locator(f"a[href='/portal/fakturaer/{own_invoice.pk}/pdf/']")).to_have_count(1)
    expect(page.locator(f"a[href='/portal/fakturaer/{other_invoice.pk}/pdf/']")).to_have_count(0)
