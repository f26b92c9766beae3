"""Secrets at rest (client secrets, passwords, keys): Fernet with a key from the environment.

`CREDENTIALS_KEY` holds one or more Fernet keys, comma-separated, newest first (rotation: add the new
key in front, run `manage.py rotate_credentials_key`, drop the old one; docs/operations.md). With DEBUG on and
no key, a key is derived from SECRET_KEY so the demo works; production refuses to start without one. Neither
the key nor a decrypted secret is ever stored or logged.
"""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _keys() -> tuple[str, ...]:
    keys = tuple(key.strip() for key in settings.CREDENTIALS_KEY.split(",") if key.strip())
    if not keys:
        if not settings.DEBUG:
            raise ImproperlyConfigured("Set CREDENTIALS_KEY (a Fernet key: see .env.example) to store secrets.")
        digest = hashlib.sha256(f"kalenderpush-credentials:{settings.SECRET_KEY}".encode()).digest()
        keys = (base64.urlsafe_b64encode(digest).decode(),)
    return keys


def _fernet() -> MultiFernet:
    return _fernet_for(_keys())


@functools.lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise ImproperlyConfigured(f"CREDENTIALS_KEY is not a valid Fernet key: {error}") from error


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode() if secret else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with CREDENTIALS_KEY (was the key changed?). "
            "Enter the secret again in admin."
        ) from error


def is_under_newest_key(token: str) -> bool:
    """The token was encrypted with the first (newest) key of CREDENTIALS_KEY."""
    try:
        _fernet_for(_keys()[:1]).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypt(token: str) -> str:
    """The same secret encrypted with the newest key (MultiFernet.rotate); ImproperlyConfigured when no key of
    CREDENTIALS_KEY can read it."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as error:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with any key of CREDENTIALS_KEY: keep the old key in the list."
        ) from error
