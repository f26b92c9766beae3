"""Admin in Norwegian all the way: the third-party apps' pages (django-q2, django-axes, django-otp) and Django's
own newer admin strings, which their catalogs leave in English, come from our catalog."""

import datetime as dt
from html.parser import HTMLParser
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_q.models import Task

from tests.factories import make_customer

pytestmark = pytest.mark.django_db

# What staff saw in English before (headings, model and app names, labels, buttons, screen-reader texts).
ENGLISH = [
    "Django Q",
    "Axes",
    "Otp_Totp",
    "Otp_Static",
    "Scheduled task",
    "Successful task",
    "Failed task",
    "Queued task",
    "Access attempt",
    "Access failure",
    "Access log",
    "TOTP device",
    "Static device",
    "static device",
    "Start typing to filter",
    "Show counts",
    "Hide counts",
    "Toggle theme",
    "Breadcrumbs",
    "Sidebar",
    "Skip to main content",
    "Model name",
    "Add link",
    "Change or view list link",
    "Filter navigation items",
    "Select all objects on this page",
    "Select this object for an action",
    "Schedule Type",
    "Next Run",
    "Repeats",
    "Function",
    "Resubmit selected tasks",
    "Number of minutes for the Minutes type",
    "Time Taken",
    "Attempt Time",
    "IP Address",
    "User Agent",
    "Locked Out",
    "Form Data",
    "Meta Data",
    "Identity",
    "Timestamps",
    "Throttling",
    "created at",
    "last used at",
    "The user that this device belongs to",
    "Search by user",
    "OTP Token",
    "Please enter your OTP token",
]


class VisibleText(HTMLParser):
    """The text a person sees or hears: text nodes outside script and style, and the labelling attributes."""

    LABELS = ("placeholder", "title", "aria-label", "alt", "value")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        labels = self.LABELS if tag != "input" else ("placeholder", "title", "aria-label")
        self.parts.extend(value for name, value in attrs if name in labels and value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(response: Any) -> str:
    parser = VisibleText()
    parser.feed(response.content.decode())
    return " ".join(" ".join(parser.parts).split())


@pytest.fixture
def superuser_client(settings: Any) -> Client:
    settings.OTP_REQUIRED_FOR_STAFF = False
    user = get_user_model().objects.create_superuser(username="line", email="line@nettsoft.no", password="x")
    client = Client()
    client.force_login(user)
    now = timezone.now()
    who = {"username": "it@fjord.no", "ip_address": "10.0.0.9", "user_agent": "Firefox", "path_info": "/portal/"}
    AccessAttempt.objects.create(**who, failures_since_start=3)
    AccessFailureLog.objects.create(**who)
    AccessLog.objects.create(**who)
    TOTPDevice.objects.create(user=user, name="Telefon")
    StaticDevice.objects.create(user=user, name="Reservekoder")
    Task.objects.create(id="a" * 32, name="ok", func="billing.tasks.snapshot_usage", started=now, stopped=now)
    Task.objects.create(
        id="b" * 32,
        name="feilet",
        func="billing.tasks.snapshot_usage",
        started=now - dt.timedelta(minutes=1),
        stopped=now,
        success=False,
    )
    make_customer(name="Fjordkraft Regnskap AS")
    return client


THIRD_PARTY_PAGES = [
    "/admin/",
    "/admin/axes/",
    "/admin/axes/accessattempt/",
    "/admin/axes/accessattempt/{attempt}/change/",
    "/admin/axes/accessfailurelog/",
    "/admin/axes/accesslog/",
    "/admin/django_q/",
    "/admin/django_q/schedule/",
    "/admin/django_q/schedule/add/",
    "/admin/django_q/success/",
    "/admin/django_q/failure/",
    "/admin/django_q/ormq/",
    "/admin/otp_totp/",
    "/admin/otp_totp/totpdevice/",
    "/admin/otp_totp/totpdevice/add/",
    "/admin/otp_totp/totpdevice/{totp}/change/",
    "/admin/otp_static/staticdevice/",
    "/admin/otp_static/staticdevice/add/",
    "/admin/customers/customer/",
]


@pytest.mark.parametrize("url", THIRD_PARTY_PAGES)
def test_it_shows_staff_no_english_on_third_party_admin_pages(superuser_client: Client, url: str) -> None:
    url = url.format(attempt=AccessAttempt.objects.get().pk, totp=TOTPDevice.objects.get().pk)

    response = superuser_client.get(url)

    assert response.status_code == 200
    text = visible_text(response)
    left = [english for english in ENGLISH if english in text]
    assert not left, f"{url} still shows {left}"


def test_it_names_the_third_party_apps_and_models_in_norwegian_on_the_admin_index(superuser_client: Client) -> None:
    text = visible_text(superuser_client.get("/admin/"))

    for norwegian in [
        "Bakgrunnsjobber",
        "Planlagte jobber",
        "Mislykkede jobber",
        "Innloggingssikkerhet",
        "Innloggingsforsøk",
        "Mislykkede innlogginger",
        "Tofaktor: autentiseringsapper",
        "TOTP-enheter",
        "Tofaktor: reservekoder",
        "Reservekodelister",
    ]:
        assert norwegian in text


def test_it_labels_changelist_counts_and_totp_fieldsets_in_norwegian(superuser_client: Client) -> None:
    changelist = visible_text(superuser_client.get("/admin/django_q/schedule/"))
    totp = visible_text(superuser_client.get("/admin/otp_totp/totpdevice/add/"))

    assert "Vis antall" in changelist and "Hyppighet" in changelist and "Neste kjøring" in changelist
    assert all(title in totp for title in ["Identitet", "Tidspunkter", "Oppsett", "Struping"])
    assert "Brukeren som eier denne enheten." in totp


def test_it_asks_for_the_two_factor_code_in_norwegian(settings: Any) -> None:
    settings.OTP_REQUIRED_FOR_STAFF = True

    text = visible_text(Client().get("/admin/login/"))

    assert "Engangskode:" in text
    assert not [english for english in ENGLISH if english in text]


def test_it_names_weekdays_in_norwegian_in_the_admin_calendar_widget(superuser_client: Client) -> None:
    catalog = superuser_client.get("/admin/jsi18n/").content.decode()

    assert '"Monday": "mandag"' in catalog
    assert '"abbrev. day Monday\\u0004Mon": "man"' in catalog


def test_it_translates_third_party_models_without_a_migration_for_them() -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "otp_totp", "otp_static", "axes", "django_q", check=True, dry_run=True, stdout=out)

    assert "No changes detected" in out.getvalue()
