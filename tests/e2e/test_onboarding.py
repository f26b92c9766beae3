"""A new customer connects itself in a real browser: from the invitation e-mail to users in the portal and
their absences on MBN. Microsoft's admin-consent page, Graph, Google and MBN are the loopback simulators
(devtools/simulators), with Nettsoft's multi-tenant app, service account and MBN partner client registered
there as in the demo; the browser trusts the simulators' test certificate authority for this alone.

One test per way it goes wrong: consent refused, a tampered state, a wrong MBN password; and Google
Workspace. The pages are saved for the user guide's "Tilkoblinger" chapter (KP_DOC_SCREENSHOTS)."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone, translation
from playwright.sync_api import Page, expect

from customers.models import Customer, ServiceUser
from devtools import demo
from portal import services as portal_services
from portal.models import PortalMembership
from sync.connections import ConnectionErrorCode, describe_connection_error
from sync.models import CalendarSource, ConnectionEvent, MbnConnection, PushedAbsence
from tests.e2e.helpers import DESKTOP, PASSWORD, admin_sign_in, make_portal_login, make_staff, portal_sign_in, shot
from tests.factories import make_customer, make_subscription

simulators = pytest.importorskip("devtools.simulators")
from devtools.simulators import demo as sim_demo  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

IT_ADMIN = "it@fjellheim-konsult.no"
GROUP = "Kalender Push-brukere"
MEMBERS = {  # the group's members and their MBN numbers ("" : no Telenor subscription)
    "ingrid.berg@fjellheim-konsult.no": "+4790011001",
    "jonas.lie@fjellheim-konsult.no": "+4790011002",
    "sofie.dahl@fjellheim-konsult.no": "+4790011003",
    "emil.strand@fjellheim-konsult.no": "",
}


def nb(msgid: str) -> str:
    with translation.override("nb"):
        return translation.gettext(msgid)


def problem_words(code: str, params: dict[str, Any] | None = None) -> tuple[str, str]:
    """What the portal says about a connection error, in Norwegian."""
    with translation.override("nb"):
        return describe_connection_error(code, params or {})


@pytest.fixture
def sims(settings: Any, live_server: Any, tmp_path: Any) -> Iterator[Any]:
    """The simulators with Nettsoft's app, service account and MBN partner client, and the onboarding
    customer's tenant, groups, Google domain and MBN enterprise; the settings point the live server there."""
    with simulators.Simulators.start() as running:
        nettsoft = sim_demo.register_nettsoft(running, tmp_path / "nettsoft")
        running.onboarding = sim_demo.load_onboarding(running, timezone.localdate())
        for name, value in {**running.app_settings(), **nettsoft}.items():
            setattr(settings, name, value)
        settings.PUBLIC_BASE_URL = live_server.url  # the invitation link and Microsoft's redirect address
        yield running


