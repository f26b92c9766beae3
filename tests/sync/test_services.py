"""Engine settings from the database: a customer's settings, a user's overrides, the admin catalogue."""

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command

from customers.models import ServiceUser
from sync.models import AbsenceProfile
from sync.rules import RuleSettings
from sync.services import catalogue_from_database, rule_settings_for
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


def test_a_customer_with_default_settings_gets_the_engine_defaults():
    customer = make_customer()
    assert rule_settings_for(customer_settings=customer.settings) == RuleSettings()


def test_customer_settings_and_user_overrides_reach_the_engine():
    customer = make_customer()
    settings = customer.settings
    settings.timezone = "Europe/Stockholm"
    settings.fri_end = dt.time(14, 30)
    settings.sat_start, settings.sat_end = dt.time(10), dt.time(14)
    settings.office_hours_only = True
    settings.public_holidays = False
    settings.divert_by_default = False
    settings.include_tentative = True
    settings.out_of_office_profile = AbsenceProfile.objects.get(short_code="Ferie")
    settings.save()
    user = ServiceUser.objects.create(
        customer=customer,
        email="kari@firma.no",
        default_profile=AbsenceProfile.objects.get(short_code="Ikf"),
        divert_by_default=True,
    )
    plain_user = ServiceUser.objects.create(customer=customer, email="ola@firma.no")

    for_customer = rule_settings_for(customer_settings=settings, service_user=plain_user)
    assert for_customer == RuleSettings(
        timezone="Europe/Stockholm",
        office_hours=((480, 960),) * 4 + ((480, 870), (600, 840), None),
        office_hours_only=True,
        holidays=None,
        default_profile="Møte",
        out_of_office_profile="Ferie",
        divert_by_default=False,
        include_tentative=True,
    )
    for_kari = rule_settings_for(customer_settings=settings, service_user=user)
    assert (for_kari.default_profile, for_kari.divert_by_default) == ("Ikke Forstyrr", True)


def test_the_catalogue_staff_edit_in_admin_is_the_one_the_engine_uses(tmp_path):
    assert len(catalogue_from_database().profiles) == 11
    AbsenceProfile.objects.create(short_code="Kurs", full_name="På kurs", profile="På kurs", mbn_reason="Kurs")
    payload = {
        "window": {"start": "2026-01-05T00:00:00+01:00", "end": "2026-01-06T00:00:00+01:00"},
        "events": [
            {
                "id": "k",
                "subject": "Excel &Kurs",
                "start": "2026-01-05T09:00:00+01:00",
                "end": "2026-01-05T15:00:00+01:00",
            }
        ],
    }
    path = tmp_path / "in.json"
    path.write_text(json.dumps(payload))
    out = io.StringIO()
    call_command("preview_absences", str(path), stdout=out)
    assert json.loads(out.getvalue())["absences"][0]["mbn_reason"] == "Kurs"
