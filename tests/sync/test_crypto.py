"""Secrets are stored encrypted and never in clear text."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from sync import crypto
from sync.models import CalendarSource
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


def test_a_source_secret_is_stored_encrypted(settings):
    settings.CREDENTIALS_KEY = Fernet.generate_key().decode()
    source = CalendarSource(customer=make_customer(), tenant_id="t", client_id="c", activation_group="g")
    source.set_secret("super-hemmelig-verdi")
    source.save()
    stored = CalendarSource.objects.values_list("secret_encrypted", flat=True).get()
    assert "super-hemmelig-verdi" not in stored
    assert CalendarSource.objects.get().secret() == "super-hemmelig-verdi"


def test_keys_rotate_and_a_wrong_key_says_what_to_do(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_KEY = old
    token = crypto.encrypt("hemmelig")
    settings.CREDENTIALS_KEY = f"{new},{old}"
    assert crypto.decrypt(token) == "hemmelig"
    settings.CREDENTIALS_KEY = new
    with pytest.raises(ImproperlyConfigured, match="Enter the secret again"):
        crypto.decrypt(token)


def test_production_needs_a_key(settings):
    settings.CREDENTIALS_KEY = ""
    settings.DEBUG = False
    with pytest.raises(ImproperlyConfigured, match="Set CREDENTIALS_KEY"):
        crypto.encrypt("x")
