"""Customers connect Microsoft 365 by admin consent to Nettsoft's app, choose the group, connect MBN with
Nettsoft's partner client: against the simulators (Entra consent page and certificate assertions, Graph,
MBN), through sync.connections, ending with the customer's absences on the simulated MBN."""

import datetime as dt
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
import requests
from django.contrib.auth import get_user_model
from django.test.utils import override_settings
from django.utils import timezone, translation

from customers.models import ServiceUser
from devtools import demo
from sync import connections, jobs
from sync.connections import ConnectionErrorCode, ConnectionProblem
from sync.models import CalendarSource, ConnectionEvent, ConsentRequest, MbnConnection
from sync.providers.graph import _LoginSession
from tests.factories import make_customer, make_subscription

simulators = pytest.importorskip("devtools.simulators")
from devtools.simulators import demo as sim_demo  # noqa: E402

pytestmark = pytest.mark.django_db
SESSION = "session-key-of-the-admin"
REDIRECT = "http://testserver/portal/tilkoblinger/microsoft/svar/"
Action = ConnectionEvent.Action


@pytest.fixture(scope="module")
def running_sims(tmp_path_factory):
    with simulators.Simulators.start() as running:
        nettsoft = sim_demo.register_nettsoft(running, tmp_path_factory.mktemp("nettsoft"))
        onboarding = sim_demo.load_onboarding(running, timezone.localdate())
        yield running, nettsoft, onboarding


@pytest.fixture
def sims(running_sims):
    running, nettsoft, onboarding = running_sims
    running.login.set_consent(tenant_id=onboarding["tenant_id"], refuse=False)
    with override_settings(**running.app_settings(), **nettsoft):
        yield running
    running.login.revoke_consent(onboarding["tenant_id"], sim_demo.NETTSOFT_CLIENT_ID)


@pytest.fixture
def onboarding(running_sims):
    return running_sims[2]


@pytest.fixture
def customer(sims):
    customer = make_customer(name="Fjellheim Konsult AS")
    make_subscription(customer, signed_on=timezone.localdate())
    return customer


@pytest.fixture
def admin(customer):
    return get_user_model().objects.create_user(username="it@fjellheim-konsult.no", password="x")


def consent(sims, customer, admin, *, accept=True, session=SESSION):
    """Click "Koble til Microsoft 365", then Accept (or Cancel) on Microsoft's (simulated) page: the answer's query."""
    url = connections.microsoft_consent_url(customer=customer, user=admin, session_key=session, redirect_uri=REDIRECT)
    answer = sims.login.consent_answer(url, accept=accept, ca_path=sims.ca_path)
    assert answer.startswith(REDIRECT)
    return dict(parse_qsl(urlsplit(answer).query))


def finish(customer, admin, query, *, session=SESSION):
    return connections.finish_microsoft_consent(customer=customer, user=admin, session_key=session, query=query)


def actions(customer):
    return list(
        ConnectionEvent.objects.filter(customer=customer).order_by("at", "id").values_list("action", "error_code")
    )


def test_the_consent_link_goes_to_microsofts_adminconsent_page_for_nettsofts_app(sims, customer, admin):
    url = connections.microsoft_consent_url(customer=customer, user=admin, session_key=SESSION, redirect_uri=REDIRECT)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert f"{parts.scheme}://{parts.netloc}" == sims.login_url
    assert parts.path == "/organizations/v2.0/adminconsent"
    assert query["client_id"] == sim_demo.NETTSOFT_CLIENT_ID
    assert query["scope"] == "https://graph.microsoft.com/.default"
    assert query["redirect_uri"] == REDIRECT
    assert len(query["state"]) >= 43
    stored = ConsentRequest.objects.get(customer=customer)
    assert query["state"] not in (stored.state_hash, stored.session_key_hash)  # only hashes are kept
    html = requests.get(url, verify=sims.ca_path, timeout=10).text  # the page: title, app, permissions, buttons
    assert "<title>Permissions requested</title>" in html
    assert sim_demo.NETTSOFT_APP_NAME in html and "Calendars.Read" in html and "GroupMember.Read.All" in html
    assert ">Accept</button>" in html and ">Cancel</button>" in html
    assert actions(customer) == [(Action.CONSENT_STARTED, "")]


