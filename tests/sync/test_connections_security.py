# ruff: noqa: F811  (the fixtures of test_connections are imported, and pytest passes them by name)
"""What a review of the self-service connections found: one customer claiming another's Microsoft 365 tenant or
Google domain, an Exchange address pointing into our own network, a failed edit or a re-consent breaking a
working connection, a cached sign-in hiding a revoked consent; and disconnecting a connection."""

import http.server
import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone, translation

from customers.models import ServiceUser, StopReason
from devtools import demo
from sync import connections, pipeline
from sync.connections import ConnectionErrorCode, ConnectionProblem
from sync.models import CalendarSource, ConnectionEvent, MbnConnection
from tests.factories import make_customer, make_subscription
from tests.sync.test_connections import (  # noqa: F401  (fixtures)
    REDIRECT,
    SESSION,
    actions,
    admin,
    consent,
    customer,
    finish,
    onboarding,
    running_sims,
    sims,
)

simulators = pytest.importorskip("devtools.simulators")
from devtools.simulators import demo as sim_demo  # noqa: E402

pytestmark = pytest.mark.django_db
Action = ConnectionEvent.Action
GROUP = sim_demo.ONBOARDING_GROUPS[0][0]  # Kalender Push-brukere


@pytest.fixture
def other(sims):
    """A second customer, with its own IT admin and browser session."""
    customer = make_customer(name="Angriper AS")
    make_subscription(customer, signed_on=timezone.localdate())
    return customer, get_user_model().objects.create_user(username="it@angriper.no", password="x")


def forged_answer(customer, user, tenant, *, session="other-session"):
    """Start a consent, never visit Microsoft, and type the callback by hand with `tenant`."""
    url = connections.microsoft_consent_url(customer=customer, user=user, session_key=session, redirect_uri=REDIRECT)
    state = dict(parse_qsl(urlsplit(url).query))["state"]
    return {"state": state, "tenant": tenant, "admin_consent": "True"}


def connected_microsoft(sims, customer, admin):
    """Microsoft 365 connected by consent, with the activation group chosen (the test passed)."""
    source = finish(customer, admin, consent(sims, customer, admin))
    assert connections.choose_group(source=source, group_id=GROUP, user=admin).ok
    source.refresh_from_db()
    return source


def state_of(customer, connection):
    return next(s for s in connections.customer_connections(customer=customer) if s.connection == connection)


# --- 1. a Microsoft 365 tenant another customer holds -----------------------------------------------------------


def test_a_forged_callback_cannot_claim_a_tenant_another_customer_connected(sims, customer, admin, onboarding, other):
    connected_microsoft(sims, customer, admin)
    evil, evil_user = other

    with pytest.raises(ConnectionProblem) as problem:
        connections.finish_microsoft_consent(
            customer=evil,
            user=evil_user,
            session_key="other-session",
            query=forged_answer(evil, evil_user, onboarding["tenant_id"].upper()),
        )

    assert problem.value.code == ConnectionErrorCode.TENANT_TAKEN
    assert not CalendarSource.objects.filter(customer=evil).exists()
    assert actions(evil)[-1] == (Action.CONSENT_REJECTED, ConnectionErrorCode.TENANT_TAKEN)
    with translation.override("nb"):
        assert problem.value.what == (
            f"Microsoft 365-organisasjonen {onboarding['tenant_id'].upper()} er allerede koblet til en annen kunde."
        )
        assert "kontakt Nettsoft" in problem.value.what_to_do
    assert state_of(customer, "microsoft365").state == "working"  # the owner's connection is untouched


def test_the_database_holds_one_customer_per_tenant_on_nettsofts_app(customer, other):
    tenant = "5a5a5a5a-1111-4222-8333-444455556666"
    CalendarSource.objects.create(customer=customer, tenant_id=tenant, uses_nettsoft_app=True, active=False)
    second = CalendarSource(customer=other[0], tenant_id=tenant.upper(), uses_nettsoft_app=True, active=False)

    with pytest.raises(ValidationError) as invalid:  # admin's form says so
        second.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():  # and a race cannot get past it
        second.save()

    assert "En annen kunde er allerede koblet til denne Microsoft 365-organisasjonen" in str(invalid.value)
    CalendarSource.objects.filter(customer=customer).update(removed_at=timezone.now())
    second.save()  # a disconnected source frees the tenant
    # sources on a customer's own app registration (staff-made, benchmarks) are not concerned
    CalendarSource.objects.create(customer=customer, tenant_id="t", client_id="c")
    CalendarSource.objects.create(customer=other[0], tenant_id="t", client_id="c")


