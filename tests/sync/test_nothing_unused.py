"""Nothing in the sync looks finished while unused: every public provider method and every CalendarUser field is
used by the product (pipeline, jobs, views, admin), not only by its own definition and its tests."""

import inspect
import re
from pathlib import Path

import pytest

from sync.models import CalendarUser
from sync.providers.base import CalendarProvider
from sync.providers.ews import EwsProvider
from sync.providers.google import GoogleProvider
from sync.providers.graph import GraphProvider

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("kalenderpush", "customers", "billing", "sync", "portal", "common")


def _product_source(*, leaving_out: tuple[str, ...] = ()) -> str:
    """The product's code apart from the files in `leaving_out` and the generated migrations."""
    return "\n".join(
        path.read_text()
        for package in PRODUCT_PACKAGES
        if (ROOT / package).is_dir()
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts and path.relative_to(ROOT).as_posix() not in leaving_out
    )


@pytest.mark.parametrize("provider", [CalendarProvider, GraphProvider, EwsProvider, GoogleProvider])
def test_every_public_provider_method_is_called_by_the_product(provider: type) -> None:
    callers = _product_source()  # a definition is `def name(`: only a call matches `.name(`
    methods = [
        name
        for name, member in vars(provider).items()
        if inspect.isfunction(member) and not name.startswith("_") and not isinstance(member, staticmethod)
    ]

    assert methods
    assert [name for name in methods if not re.search(rf"\.{name}\(", callers)] == []


def test_every_calendar_user_field_is_used_by_the_product() -> None:
    # its definition, and admin (which may list a field only to hide it), do not count
    users = _product_source(leaving_out=("sync/models.py", "sync/admin.py"))
    fields = [field.name for field in CalendarUser._meta.concrete_fields if not field.primary_key]

    assert "provider_user_id" in fields
    assert [name for name in fields if not re.search(rf"\b{name}\b", users)] == []
