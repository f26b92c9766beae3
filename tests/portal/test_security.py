"""Login throttling, staff two-factor, CSRF, and portal invitations from admin."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.models import PortalMembership
from tests.factories import make_customer

pytestmark = pytest.mark.django_db
PASSWORD = "Riktig-passord-1"


@pytest.fixture
def portal_admin(db):  # type: ignore[no-untyped-def]
    customer = make_customer(name="Låsetest AS")
    user = get_user_model().objects.create_user("it@laasetest.example", "it@laasetest.example", PASSWORD)
    PortalMembership.objects.create(user=user, customer=customer, role=PortalMembership.Role.ADMIN)
    return user


def _login(client: Client, url: str, username: str, password: str, **extra: str):  # type: ignore[no-untyped-def]
    return client.post(url, {"username": username, "password": password, **extra})


def test_axes_locks_a_portal_login_out_after_repeated_failures(client, portal_admin, settings):
    url = reverse("portal:login")
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, url, portal_admin.username, "feil").status_code == 200
    locked = _login(client, url, portal_admin.username, "feil")
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode() or "For mange" in locked.content.decode()
    right = _login(client, url, portal_admin.username, PASSWORD)
    assert right.status_code == 429, "even the right password is refused while locked"
    assert "_auth_user_id" not in client.session


def test_axes_resets_the_count_after_a_successful_login(client, portal_admin, settings):
    url = reverse("portal:login")
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, url, portal_admin.username, "feil")
    assert _login(client, url, portal_admin.username, PASSWORD).status_code == 302
    client.logout()
    for _attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, url, portal_admin.username, "feil").status_code == 200


def test_axes_guards_the_admin_login_too(client, admin_user, settings):
    url = reverse("admin:login")
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        _login(client, url, "admin", "feil")
    assert _login(client, url, "admin", "password").status_code == 429


def test_staff_without_a_second_factor_are_refused_when_2fa_is_required(client, admin_user, settings):
    settings.OTP_REQUIRED_FOR_STAFF = True
    client.force_login(admin_user)  # a session with only a password behind it
    assert client.get("/admin/").status_code == 302
    response = _login(client, reverse("admin:login"), "admin", "password")
    assert response.status_code == 200, "user name and password alone do not get in"
    assert 'name="otp_token"' in response.content.decode()
    assert client.get("/admin/customers/customer/").status_code == 302


def test_staff_get_in_with_a_valid_totp_code(client, admin_user, settings):
    settings.OTP_REQUIRED_FOR_STAFF = True
    device = TOTPDevice.objects.create(user=admin_user, name="Telefon", confirmed=True)
    wrong = _login(
        client, reverse("admin:login"), "admin", "password", otp_device=device.persistent_id, otp_token="000000"
    )
    assert wrong.status_code == 200
    device.refresh_from_db()
    device.throttle_reset()  # django-otp slows down guessing after a wrong code
    code = f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"
    response = _login(
        client, reverse("admin:login"), "admin", "password", otp_device=device.persistent_id, otp_token=code
    )
    assert response.status_code == 302
    assert client.get("/admin/customers/customer/").status_code == 200


def test_without_2fa_required_staff_use_the_password_alone(client, admin_user, settings):
    settings.OTP_REQUIRED_FOR_STAFF = False
    assert _login(client, reverse("admin:login"), "admin", "password").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_portal_forms_refuse_a_post_without_the_csrf_token(portal_admin):
    client = Client(enforce_csrf_checks=True)
    assert _login(client, reverse("portal:login"), portal_admin.username, PASSWORD).status_code == 403
    client.force_login(portal_admin)
    assert client.post(reverse("portal:settings"), {}).status_code == 403
    assert client.post(reverse("portal:terminate"), {"confirm": "on"}).status_code == 403


def test_staff_invite_a_portal_user_from_admin_and_the_link_sets_a_password(
    admin_client, django_capture_on_commit_callbacks
):
    customer = make_customer(name="Invitert AS")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:portal_portalmembership_add"),
            {
                "customer": customer.pk,
                "email": "Kari.Nordmann@Invitert.example",
                "name": "Kari Nordmann",
                "role": "admin",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    membership = PortalMembership.objects.get(customer=customer)
    assert membership.user.email == "kari.nordmann@invitert.example"
    assert not membership.user.has_usable_password()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["kari.nordmann@invitert.example"]
    link = next(line for line in mail.outbox[0].body.splitlines() if "/portal/passord/" in line).strip()
    client = Client()
    page = client.get(link, follow=True)
    client.post(page.redirect_chain[-1][0], {"new_password1": "Godt-passord-42", "new_password2": "Godt-passord-42"})
    assert (
        _login(client, reverse("portal:login"), "kari.nordmann@invitert.example", "Godt-passord-42").status_code == 302
    )


def test_an_address_with_access_for_another_customer_cannot_be_invited(admin_client, portal_admin):
    other = make_customer(name="Annen Kunde AS")
    response = admin_client.post(
        reverse("admin:portal_portalmembership_add"),
        {"customer": other.pk, "email": portal_admin.email, "name": "", "role": "accountant"},
    )
    assert response.status_code == 200
    assert PortalMembership.objects.get(user=portal_admin).customer.name == "Låsetest AS"
    assert len(mail.outbox) == 0


def test_a_fresh_database_gives_the_staff_group_sync_portal_and_lockout_permissions():
    from django.contrib.auth.models import Group

    staff = set(Group.objects.get(name="Staff").permissions.values_list("content_type__app_label", "codename"))
    assert {
        ("sync", "change_calendarsource"),
        ("portal", "add_portalmembership"),
        ("axes", "delete_accessattempt"),
    } <= staff
    accountants = Group.objects.get(name="Accountants").permissions.values_list("codename", flat=True)
    assert set(accountants) == {
        "view_invoice",
        "view_invoiceline",
        "view_invoiceevent",
        "view_creditnote",
        "view_creditnoteline",
    }
