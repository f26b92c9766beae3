"""Business actions on customers and subscriptions; each is one transaction."""

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from customers.models import Customer, CustomerSettings, Subscription


def ensure_customer_settings(*, customer: Customer) -> CustomerSettings:
    """The customer's calendar settings, created with the defaults of calendar-rules.md if missing."""
    settings, _created = CustomerSettings.objects.get_or_create(customer=customer)
    return settings


@transaction.atomic
def mark_live(*, subscription: Subscription, go_live: dt.date) -> Subscription:
    """Put a pending subscription in production from `go_live`; billing and the term start then."""
    if subscription.status != Subscription.Status.PENDING:
        raise ValidationError(
            _("%(subscription)s is not pending (status: %(status)s) and cannot be marked as live.")
            % {"subscription": subscription, "status": subscription.get_status_display()}
        )
    if go_live < subscription.signed_on:
        raise ValidationError(
            _("Go-live %(go_live)s is before the signing date %(signed_on)s.")
            % {"go_live": go_live.strftime("%d.%m.%Y"), "signed_on": subscription.signed_on.strftime("%d.%m.%Y")}
        )
    claimed = Subscription.objects.filter(pk=subscription.pk, status=Subscription.Status.PENDING).update(
        status=Subscription.Status.LIVE, go_live=go_live
    )
    if claimed != 1:
        raise ValidationError(
            _("%(subscription)s was changed by someone else; reload and try again.") % {"subscription": subscription}
        )
    subscription.refresh_from_db()
    return subscription


def end_subscriptions_past_effective_end(*, today: dt.date) -> int:
    """Mark as ended every subscription whose effective end lies before `today`; returns how many."""
    ended = 0
    candidates = Subscription.objects.filter(
        status__in=[Subscription.Status.NOTICE_GIVEN, Subscription.Status.LIVE, Subscription.Status.PENDING],
        notice_received__isnull=False,
    )
    for subscription in candidates.only("pk", "term_months", "notice_received", "status"):
        effective_end = subscription.effective_end
        if effective_end is not None and effective_end < today:
            ended += Subscription.objects.filter(Q(pk=subscription.pk) & ~Q(status=Subscription.Status.ENDED)).update(
                status=Subscription.Status.ENDED
            )
    return ended
