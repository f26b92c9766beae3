"""Who may sign in to the portal, reset a password there or be invited: portal members only, matched on
e-mail in any case; staff never, and the portal never tells a staff password from a wrong one."""

import importlib
import logging
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from portal import services
from portal.models import PortalMembership
from tests.factories import make_customer

pytestmark = pytest.mark.django_db
PASSWORD = "Riktig-passord-1"
STAFF_EMAIL = "admin@nettsoft.example"


@pytest.fixture
def staff(django_user_model):  # type: ignore[no-untyped-def]
    """Nettsoft's superuser: user name "admin", e-mail on the company domain."""
    return django_user_model.objects.create_superuser("admin", STAFF_EMAIL, PASSWORD)


def _member(username: str, *, email: str | None = None, password: str | None = PASSWORD):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_user(username, email or username, password)
    PortalMembership.objects.create(user=user, customer=make_customer(name="Nordlys Regnskap AS"))
    return user


def _login(client: Client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(reverse("portal:login"), {"username": username, "password": password})


def _page(response) -> str:  # type: ignore[no-untyped-def]
    """The page as a person sees it: the CSRF token differs on every response, so it is left out."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


def _reset_link(message: mail.EmailMessage) -> str:
    return next(line for line in message.body.splitlines() if "/portal/passord/" in line).strip()


def _choose_password(client: Client, link: str, password: str):  # type: ignore[no-untyped-def]
    page = client.get(link, follow=True)
    return page, client.post(page.redirect_chain[-1][0], {"new_password1": password, "new_password2": password})


# --- Forgot your password? ------------------------------------------------------------------------


def test_a_reset_for_a_staff_address_sends_nothing_and_answers_as_for_an_unknown_one(client, staff):
    unknown = client.post(reverse("portal:password_reset"), {"email": "ingen@nordlys-regnskap.example"})
    answer = client.post(reverse("portal:password_reset"), {"email": "Admin@Nettsoft.example"})
    assert mail.outbox == []
    assert (answer.status_code, answer["Location"]) == (unknown.status_code, unknown["Location"])
    assert _page(client.get(answer["Location"])) == _page(client.get(unknown["Location"]))


def test_a_staff_reset_link_does_not_work_in_the_portal(client, staff):
    uid = urlsafe_base64_encode(force_bytes(staff.pk))
    link = reverse("portal:password_reset_confirm", args=[uid, default_token_generator.make_token(staff)])
    page = client.get(link, follow=True)
    set_password = reverse("portal:password_reset_confirm", args=[uid, "set-password"])
    client.post(set_password, {"new_password1": "Overtatt-passord-7", "new_password2": "Overtatt-passord-7"})
    assert "Lenken virker ikke lenger" in page.content.decode()
    staff.refresh_from_db()
    assert staff.check_password(PASSWORD) and not staff.check_password("Overtatt-passord-7")


def test_a_member_stored_in_mixed_case_gets_a_working_link_and_signs_in_in_any_case(client):
    kari = _member("Kari.Nordmann@Nordlys-Regnskap.example")
    client.post(reverse("portal:password_reset"), {"email": "kari.nordmann@nordlys-regnskap.example"})
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [kari.email]
    _choose_password(Client(), _reset_link(mail.outbox[0]), "Et-nytt-passord-9")
    assert _login(client, "kari.nordmann@nordlys-regnskap.example", "Et-nytt-passord-9").status_code == 302


def test_an_invited_member_whose_link_expired_gets_a_new_one_from_forgot_password(client):
    _member("ny@nordlys-regnskap.example", password=None)
    client.post(reverse("portal:password_reset"), {"email": "ny@nordlys-regnskap.example"})
    assert len(mail.outbox) == 1
    _choose_password(Client(), _reset_link(mail.outbox[0]), "Et-nytt-passord-9")
    assert _login(client, "ny@nordlys-regnskap.example", "Et-nytt-passord-9").status_code == 302


def test_a_login_without_portal_access_gets_no_reset_link(client, django_user_model):
    django_user_model.objects.create_user(
        "tidligere@nordlys-regnskap.example", "tidligere@nordlys-regnskap.example", PASSWORD
    )
    client.post(reverse("portal:password_reset"), {"email": "tidligere@nordlys-regnskap.example"})
    assert mail.outbox == []


# --- signing in -----------------------------------------------------------------------------------


def test_the_portal_answers_a_correct_staff_password_exactly_like_a_wrong_one(client, staff):
    wrong = _login(client, "admin", "Feil-passord-1")
    right = _login(client, "admin", PASSWORD)
    assert right.status_code == wrong.status_code == 200
    assert _page(right) == _page(wrong)
    assert "Feil e-postadresse eller passord" in _page(right)
    assert "/admin/" not in _page(right)
    assert "_auth_user_id" not in client.session


def test_a_correct_staff_password_in_the_portal_counts_as_a_failed_sign_in(client, staff, settings):
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "admin", PASSWORD).status_code == 200
    assert _login(client, "admin", PASSWORD).status_code == 429


def test_a_member_signs_in_with_the_address_in_upper_case(client):
    _member("it@nordlys-regnskap.example")
    assert _login(client, "IT@nordlys-regnskap.example", PASSWORD).status_code == 302
    assert client.get(reverse("portal:overview")).status_code == 200


def test_failures_in_any_case_of_the_address_share_one_lockout_count(client, settings):
    _member("it@nordlys-regnskap.example")
    spellings = ["IT@nordlys-regnskap.example", "It@Nordlys-Regnskap.example", "iT@NORDLYS-REGNSKAP.EXAMPLE"]
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, spellings[attempt % len(spellings)], "feil").status_code == 200
    assert _login(client, "it@nordlys-regnskap.example", "feil").status_code == 429
    assert _login(client, "it@nordlys-regnskap.example", PASSWORD).status_code == 429


def test_the_failed_sign_in_message_names_the_address_and_the_password(client):
    _member("it@nordlys-regnskap.example")
    page = _page(_login(client, "it@nordlys-regnskap.exampel", PASSWORD))
    assert "Feil e-postadresse eller passord" in page


def test_two_logins_differing_only_in_case_each_sign_in_with_their_exact_spelling(client, django_user_model):
    django_user_model.objects.create_user("Per@nordlys-regnskap.example", "per@nordlys-regnskap.example", "Per-sitt-1")
    _member("per@nordlys-regnskap.example")
    assert _login(Client(), "per@nordlys-regnskap.example", PASSWORD).status_code == 302
    assert _login(client, "PER@nordlys-regnskap.example", PASSWORD).status_code == 200


# --- invitations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "email"), [("admin", STAFF_EMAIL), (STAFF_EMAIL, "")], ids=["email", "name"])
def test_admin_refuses_to_invite_a_staff_login_found_by_its_email_or_user_name(client, username, email):
    staff = get_user_model().objects.create_superuser(username, email, PASSWORD)
    client.force_login(staff)
    customer = make_customer(name="Nordlys Regnskap AS")
    response = client.post(
        reverse("admin:portal_portalmembership_add"),
        {"customer": customer.pk, "email": "Admin@Nettsoft.example", "name": "Ola Nordmann", "role": "admin"},
    )
    assert response.status_code == 200
    assert "admin@nettsoft.example tilhører en innlogging for Nettsoft-ansatte" in response.content.decode()
    assert list(get_user_model().objects.all()) == [staff]
    assert not PortalMembership.objects.exists() and mail.outbox == []


def test_an_invitation_of_a_staff_address_is_refused_by_the_service_too(staff, english):
    with pytest.raises(ValidationError, match="belongs to a Nettsoft staff login"):
        services.invite(
            customer=make_customer(name="Nordlys Regnskap AS"), email="ADMIN@nettsoft.example", name="", role="admin"
        )
    assert list(get_user_model().objects.all()) == [staff]


def test_sending_again_to_a_second_account_for_a_staff_address_is_refused_with_a_message(client, staff):
    """The account made for a staff address before the check compared e-mails gets no new link."""
    second = _member(STAFF_EMAIL)
    client.force_login(staff)
    response = client.post(
        reverse("admin:portal_portalmembership_changelist"),
        {"action": "send_invitation", "_selected_action": [second.portal_membership.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "tilhører en innlogging for Nettsoft-ansatte" in response.content.decode()
    assert mail.outbox == []


# --- the migration that lower-cased existing portal logins ----------------------------------------


def _lowercase_portal_logins() -> None:
    migration = importlib.import_module("portal.migrations.0002_lowercase_portal_logins")
    apps = MigrationExecutor(connection).loader.project_state(("portal", "0002_lowercase_portal_logins")).apps
    migration.lowercase_portal_logins(apps, None)


def test_the_migration_lower_cases_portal_logins_and_leaves_staff_and_other_logins(django_user_model, staff):
    member = _member("IT@Nordlys-Regnskap.example", email="IT@Nordlys-Regnskap.example")
    staff.username = "Admin"
    staff.save()
    outsider = django_user_model.objects.create_user("Gammel@Nordlys-Regnskap.example", "Gammel@Nordlys.example")
    _lowercase_portal_logins()
    member.refresh_from_db(), staff.refresh_from_db(), outsider.refresh_from_db()
    assert (member.username, member.email) == ("it@nordlys-regnskap.example", "it@nordlys-regnskap.example")
    assert (staff.username, outsider.username) == ("Admin", "Gammel@Nordlys-Regnskap.example")
    assert _login(Client(), "it@nordlys-regnskap.example", PASSWORD).status_code == 302


def test_the_migration_leaves_two_logins_that_would_collide_and_names_them(django_user_model, caplog):
    mixed = _member("Per@Nordlys-Regnskap.example")
    lower = django_user_model.objects.create_user("per@nordlys-regnskap.example", "per@nordlys-regnskap.example")
    with caplog.at_level(logging.WARNING):
        _lowercase_portal_logins()
    mixed.refresh_from_db(), lower.refresh_from_db()
    assert (mixed.username, lower.username) == ("Per@Nordlys-Regnskap.example", "per@nordlys-regnskap.example")
    assert "'Per@Nordlys-Regnskap.example'" in caplog.text and "'per@nordlys-regnskap.example'" in caplog.text
