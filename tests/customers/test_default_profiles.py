"""New customers' default profiles are found by a fixed key, so staff may rename the profiles in admin."""

import re

import pytest
from django.urls import reverse

from sync.models import AbsenceProfile
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_second_factor(settings) -> None:  # type: ignore[no-untyped-def]
    settings.OTP_REQUIRED_FOR_STAFF = False


def _rename(admin_client, profile: AbsenceProfile, *, code: str, name: str) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(
        reverse("admin:sync_absenceprofile_change", args=[profile.pk]),
        {
            "short_code": code,
            "full_name": name,
            "profile": name,
            "mbn_reason": profile.mbn_reason,
            "position": profile.position,
            "key": "something-else",  # not on the form: staff cannot change it
        },
    )
    assert response.status_code == 302, response.content[:500]


def _selected(html: str, field: str) -> str:
    select = re.search(rf'<select name="settings-0-{field}".*?</select>', html, re.S)
    assert select is not None, field
    chosen = re.search(r'<option value="(\d+)" selected>', select.group(0))
    assert chosen is not None, f"{field}: nothing preselected"
    return chosen.group(1)


def test_a_new_customer_gets_the_default_profiles_after_staff_renamed_both(admin_client):
    meeting = AbsenceProfile.objects.get(short_code="Møt")
    unavailable = AbsenceProfile.objects.get(short_code="Ikt")
    _rename(admin_client, meeting, code="Mtr", name="Møterom")
    _rename(admin_client, unavailable, code="Borte", name="Utilgjengelig")
    meeting.refresh_from_db()
    unavailable.refresh_from_db()
    assert (meeting.full_name, unavailable.short_code) == ("Møterom", "Borte")
    assert (meeting.key, unavailable.key) == (AbsenceProfile.MEETING, AbsenceProfile.UNAVAILABLE)

    customer = make_customer()
    assert customer.settings.default_profile == meeting
    assert customer.settings.out_of_office_profile == unavailable

    add_page = admin_client.get(reverse("admin:customers_customer_add")).content.decode()
    assert _selected(add_page, "default_profile") == str(meeting.pk)
    assert _selected(add_page, "out_of_office_profile") == str(unavailable.pk)


def test_staff_cannot_delete_a_profile_new_customers_need(admin_client):
    meeting = AbsenceProfile.objects.get(key=AbsenceProfile.MEETING)
    response = admin_client.post(reverse("admin:sync_absenceprofile_delete", args=[meeting.pk]), {"post": "yes"})
    assert response.status_code == 403
    admin_client.raise_request_exception = False
    bulk = admin_client.post(
        reverse("admin:sync_absenceprofile_changelist"),
        {"action": "delete_selected", "_selected_action": [meeting.pk], "post": "yes"},
    )
    assert bulk.status_code == 403
    assert AbsenceProfile.objects.filter(pk=meeting.pk).exists()
    ferie = AbsenceProfile.objects.get(short_code="Ferie")
    assert admin_client.get(reverse("admin:sync_absenceprofile_delete", args=[ferie.pk])).status_code == 200
