"""Business actions on customers and subscriptions; each is one transaction and leaves an audit-history row."""

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from simple_history.utils import get_history_manager_for_model

from customers.models import Customer, CustomerSettings, ServiceUser, StopReason, Subscription
from customers.signals import service_users_changed

User = Any  # the acting staff user; None: the request's user, or nobody for the scheduler


def act_as(instance: models.Model, *, by: User) -> None:
    """Name `by` in the audit-history rows of the instance's next saves.

    Without it the rows name the request's user (simple_history's middleware), which is nobody in a
    task, a command or the shell.
    """
    if by is not None:
        instance._history_user = by  # type: ignore[attr-defined]  # read by simple_history on post_save


def record_history(instance: models.Model, *, by: User = None) -> None:
    """Write the audit-history row of a change made with a conditional UPDATE.

    A conditional `QuerySet.update()` claims a row safely against a concurrent worker, but it bypasses
    `save()` and so the history signal. Call this after a successful claim, with the instance as the
    database now holds it.
    """
    act_as(instance, by=by)
    get_history_manager_for_model(instance).bulk_history_create([instance], update=True)


def ensure_customer_settings(*, customer: Customer) -> CustomerSettings:
    """The customer's calendar settings, created with the defaults of calendar-rules.md if missing."""
    settings, _created = CustomerSettings.objects.get_or_create(customer=customer)
    return settings


@transaction.atomic
def mark_live(*, subscription: Subscription, go_live: dt.date, by: User = None) -> Subscription:
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
    record_history(subscription, by=by)
    return subscription


@transaction.atomic
def update_service_states(
    *, customer: Customer, unmatched: Iterable[int] = (), now: dt.datetime | None = None
) -> tuple[list[int], list[int]]:
    """Stop the customer's users who should no longer be served and start again those who should be; returns
    (stopping, resumed) service-user ids. `unmatched`: users the group refresh found no MBN subscriber for
    (their number is kept until their absences on it are deleted). The layers above do the work on MBN and
    the calendars (`service_users_changed`): a stopping user is shown "stopping" until that is done."""
    now = now or timezone.now()
    unmatched_ids = set(unmatched)
    stopping: list[int] = []
    resumed: list[int] = []
    served = Customer.objects.served().filter(pk=customer.pk).exists()
    for user in ServiceUser.objects.filter(customer=customer).select_related("customer"):
        reason = user.wanted_stop_reason(customer_served=served)
        if not reason and (user.pk in unmatched_ids or (user.stop_reason == StopReason.UNMATCHED and not user.msisdn)):
            reason = StopReason.UNMATCHED
        if reason and not user.stop_reason:
            ServiceUser.objects.filter(pk=user.pk).update(stop_reason=reason, stopped_at=None)
            stopping.append(user.pk)
        elif reason and reason != user.stop_reason:  # stopped already, for another reason now: say the new one
            ServiceUser.objects.filter(pk=user.pk).update(stop_reason=reason)
        elif not reason and user.stop_reason:
            ServiceUser.objects.filter(pk=user.pk).update(stop_reason="", stopped_at=None)
            resumed.append(user.pk)
    ended = not served and not customer.service_paused
    if ended and customer.ended_at is None:
        Customer.objects.filter(pk=customer.pk).update(ended_at=now)
    elif not ended and customer.ended_at is not None:
        Customer.objects.filter(pk=customer.pk).update(ended_at=None)
    if stopping or resumed or ended:
        service_users_changed.send(sender=Customer, customer=customer, stopping=stopping, resumed=resumed, ended=ended)
    return stopping, resumed


@transaction.atomic
def set_service_paused(*, customer: Customer, paused: bool, by: User = None) -> tuple[list[int], list[int]]:
    """Pause (every user stopped, as when the subscription ends) or resume (every user synced in full) the
    customer's service; audited in the customer's history. Returns update_service_states' answer."""
    customer.service_paused = paused
    act_as(customer, by=by)
    customer.save(update_fields=["service_paused"])
    return update_service_states(customer=customer)


def end_subscriptions_past_effective_end(*, today: dt.date) -> int:
    """Mark as ended every subscription whose effective end lies before `today`, and stop the users of every
    customer left without a subscription that runs (`update_service_states`); returns how many ended."""
    ended = 0
    candidates = Subscription.objects.filter(
        status__in=[Subscription.Status.NOTICE_GIVEN, Subscription.Status.LIVE, Subscription.Status.PENDING],
        notice_received__isnull=False,
    )
    for subscription in candidates.only("pk", "term_months", "notice_received", "status"):
        effective_end = subscription.effective_end
        if effective_end is not None and effective_end < today:
            with transaction.atomic():
                claimed = Subscription.objects.filter(
                    Q(pk=subscription.pk) & ~Q(status=Subscription.Status.ENDED)
                ).update(status=Subscription.Status.ENDED)
                if claimed:
                    ended_subscription = Subscription.objects.select_related("customer").get(pk=subscription.pk)
                    record_history(ended_subscription)
                    update_service_states(customer=ended_subscription.customer)
            ended += claimed
    return ended