def test_accepted_consent_creates_an_inactive_source_awaiting_its_group(sims, customer, admin, onboarding):
    query = consent(sims, customer, admin)
    assert query["admin_consent"] == "True" and query["tenant"] == onboarding["tenant_id"]

    source = finish(customer, admin, query)

    assert (source.kind, source.tenant_id, source.uses_nettsoft_app) == ("graph", onboarding["tenant_id"], True)
    assert (source.activation_group, source.active, source.client_id, source.secret_encrypted) == ("", False, "", "")
    assert sims.login.consents()[-1] == (onboarding["tenant_id"], sim_demo.NETTSOFT_CLIENT_ID)
    assert actions(customer) == [(Action.CONSENT_STARTED, ""), (Action.CONSENT_GRANTED, "")]
    [status] = [s for s in connections.customer_connections(customer=customer) if s.connection == "microsoft365"]
    assert (status.state, status.summary, status.source_id) == ("awaiting_group", onboarding["tenant_id"], source.pk)


def test_a_tampered_state_is_refused_and_nothing_is_created(sims, customer, admin):
    query = consent(sims, customer, admin)
    query["state"] = query["state"][:-2] + ("AA" if not query["state"].endswith("AA") else "BB")

    with pytest.raises(ConnectionProblem) as problem:
        finish(customer, admin, query)

    assert problem.value.code == ConnectionErrorCode.STATE_INVALID
    assert not CalendarSource.objects.filter(customer=customer).exists()
    assert actions(customer)[-1] == (Action.CONSENT_REJECTED, ConnectionErrorCode.STATE_INVALID)
    with translation.override("nb"):
        assert "Start" in problem.value.what_to_do or "Koble til" in problem.value.what_to_do


def test_a_state_is_used_once(sims, customer, admin):
    query = consent(sims, customer, admin)
    finish(customer, admin, query)

    with pytest.raises(ConnectionProblem) as problem:
        finish(customer, admin, query)

    assert problem.value.code == ConnectionErrorCode.STATE_USED
    assert CalendarSource.objects.filter(customer=customer).count() == 1


def test_an_expired_state_is_refused(sims, customer, admin, settings):
    query = consent(sims, customer, admin)
    ConsentRequest.objects.update(created_at=timezone.now() - dt.timedelta(seconds=901))

    with pytest.raises(ConnectionProblem) as problem:
        finish(customer, admin, query)

    assert problem.value.code == ConnectionErrorCode.STATE_EXPIRED
    assert problem.value.params == {"minutes": 15}
    assert not CalendarSource.objects.filter(customer=customer).exists()


def test_a_state_from_another_session_or_customer_is_refused(sims, customer, admin):
    query = consent(sims, customer, admin)
    with pytest.raises(ConnectionProblem) as other_session:
        finish(customer, admin, query, session="another-browser")
    other = make_customer(name="Annen Kunde AS")
    with pytest.raises(ConnectionProblem) as other_customer:
        finish(other, admin, query)

    assert other_session.value.code == ConnectionErrorCode.STATE_OTHER_SESSION
    assert other_customer.value.code == ConnectionErrorCode.STATE_INVALID
    assert not CalendarSource.objects.exists()
    finish(customer, admin, query)  # still usable by its own session: a stranger cannot burn it
    assert CalendarSource.objects.filter(customer=customer).count() == 1


def test_refused_consent_says_the_administrator_declined(sims, customer, admin, onboarding):
    cancelled = consent(sims, customer, admin, accept=False)
    sims.login.set_consent(refuse=True)
    refused = consent(sims, customer, admin)

    for query in (cancelled, refused):
        assert query["error"] == "access_denied"
        assert query["error_description"].startswith("AADSTS65004")
        with pytest.raises(ConnectionProblem) as problem:
            finish(customer, admin, query)
        assert problem.value.code == ConnectionErrorCode.CONSENT_REFUSED
        with translation.override("nb"):
            assert problem.value.what == "Administratoren avslo tilgangen."
    assert not CalendarSource.objects.exists()
    assert not sims.login.has_app(onboarding["tenant_id"], sim_demo.NETTSOFT_CLIENT_ID)
    assert actions(customer).count((Action.CONSENT_REFUSED, ConnectionErrorCode.CONSENT_REFUSED)) == 2


