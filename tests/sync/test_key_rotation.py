"""rotate_credentials_key: every stored secret moves to the newest key of CREDENTIALS_KEY, and still reads."""

import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command

from sync.key_rotation import encrypted_fields
from sync.models import CalendarSource, MbnConnection
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


def _key() -> str:
    return Fernet.generate_key().decode()


def _stored_under_old_key(settings, old: str) -> tuple[CalendarSource, MbnConnection]:
    settings.CREDENTIALS_KEY = old
    customer = make_customer()
    source = CalendarSource(customer=customer, tenant_id="t", client_id="c", activation_group="g")
    source.set_secret("kilde-hemmelighet")
    source.save()
    connection = MbnConnection(customer=customer, enterprise_id="e", client_id="c", username="u")
    connection.set_secrets(client_secret="mbn-klienthemmelighet", password="mbn-passord")
    connection.save()
    return source, connection


def _tokens() -> list[str]:
    return [
        *CalendarSource.objects.values_list("secret_encrypted", flat=True),
        *MbnConnection.objects.values_list("client_secret_encrypted", flat=True),
        *MbnConnection.objects.values_list("password_encrypted", flat=True),
    ]


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_credentials_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_every_encrypted_field_is_found_by_its_name():
    labels = {encrypted.label for encrypted in encrypted_fields()}
    assert {
        "sync.CalendarSource.secret_encrypted",
        "sync.MbnConnection.client_secret_encrypted",
        "sync.MbnConnection.password_encrypted",
    } <= labels


def test_it_reencrypts_every_secret_with_the_new_key_so_the_old_key_can_go(settings):
    old, new = _key(), _key()
    _stored_under_old_key(settings, old)
    settings.CREDENTIALS_KEY = f"{new},{old}"

    output = _run()

    assert "re-encrypted 3 secret(s) with the newest key; 0 already used it." in output
    for token in _tokens():
        Fernet(new.encode()).decrypt(token.encode())  # readable with the new key alone
        with pytest.raises(InvalidToken):
            Fernet(old.encode()).decrypt(token.encode())
    settings.CREDENTIALS_KEY = new  # the old key removed: everything still reads
    assert CalendarSource.objects.get().secret() == "kilde-hemmelighet"
    connection = MbnConnection.objects.get()
    assert (connection.client_secret(), connection.password()) == ("mbn-klienthemmelighet", "mbn-passord")
    assert "re-encrypted 0 secret(s) with the newest key; 3 already used it." in _run(), "a second run changes nothing"


def test_a_dry_run_counts_and_changes_nothing(settings):
    old, new = _key(), _key()
    _stored_under_old_key(settings, old)
    before = _tokens()
    settings.CREDENTIALS_KEY = f"{new},{old}"

    output = _run("--dry-run")

    assert "would re-encrypt 3 secret(s)" in output and "Nothing changed (dry run)." in output
    assert _tokens() == before


def test_a_secret_no_key_can_read_stops_the_rotation_before_anything_changes(settings):
    old, new, lost = _key(), _key(), _key()
    source, _connection = _stored_under_old_key(settings, old)
    settings.CREDENTIALS_KEY = lost
    CalendarSource.objects.filter(pk=source.pk).update(secret_encrypted=Fernet(lost.encode()).encrypt(b"x").decode())
    before = _tokens()
    settings.CREDENTIALS_KEY = f"{new},{old}"

    with pytest.raises(CommandError, match=rf"sync.CalendarSource.secret_encrypted #{source.pk}.*Nothing was changed"):
        _run()

    assert _tokens() == before
