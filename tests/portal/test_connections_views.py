"""The portal's "Tilkoblinger" pages as views: who may use them, which actions need a POST with a CSRF token,
that problems are shown in words at the right field, and that no secret ever comes back in a response."""

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from portal.views import _details_sentence
from sync.connections import STATE_LABELS, ConnectionErrorCode, describe_connection_error, google_setup_info
from sync.models import CalendarSource, ConnectionEvent, ConsentRequest, MbnConnection
from tests.factories import make_calendar_source

pytestmark = pytest.mark.django_db

PAGES = ["connections", "google_connection", "exchange_connection", "mbn_connection", "microsoft_callback"]
ACTIONS = ["connection_test", "connection_remove", "microsoft_connect"]
NETTSOFT_APP = "6f1c2d3e-0000-4000-8000-00000000beef"


def nb(msgid: str) -> str:
    with translation.override("nb"):
        return translation.gettext(msgid)


@pytest.fixture
def nettsoft_app(settings):  # type: ignore[no-untyped-def]
    settings.NETTSOFT_GRAPH_CLIENT_ID = NETTSOFT_APP
    settings.NETTSOFT_GRAPH_CLIENT_SECRET = "nettsoft-secret"
    settings.PUBLIC_BASE_URL = "https://kalenderpush.example"
    settings.MICROSOFT_LOGIN_BASE_URL = "https://login.example"


def _page(client: Client, name: str, *args: object) -> str:
    response = client.get(reverse(f"portal:{name}", args=args))
    assert response.status_code == 200, name
    return response.content.decode()


# --- who -------------------------------------------------------------------------------------------


def test_the_it_admin_finds_connections_in_the_menu_and_the_accountant_does_not(ours):
    menu = re.compile(r'<nav class="main".*?</nav>', re.S)
    url = reverse("portal:connections")
    assert f'href="{url}"' in menu.search(_page(ours.admin, "overview"))[0]  # type: ignore[index]
    accountant_menu = menu.search(ours.accountant.get(reverse("portal:invoices")).content.decode())[0]  # type: ignore[index]
    assert f'href="{url}"' not in accountant_menu


@pytest.mark.parametrize("name", PAGES + ACTIONS)
def test_the_accountant_is_refused_every_connections_page_and_action(ours, name):
    url = reverse(f"portal:{name}")
    method = ours.accountant.post if name in ACTIONS else ours.accountant.get
    response = method(url)
    assert response.status_code == 403
    assert nb("Your role (accountant) gives access to invoices only.") in response.content.decode()
    assert not ConnectionEvent.objects.exists() and not ConsentRequest.objects.exists()


def test_the_accountant_cannot_post_a_connection_form(ours):
    response = ours.accountant.post(
        reverse("portal:mbn_connection"), {"enterprise_id": "x", "username": "y", "password": "z"}
    )
    assert response.status_code == 403
    assert not MbnConnection.objects.filter(customer=ours.customer).exists()


def test_a_signed_out_visitor_is_sent_to_sign_in(client):
    response = client.get(reverse("portal:connections"))
    assert response.status_code == 302 and reverse("portal:login") in response["Location"]


def test_the_group_page_of_another_customers_source_is_not_found(ours, theirs):
    source = make_calendar_source(theirs.customer, [])
    assert ours.admin.get(reverse("portal:microsoft_group", args=[source.pk])).status_code == 404
    assert ours.admin.post(reverse("portal:microsoft_group", args=[source.pk]), {"group": "g"}).status_code == 404


# --- how: POST only, CSRF ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTIONS)
def test_actions_answer_only_a_post(ours, name):
    assert ours.admin.get(reverse(f"portal:{name}")).status_code == 405
    assert not ConnectionEvent.objects.exists() and not ConsentRequest.objects.exists()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("connection_test", {"connection": "mbn"}),
        ("microsoft_connect", {}),
        ("mbn_connection", {"enterprise_id": "e", "username": "u", "password": "p"}),
        ("exchange_connection", {"endpoint": "https://mail.example/EWS/Exchange.asmx", "username": "u"}),
        ("google_connection", {"admin_subject": "admin@firma.example", "group": "alle@firma.example"}),
    ],
)
def test_every_post_needs_the_csrf_token(ours, nettsoft_app, name, data):
    membership = ours.customer.portal_memberships.get(role="admin")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(membership.user)
    response = browser.post(reverse(f"portal:{name}"), data)
    assert response.status_code == 403
    assert not ConnectionEvent.objects.exists() and not ConsentRequest.objects.exists()