def test_consent_for_another_tenant_than_the_connected_one_changes_nothing(sims, customer, admin, onboarding):
    source = finish(customer, admin, consent(sims, customer, admin))
    other_tenant = "9e9e9e9e-1111-4222-8333-444455556666"
    sims.graph.add_tenant(other_tenant)
    sims.login.set_consent(tenant_id=other_tenant)

    with pytest.raises(ConnectionProblem) as problem:
        finish(customer, admin, consent(sims, customer, admin))

    assert problem.value.code == ConnectionErrorCode.TENANT_MISMATCH
    assert problem.value.params == {"tenant": other_tenant, "expected": onboarding["tenant_id"]}
    assert list(CalendarSource.objects.filter(customer=customer).values_list("pk", "tenant_id")) == [
        (source.pk, onboarding["tenant_id"])
    ]


def test_group_search_finds_groups_by_a_word_of_their_name(sims, customer, admin):
    source = finish(customer, admin, consent(sims, customer, admin))

    assert [g.name for g in connections.search_groups(source=source, query="kal")] == ["Kalender Push-brukere"]
    assert [g.name for g in connections.search_groups(source=source, query="ansatte")] == ["Alle ansatte"]
    assert [g.name for g in connections.search_groups(source=source, query="")] == [
        "Alle ansatte",
        "Kalender Push-brukere",
        "Salg",
        "Styret",
    ]
    assert connections.search_groups(source=source, query="finnes ikke") == []
    [found] = connections.search_groups(source=source, query="Salg")
    assert found.mail == "salg@fjellheim-konsult.no"
    get_searches = [path for method, path, _status in sims.request_log("graph") if path == "/v1.0/groups"]
    assert get_searches  # through Graph's /groups


def test_an_unknown_or_empty_group_is_refused_and_the_source_keeps_no_group(sims, customer, admin):
    source = finish(customer, admin, consent(sims, customer, admin))

    unknown = connections.choose_group(source=source, group_id="33333333-cccc-4ccc-8ccc-00000000dead", user=admin)
    empty = connections.choose_group(source=source, group_id=sim_demo.ONBOARDING_GROUPS[3][0], user=admin)

    assert (unknown.ok, unknown.code) == (False, ConnectionErrorCode.GROUP_NOT_FOUND)
    assert (empty.ok, empty.code, empty.params["group"]) == (False, ConnectionErrorCode.GROUP_EMPTY, "Styret")
    source.refresh_from_db()
    assert (source.activation_group, source.active, source.test_ok) == ("", False, False)
    assert actions(customer)[-2:] == [
        (Action.TEST_FAILED, ConnectionErrorCode.GROUP_NOT_FOUND),
        (Action.TEST_FAILED, ConnectionErrorCode.GROUP_EMPTY),
    ]


def test_a_wrong_certificate_thumbprint_is_refused_by_microsoft_login(sims, customer, admin, settings):
    source = finish(customer, admin, consent(sims, customer, admin))
    _key, _certificate, other_thumbprint = sim_demo.app_certificate("another certificate")
    settings.NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT = other_thumbprint
    source.activation_group = sim_demo.ONBOARDING_GROUPS[0][0]
    source.save()

    result = connections.test_connection(customer=customer, connection="microsoft365", user=admin)

    assert (result.ok, result.code) == (False, ConnectionErrorCode.TOKEN_REFUSED)
    refused = [entry for entry in sims.request_log("login") if entry[1].endswith("/oauth2/v2.0/token")]
    assert refused[-1][2] == 401
    [status] = [s for s in connections.customer_connections(customer=customer) if s.connection == "microsoft365"]
    assert status.state == "failing" and status.what


def test_a_certificate_key_that_does_not_match_the_registered_certificate_is_refused(
    sims, customer, admin, settings, tmp_path
):
    source = finish(customer, admin, consent(sims, customer, admin))
    other_key, _certificate, _thumbprint = sim_demo.app_certificate("stolen thumbprint")
    key_file = tmp_path / "other.pem"
    key_file.write_text(other_key)
    settings.NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE = str(key_file)  # the registered thumbprint, another key

    result = connections.choose_group(source=source, group_id=sim_demo.ONBOARDING_GROUPS[0][0], user=admin)

    assert (result.ok, result.code) == (False, ConnectionErrorCode.TOKEN_REFUSED)


