"""Re-encrypt every stored secret with the newest key of CREDENTIALS_KEY (`manage.py rotate_credentials_key`).

Every model field whose name ends in `_encrypted` holds a `sync.crypto` token (the convention every encrypted
field follows), so a new one is rotated without being listed here. All secrets are read first: when one cannot be
decrypted with any key, nothing is changed; otherwise all are rewritten in one transaction.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

from sync.crypto import is_under_newest_key, reencrypt

ENCRYPTED_SUFFIX = "_encrypted"


@dataclass(frozen=True)
class EncryptedField:
    model: type[models.Model]
    name: str

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.name}"


@dataclass
class Rotation:
    """What a rotation found: secrets re-encrypted (or that would be, in a dry run), already under the newest key,
    and those no key can read (`Model.field #pk`; never the secret)."""

    rotated: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


def encrypted_fields() -> list[EncryptedField]:
    return [
        EncryptedField(model, model_field.name)
        for model in apps.get_models()
        for model_field in model._meta.concrete_fields
        if model_field.name.endswith(ENCRYPTED_SUFFIX)
    ]


def rotate_credentials(*, dry_run: bool, progress: Callable[[int, int], None] | None = None) -> Rotation:
    """Re-encrypt every stored secret not yet under the newest key; with `dry_run`, only count."""
    rotation = Rotation()
    with transaction.atomic():
        pending: list[tuple[EncryptedField, int, str]] = []
        for encrypted in encrypted_fields():
            rows = (
                encrypted.model._default_manager.select_for_update()
                .exclude(**{encrypted.name: ""})
                .values_list("pk", encrypted.name)
                .order_by("pk")
            )
            for pk, token in rows:
                if is_under_newest_key(token):
                    rotation.current += 1
                else:
                    pending.append((encrypted, pk, token))
        new_tokens = []
        for encrypted, pk, token in pending:
            try:
                new_tokens.append((encrypted, pk, reencrypt(token)))
            except ImproperlyConfigured:
                rotation.unreadable.append(f"{encrypted.label} #{pk}")
        if rotation.unreadable or dry_run:
            rotation.rotated = len(new_tokens) if dry_run and not rotation.unreadable else 0
            return rotation
        for done, (encrypted, pk, new_token) in enumerate(new_tokens, start=1):
            encrypted.model._default_manager.filter(pk=pk).update(**{encrypted.name: new_token})
            if progress is not None:
                progress(done, len(new_tokens))
        rotation.rotated = len(new_tokens)
    return rotation