# --- 2. a Google domain another customer holds ----------------------------------------------------------------


def test_a_google_domain_another_customer_connected_is_refused(sims, customer, admin, onboarding, other):
    assert connections.save_google(customer=customer, user=admin, **onboarding["google"]).ok
    evil, evil_user = other

    with pytest.raises(ConnectionProblem) as problem:
        connections.save_google(customer=evil, user=evil_user, **onboarding["google"])

    assert (problem.value.code, problem.value.field) == (ConnectionErrorCode.GOOGLE_DOMAIN_TAKEN, "admin_subject")
    assert not CalendarSource.objects.filter(customer=evil).exists()
    assert actions(evil) == [(Action.TEST_FAILED, ConnectionErrorCode.GOOGLE_DOMAIN_TAKEN)]
    with translation.override("nb"):
        assert "fjellheim-konsult.no" in problem.value.what and "en annen kunde" in problem.value.what
        assert "kontakt Nettsoft" in problem.value.what_to_do


def test_the_google_group_must_be_in_the_administrators_domain(sims, customer, admin, other, onboarding):
    assert connections.save_google(customer=customer, user=admin, **onboarding["google"]).ok
    evil, evil_user = other

    with pytest.raises(ConnectionProblem) as problem:  # its own admin, the other customer's group
        connections.save_google(
            customer=evil, user=evil_user, admin_subject="admin@angriper.no", group=onboarding["google"]["group"]
        )

    assert (problem.value.code, problem.value.field) == (ConnectionErrorCode.INVALID_INPUT, "group")
    with translation.override("nb"):
        assert problem.value.what == "Gruppens adresse må være i administratorens domene (angriper.no)."
    assert not CalendarSource.objects.filter(customer=evil).exists()


# --- 3. an Exchange address in our own network ---------------------------------------------------------------


class _Internal(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_POST(self):
        self.requests.append(self.path)
        body = b"internal-service-banner redis_password=hunter2"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def internal_service():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Internal)
    _Internal.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:{port}/EWS/Exchange.asmx",
        "https://127.0.0.1:{port}/EWS/Exchange.asmx",
        "https://localhost:{port}/EWS/Exchange.asmx",
        "https://[::1]:{port}/EWS/Exchange.asmx",
        "https://10.0.0.5/EWS/Exchange.asmx",
        "https://192.168.1.20/EWS/Exchange.asmx",
        "https://169.254.169.254/latest/meta-data/",
    ],
)
def test_an_exchange_address_in_an_internal_network_is_refused(
    sims, customer, admin, settings, internal_service, endpoint
):
    settings.EWS_ALLOW_PRIVATE_ENDPOINTS = False  # production
    url = endpoint.format(port=internal_service.server_port)

    with pytest.raises(ConnectionProblem) as problem:
        connections.save_ews(
            customer=customer, user=admin, endpoint=url, username="svc@firma.no", password="x", group="g@firma.no"
        )

    assert (problem.value.code, problem.value.field) == (ConnectionErrorCode.INVALID_INPUT, "endpoint")
    assert _Internal.requests == []  # nothing was sent there, the password least of all
    assert "hunter2" not in problem.value.what
    assert not CalendarSource.objects.exists()
    with translation.override("nb"):
        assert "https" in problem.value.what or "intern nettverksadresse" in problem.value.what


def test_a_public_exchange_address_passes_the_address_check(settings):
    settings.EWS_ALLOW_PRIVATE_ENDPOINTS = False
    connections._check_endpoint("https://93.184.216.34/EWS/Exchange.asmx")  # an address on the internet: no error
    with pytest.raises(ConnectionProblem) as plain:
        connections._check_endpoint("http://93.184.216.34/EWS/Exchange.asmx")
    assert plain.value.field == "endpoint"


def test_a_lab_may_use_the_loopback_simulator(sims, customer, admin, settings, onboarding):
    settings.EWS_ALLOW_PRIVATE_ENDPOINTS = True  # DEBUG/DEVTOOLS: tests and `make run`
    ews = {key: onboarding["ews"][key] for key in ("endpoint", "username", "password", "group")}
    assert ews["endpoint"].startswith("http://127.0.0.1")
    assert connections.save_ews(customer=customer, user=admin, **ews).ok


# --- 4. a failed edit keeps the working connection's state ------------------------------------------------