def test_microsoft_365_onboarding_ends_with_absences_on_mbn(
    sims, customer, admin, onboarding, django_capture_on_commit_callbacks
):
    source = finish(customer, admin, consent(sims, customer, admin))
    group_id = sim_demo.ONBOARDING_GROUPS[0][0]

    with django_capture_on_commit_callbacks(execute=True):
        chosen = connections.choose_group(source=source, group_id=group_id, user=admin)
        mbn = connections.save_mbn(
            customer=customer,
            user=admin,
            enterprise_id=onboarding["mbn"]["enterprise_id"],
            username=onboarding["mbn"]["username"],
            password=onboarding["mbn"]["password"],
        )

    # the certificate signed the assertion msal sent (no secret is configured at all)
    assert chosen.ok and chosen.details == {"group_name": "Kalender Push-brukere", "members": 4}
    source.refresh_from_db()
    assert (source.activation_group, source.active, source.test_ok) == (group_id, True, True)
    # before the first sync ran, MBN matched the group's members: Emil Strand has no Telenor subscription
    assert mbn.details["subscribers"] == 5
    assert (mbn.details["matched"], mbn.details["unmatched"]) == (
        3,
        [{"name": "Emil Strand", "email": "emil.strand@fjellheim-konsult.no"}],
    )
    connection = MbnConnection.objects.get(customer=customer)
    assert (connection.client_id, connection.client_secret_encrypted, connection.test_ok) == ("", "", True)

    with django_capture_on_commit_callbacks(execute=True):  # the first syncs queue the users' syncs
        answers = demo.run_queued_jobs(rounds=1)
    demo.run_queued_jobs()

    assert any("4 member(s), 3 matched to MBN" in answer for answer in answers)
    users = {u.email: u.msisdn for u in ServiceUser.objects.filter(customer=customer)}
    assert users == {
        "ingrid.berg@fjellheim-konsult.no": "+4790011001",
        "jonas.lie@fjellheim-konsult.no": "+4790011002",
        "sofie.dahl@fjellheim-konsult.no": "+4790011003",
        "emil.strand@fjellheim-konsult.no": "",
    }
    held = sims.mbn.absences("fjellheim", "+4790011001")
    assert held  # Ingrid's appointments this week and next reached MBN
    statuses = {s.connection: s for s in connections.customer_connections(customer=customer)}
    assert [s.state for s in statuses.values()] == ["working", "not_connected", "not_connected", "working"]
    assert statuses["microsoft365"].summary == f"{onboarding['tenant_id']} · Kalender Push-brukere"
    assert [a for a, _code in actions(customer)] == [
        Action.CONSENT_STARTED,
        Action.CONSENT_GRANTED,
        Action.GROUP_CHOSEN,
        Action.TEST_PASSED,
        Action.SAVED,
        Action.TEST_PASSED,
    ]
    # the audit never holds a secret
    assert all(onboarding["mbn"]["password"] not in str(e.params) for e in ConnectionEvent.objects.all())


def test_mbn_counts_the_customers_users_once_they_exist(sims, customer, admin, onboarding):
    for email, name, msisdn in (
        ("ingrid.berg@fjellheim-konsult.no", "Ingrid Berg", ""),
        ("ukjent@fjellheim-konsult.no", "Ukjent Person", ""),
    ):
        ServiceUser.objects.create(customer=customer, email=email, name=name, msisdn=msisdn)

    result = connections.save_mbn(
        customer=customer,
        user=admin,
        enterprise_id="fjellheim",
        username="api@fjellheim-konsult.no",
        password=onboarding["mbn"]["password"],
    )

    assert (result.details["matched"], result.details["unmatched"]) == (
        1,
        [{"name": "Ukjent Person", "email": "ukjent@fjellheim-konsult.no"}],
    )


