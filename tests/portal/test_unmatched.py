"""Unmatched is not failed: a user without an MBN number has its own state and its own words, the same
in the portal and on the staff pages, and never the advice to wait for a retry."""

import pytest
from django.urls import reverse
from django.utils import timezone

from customers.models import ServiceUser
from kalenderpush import selectors as staff
from portal import selectors as portal
from sync.models import CalendarSource, CalendarUser, MbnConnection
from tests.factories import make_users

pytestmark = pytest.mark.django_db

RETRY_ADVICE = "Vi prøver igjen automatisk"


def _page(client, name, *args, **params) -> str:  # type: ignore[no-untyped-def]
    response = client.get(reverse(f"portal:{name}", args=args), params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def _connect_mbn(customer) -> None:  # type: ignore[no-untyped-def]
    MbnConnection.objects.create(customer=customer, enterprise_id="e", client_id="c", username="u")


def _calendars(customer, errors: dict[int, str], code: str = "unknown") -> CalendarSource:  # type: ignore[no-untyped-def]
    """A source with a calendar per user; a user in `errors` failed with that text and `code`."""
    source = CalendarSource.objects.create(
        customer=customer, activation_group="KalenderPush", last_success_at=timezone.now()
    )
    for user in customer.service_users.all():
        failed = user.pk in errors
        CalendarUser.objects.create(
            service_user=user,
            source=source,
            provider_user_id=user.email,
            last_error=errors.get(user.pk, ""),
            last_error_code=code if failed else "",
        )
    return source


def test_an_unmatched_user_is_not_a_failed_sync_on_the_overview(ours):
    _connect_mbn(ours.customer)
    ServiceUser.objects.filter(pk=ours.user.pk).update(msisdn="")
    _calendars(ours.customer, {ours.user.pk: "the calendar could not be read (no mailbox for this user)"})

    html = _page(ours.admin, "overview")

    assert "Brukere som ikke er koblet til MBN (1)" in html
    assert "legg inn mobilnummeret" in html
    assert "Siste synkronisering feilet" not in html and RETRY_ADVICE not in html
    assert "En kalender kunne ikke leses" not in html, "an unmatched user is not counted as failing"
    assert "med synkroniseringsfeil" not in html


def test_the_error_filter_leaves_out_unmatched_and_inactive_users(ours):
    _connect_mbn(ours.customer)
    unmatched, inactive, failing = ours.customer.service_users.order_by("pk")[:3]
    ServiceUser.objects.filter(pk=unmatched.pk).update(msisdn="")
    ServiceUser.objects.filter(pk=inactive.pk).update(active=False)
    _calendars(ours.customer, {u.pk: "Graph is unavailable (HTTP 503)" for u in (unmatched, inactive, failing)})

    errors = _page(ours.admin, "users", vis="feil")
    listed = _page(ours.admin, "users")

    assert failing.email in errors
    assert unmatched.email not in errors and inactive.email not in errors
    assert "Med feil (1)" in errors
    row = listed[listed.index(unmatched.email) :]
    assert "ikke koblet til MBN: legg inn nummeret" in row[: row.index("</tr>")]


def test_the_user_page_explains_an_unmatched_user_and_an_error_in_norwegian(ours):
    _connect_mbn(ours.customer)
    unmatched, failing = ours.customer.service_users.order_by("pk")[:2]
    ServiceUser.objects.filter(pk=unmatched.pk).update(msisdn="")
    _calendars(
        ours.customer, {failing.pk: "A manual absence in MBN overlaps: 02.12 10:00"}, "mbn_conflict_manual_absence"
    )

    page = _page(ours.admin, "user", unmatched.pk)
    assert "Ikke koblet til MBN" in page and "Legg inn mobilnummeret" in page
    assert RETRY_ADVICE not in page and "not matched" not in page

    page = _page(ours.admin, "user", failing.pk)
    assert "Et fravær registrert manuelt i MBN overlapper en avtale" in page
    assert "02.12 10:00" in page, "the technical detail is kept"


def test_without_mbn_access_users_are_told_so_and_not_that_we_retry(ours):
    _calendars(ours.customer, {})

    users = _page(ours.admin, "users")
    page = _page(ours.admin, "user", ours.user.pk)

    assert "MBN ikke tilkoblet" in users
    assert "Telenor MBN er ikke koblet til ennå" in page and RETRY_ADVICE not in page


def test_portal_and_staff_count_the_same_users_in_each_state(ours):
    _connect_mbn(ours.customer)
    make_users(ours.customer, 4)
    make_users(ours.customer, 2, matched=False)
    people = list(ours.customer.service_users.order_by("pk"))
    ServiceUser.objects.filter(pk=people[0].pk).update(active=False)
    unmatched = people[-1]
    errors = {people[0].pk: "403", people[1].pk: "403", unmatched.pk: "403"}  # inactive, failing, unmatched
    _calendars(ours.customer, errors)

    shown = portal.user_counts(ours.customer)
    staff_counts = staff.customer_overview(customer_id=ours.customer.pk, today=timezone.localdate()).users

    assert shown == staff_counts
    assert (shown.active, shown.matched, shown.unmatched, shown.failing, shown.inactive) == (8, 6, 2, 1, 1)
    health = staff.sync_health(now=timezone.now())
    assert (health.calendar_users_with_error, health.unmatched_users) == (1, 2)


def test_the_dashboards_error_link_lists_exactly_the_users_it_counts(ours, admin_client, settings):
    settings.OTP_REQUIRED_FOR_STAFF = False
    _connect_mbn(ours.customer)
    unmatched, inactive, failing = ours.customer.service_users.order_by("pk")[:3]
    ServiceUser.objects.filter(pk=unmatched.pk).update(msisdn="")
    ServiceUser.objects.filter(pk=inactive.pk).update(active=False)
    _calendars(ours.customer, {u.pk: "403" for u in (unmatched, inactive, failing)})

    dashboard = admin_client.get(reverse("admin:dashboard")).content.decode()
    link = reverse("admin:sync_calendaruser_changelist") + "?state=failing"
    listed = admin_client.get(link).context["cl"].result_list

    assert f'href="{link}"' in dashboard
    assert [calendar.service_user_id for calendar in listed] == [failing.pk]