# --- the page ---------------------------------------------------------------------------------------


def test_the_page_shows_four_cards_in_order_and_nothing_connected(ours):
    html = _page(ours.admin, "connections")
    cards = re.findall(r'<section class="card connection" id="(\w+)"[^>]*data-state="(\w+)"', html)
    assert cards == [
        ("microsoft365", "not_connected"),
        ("google", "not_connected"),
        ("ews", "not_connected"),
        ("mbn", "not_connected"),
    ]
    with translation.override("nb"):
        not_connected = str(STATE_LABELS["not_connected"])
    assert html.count(f'<span class="badge  state">{not_connected}</span>') == 4
    assert nb("Connect Microsoft 365") in html
    assert nb("Test again") not in html, "nothing to test before anything is connected"


def test_a_stored_connection_shows_its_state_and_a_test_button_but_no_secret(ours):
    make_calendar_source(ours.customer, [])
    html = _page(ours.admin, "connections")
    assert re.search(r'id="mbn"[^>]*data-state="untested"', html)
    assert html.count(nb("Test again")) == 2
    for secret in ("client-secret", "mbn-secret", "mbn-password"):
        assert secret not in html


def test_the_overview_says_how_to_get_started_only_when_nothing_is_connected(ours):
    hint = nb("Get started: connect the calendar and MBN.")
    overview = _page(ours.admin, "overview")
    assert hint in overview and reverse("portal:connections") in overview
    make_calendar_source(ours.customer, [])
    assert hint not in _page(ours.admin, "overview")


# --- the forms ----------------------------------------------------------------------------------------


def test_an_empty_form_shows_what_is_missing_and_saves_nothing(ours):
    response = ours.admin.post(reverse("portal:mbn_connection"), {"enterprise_id": "ent-1", "username": ""})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_username_error"' in html and 'id="id_password_error"' in html
    assert 'value="ent-1"' in html, "what was typed is kept"
    assert not MbnConnection.objects.filter(customer=ours.customer).exists()


def test_a_stored_password_is_never_shown_and_a_blank_one_keeps_it(ours):
    make_calendar_source(ours.customer, [])
    html = _page(ours.admin, "mbn_connection")
    password_input = re.search(r"<input[^>]*name=\"password\"[^>]*>", html)[0]  # type: ignore[index]
    assert "value=" not in password_input
    assert "placeholder=" in password_input
    assert "mbn-password" not in html and "mbn-secret" not in html
    assert "required" not in password_input, "a blank password keeps the stored one"


def test_posting_the_stored_values_unchanged_tests_nothing_and_says_so(ours):
    make_calendar_source(ours.customer, [])
    connection = MbnConnection.objects.get(customer=ours.customer)
    response = ours.admin.post(
        reverse("portal:mbn_connection"),
        {"enterprise_id": connection.enterprise_id, "username": connection.username, "password": ""},
        follow=True,
    )
    assert nb("Nothing was changed. Use “Test again” to test the connection.") in response.content.decode()
    assert not ConnectionEvent.objects.exists()


def test_the_google_form_shows_nettsofts_client_id_and_the_exact_scopes_to_copy(ours, settings, tmp_path):
    key = tmp_path / "nettsoft-google.json"
    key.write_text(
        json.dumps({"type": "service_account", "client_id": "109876543210987654321", "private_key": "unused"})
    )
    settings.NETTSOFT_GOOGLE_SERVICE_ACCOUNT_FILE = str(key)
    html = _page(ours.admin, "google_connection")
    assert 'value="109876543210987654321"' in html
    scopes = google_setup_info().scopes
    assert scopes and all(scope.startswith("https://www.googleapis.com/auth/") for scope in scopes)
    assert f'value="{",".join(scopes)}"' in html, "the comma-separated list the Admin console takes"
    assert "unused" not in html, "nothing of the key but its client id"


def test_the_google_form_says_when_nettsofts_service_account_is_missing(ours, settings):
    settings.NETTSOFT_GOOGLE_SERVICE_ACCOUNT_FILE = ""
    html = _page(ours.admin, "google_connection")
    assert (
        nb(
            "Nettsoft's Google service account is not set up yet, so Google Workspace cannot be connected here. "
            "Contact Nettsoft support."
        )
        in html
    )


# --- Microsoft 365 consent -------------------------------------------------------------------------------