def test_a_failed_edit_leaves_the_working_connection_working(sims, customer, admin, onboarding):
    assert connections.save_google(customer=customer, user=admin, **onboarding["google"]).ok
    source = CalendarSource.objects.get(customer=customer, kind="google")
    tested_at = source.tested_at

    with pytest.raises(ConnectionProblem):
        connections.save_google(
            customer=customer,
            user=admin,
            admin_subject=sim_demo.UNDELEGATED_GOOGLE_ADMIN,
            group="alle@ikke-delegert.no",
        )

    source.refresh_from_db()
    assert (source.admin_subject, source.active, source.test_ok, source.tested_at) == (
        onboarding["google"]["admin_subject"],
        True,
        True,
        tested_at,
    )
    assert state_of(customer, "google").state == "working"
    assert actions(customer)[-1] == (Action.TEST_FAILED, ConnectionErrorCode.GOOGLE_DELEGATION_MISSING)


# --- 5. a source on the customer's own app registration -----------------------------------------------------


def _own_app_source(sims, customer, tenant):
    user = ServiceUser.objects.create(customer=customer, email="per@fjord.no", name="Per", msisdn="+4791000001")
    source = demo.wire_customer(sims=sims, customer=customer, users=[user], tenant_id=tenant, enterprise_id="fjord")
    sims.login.set_consent(tenant_id=tenant)
    return source


def test_an_own_app_source_moves_to_nettsofts_app_once_the_test_passes(sims, customer, admin):
    source = _own_app_source(sims, customer, "abababab-1111-4222-8333-444455556661")

    finished = finish(customer, admin, consent(sims, customer, admin))

    source.refresh_from_db()
    assert finished.pk == source.pk
    assert (source.uses_nettsoft_app, source.client_id, source.secret_encrypted, source.test_ok) == (True, "", "", True)
    assert actions(customer)[-1] == (Action.TEST_PASSED, "")


def test_an_own_app_source_keeps_its_registration_when_nettsofts_app_fails_its_test(sims, customer, admin):
    tenant = "abababab-1111-4222-8333-444455556662"
    source = _own_app_source(sims, customer, tenant)
    query = consent(sims, customer, admin)
    sims.login.revoke_consent(tenant, sim_demo.NETTSOFT_CLIENT_ID)  # Nettsoft's app cannot sign in there after all

    with pytest.raises(ConnectionProblem) as problem:
        finish(customer, admin, query)

    assert problem.value.code == ConnectionErrorCode.TOKEN_REFUSED
    kept = CalendarSource.objects.get(pk=source.pk)
    assert (kept.uses_nettsoft_app, kept.client_id, kept.secret(), kept.active) == (
        False,
        f"app-{tenant}",
        f"secret-{tenant}",
        True,
    )
    assert connections.test_connection(customer=customer, connection="microsoft365", user=admin).ok  # still works


def test_a_google_source_with_its_own_key_keeps_it_when_the_switch_fails(sims, customer, admin):
    source = CalendarSource(customer=customer, kind="google", admin_subject="admin@ikke-delegert.no")
    source.activation_group = "alle@ikke-delegert.no"
    source.set_secret('{"client_id": "own", "private_key": "own-key"}')
    source.save()

    with pytest.raises(ConnectionProblem):
        connections.save_google(
            customer=customer,
            user=admin,
            admin_subject=sim_demo.UNDELEGATED_GOOGLE_ADMIN,
            group="alle@ikke-delegert.no",
        )

    source.refresh_from_db()
    assert (source.uses_nettsoft_app, source.active) == (False, True)
    assert source.secret() == '{"client_id": "own", "private_key": "own-key"}'


# --- 6. the expected tenant, and disconnecting -----------------------------------------------------------------


def test_two_consents_in_flight_cannot_make_a_second_microsoft_source(sims, customer, admin, onboarding):
    first = consent(sims, customer, admin)  # two tabs: both started before either finished
    other_tenant = "9e9e9e9e-1111-4222-8333-444455556667"
    sims.graph.add_tenant(other_tenant)
    sims.login.set_consent(tenant_id=other_tenant)
    second = consent(sims, customer, admin)
    source = finish(customer, admin, first)

    with pytest.raises(ConnectionProblem) as problem:
        finish(customer, admin, second)

    assert problem.value.code == ConnectionErrorCode.TENANT_MISMATCH
    assert list(CalendarSource.objects.filter(customer=customer).values_list("pk", flat=True)) == [source.pk]