@pytest.fixture
def browser_page(browser: Any, live_server: Any) -> Iterator[Page]:
    """Like `page`, but trusting the simulators' certificates (Microsoft's consent page is one of them)."""
    context = browser.new_context(
        base_url=live_server.url,
        viewport=DESKTOP,
        locale="nb-NO",
        timezone_id="Europe/Oslo",
        ignore_https_errors=True,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def customer() -> Customer:
    """Fjellheim Konsult AS has signed (a pending subscription) and nothing is connected yet."""
    customer = make_customer(name="Fjellheim Konsult AS", invoice_email="faktura@fjellheim-konsult.no")
    make_subscription(customer, signed_on=timezone.localdate())
    return customer


def run_background_jobs() -> list[str]:
    """What the q2 cluster would do meanwhile: the first sync (group members become users, matched to MBN)
    and the calendar syncs it queues."""
    return demo.run_queued_jobs()


def sign_in_admin(page: Page, customer: Customer) -> None:
    make_portal_login(customer, email=IT_ADMIN, name="Kari Fjellheim")
    portal_sign_in(page, IT_ADMIN)


def card(page: Page, connection: str) -> Any:
    return page.locator(f"section.connection#{connection}")


def open_connections(page: Page) -> None:
    page.locator("nav.main a[href='/portal/tilkoblinger/']").click()
    expect(page.locator("h1")).to_have_text(nb("Connections"))


def consent_page(page: Page) -> None:
    """Click "Koble til Microsoft 365" and arrive at Microsoft's (simulated) admin-consent page."""
    card(page, "microsoft365").get_by_role("button", name=nb("Connect Microsoft 365")).click()
    expect(page).to_have_title("Permissions requested")
    expect(page.locator("body")).to_contain_text(sim_demo.NETTSOFT_APP_NAME)


# --- (a) from the invitation to absences on MBN -----------------------------------------------------------


def test_a_new_customer_connects_microsoft_365_and_mbn_and_its_users_get_absences(
    browser_page: Page, sims: Any, customer: Customer, django_user_model: Any
) -> None:
    page = browser_page
    portal_services.invite(customer=customer, email=IT_ADMIN, name="Kari Fjellheim", role=PortalMembership.Role.ADMIN)
    (invitation,) = mail.outbox
    link = re.search(r"https?://\S+/portal/passord/\S+/", str(invitation.body))
    assert link is not None, invitation.body

    page.goto(link[0])
    page.fill("#id_new_password1", PASSWORD)
    page.fill("#id_new_password2", PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/portal/passord/ferdig/$"))
    portal_sign_in(page, IT_ADMIN)

    hint = page.locator("#get-started")
    expect(hint).to_contain_text(nb("Get started: connect the calendar and MBN."))
    shot(page, "onboarding-overview", doc="portal-connections-start")
    hint.get_by_role("link", name=nb("Go to Connections")).click()
    expect(page.locator("section.connection")).to_have_count(4)
    for connection in ("microsoft365", "google", "ews", "mbn"):
        expect(card(page, connection)).to_have_attribute("data-state", "not_connected")
    shot(page, "onboarding-connections-empty", doc="portal-connections-empty")

    consent_page(page)
    shot(page, "onboarding-microsoft-consent")
    page.get_by_role("button", name="Accept").click()

    expect(page.locator("h1")).to_have_text(nb("Choose the activation group"))
    expect(page.locator(".messages li.success")).to_be_visible()
    source = CalendarSource.objects.get(customer=customer)
    assert (source.tenant_id, source.uses_nettsoft_app, source.active) == (sims.onboarding["tenant_id"], True, False)
    page.fill("#id_q", "Kalender")
    page.get_by_role("button", name=nb("Search")).click()
    found = page.locator("#groups input[type=radio]")
    expect(found).to_have_count(1)
    page.get_by_label(GROUP).check()
    shot(page, "onboarding-group", doc="portal-connections-group")
    page.get_by_role("button", name=nb("Use this group and test")).click()

    microsoft = card(page, "microsoft365")
    expect(microsoft).to_have_attribute("data-state", "working")
    expect(microsoft.locator(".group")).to_contain_text(GROUP)
    expect(microsoft.locator(".group")).to_contain_text("4")
    expect(page.locator(".messages li.success")).to_contain_text(GROUP)
    run_background_jobs()  # the first sync: the group's members become users (MBN is not connected yet)

    card(page, "mbn").get_by_role("link", name=re.compile("MBN")).click()
    expect(page.locator("h1")).to_have_text(nb("Connect Telenor MBN"))
    page.fill("#id_enterprise_id", sims.onboarding["mbn"]["enterprise_id"])
    page.fill("#id_username", sims.onboarding["mbn"]["username"])
    page.fill("#id_password", sims.onboarding["mbn"]["password"])
    shot(page, "onboarding-mbn", doc="portal-connections-mbn")
    page.get_by_role("button", name=nb("Save and test")).click()

    mbn = card(page, "mbn")
    expect(mbn).to_have_attribute("data-state", "working")
    expect(mbn.locator(".matched")).to_contain_text("3")
    expect(mbn.locator("details.unmatched li")).to_have_count(1)
    expect(mbn.locator("details.unmatched li")).to_contain_text("Emil Strand")
    expect(page.locator("#events tbody tr").first).to_contain_text("Kari Fjellheim")
    shot(page, "onboarding-connections", doc="portal-connections")
    saved = MbnConnection.objects.get(customer=customer)
    assert (saved.client_id, saved.username) == ("", sims.onboarding["mbn"]["username"]), "Nettsoft's partner client"
    assert sims.onboarding["mbn"]["password"] not in page.content()

    run_background_jobs()  # the users matched to MBN numbers, their calendars synced and pushed
    page.locator("nav.main a[href='/portal/brukere/']").click()
    rows = page.locator("main table tbody tr")
    expect(rows).to_have_count(len(MEMBERS))
    for email in MEMBERS:
        expect(page.locator("main table tbody")).to_contain_text(email)
    shot(page, "onboarding-users")
    assert dict(ServiceUser.objects.filter(customer=customer).values_list("email", "msisdn")) == MEMBERS
    for email, msisdn in MEMBERS.items():
        if not msisdn:
            continue
        held = sims.mbn.absences(sims.onboarding["mbn"]["enterprise_id"], msisdn)
        pushed = PushedAbsence.objects.filter(service_user__email=email)
        assert held, f"{email}: this week's and next week's appointments reach MBN"
        assert len(held) == pushed.count(), email

    # Nettsoft's staff see the same on the customer's connections page in admin.
    page.context.clear_cookies()
    make_staff()
    admin_sign_in(page, "line.berg@nettsoft.no")
    page.goto(f"/admin/customers/customer/{customer.pk}/connections/")
    expect(page.locator(".module.connection#microsoft365")).to_have_attribute("data-state", "working")
    expect(page.locator(".module.connection#mbn")).to_have_attribute("data-state", "working")
    expect(page.locator("#events tbody tr")).not_to_have_count(0)
    shot(page, "admin-customer-connections", doc="admin-customer-connections")


# --- (b) the administrator refuses ------------------------------------------------------------------------------


def test_refused_consent_says_so_and_creates_nothing(browser_page: Page, sims: Any, customer: Customer) -> None:
    page = browser_page
    sign_in_admin(page, customer)
    open_connections(page)
    consent_page(page)
    page.get_by_role("button", name="Cancel").click()

    problem = page.locator("#problem")
    expect(problem).to_contain_text("Administratoren avslo tilgangen")
    what, what_to_do = problem_words(ConnectionErrorCode.CONSENT_REFUSED, {"error": "access_denied"})
    expect(problem).to_contain_text(what)
    expect(problem).to_contain_text(what_to_do)
    expect(page.get_by_role("button", name=nb("Try again"))).to_be_visible()
    shot(page, "onboarding-consent-refused", doc="portal-connections-refused")
    assert not CalendarSource.objects.filter(customer=customer).exists()
    assert not sims.login.consents()

    page.get_by_role("button", name=nb("Try again")).click()  # a second attempt goes to Microsoft again
    expect(page).to_have_title("Permissions requested")


# --- (c) a tampered state -----------------------------------------------------------------------------------


def test_a_tampered_state_gives_a_clear_message_and_creates_nothing(
    browser_page: Page, sims: Any, customer: Customer
) -> None:
    page = browser_page
    sign_in_admin(page, customer)
    open_connections(page)
    consent_page(page)
    tamper = "input => { input.value = input.value.slice(0, -4) + (input.value.endsWith('AAAA') ? 'BBBB' : 'AAAA') }"
    page.locator("input[name=state]").evaluate(tamper)
    page.get_by_role("button", name="Accept").click()

    problem = page.locator("#problem")
    what, _what_to_do = problem_words(ConnectionErrorCode.STATE_INVALID, {"minutes": 15})
    expect(problem).to_contain_text(what)
    expect(page.locator("main")).to_contain_text(nb("Nothing was saved."))
    shot(page, "onboarding-state-tampered")
    assert not CalendarSource.objects.filter(customer=customer).exists()
    rejected = ConnectionEvent.objects.get(customer=customer, action=ConnectionEvent.Action.CONSENT_REJECTED)
    assert rejected.error_code == ConnectionErrorCode.STATE_INVALID
    open_connections(page)
    expect(card(page, "microsoft365")).to_have_attribute("data-state", "not_connected")
    expect(page.locator("#events tbody tr").first).to_contain_text(rejected.describe())


# --- (d) a wrong MBN password ------------------------------------------------------------------------------------


def test_a_wrong_mbn_password_is_shown_at_the_password_and_nothing_is_saved(
    browser_page: Page, sims: Any, customer: Customer
) -> None:
    page = browser_page
    sign_in_admin(page, customer)
    open_connections(page)
    card(page, "mbn").get_by_role("link").click()
    page.fill("#id_enterprise_id", sims.onboarding["mbn"]["enterprise_id"])
    page.fill("#id_username", sims.onboarding["mbn"]["username"])
    page.fill("#id_password", "feil-passord")
    page.get_by_role("button", name=nb("Save and test")).click()

    what, what_to_do = problem_words(
        ConnectionErrorCode.MBN_LOGIN_FAILED, {"username": sims.onboarding["mbn"]["username"]}
    )
    error = page.locator("#id_password_error")
    expect(error).to_contain_text(what)
    expect(error).to_contain_text(what_to_do)
    expect(page.locator("#id_enterprise_id")).to_have_value(sims.onboarding["mbn"]["enterprise_id"])
    expect(page.locator("#id_username")).to_have_value(sims.onboarding["mbn"]["username"])
    expect(page.locator("#id_password")).to_have_value("")
    assert "feil-passord" not in page.content()
    shot(page, "onboarding-mbn-wrong-password", doc="portal-connections-mbn-error")
    assert not MbnConnection.objects.filter(customer=customer).exists()

    page.fill("#id_password", sims.onboarding["mbn"]["password"])  # the right one: saved, the form forgets it
    page.get_by_role("button", name=nb("Save and test")).click()
    expect(card(page, "mbn")).to_have_attribute("data-state", "working")
    assert MbnConnection.objects.get(customer=customer).password() == sims.onboarding["mbn"]["password"]
    card(page, "mbn").get_by_role("link", name=nb("Change")).click()
    expect(page.locator("#id_password")).to_have_value("")
    expect(page.locator("#id_password")).to_have_attribute("placeholder", nb("stored – leave empty to keep it"))


# --- (e) Google Workspace ----------------------------------------------------------------------------------------


def test_google_workspace_shows_what_to_authorise_and_its_users_appear(
    browser_page: Page, sims: Any, customer: Customer
) -> None:
    page = browser_page
    sign_in_admin(page, customer)
    open_connections(page)
    card(page, "google").get_by_role("link").click()

    expect(page.locator("#google-client-id")).to_have_value(sim_demo.SERVICE_ACCOUNT_CLIENT_ID)
    expect(page.locator("#google-scopes")).to_have_value(",".join(sim_demo.GOOGLE_SCOPES))
    page.fill("#id_admin_subject", sims.onboarding["google"]["admin_subject"])
    page.fill("#id_group", sims.onboarding["google"]["group"])
    shot(page, "onboarding-google", doc="portal-connections-google")
    page.get_by_role("button", name=nb("Save and test")).click()

    google = card(page, "google")
    expect(google).to_have_attribute("data-state", "working")
    expect(google.locator(".group")).to_contain_text("4")
    source = CalendarSource.objects.get(customer=customer, kind=CalendarSource.Kind.GOOGLE)
    assert (source.uses_nettsoft_app, source.active, source.admin_subject) == (
        True,
        True,
        sims.onboarding["google"]["admin_subject"],
    )

    run_background_jobs()
    page.locator("nav.main a[href='/portal/brukere/']").click()
    expect(page.locator("main table tbody tr")).to_have_count(len(MEMBERS))
    for email in MEMBERS:
        expect(page.locator("main table tbody")).to_contain_text(email)


def test_a_google_domain_that_has_not_authorised_nettsoft_is_told_what_to_do(
    browser_page: Page, sims: Any, customer: Customer
) -> None:
    page = browser_page
    sign_in_admin(page, customer)
    page.goto("/portal/tilkoblinger/google/")
    page.fill("#id_admin_subject", sim_demo.UNDELEGATED_GOOGLE_ADMIN)
    page.fill("#id_group", "alle@ikke-delegert.no")
    page.get_by_role("button", name=nb("Save and test")).click()

    what, _what_to_do = problem_words(
        ConnectionErrorCode.GOOGLE_DELEGATION_MISSING, {"client_id": sim_demo.SERVICE_ACCOUNT_CLIENT_ID}
    )
    expect(page.locator("main .problem[role=alert], main .errorlist").first).to_contain_text(what)
    expect(page.locator("#id_admin_subject")).to_have_value(sim_demo.UNDELEGATED_GOOGLE_ADMIN)
    assert not CalendarSource.objects.filter(customer=customer).exists()


# --- the accountant ------------------------------------------------------------------------------------------


def test_the_accountant_neither_sees_nor_opens_the_connections(page: Page, customer: Customer) -> None:
    make_portal_login(
        customer, email="regnskap@fjellheim-konsult.no", name="Per Regnskap", role=PortalMembership.Role.ACCOUNTANT
    )
    portal_sign_in(page, "regnskap@fjellheim-konsult.no")

    expect(page.locator("nav.main a[href='/portal/tilkoblinger/']")).to_have_count(0)
    response = page.goto("/portal/tilkoblinger/")
    assert response is not None and response.status == 403
    expect(page.locator("main [role=alert]")).to_have_text(nb("Your role (accountant) gives access to invoices only."))