def test_a_wrong_mbn_password_or_enterprise_saves_nothing(sims, customer, admin, onboarding):
    with pytest.raises(ConnectionProblem) as wrong_password:
        connections.save_mbn(
            customer=customer,
            user=admin,
            enterprise_id="fjellheim",
            username="api@fjellheim-konsult.no",
            password="feil",
        )
    with pytest.raises(ConnectionProblem) as wrong_enterprise:
        connections.save_mbn(
            customer=customer,
            user=admin,
            enterprise_id="demo-enterprise-x",
            username="api@fjellheim-konsult.no",
            password=onboarding["mbn"]["password"],
        )
    with pytest.raises(ConnectionProblem) as blank:
        connections.save_mbn(customer=customer, user=admin, enterprise_id="", username="x", password="y")

    assert (wrong_password.value.code, wrong_password.value.field) == (ConnectionErrorCode.MBN_LOGIN_FAILED, "password")
    assert wrong_enterprise.value.code == ConnectionErrorCode.MBN_ENTERPRISE_NOT_FOUND
    assert (blank.value.code, blank.value.field) == (ConnectionErrorCode.INVALID_INPUT, "enterprise_id")
    assert not MbnConnection.objects.exists()
    assert actions(customer) == [
        (Action.TEST_FAILED, ConnectionErrorCode.MBN_LOGIN_FAILED),
        (Action.TEST_FAILED, ConnectionErrorCode.MBN_ENTERPRISE_NOT_FOUND),
    ]
    with translation.override("nb"):
        assert "api@fjellheim-konsult.no" in wrong_password.value.what


def test_editing_mbn_with_a_wrong_password_keeps_the_working_connection(sims, customer, admin, onboarding):
    connections.save_mbn(
        customer=customer,
        user=admin,
        enterprise_id="fjellheim",
        username="api@fjellheim-konsult.no",
        password=onboarding["mbn"]["password"],
    )
    with pytest.raises(ConnectionProblem):
        connections.save_mbn(
            customer=customer,
            user=admin,
            enterprise_id="fjellheim",
            username="api@fjellheim-konsult.no",
            password="feil",
        )
    kept = connections.save_mbn(  # a blank password keeps the stored one
        customer=customer, user=admin, enterprise_id="fjellheim", username="api@fjellheim-konsult.no", password=""
    )

    assert kept.ok
    assert MbnConnection.objects.get(customer=customer).password() == onboarding["mbn"]["password"]


def test_google_through_nettsofts_service_account(sims, customer, admin, onboarding):
    info = connections.google_setup_info()
    assert info.client_id == sim_demo.SERVICE_ACCOUNT_CLIENT_ID
    assert set(info.scopes) == set(sim_demo.GOOGLE_SCOPES)

    result = connections.save_google(customer=customer, user=admin, **onboarding["google"])

    assert result.ok and result.details == {"group_name": onboarding["google"]["group"], "members": 4}
    source = CalendarSource.objects.get(customer=customer, kind="google")
    assert (source.uses_nettsoft_app, source.secret_encrypted, source.active) == (True, "", True)


def test_google_without_domain_wide_delegation_is_explained(sims, customer, admin):
    with pytest.raises(ConnectionProblem) as problem:
        connections.save_google(
            customer=customer,
            user=admin,
            admin_subject=sim_demo.UNDELEGATED_GOOGLE_ADMIN,
            group="alle@ikke-delegert.no",
        )

    assert problem.value.code == ConnectionErrorCode.GOOGLE_DELEGATION_MISSING
    assert problem.value.params == {"client_id": sim_demo.SERVICE_ACCOUNT_CLIENT_ID}
    assert sim_demo.SERVICE_ACCOUNT_CLIENT_ID in problem.value.what_to_do
    assert not CalendarSource.objects.exists()


