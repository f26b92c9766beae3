"""No customer ever sees another's data: every portal URL that takes an id answers 404 for another's."""

import datetime as dt

import pytest
from django.urls import URLPattern, reverse

from billing import services
from billing.models import Invoice
from billing.quarters import Quarter
from portal import urls as portal_urls

pytestmark = pytest.mark.django_db

# Every portal URL with an id, and which of the other customer's objects to try it with.
OBJECT_OF = {
    "user": "user",
    "invoice_pdf": "invoice",
    "invoice_ehf": "invoice",
    "credit_note_pdf": "credit_note",
    "credit_note_ehf": "credit_note",
    "microsoft_group": "graph_source",
}
ADMIN_ONLY = {"user", "microsoft_group"}


def _urls_with_an_id() -> set[str]:
    return {
        pattern.name
        for pattern in portal_urls.urlpatterns
        if isinstance(pattern, URLPattern) and pattern.name and "pk" in pattern.pattern.converters
    }


def test_every_portal_url_with_an_id_is_covered_here():
    assert _urls_with_an_id() == set(OBJECT_OF), "add the new URL to OBJECT_OF so its isolation is tested"


@pytest.mark.parametrize("name", sorted(OBJECT_OF))
def test_another_customers_object_is_not_found(name, ours, theirs):
    other = getattr(theirs, OBJECT_OF[name])
    url = reverse(f"portal:{name}", args=[other.pk])
    assert ours.admin.get(url).status_code == 404
    if name in ADMIN_ONLY:
        assert ours.accountant.get(url).status_code == 403, "the accountant's role is refused before any lookup"
    else:
        assert ours.accountant.get(url).status_code == 404
    own = reverse(f"portal:{name}", args=[getattr(ours, OBJECT_OF[name]).pk])
    assert ours.admin.get(own).status_code == 200, "the same URL works for the customer's own object"


def test_posting_overrides_for_another_customers_user_changes_nothing(ours, theirs):
    url = reverse("portal:user", args=[theirs.user.pk])
    response = ours.admin.post(url, {"default_profile": "", "divert_by_default": "false"})
    assert response.status_code == 404
    theirs.user.refresh_from_db()
    assert theirs.user.divert_by_default is None


def test_lists_show_only_the_customers_own_rows(ours, theirs):
    users = ours.admin.get(reverse("portal:users")).content.decode()
    assert theirs.user.email not in users and ours.user.email in users
    invoices = ours.accountant.get(reverse("portal:invoices")).content.decode()
    assert reverse("portal:invoice_pdf", args=[ours.invoice.pk]) in invoices
    assert reverse("portal:invoice_pdf", args=[theirs.invoice.pk]) not in invoices
    assert reverse("portal:credit_note_pdf", args=[theirs.credit_note.pk]) not in invoices
    overview = ours.admin.get(reverse("portal:overview")).content.decode()
    assert theirs.customer.name not in overview


def test_a_draft_invoice_of_the_customer_is_not_downloadable(ours):
    # The first quarter was credited, so billing it again makes a new draft.
    services.run_billing(quarter=Quarter.parse("2026-Q1"), today=dt.date(2026, 7, 4))
    draft = Invoice.objects.get(customer=ours.customer, number=None)
    assert ours.admin.get(reverse("portal:invoice_pdf", args=[draft.pk])).status_code == 404
    assert (
        reverse("portal:invoice_pdf", args=[draft.pk])
        not in ours.admin.get(reverse("portal:invoices")).content.decode()
    )
