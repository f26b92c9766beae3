"""Browser tests: Playwright driving Debian's chromium against pytest-django's live server.

One browser for all of them, a fresh context (cookies, viewport) per test. Every page a test looks at
is saved as a full-page PNG under test-output/e2e/; with KP_DOC_SCREENSHOTS=<dir> (see
scripts/screenshots.sh) the shots the user guides use are also written there, shrunk for the docs.

Without /usr/bin/chromium the tests are skipped with the reason, except when CI is set: then they fail.

With E2E_BASE_URL set the browser goes there instead of to the live server: the production stack that
tests/services/test_production.py serves (`make serve`) on this test run's database (`--reuse-db`), so the
suite runs once against gunicorn, WhiteNoise, the q2 cluster and Celery with DEBUG off.

Playwright's sync API leaves an asyncio loop running in this thread for as long as it is started. Two
things follow, both handled in `browser`: Django refuses ORM calls while a loop runs (so
DJANGO_ALLOW_ASYNC_UNSAFE is set, only meanwhile), and Django keeps a thread's database connections in
a separate store while a loop runs, so the connection made before the browser started (the one that
holds the test database's serialized contents for `serialized_rollback`) would be replaced by a fresh
one; it is carried over. The browser is package-scoped so the loop is gone again for the tests that
run after these.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import DESKTOP

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser(django_db_setup: None, django_db_blocker: Any) -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"E2E BROWSER TESTS NOT RUN: {CHROMIUM} is missing (scripts/bootstrap.sh installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this fails the run)", pytrace=False)
        pytest.skip(reason)
    from django.db import connections
    from playwright.sync_api import sync_playwright

    with django_db_blocker.unblock():
        before_loop = {alias: connections[alias] for alias in connections}
    unsafe = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            for alias, connection in before_loop.items():
                connections[alias] = connection
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if unsafe is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = unsafe


E2E_BASE_URL = os.environ.get("E2E_BASE_URL", "")


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A new browser context per test, Norwegian and in Oslo time like the customers."""
    context = browser.new_context(
        base_url=E2E_BASE_URL or live_server.url,
        viewport=DESKTOP,
        locale="nb-NO",
        timezone_id="Europe/Oslo",
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(autouse=True)
def _e2e_settings(settings: Any) -> None:
    """Staff sign in with a password only (no TOTP device in tests); the live server shares these settings (a
    served stack is started with OTP_REQUIRED_FOR_STAFF=false for this suite)."""
    settings.OTP_REQUIRED_FOR_STAFF = False
