"""Portal actions: invitations, settings, override and mobile-number changes (with a resync), termination
requests."""

import datetime as dt
import enum
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from billing.core.invoicing import Termination
from billing.services import register_notice
from common.authentication import login_name
from customers.models import Customer, CustomerSettings, ServiceUser, Subscription
from customers.services import act_as
from customers.validators import normalize_msisdn, validate_msisdn
from portal import selectors
from portal.models import PortalMembership
from sync import pipeline
from sync.mbn import MbnError
from sync.models import CalendarUser, MbnConnection
from sync.services import queue_syncs

User = get_user_model()


def set_password_link(*, user: Any) -> str:
    """An absolute one-time link where the user chooses a password (Django's password-reset token)."""
    path = reverse(
        "portal:password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def check_invitable(*, customer: Customer, email: str) -> list[Any]:
    """Refuse an address that is a staff login's, or a login's with portal access for another customer;
    return the logins already using the address (user name or e-mail, in any case).

    Staff are never portal users: a staff login found by its user name or by its e-mail is refused, so
    no second, portal account is made for a staff address.
    """
    logins = selectors.logins_for_address(email)
    if any(login.is_staff or login.is_superuser for login in logins):
        raise ValidationError(
            {
                "email": _(
                    "%(email)s belongs to a Nettsoft staff login, and staff cannot be portal users. "
                    "Use the customer's own address."
                )
                % {"email": email}
            }
        )
    if PortalMembership.objects.filter(user__in=logins).exclude(customer=customer).exists():
        raise ValidationError(
            {"email": _("%(email)s already has portal access for another customer.") % {"email": email}}
        )
    return logins


def invite(*, customer: Customer, email: str, name: str, role: str, invited_by: Any = None) -> PortalMembership:
    """Create (or re-invite) a portal login for a customer and e-mail a link to choose a password.

    A login belongs to one customer: an address already used for another customer, or by staff, is refused
    (check_invitable). New logins are stored with the address lower-case as user name and e-mail.
    """
    email = login_name(email)
    with transaction.atomic():
        logins = check_invitable(customer=customer, email=email)
        membership = PortalMembership.objects.filter(user__in=logins, customer=customer).select_related("user").first()
        user = membership.user if membership else next((u for u in logins if login_name(u.username) == email), None)
        if user is None:
            first, _space, last = name.strip().partition(" ")
            user = User.objects.create_user(username=email, email=email, first_name=first, last_name=last)
            user.set_unusable_password()
            user.save(update_fields=["password"])
        if membership is None:
            membership = PortalMembership(user=user, customer=customer)
        membership.role = role
        membership.invited_at = timezone.now()
        membership.invited_by = invited_by
        membership.save()
        link = set_password_link(user=user)
        transaction.on_commit(lambda: _send_invitation(membership, link))
    return membership


def _send_invitation(membership: PortalMembership, link: str) -> None:
    with translation.override("nb"):
        context = {"membership": membership, "link": link, "customer": membership.customer}
        send_mail(
            _("Your access to Kalender Push"),
            render_to_string("portal/email/invitation.txt", context),
            None,
            [membership.user.email],
        )


def save_settings(*, customer_settings: CustomerSettings) -> int:
    """Store changed calendar settings and resync every calendar of the customer; returns how many."""
    with transaction.atomic():
        customer_settings.full_clean()
        customer_settings.save()
        ids = list(
            CalendarUser.objects.filter(service_user__customer_id=customer_settings.customer_id).values_list(
                "pk", flat=True
            )
        )
        queue_syncs(calendar_user_ids=ids)
    return len(ids)


def save_user_overrides(*, service_user: ServiceUser) -> None:
    """Store a user's own default profile / divert choice and resync that user's calendar."""
    with transaction.atomic():
        service_user.full_clean()
        service_user.save(update_fields=["default_profile", "divert_by_default"])
        queue_syncs(
            calendar_user_ids=CalendarUser.objects.filter(service_user=service_user).values_list("pk", flat=True)
        )


class NumberSaved(enum.Enum):
    """What `set_mobile_number` did, for the page's message."""

    UNCHANGED = "unchanged"
    FOUND_IN_MBN = "found"  # a subscriber of the customer's MBN enterprise: pushed at the next sync
    NOT_CHECKED = "not_checked"  # the customer has no MBN access yet: checked once it is set up
    REMOVED = "removed"  # the hourly group refresh matches the user by e-mail again


def set_mobile_number(*, service_user: ServiceUser, msisdn: str, changed_by: Any) -> NumberSaved:
    """Set, correct or remove a user's MBN mobile number, as the customer's IT admin does in the portal.

    The number is stored normalised (+4791234567) and kept by the hourly group refresh (set by hand);
    removing it lets the refresh match the user by e-mail address again. When the customer has MBN access,
    a new number must be a subscriber of the customer's MBN enterprise, or it is refused and nothing is
    saved: a number MBN does not know would only fail every sync. Absences we pushed to the old number are
    deleted from it first, and the new number's absences are read from MBN at the next push. A number we
    cannot check (MBN unreachable) is not saved either. The change is recorded in the user's history with
    `changed_by`, and the calendar is synced again after commit.
    """
    number = normalize_msisdn(msisdn) if msisdn.strip() else ""
    if number:
        validate_msisdn(number)
    if number == service_user.msisdn:
        return NumberSaved.UNCHANGED
    other = ServiceUser.objects.filter(customer_id=service_user.customer_id, msisdn=number).exclude(pk=service_user.pk)
    holder = other.first() if number else None
    if holder is not None:
        raise ValidationError(
            _("%(number)s is already the number of %(user)s. One number can belong to one user only.")
            % {"number": number, "user": holder}
        )
    connection = MbnConnection.objects.filter(customer_id=service_user.customer_id).first()
    calendar_id = CalendarUser.objects.filter(service_user=service_user).values_list("pk", flat=True).first()
    if calendar_id is not None and not pipeline.claim(calendar_user_id=calendar_id):
        raise ValidationError(_("The user's calendar is being synced right now. Try again in a few seconds."))
    try:
        if connection is not None:
            try:
                if number and not pipeline.is_mbn_subscriber(connection=connection, msisdn=number):
                    raise ValidationError(
                        _(
                            "%(number)s is not a subscriber in your company's Telenor MBN (enterprise %(enterprise)s), "
                            "so calls to it cannot be diverted. Check the number, or ask Telenor to add the "
                            "subscription to your MBN enterprise. Nothing was saved."
                        )
                        % {"number": number, "enterprise": connection.enterprise_id}
                    )
                pipeline.withdraw_pushed(service_user=service_user, connection=connection)
            except (MbnError, pipeline.RetryLater) as error:
                raise ValidationError(
                    _(
                        "Telenor MBN could not be asked about the number just now, so nothing was saved. "
                        "Try again in a few minutes. (%(reason)s)"
                    )
                    % {"reason": error}
                ) from error
        with transaction.atomic():
            service_user.msisdn = number
            service_user.msisdn_set_by_hand = bool(number)
            service_user.full_clean()
            act_as(service_user, by=changed_by)
            service_user.save(update_fields=["msisdn", "msisdn_set_by_hand"])
            if calendar_id is not None:
                # the new subscriber may hold absences of ours already: the next push reads MBN first
                CalendarUser.objects.filter(pk=calendar_id).update(mbn_unsure=bool(number))
                pipeline.release(calendar_user_id=calendar_id)  # with the commit, before the resync starts
                queue_syncs(calendar_user_ids=[calendar_id])
    except BaseException:
        if calendar_id is not None:
            pipeline.release(calendar_user_id=calendar_id)
        raise
    if not number:
        return NumberSaved.REMOVED
    return NumberSaved.FOUND_IN_MBN if connection is not None else NumberSaved.NOT_CHECKED


def request_termination(*, subscription: Subscription, requested_by: Any, today: dt.date) -> Termination | None:
    """The customer's written notice, given in the portal today: recorded at once, and staff are told."""
    result = register_notice(subscription_id=subscription.pk, notice_received=today, by=requested_by)
    subscription.refresh_from_db()
    context = {
        "subscription": subscription,
        "customer": subscription.customer,
        "requested_by": requested_by,
        "result": result,
        "admin_url": settings.PUBLIC_BASE_URL.rstrip("/")
        + reverse("admin:customers_subscription_change", args=[subscription.pk]),
    }
    with translation.override("nb"):
        send_mail(
            _("Termination from %(customer)s") % {"customer": subscription.customer.name},
            render_to_string("portal/email/termination_staff.txt", context),
            None,
            [settings.STAFF_NOTIFICATION_EMAIL],
        )
        if requested_by.email:
            send_mail(
                _("We have received your termination of Kalender Push"),
                render_to_string("portal/email/termination_customer.txt", context),
                None,
                [requested_by.email],
            )
    return result
