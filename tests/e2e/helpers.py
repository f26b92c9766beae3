"""Helpers for the browser tests: screenshots, test data, signing in."""

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, ViewportSize, expect

from billing import services as billing_services
from billing.models import Invoice
from billing.quarters import Quarter
from customers.models import Customer, Subscription
from portal.models import PortalMembership
from tests.billing.factories import live_subscription

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "e2e"
DESKTOP: ViewportSize = {"width": 1200, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
PASSWORD = "Fjellvann-2026!"
DOC_WIDTH = 1000  # doc screenshots are scaled down to this width …
DOC_MAX_HEIGHT = 1400  # … and cut off below this height
DAY = dt.timedelta(days=1)


# --- screenshots ----------------------------------------------------------------------------------


def _doc_dir() -> Path | None:
    target = os.environ.get("KP_DOC_SCREENSHOTS", "").strip()
    if not target:
        return None
    path = Path(target)
    return path if path.is_absolute() else ROOT / path


def _write_doc_copy(source: Path, target: Path) -> None:
    """A smaller copy for the docs: at most DOC_WIDTH wide and DOC_MAX_HEIGHT high, 256 colours."""
    from PIL import Image

    with Image.open(source) as original:
        image = original.convert("RGB")
    if image.width > DOC_WIDTH:
        image = image.resize((DOC_WIDTH, round(image.height * DOC_WIDTH / image.width)), Image.Resampling.LANCZOS)
    if image.height > DOC_MAX_HEIGHT:
        image = image.crop((0, 0, image.width, DOC_MAX_HEIGHT))
    target.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, dither=Image.Dither.NONE).save(target, optimize=True)


def shot(page: Page, name: str, *, doc: str | None = None) -> Path:
    """Full-page PNG test-output/e2e/<name>.png; with KP_DOC_SCREENSHOTS set, also <that dir>/<doc>.png."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    doc_dir = _doc_dir()
    if doc and doc_dir is not None:
        _write_doc_copy(path, doc_dir / f"{doc}.png")
    return path


# --- data -----------------------------------------------------------------------------------------


def today() -> dt.date:
    return timezone.localdate()


def make_portal_login(customer: Customer, *, email: str, name: str, role: str = PortalMembership.Role.ADMIN) -> Any:
    """A portal login (user name = e-mail, as invitations make them) with a known password."""
    first, _space, last = name.partition(" ")
    user = get_user_model().objects.create_user(
        username=email, email=email, password=PASSWORD, first_name=first, last_name=last
    )
    PortalMembership.objects.create(user=user, customer=customer, role=role, invited_at=timezone.now())
    return user


def make_staff(email: str = "line.berg@nettsoft.no") -> Any:
    return get_user_model().objects.create_superuser(
        username=email, email=email, password=PASSWORD, first_name="Line", last_name="Berg"
    )


def live_customer(*, users: int, **customer_fields: Any) -> Subscription:
    """A customer live since the start of the last finished quarter, with daily usage up to yesterday."""
    go_live = Quarter.last_finished(today()).start
    return live_subscription(term=12, go_live=go_live, steps=[(go_live, users)], last=today() - DAY, **customer_fields)


def issued_invoice(subscription: Subscription) -> Invoice:
    """Bill the last finished quarter for this subscription and issue the draft (numbered, with KID)."""
    billing_services.run_billing(quarter=Quarter.last_finished(today()), today=today())
    draft = Invoice.objects.get(subscription=subscription, status=Invoice.Status.DRAFT)
    (invoice,) = billing_services.issue_drafts(invoice_ids=[draft.pk], today=today()).issued
    return invoice


# --- signing in -----------------------------------------------------------------------------------


def portal_sign_in(page: Page, email: str, *, screenshot: str | None = None) -> None:
    """Sign in on the portal's login form; returns once the browser has left the login page."""
    page.goto("/portal/logg-inn/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    if screenshot:
        shot(page, screenshot, doc=screenshot)
    page.locator("main form button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/logg-inn/"))


def admin_sign_in(page: Page, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.locator("#login-form [type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/admin/login/"))