def test_connect_sends_the_admin_to_microsofts_consent_page_with_a_state(ours, nettsoft_app):
    response = ours.admin.post(reverse("portal:microsoft_connect"))
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "https://login.example/organizations/v2.0/adminconsent"
    )
    query = parse_qs(location.query)
    assert query["client_id"] == [NETTSOFT_APP]
    assert query["scope"] == ["https://graph.microsoft.com/.default"]
    assert query["redirect_uri"] == ["https://kalenderpush.example" + reverse("portal:microsoft_callback")]
    assert len(query["state"][0]) >= 40
    assert ConsentRequest.objects.filter(customer=ours.customer).count() == 1
    assert query["state"][0] not in str(list(ConsentRequest.objects.values()))


def test_connect_without_nettsofts_app_says_so_and_sends_nobody_away(ours, settings):
    settings.NETTSOFT_GRAPH_CLIENT_ID = ""
    response = ours.admin.post(reverse("portal:microsoft_connect"))
    assert response.status_code == 200
    assert 'id="problem"' in response.content.decode()
    assert not ConsentRequest.objects.exists()


def _state_from(response) -> str:  # type: ignore[no-untyped-def]
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def test_refused_consent_says_the_administrator_refused_and_offers_to_try_again(ours, nettsoft_app):
    state = _state_from(ours.admin.post(reverse("portal:microsoft_connect")))
    response = ours.admin.get(
        reverse("portal:microsoft_callback"),
        {
            "error": "access_denied",
            "error_description": "AADSTS65004: User declined to consent to access the app.",
            "state": state,
        },
    )
    html = response.content.decode()
    assert "Administratoren avslo tilgangen" in html
    assert f'action="{reverse("portal:microsoft_connect")}"' in html, "a button to try again"
    assert not CalendarSource.objects.filter(customer=ours.customer).exists()


@pytest.mark.parametrize("tamper", ["changed", "missing", "reused", "other_session"])
def test_a_state_that_cannot_be_trusted_creates_nothing(ours, nettsoft_app, tamper):
    state = _state_from(ours.admin.post(reverse("portal:microsoft_connect")))
    answer = {"tenant": "aaaaaaaa-1111-2222-3333-444444444444", "admin_consent": "True", "state": state}
    client = ours.admin
    if tamper == "changed":
        answer["state"] = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
    elif tamper == "missing":
        del answer["state"]
    elif tamper == "reused":
        first = client.get(reverse("portal:microsoft_callback"), answer)
        assert first.status_code == 302
        CalendarSource.objects.filter(customer=ours.customer).delete()
    else:
        membership = ours.customer.portal_memberships.get(role="admin")
        client = Client()
        client.force_login(membership.user)
    response = client.get(reverse("portal:microsoft_callback"), answer)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="problem"' in html and nb("Nothing was saved.") in html
    assert not CalendarSource.objects.filter(customer=ours.customer).exists()


def test_a_granted_consent_creates_the_source_and_asks_for_the_group(ours, nettsoft_app):
    state = _state_from(ours.admin.post(reverse("portal:microsoft_connect")))
    tenant = "aaaaaaaa-1111-2222-3333-444444444444"
    response = ours.admin.get(
        reverse("portal:microsoft_callback"), {"tenant": tenant, "admin_consent": "True", "state": state}
    )
    source = CalendarSource.objects.get(customer=ours.customer)
    assert response.status_code == 302 and response["Location"] == reverse("portal:microsoft_group", args=[source.pk])
    assert (source.tenant_id, source.uses_nettsoft_app, source.active, source.activation_group) == (
        tenant,
        True,
        False,
        "",
    )
    html = _page(ours.admin, "connections")
    assert re.search(r'id="microsoft365"[^>]*data-state="awaiting_group"', html)
    assert nb("Choose the group") in html


# --- against the simulators: the problems a form can meet, and no secret in any answer ---------------------------


@pytest.fixture
def sims(settings, tmp_path):  # type: ignore[no-untyped-def]
    simulators = pytest.importorskip("devtools.simulators")
    from devtools.simulators import demo as sim_demo

    with simulators.Simulators.start() as running:
        nettsoft = sim_demo.register_nettsoft(running, tmp_path / "nettsoft")
        running.onboarding = sim_demo.load_onboarding(running, timezone.localdate())
        for name, value in {**running.app_settings(), **nettsoft}.items():
            setattr(settings, name, value)
        yield running


