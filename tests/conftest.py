"""Shared test setup: fast password hashing, and the gate for the `services` tests.

`services` tests need the machine's PostgreSQL (as the Django database) and Redis (as the Celery
broker). `make test` runs them in a second pytest run with DATABASE_URL and CELERY_BROKER_URL set.
Where those services are missing they are skipped with a loud reason, except when CI is set: then a
missing service fails the run.
"""

import os
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _services_problem() -> str | None:
    database = django_settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        return (
            "the database is not PostgreSQL; run `make test`, or set "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/kalenderpush"
        )
    if not _reachable(database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)):
        return f"PostgreSQL is not reachable at {database.get('HOST')}:{database.get('PORT')}"
    broker = urlparse(django_settings.CELERY_BROKER_URL)
    if broker.scheme not in ("redis", "rediss"):
        return "CELERY_BROKER_URL is not Redis; run `make test`, or set CELERY_BROKER_URL=redis://127.0.0.1:6379/14"
    if not _reachable(broker.hostname or "127.0.0.1", broker.port or 6379):
        return f"Redis is not reachable at {broker.hostname}:{broker.port}"
    return None


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what this run leaves out
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    services_items = [item for item in items if item.get_closest_marker("services")]
    if not services_items:
        return
    problem = _services_problem()
    if problem is None:
        return
    reason = f"SERVICES TESTS NOT RUN: {problem}"
    config._kp_services_problem = reason  # type: ignore[attr-defined]
    if not os.environ.get("CI"):
        for item in services_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """With CI set, a `services` test whose services are missing fails before anything else runs."""
    problem = getattr(item.config, "_kp_services_problem", None)
    if problem and os.environ.get("CI") and item.get_closest_marker("services"):
        pytest.fail(f"{problem} (CI is set, so this fails the run)", pytrace=False)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    problem = getattr(config, "_kp_services_problem", None)
    if problem:
        terminalreporter.write_sep("!", problem, red=True, bold=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    """A fast hasher; not when the browser suite runs against a served stack (E2E_BASE_URL, see tests/e2e), which
    checks passwords with the production hashers."""
    if not os.environ.get("E2E_BASE_URL"):
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def english():  # type: ignore[no-untyped-def]
    """Messages in English (the msgids), for tests that assert on model and service errors."""
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _credentials_key(settings) -> None:  # type: ignore[no-untyped-def]
    """A Fernet key for stored secrets (tests run with DEBUG off, where one is required)."""
    settings.CREDENTIALS_KEY = "kH8lC3y5n0t9mYdDq0rX1oQbA0u6VtmQ3bQG1R2c7kY="
