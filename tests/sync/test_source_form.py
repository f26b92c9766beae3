"""The calendar-source form in admin: a pasted Google key that is not a key file is refused in words."""

import json

import pytest

from sync.admin import CalendarSourceForm
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

KEY_MESSAGE = "Paste the whole JSON key file of the service account (with private_key and client_email)."


def _form(key: str) -> CalendarSourceForm:
    data = {
        "customer": make_customer().pk,
        "kind": "google",
        "admin_subject": "admin@firma.no",
        "activation_group": "kalenderpush@firma.no",
        "active": "on",
        "sweep_minutes": "5",
        "service_account_key": key,
    }
    return CalendarSourceForm(data=data)


@pytest.mark.parametrize(
    "key",
    ["[" * 1000 + "]" * 1000, '{"private_key": ' + "[" * 100 + "]" * 100 + "}", "1" * 5000, "[]", "{not json"],
)
def test_a_key_that_is_not_a_key_file_is_refused_in_words(english, key):
    form = _form(key)
    assert not form.is_valid()
    assert form.errors["service_account_key"] == [KEY_MESSAGE]


def test_a_key_file_is_accepted(english):
    form = _form(json.dumps({"private_key": "-----BEGIN PRIVATE KEY-----", "client_email": "sa@p.iam.example"}))
    assert form.is_valid(), form.errors


def test_a_source_on_nettsofts_app_needs_no_credentials_but_an_active_one_needs_its_group(english):
    data = {"customer": make_customer().pk, "kind": "graph", "tenant_id": "t-1", "uses_nettsoft_app": "on"}
    data["sweep_minutes"] = "5"
    awaiting = CalendarSourceForm(data=data)  # inactive, as a consent leaves it until the group is chosen
    active_without_group = CalendarSourceForm(data={**data, "active": "on"})
    working = CalendarSourceForm(data={**data, "active": "on", "activation_group": "g-1"})

    assert awaiting.is_valid(), awaiting.errors
    assert active_without_group.errors["activation_group"] == ["An active source needs its activation group."]
    assert working.is_valid(), working.errors
    assert working.save().secret_encrypted == ""