def _consented_source(ours, sims) -> CalendarSource:  # type: ignore[no-untyped-def]
    consent_url = ours.admin.post(reverse("portal:microsoft_connect"))["Location"]
    answer = sims.login.consent_answer(consent_url, ca_path=sims.ca_path)
    response = ours.admin.get(answer)
    assert response.status_code == 302, response.content.decode()[:500]
    return CalendarSource.objects.get(customer=ours.customer)


def test_the_group_search_lists_the_tenants_groups_and_an_unknown_group_is_refused(ours, sims):
    source = _consented_source(ours, sims)
    url = reverse("portal:microsoft_group", args=[source.pk])

    found = ours.admin.get(url, {"q": "Alle"}).content.decode()
    assert "Alle ansatte" in found and 'value="33333333-cccc-4ccc-8ccc-000000000002"' in found
    assert "Salg" not in found
    nothing = ours.admin.get(url, {"q": "Finnes ikke"}).content.decode()
    assert 'id="no-groups"' in nothing

    refused = ours.admin.post(url, {"group": "33333333-cccc-4ccc-8ccc-00000000dead", "q": "Alle"})
    html = refused.content.decode()
    assert refused.status_code == 200 and 'id="problem"' in html
    assert "Alle ansatte" in html, "the search is shown again to choose from"
    source.refresh_from_db()
    assert (source.activation_group, source.active) == ("", False), "nothing stored"

    empty = ours.admin.post(url, {"group": "33333333-cccc-4ccc-8ccc-000000000004", "q": "Styret"})
    with translation.override("nb"):
        what = describe_connection_error(
            ConnectionErrorCode.GROUP_EMPTY, {"group": "Styret", "system": "Microsoft 365"}
        )[0]
    assert what in empty.content.decode()
    source.refresh_from_db()
    assert source.activation_group == ""


def test_choosing_the_group_tests_it_and_activates_the_source(ours, sims):
    source = _consented_source(ours, sims)
    response = ours.admin.post(
        reverse("portal:microsoft_group", args=[source.pk]), {"group": "33333333-cccc-4ccc-8ccc-000000000001"}
    )
    assert response.status_code == 302 and response["Location"].startswith(reverse("portal:connections"))
    source.refresh_from_db()
    assert (source.activation_group, source.active, source.test_ok) == (
        "33333333-cccc-4ccc-8ccc-000000000001",
        True,
        True,
    )
    html = ours.admin.get(response["Location"]).content.decode()
    assert re.search(r'id="microsoft365"[^>]*data-state="working"', html)
    assert "Kalender Push-brukere" in html


def test_an_unreachable_exchange_server_is_shown_at_the_address_and_the_password_is_not_sent_back(ours, sims):
    password = "Hemmelig-EWS-passord-1"
    data = {
        "endpoint": "https://127.0.0.1:9/EWS/Exchange.asmx",
        "username": "svc-kalender@fjellheim-konsult.no",
        "password": password,
        "group": "kalenderpush@fjellheim-konsult.no",
    }
    response = ours.admin.post(reverse("portal:exchange_connection"), data)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_endpoint_error"' in html, re.findall(r'class="(?:errorlist|problem)".*?</(?:ul|div)>', html, re.S)
    assert password not in html
    assert 'value="svc-kalender@fjellheim-konsult.no"' in html, "the rest of the input is kept"
    assert not CalendarSource.objects.filter(customer=ours.customer).exists()
    assert ConnectionEvent.objects.filter(customer=ours.customer, action="test_failed").count() == 1


