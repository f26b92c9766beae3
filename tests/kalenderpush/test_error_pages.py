"""Error pages: Norwegian, in the portal's look under /portal/, the admin's under /admin/, plain elsewhere."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from portal.models import PortalMembership
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

PORTAL_LOOK = '<a class="brand" href="/portal/">Kalender Push</a>'
PORTAL_NAV = '<nav class="main"'
ADMIN_LOOK = '<div id="site-name"><a href="/admin/">Kalender Push</a></div>'
ENGLISH = ["Not Found", "Server Error", "Bad Request", "Forbidden", "CSRF verification failed"]


@pytest.fixture(autouse=True)
def _production_like(settings: Any) -> None:
    settings.DEBUG = False
    settings.OTP_REQUIRED_FOR_STAFF = False


@pytest.fixture
def failing_urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.kalenderpush.error_urls"


def portal_admin() -> Client:
    customer = make_customer(name="Fjordkraft Regnskap AS")
    user = get_user_model().objects.create_user(username="it@fjord.no", email="it@fjord.no", password="x")
    PortalMembership.objects.create(user=user, customer=customer, role=PortalMembership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def staff(*, superuser: bool = True) -> Client:
    model = get_user_model()
    if superuser:
        user = model.objects.create_superuser(username="line", email="line@nettsoft.no", password="x")
    else:
        user = model.objects.create_user(username="ola", email="ola@nettsoft.no", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def page(response: Any) -> str:
    text = response.content.decode()
    for english in ENGLISH:
        assert english not in text, f"English error text {english!r} on the page"
    return text


def test_it_answers_a_missing_portal_page_in_norwegian_in_the_portal_look() -> None:
    response = portal_admin().get("/portal/brukere/999999/")

    text = page(response)
    assert response.status_code == 404
    assert "Fant ikke siden" in text
    assert PORTAL_LOOK in text and PORTAL_NAV in text  # the signed-in customer keeps the portal's menu
    assert "Gå til portalens forside" in text


def test_it_answers_a_missing_admin_page_in_norwegian_in_the_admin_look() -> None:
    response = staff().get("/admin/customers/customer/999999/overview/")

    text = page(response)
    assert response.status_code == 404
    assert "Fant ikke siden" in text
    assert ADMIN_LOOK in text and 'id="user-tools"' in text


def test_it_answers_a_missing_page_elsewhere_with_a_plain_norwegian_page() -> None:
    response = Client().get("/finnes-ikke/")

    text = page(response)
    assert response.status_code == 404
    assert "Fant ikke siden" in text
    assert PORTAL_LOOK not in text and ADMIN_LOOK not in text


@pytest.mark.usefixtures("failing_urls")
@pytest.mark.parametrize(
    ("url", "look"),
    [("/portal/feiler/", PORTAL_LOOK), ("/admin/feiler/", ADMIN_LOOK), ("/webhooks/feiler/", "Kalender Push · 500")],
)
def test_it_answers_a_crash_with_a_norwegian_500_page_in_the_look_of_its_site(url: str, look: str) -> None:
    client = portal_admin()
    client.raise_request_exception = False

    response = client.get(url)

    text = page(response)
    assert response.status_code == 500
    assert "Noe gikk galt" in text
    assert look in text
    assert "/i18n/setlang/" not in text  # rendered without the request: no form that needs its CSRF token


@pytest.mark.usefixtures("failing_urls")
def test_it_answers_a_bad_request_with_a_norwegian_400_page() -> None:
    response = Client().get("/portal/mistenkelig/")

    text = page(response)
    assert response.status_code == 400
    assert "Ugyldig forespørsel" in text
    assert PORTAL_LOOK in text


def test_it_answers_staff_without_permission_with_a_norwegian_403_in_the_admin_look() -> None:
    response = staff(superuser=False).get("/admin/customers/customer/add/")

    text = page(response)
    assert response.status_code == 403
    assert "Ingen tilgang" in text and "Du har ikke tilgang til denne siden." in text
    assert ADMIN_LOOK in text


def test_it_explains_a_failed_csrf_check_in_norwegian_in_the_portal_look() -> None:
    client = Client(enforce_csrf_checks=True)

    response = client.post("/portal/logg-inn/", {"username": "it@fjord.no", "password": "x"})

    text = page(response)
    assert response.status_code == 403
    assert "Skjemaet kunne ikke sendes" in text
    assert "last siden på nytt" in text
    assert PORTAL_LOOK in text


def test_it_explains_a_failed_csrf_check_in_norwegian_in_the_admin_look() -> None:
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "line", "password": "x"})

    text = page(response)
    assert response.status_code == 403
    assert "Skjemaet kunne ikke sendes" in text
    assert ADMIN_LOOK in text


def test_the_500_page_falls_back_to_fixed_norwegian_html_when_its_template_cannot_render(monkeypatch: Any) -> None:
    from django.template import TemplateDoesNotExist
    from django.test import RequestFactory

    from kalenderpush import error_pages

    def broken(name: str) -> Any:
        raise TemplateDoesNotExist(name)

    monkeypatch.setattr(error_pages.loader, "get_template", broken)

    response = error_pages.server_error(RequestFactory().get("/portal/"))

    assert response.status_code == 500
    assert "Noe gikk galt" in response.content.decode()