def test_exchange_on_premises_is_tested_before_it_is_saved(sims, customer, admin, onboarding):
    ews = {key: onboarding["ews"][key] for key in ("endpoint", "username", "password", "group")}

    def refused(**changes):
        with pytest.raises(ConnectionProblem) as problem:
            connections.save_ews(customer=customer, user=admin, **(ews | changes))
        return problem.value

    unreachable = refused(endpoint="https://127.0.0.1:9/EWS/Exchange.asmx")
    wrong_password = refused(password="feil")
    no_user = refused(username="")
    domain_user = refused(username="FJELLHEIM\\svc-kalender")
    plain_http = refused(endpoint="http://mail.fjellheim-konsult.no/EWS/Exchange.asmx")

    assert (unreachable.code, unreachable.field) == (ConnectionErrorCode.EWS_UNREACHABLE, "endpoint")
    assert (wrong_password.code, wrong_password.field) == (ConnectionErrorCode.EWS_LOGIN_FAILED, "password")
    assert (no_user.code, no_user.field) == (ConnectionErrorCode.INVALID_INPUT, "username")
    assert (domain_user.code, domain_user.field) == (ConnectionErrorCode.INVALID_INPUT, "username")
    assert (plain_http.code, plain_http.field) == (ConnectionErrorCode.INVALID_INPUT, "endpoint")
    assert not CalendarSource.objects.exists()
    with translation.override("nb"):
        assert "127.0.0.1:9" in unreachable.what

    saved = connections.save_ews(customer=customer, user=admin, **ews)

    assert saved.ok and saved.details["members"] == 4
    source = CalendarSource.objects.get(customer=customer, kind="ews")
    assert (source.secret(), source.active, source.uses_nettsoft_app) == (ews["password"], True, False)


def test_the_audit_words_each_event_in_norwegian(sims, customer, admin, onboarding):
    finish(customer, admin, consent(sims, customer, admin))
    with translation.override("nb"):
        sentences = [event.describe() for event in connections.connection_events(customer=customer)]
    assert sentences[0].startswith("En administrator") and onboarding["tenant_id"] in sentences[0]
    assert len(sentences) == 2


def test_the_simulated_graph_wants_consistency_level_eventual_for_a_group_search(sims, customer, admin, settings):
    finish(customer, admin, consent(sims, customer, admin))
    login_session = _LoginSession(ca_path=sims.ca_path, timeout=10)  # the provider's: trusts the simulators' CA
    with open(settings.NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE) as key_file:
        app = msal.ConfidentialClientApplication(
            settings.NETTSOFT_GRAPH_CLIENT_ID,
            client_credential={
                "private_key": key_file.read(),
                "thumbprint": settings.NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT,
            },
            authority=f"{sims.login_url}/{sim_demo.ONBOARDING_TENANT_ID}",
            instance_discovery=False,
            http_client=login_session,
        )
        token = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])["access_token"]
    url = f'{sims.graph_url}/groups?$search="displayName:kal"'
    bearer = {"Authorization": f"Bearer {token}"}

    without = requests.get(url, headers=bearer, timeout=10)
    with_header = requests.get(url, headers={**bearer, "ConsistencyLevel": "eventual"}, timeout=10)
    by_prefix = requests.get(
        f"{sims.graph_url}/groups?$filter=startswith(displayName,'Al')", headers=bearer, timeout=10
    )

    assert not settings.NETTSOFT_GRAPH_CLIENT_SECRET  # the token came from the certificate's client assertion
    assert (without.status_code, without.json()["error"]["code"]) == (400, "Request_UnsupportedQuery")
    assert [g["displayName"] for g in with_header.json()["value"]] == ["Kalender Push-brukere"]
    assert [g["displayName"] for g in by_prefix.json()["value"]] == ["Alle ansatte"]


def test_a_source_made_by_staff_is_untested_until_tested_and_failing_when_its_sync_fails(sims, customer, admin):
    user = ServiceUser.objects.create(customer=customer, email="per@fjord.no", name="Per", msisdn="+4791000001")
    source = demo.wire_customer(
        sims=sims,
        customer=customer,
        users=[user],
        tenant_id="12121212-3434-4565-8787-909090909090",
        enterprise_id="fjord",
    )

    def state(connection):
        return next(s for s in connections.customer_connections(customer=customer) if s.connection == connection)

    assert (state("microsoft365").state, state("mbn").state) == ("untested", "untested")
    result = connections.test_connection(customer=customer, connection="microsoft365", user=admin)
    assert result.ok and state("microsoft365").state == "working"
    assert not state("microsoft365").uses_nettsoft_app  # its own app registration, as before
    CalendarSource.objects.filter(pk=source.pk).update(last_error="x", last_error_code="auth_failed")
    with translation.override("nb"):
        failing = state("microsoft365")
    assert failing.state == "failing" and failing.what and failing.what_to_do
    with pytest.raises(ConnectionProblem) as nothing:
        connections.test_connection(customer=customer, connection="ews", user=admin)
    assert nothing.value.code == ConnectionErrorCode.INVALID_INPUT