def test_exchange_saved_keeps_its_password_out_of_every_page(ours, sims):
    ews = sims.onboarding["ews"]
    response = ours.admin.post(
        reverse("portal:exchange_connection"),
        {"endpoint": ews["endpoint"], "username": ews["username"], "password": ews["password"], "group": ews["group"]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    source = CalendarSource.objects.get(customer=ours.customer, kind=CalendarSource.Kind.EWS)
    assert source.secret() == ews["password"]
    for name in ("connections", "exchange_connection", "overview"):
        assert ews["password"] not in _page(ours.admin, name), name
    assert ews["password"] not in str(list(ConnectionEvent.objects.values("params")))

    retest = ours.admin.post(reverse("portal:connection_test"), {"connection": "ews", "source": source.pk}, follow=True)
    assert nb("The connection works.") in retest.content.decode()
    assert ConnectionEvent.objects.filter(customer=ours.customer, action="test_passed").count() == 2


def test_test_again_never_tests_another_customers_source(ours, theirs, sims):
    other = make_calendar_source(theirs.customer, [])
    response = ours.admin.post(
        reverse("portal:connection_test"), {"connection": "microsoft365", "source": other.pk}, follow=True
    )
    assert response.status_code == 200
    other.refresh_from_db()
    assert other.tested_at is None
    assert not ConnectionEvent.objects.filter(customer=theirs.customer).exists()


def test_the_page_costs_the_same_queries_with_a_long_audit_by_many_people(ours):
    make_calendar_source(ours.customer, [])
    url = reverse("portal:connections")

    def record(count: int) -> None:
        for index in range(count):
            actor = get_user_model().objects.create_user(f"ansatt{ConnectionEvent.objects.count()}-{index}")
            ConnectionEvent.objects.create(
                customer=ours.customer, connection="mbn", action=ConnectionEvent.Action.TEST_PASSED, actor=actor
            )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert ours.admin.get(url).status_code == 200
        return len(captured.captured_queries)

    record(2)
    queries()  # warm the per-process caches
    few = queries()
    record(40)
    assert queries() == few


def test_a_failing_consented_source_offers_to_give_access_again(ours):
    source = ours.graph_source
    CalendarSource.objects.filter(pk=source.pk).update(
        activation_group="33333333-cccc-4ccc-8ccc-000000000001",
        active=True,
        tested_at=timezone.now(),
        test_ok=False,
        test_error_code=ConnectionErrorCode.TOKEN_REFUSED,
        test_error_params={"system": "Microsoft 365"},
    )
    html = _page(ours.admin, "connections")
    microsoft = re.search(r'<section class="card connection" id="microsoft365".*?</section>', html, re.S)[0]  # type: ignore[index]
    assert 'data-state="failing"' in microsoft
    with translation.override("nb"):
        what = describe_connection_error(ConnectionErrorCode.TOKEN_REFUSED, {"system": "Microsoft 365"})[0]
    assert what in microsoft
    assert nb("Give access again") in microsoft and f'action="{reverse("portal:microsoft_connect")}"' in microsoft


# --- disconnecting, and numbers written the Norwegian way ---------------------------------------------------


def test_a_connection_is_disconnected_from_its_card_after_a_confirmation(ours):
    source = ours.graph_source
    CalendarSource.objects.filter(pk=source.pk).update(activation_group="g", active=True)
    html = _page(ours.admin, "connections")
    card = re.search(r'<section class="card connection" id="microsoft365".*?</section>', html, re.S)[0]  # type: ignore[index]
    confirm = re.search(r'<details class="disconnect">.*?</details>', card, re.S)[0]  # type: ignore[index]
    assert f"<summary>{nb('Disconnect…')}</summary>" in confirm  # the button only shows after opening it
    assert f'action="{reverse("portal:connection_remove")}"' in confirm and f'value="{source.pk}"' in confirm

    assert ours.admin.get(reverse("portal:connection_remove")).status_code == 405  # a POST, with the CSRF token
    response = ours.admin.post(
        reverse("portal:connection_remove"), {"connection": "microsoft365", "source": source.pk}, follow=True
    )

    source.refresh_from_db()
    assert (source.active, source.removed_at is not None) == (False, True)
    assert ConnectionEvent.objects.filter(customer=ours.customer, action="removed").count() == 1
    html = response.content.decode()
    assert (
        nb(
            "Disconnected. Its users are being stopped and their absences removed from Telenor MBN; connect again "
            "whenever you are ready."
        )
        in html
    )
    assert 'id="microsoft365" aria-labelledby="microsoft365-h" data-state="not_connected"' in html


def test_disconnecting_what_is_not_connected_says_so(ours):
    response = ours.admin.post(reverse("portal:connection_remove"), {"connection": "ews"}, follow=True)
    assert nb("Nothing of this kind is connected yet.") in response.content.decode()


def test_member_counts_are_written_the_norwegian_way(ours):
    source = ours.graph_source
    CalendarSource.objects.filter(pk=source.pk).update(
        activation_group="g",
        active=True,
        tested_at=timezone.now(),
        test_ok=True,
        test_details={"group_name": "Alle ansatte", "members": 1234},
    )
    html = _page(ours.admin, "connections")
    assert "(1\xa0234 medlemmer)" in html
    with translation.override("nb"):
        assert _details_sentence({"group_name": "Alle", "members": 1234}) == "Gruppen «Alle» har 1\xa0234 medlemmer."
