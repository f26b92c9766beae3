"""Reads for the portal pages, always through one customer: nothing here can reach another's data;
and, for signing in, which logins may use the portal at all."""

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.urls import reverse

from billing.core.invoicing import Invoice as InvoiceEstimate
from billing.estimates import estimate_quarter_invoice
from billing.models import CreditNote, Invoice
from billing.quarters import Quarter
from customers.models import Customer, CustomerSettings, ServiceUser, Subscription, UserCounts
from portal.problems import Problem, explain, mbn_not_connected, no_calendar_connected, not_connected
from sync.models import AbsenceProfile, CalendarSource, MbnConnection, PushedAbsence


def portal_logins() -> QuerySet[Any]:
    """The logins that may sign in to the portal or reset a password there: active members, never staff."""
    return get_user_model()._default_manager.filter(
        is_active=True, is_staff=False, is_superuser=False, portal_membership__isnull=False
    )


def logins_for_address(email: str) -> list[Any]:
    """Every login whose user name or e-mail is this address, in any case."""
    return list(
        get_user_model()._default_manager.filter(Q(username__iexact=email) | Q(email__iexact=email)).order_by("pk")
    )


@dataclass(frozen=True)
class Overview:
    subscription: Subscription | None
    sources: list[CalendarSource]
    has_mbn: bool
    counts: UserCounts
    last_success: dt.datetime | None
    problems: list[Problem]
    estimate: tuple[Quarter, InvoiceEstimate] | None


def current_subscription(customer: Customer) -> Subscription | None:
    """The subscription that has not ended, else the latest one (`Customer.current_subscription`)."""
    return customer.current_subscription()


def user_counts(customer: Customer) -> UserCounts:
    return ServiceUser.objects.filter(customer=customer).state_counts()


def problems_of(customer: Customer, counts: UserCounts, sources: list[CalendarSource], has_mbn: bool) -> list[Problem]:

    users_url = reverse("portal:users")
    problems = [
        explain(source.last_error_code, detail=source.last_error)
        for source in sources
        if source.active and source.last_error
    ]
    if counts.failing:
        code, text = (
            ServiceUser.objects.filter(customer=customer)
            .failing()
            .values_list("calendar__last_error_code", "calendar__last_error")
            .first()
        ) or ("", "")
        problems.append(explain(code, detail=text, count=counts.failing, link=f"{users_url}?vis=feil"))
    if counts.unmatched and has_mbn:  # without MBN access nobody can be matched: the problem below says so
        problems.append(not_connected(count=counts.unmatched, link=f"{users_url}?vis=umatchet"))
    connections_url = reverse("portal:connections")
    if not sources:
        problems.append(no_calendar_connected(link=connections_url))
    if not has_mbn:
        problems.append(mbn_not_connected(link=connections_url))
    return problems


def has_mbn_connection(customer: Customer) -> bool:
    return MbnConnection.objects.filter(customer=customer, removed_at__isnull=True).exists()


def user_problem(service_user: ServiceUser, *, has_mbn: bool) -> Problem | None:
    """What keeps an active user's appointments from the switchboard, in plain words; None when nothing does."""
    if not service_user.active:
        return None
    if not has_mbn:
        return mbn_not_connected()
    if not service_user.msisdn:
        return not_connected()
    calendar = getattr(service_user, "calendar", None)
    if calendar is not None and calendar.last_error:
        return explain(calendar.last_error_code, detail=calendar.last_error)
    return None


def overview(customer: Customer, *, today: dt.date) -> Overview:
    subscription = current_subscription(customer)
    sources = list(CalendarSource.objects.filter(customer=customer, removed_at__isnull=True))
    has_mbn = has_mbn_connection(customer)
    counts = user_counts(customer)
    last_success = max((s.last_success_at for s in sources if s.last_success_at), default=None)
    estimate = None
    if subscription is not None and subscription.status != Subscription.Status.ENDED:
        estimate = estimate_quarter_invoice(subscription=subscription, today=today)
    return Overview(
        subscription, sources, has_mbn, counts, last_success, problems_of(customer, counts, sources, has_mbn), estimate
    )


USER_FILTERS = ("alle", "umatchet", "feil", "inaktive")


def service_users(customer: Customer, *, show: str = "alle", search: str = "") -> QuerySet[ServiceUser]:
    users = (
        ServiceUser.objects.filter(customer=customer)
        .select_related("default_profile", "calendar")
        .order_by("name", "email")
    )
    if show == "umatchet":
        users = users.unmatched()
    elif show == "feil":
        users = users.failing()
    elif show == "inaktive":
        users = users.filter(active=False)
    else:
        users = users.filter(active=True)
    if search:
        users = users.filter(Q(name__icontains=search) | Q(email__icontains=search) | Q(msisdn__icontains=search))
    return users


@dataclass(frozen=True)
class TimelineAbsence:
    start: dt.datetime
    end: dt.datetime
    profile: str
    diversion: str


def upcoming_absences(service_user: ServiceUser, *, now: dt.datetime, days: int = 7) -> list[TimelineAbsence]:
    """What is on MBN for the user from the start of today (local) for `days` days, profile names resolved."""
    zone = ZoneInfo(timezone_of(service_user.customer))
    start = dt.datetime.combine(now.astimezone(zone).date(), dt.time(), tzinfo=zone)
    end = start + dt.timedelta(days=days)
    names = dict(AbsenceProfile.objects.values_list("mbn_reason", "profile"))
    rows = PushedAbsence.objects.filter(service_user=service_user, end__gt=start, start__lt=end).order_by("start")
    return [
        TimelineAbsence(
            row.start.astimezone(zone), row.end.astimezone(zone), names.get(row.reason, row.reason), row.diversion
        )
        for row in rows
    ]


def timezone_of(customer: Customer) -> str:
    return (
        CustomerSettings.objects.filter(customer=customer).values_list("timezone", flat=True).first() or "Europe/Oslo"
    )


def invoices(customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer).exclude(number=None).order_by("-issue_date", "-number")


def credit_notes(customer: Customer) -> QuerySet[CreditNote]:
    return CreditNote.objects.filter(invoice__customer=customer).select_related("invoice").order_by("-number")


@dataclass(frozen=True)
class SettingsChange:
    when: dt.datetime
    who: str
    changes: list[tuple[str, str, str]]  # (field label, old, new)


def _shown(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        from django.utils.translation import gettext as _

        return _("yes") if value else _("no")
    if isinstance(value, dt.time):
        return f"{value:%H:%M}"
    return str(value)


def settings_changes(customer_settings: CustomerSettings, *, limit: int = 10) -> list[SettingsChange]:
    """The latest changes to the calendar settings, newest first: when, by whom, which fields."""
    records = list(customer_settings.history.select_related("history_user").order_by("-history_date")[: limit + 1])  # type: ignore[attr-defined]
    profiles = dict(AbsenceProfile.objects.values_list("pk", "profile"))
    meta = customer_settings._meta
    result = []
    for newer, older in itertools.pairwise(records):
        delta = newer.diff_against(older)
        changes = []
        for change in delta.changes:
            field = meta.get_field(change.field)
            old, new = change.old, change.new
            if field.is_relation:
                old, new = profiles.get(old, old), profiles.get(new, new)
            changes.append((str(getattr(field, "verbose_name", change.field)), _shown(old), _shown(new)))
        if changes:
            user = newer.history_user
            who = (user.get_full_name() or user.email or user.get_username()) if user else "Nettsoft"
            result.append(SettingsChange(newer.history_date, who, changes))
    return result[:limit]