def test_users_synced_before_mbn_is_connected_get_their_numbers_and_absences_once_it_is(
    sims, customer, admin, onboarding, django_capture_on_commit_callbacks
):
    source = finish(customer, admin, consent(sims, customer, admin))
    with django_capture_on_commit_callbacks(execute=True):
        connections.choose_group(source=source, group_id=sim_demo.ONBOARDING_GROUPS[0][0], user=admin)
    with django_capture_on_commit_callbacks(execute=True):  # the q2 cluster runs the first sync at once
        demo.run_queued_jobs(rounds=1)
    demo.run_queued_jobs()
    assert set(ServiceUser.objects.filter(customer=customer).values_list("msisdn", flat=True)) == {""}

    with django_capture_on_commit_callbacks(execute=True):
        mbn = connections.save_mbn(customer=customer, user=admin, **onboarding["mbn"])
    with django_capture_on_commit_callbacks(execute=True):
        demo.run_queued_jobs(rounds=1)
    demo.run_queued_jobs()

    assert (mbn.details["matched"], [u["name"] for u in mbn.details["unmatched"]]) == (3, ["Emil Strand"])
    numbers = dict(ServiceUser.objects.filter(customer=customer).values_list("email", "msisdn"))
    assert numbers["jonas.lie@fjellheim-konsult.no"] == "+4790011002"
    assert sims.mbn.absences("fjellheim", "+4790011002")  # Jonas's appointments reached MBN


def test_google_with_an_address_that_is_no_administrator_points_at_that_field(sims, customer, admin, onboarding):
    with pytest.raises(ConnectionProblem) as problem:
        connections.save_google(
            customer=customer,
            user=admin,
            admin_subject="ingrid.berg@fjellheim-konsult.no",
            group=onboarding["google"]["group"],
        )

    assert (problem.value.code, problem.value.field) == (ConnectionErrorCode.INVALID_INPUT, "admin_subject")
    with translation.override("nb"):
        assert problem.value.what.startswith("ingrid.berg@fjellheim-konsult.no har ikke lov")
    assert not CalendarSource.objects.exists()


def test_old_consent_states_are_forgotten_by_the_daily_clean_up(sims, customer, admin):
    consent(sims, customer, admin)
    fresh = connections.microsoft_consent_url(customer=customer, user=admin, session_key=SESSION, redirect_uri=REDIRECT)
    ConsentRequest.objects.exclude(pk=ConsentRequest.objects.latest("pk").pk).update(
        created_at=timezone.now() - dt.timedelta(days=2)
    )

    answer = jobs.delete_old_runs_job()

    assert "1 old consent state(s) deleted" in answer
    assert ConsentRequest.objects.count() == 1 and fresh


def test_saving_mbn_while_the_key_is_rotated_keeps_the_rotated_password(sims, customer, admin, onboarding, monkeypatch):
    """A key rotation that re-encrypts the stored password while the connection test runs: saving the form
    (password left blank) must not write back the token read before, which only the old key reads."""
    mbn = {"enterprise_id": "fjellheim", "username": "api@fjellheim-konsult.no"}
    connections.save_mbn(customer=customer, user=admin, password=onboarding["mbn"]["password"], **mbn)
    tested = connections._test_mbn

    def rotated_meanwhile(candidate):
        result = tested(candidate)
        row = MbnConnection.objects.get(customer=customer)
        MbnConnection.objects.filter(pk=row.pk).update(password_encrypted=row.password_encrypted + "-rotated")
        return result

    monkeypatch.setattr(connections, "_test_mbn", rotated_meanwhile)
    connections.save_mbn(customer=customer, user=admin, password="", **mbn)

    assert MbnConnection.objects.get(customer=customer).password_encrypted.endswith("-rotated")
