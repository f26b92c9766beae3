"""Secrets at rest (client secrets, passwords, keys): Fernet with a key from the environment.

`CREDENTIALS_KEY` holds one or more Fernet keys, comma-separated, newest first (rotation: add the new
key in front, re-save the sources, drop the old one). With DEBUG on and no key, a key is derived from
SECRET_KEY so the demo works; production refuses to start without one. Neither the key nor a decrypted
secret is ever stored or logged.
"""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> MultiFernet:
    keys = tuple(key.strip() for key in settings.CREDENTIALS_KEY.split(",") if key.strip())
    if not keys:
        if not settings.DEBUG:
            raise ImproperlyConfigured("Set CREDENTIALS_KEY (a Fernet key: see .env.example) to store secrets.")
        digest = hashlib.sha256(f"kalenderpush-credentials:{settings.SECRET_KEY}".encode()).digest()
        keys = (base64.urlsafe_b64encode(digest).decode(),)
    return _fernet_for(keys)


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
