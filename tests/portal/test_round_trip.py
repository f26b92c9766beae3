"""Saving a portal form unchanged changes nothing: every <form method="post"> on every portal page.

The pages come from portal/urls.py and the forms from each page's HTML, so a new page or a new form
on a page is covered without editing this file. Each form is submitted as the customer's IT admin's
browser would submit it untouched; then every row of every table must be as before.
"""

from urllib.parse import urlparse

import pytest
from django.urls import URLPattern, resolve, reverse

from portal import urls as portal_urls
from tests.factories import make_calendar_source
from tests.portal.test_isolation import OBJECT_OF
from tests.round_trip import changed_fields, database_rows, form_action, post_back, post_forms, vary_from_the_defaults

pytestmark = pytest.mark.django_db

PAGES = sorted(
    pattern.name
    for pattern in portal_urls.urlpatterns
    if isinstance(pattern, URLPattern)
    and pattern.name
    # The password link's page (uidb64 and token) is for signed-out people; every other page is here.
    and set(pattern.pattern.converters) <= {"pk"}
)

# Saving settings or a user's overrides queues a resync by design: the calendars are marked as changed.
RESYNC_MARK = ["sync.CalendarUser.changed_at"]
# Buttons that start something rather than save what the page shows: "Test again" records a test by design,
# "Connect Microsoft 365" starts a consent, "Disconnect" (behind its confirmation) disconnects (sign-out is the fourth).
ACTIONS = {"logout", "connection_test", "connection_remove", "microsoft_connect"}


@pytest.fixture
def tenant(ours):  # type: ignore[no-untyped-def]
    """The portal tests' customer with calendars, settings and users unlike the defaults."""
    users = list(ours.customer.service_users.order_by("pk"))
    make_calendar_source(ours.customer, users)
    vary_from_the_defaults(ours.customer)
    return ours


def _urls(name: str, tenant) -> list[str]:  # type: ignore[no-untyped-def]
    if name == "user":  # with their own choices, diverting, and following the company's settings
        return [reverse("portal:user", args=[pk]) for pk in tenant.customer.service_users.values_list("pk", flat=True)]
    if name in OBJECT_OF:
        return [reverse(f"portal:{name}", args=[getattr(tenant, OBJECT_OF[name]).pk])]
    return [reverse(f"portal:{name}")]


def _is_an_action(form, page_url: str) -> bool:  # type: ignore[no-untyped-def]
    return resolve(urlparse(form_action(form, page_url)).path).url_name in ACTIONS


@pytest.mark.parametrize("name", PAGES)
def test_saving_a_portal_form_unchanged_changes_nothing(name, tenant):
    client = tenant.admin
    for url in _urls(name, tenant):
        page = client.get(url)
        if page.status_code == 405:
            continue  # not a page but an action (signing out): nothing to post back
        assert page.status_code == 200, url
        if not page["Content-Type"].startswith("text/html"):
            continue  # a download
        # The sign-out button holds no data: it ends the session the other forms are posted with.
        for form in [form for form in post_forms(page) if not _is_an_action(form, url)]:
            before = database_rows()
            response = post_back(client, form, url)
            assert response.status_code < 500, f"{form_action(form, url)} from {url}"
            changes = changed_fields(before, database_rows(), ignore=RESYNC_MARK)
            assert changes == [], f"posting the form of {url} to {form_action(form, url)} unchanged changed data"