def test_disconnecting_microsoft_365_stops_its_users_and_frees_the_tenant(
    sims, customer, admin, onboarding, other, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        source = connected_microsoft(sims, customer, admin)
        connections.save_mbn(customer=customer, user=admin, **onboarding["mbn"])
    with django_capture_on_commit_callbacks(execute=True):
        demo.run_queued_jobs(rounds=1)
    demo.run_queued_jobs()
    assert sims.mbn.absences("fjellheim", "+4790011001")  # Ingrid's appointments are on MBN

    with django_capture_on_commit_callbacks(execute=True):
        connections.remove_connection(customer=customer, connection="microsoft365", user=admin)
    demo.run_queued_jobs()

    source.refresh_from_db()
    assert (source.active, source.removed_at is not None) == (False, True)
    users = ServiceUser.objects.filter(customer=customer)
    assert {(u.active, u.stop_reason, u.stopped_at is not None) for u in users} == {
        (False, StopReason.LEFT_GROUP, True)
    }
    assert sims.mbn.absences("fjellheim", "+4790011001") == []  # our absences were deleted from MBN
    assert state_of(customer, "microsoft365").state == "not_connected"
    assert actions(customer)[-1] == (Action.REMOVED, "")
    with translation.override("nb"):
        assert ConnectionEvent.objects.filter(customer=customer).first().describe()
    # the tenant is free: its rightful owner (here: another customer) can consent for it now
    evil, evil_user = other
    taken = connections.finish_microsoft_consent(
        customer=evil,
        user=evil_user,
        session_key="other-session",
        query=forged_answer(evil, evil_user, onboarding["tenant_id"]),
    )
    assert taken.customer_id == evil.pk


def test_after_disconnecting_a_consent_for_another_tenant_is_accepted(sims, customer, admin):
    wrong = finish(customer, admin, consent(sims, customer, admin))
    connections.remove_connection(customer=customer, connection="microsoft365", user=admin, source_id=wrong.pk)
    right_tenant = "9e9e9e9e-1111-4222-8333-444455556668"
    sims.graph.add_tenant(right_tenant)
    sims.login.set_consent(tenant_id=right_tenant)

    right = finish(customer, admin, consent(sims, customer, admin))

    assert right.pk != wrong.pk and right.tenant_id == right_tenant
    assert state_of(customer, "microsoft365").source_id == right.pk
    with pytest.raises(ConnectionProblem) as nothing:
        connections.remove_connection(customer=customer, connection="ews", user=admin)
    assert nothing.value.code == ConnectionErrorCode.INVALID_INPUT


def test_disconnecting_mbn_stops_pushing_until_it_is_saved_again(sims, customer, admin, onboarding):
    connections.save_mbn(customer=customer, user=admin, **onboarding["mbn"])

    connections.remove_connection(customer=customer, connection="mbn", user=admin)

    assert state_of(customer, "mbn").state == "not_connected"
    assert MbnConnection.objects.get(customer=customer).removed_at is not None
    with pytest.raises(ConnectionProblem):
        connections.test_connection(customer=customer, connection="mbn", user=admin)
    assert connections.save_mbn(customer=customer, user=admin, **onboarding["mbn"]).ok
    assert MbnConnection.objects.get(customer=customer).removed_at is None
    assert state_of(customer, "mbn").state == "working"


# --- 7. "Test igjen" signs in afresh -------------------------------------------------------------------------


def test_testing_again_notices_a_revoked_consent_at_once(sims, customer, admin, onboarding):
    source = connected_microsoft(sims, customer, admin)
    assert pipeline.provider_for(source).list_users(GROUP)  # the sync's provider holds a token now
    sims.login.revoke_consent(onboarding["tenant_id"], sim_demo.NETTSOFT_CLIENT_ID)

    result = connections.test_connection(customer=customer, connection="microsoft365", user=admin)

    assert (result.ok, result.code) == (False, ConnectionErrorCode.TOKEN_REFUSED)
    assert state_of(customer, "microsoft365").state == "failing"


# --- 8. saving MBN keeps staff's switch ------------------------------------------------------------------------


def test_saving_mbn_again_keeps_it_off_when_staff_switched_it_off(sims, customer, admin, onboarding):
    connections.save_mbn(customer=customer, user=admin, **onboarding["mbn"])
    MbnConnection.objects.filter(customer=customer).update(active=False)

    assert connections.save_mbn(customer=customer, user=admin, **onboarding["mbn"]).ok

    assert MbnConnection.objects.get(customer=customer).active is False


# --- 11. a product function is not collected as a test ---------------------------------------------------------


def test_test_connection_is_not_taken_for_a_test():
    assert connections.test_connection.__test__ is False
